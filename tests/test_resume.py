"""Resume tokens (streaming.resume) and a session's resume state (streaming.session)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import streaming
from streaming.config import ModelConfig, VadConfig, WindowConfig
from streaming.model import LoadedModel, load_model
from streaming.resume import (
    BAD_SIGNATURE,
    EXPIRED,
    MALFORMED,
    MODEL_MISMATCH,
    UNKNOWN_KEY,
    UNSUPPORTED_VERSION,
    Claims,
    ResumeError,
    ResumeState,
    TokenSigner,
    UtteranceState,
)
from streaming.session import Session

KEY = b"k" * 32
NOW = 1_800_000_000.0

STATE = ResumeState(
    replay=40_000,
    skip=0,
    position=40_000,
    vad_from=48_000,
    frames_seen=100,
    next_id=2,
    sample_rate=16000,
    encoding="pcm_s16le",
    open=(UtteranceState(2, 48_000, 50_880, (1, 1, 2, 1, 1), (("hello", 3020, 3300, 0.93),)),),
)
CLAIMS = Claims("abc123", "tiny-en", int(NOW) + 300, STATE)


def test_a_signed_token_verifies_to_the_same_claims() -> None:
    signer = TokenSigner(KEY)
    assert signer.verify(signer.sign(CLAIMS), model="tiny-en", now=NOW) == CLAIMS


def test_a_token_carries_the_streams_hotwords() -> None:
    signer = TokenSigner(KEY)
    claims = dataclasses.replace(CLAIMS, hotwords=(("stella", 8.0), ("plastic snake", 4.5)))
    assert signer.verify(signer.sign(claims), model="tiny-en", now=NOW) == claims


def test_state_knows_where_its_last_commit_ends() -> None:
    assert STATE.commit_ms == 3300
    assert dataclasses.replace(STATE, open=()).commit_ms == 0


def _reason(token: object, *, signer: TokenSigner | None = None, **kwargs: object) -> str:
    checker = signer or TokenSigner(KEY)
    args: dict[str, object] = {"model": "tiny-en", "now": NOW, **kwargs}
    with pytest.raises(ResumeError) as refused:
        checker.verify(token, **args)  # type: ignore[arg-type]
    assert refused.value.message
    return refused.value.reason


def test_a_forged_payload_is_refused_as_a_bad_signature() -> None:
    version, kid, payload, mac = TokenSigner(KEY).sign(CLAIMS).split(".")
    forged = dataclasses.replace(CLAIMS, expires=CLAIMS.expires + 10**6)
    _, _, other_payload, _ = TokenSigner(KEY).sign(forged).split(".")
    assert _reason(f"{version}.{kid}.{other_payload}.{mac}") == BAD_SIGNATURE
    assert _reason(f"{version}.{kid}.{payload}.{'A' * len(mac)}") == BAD_SIGNATURE


def test_a_token_of_another_key_is_refused_as_unknown_key() -> None:
    token = TokenSigner(b"x" * 32).sign(CLAIMS)
    assert _reason(token) == UNKNOWN_KEY


def test_an_expired_token_is_refused() -> None:
    token = TokenSigner(KEY).sign(CLAIMS)
    assert _reason(token, now=CLAIMS.expires + 5.0) == EXPIRED


def test_a_token_of_another_model_is_refused() -> None:
    token = TokenSigner(KEY).sign(CLAIMS)
    assert _reason(token, model="facebook/wav2vec2-base-960h") == MODEL_MISMATCH


@pytest.mark.parametrize(
    "cut", [lambda t: t[: len(t) // 2], lambda t: t.rsplit(".", 1)[0], lambda t: ""]
)
def test_a_truncated_token_is_refused_as_malformed(cut: object) -> None:
    token = TokenSigner(KEY).sign(CLAIMS)
    assert callable(cut)
    assert _reason(cut(token)) in (MALFORMED, BAD_SIGNATURE)
    assert _reason(token.rsplit(".", 1)[0]) == MALFORMED
    assert _reason(12) == MALFORMED


def test_a_token_of_another_version_is_refused() -> None:
    token = TokenSigner(KEY).sign(CLAIMS)
    assert _reason("v2" + token[2:]) == UNSUPPORTED_VERSION


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        TokenSigner(b"short")


# -- the session's resume state ---------------------------------------------------------

BUNDLED = Path(streaming.__file__).parent / "models" / "tiny-en"
DEMO = Path(streaming.__file__).parent / "assets" / "demo.wav"


@pytest.fixture(scope="module")
def bundled() -> LoadedModel:
    return load_model(ModelConfig(name=str(BUNDLED), warmup=False), threads=1)


def _demo(seconds: float) -> bytes:
    import wave

    with wave.open(str(DEMO)) as wav:
        return wav.readframes(int(seconds * wav.getframerate()))


def _session(model: LoadedModel) -> Session:
    return Session(model.vocab, model.geometry, VadConfig(), WindowConfig())


def _run(model: LoadedModel, session: Session, pcm: bytes, frame: int = 3200) -> list[object]:
    """Feed ``pcm`` in frames, running every due window at once (deterministic windows)."""
    events: list[object] = []
    for i in range(0, len(pcm), frame):
        events += session.feed(pcm[i : i + frame])
        while (request := session.next_request()) is not None:
            logprobs = model.infer(request.samples[None])[0]
            events += session.complete(request, logprobs)
    return events


def test_silence_only_resumes_from_the_audio_the_vad_could_still_use(
    bundled: LoadedModel,
) -> None:
    session = _session(bundled)
    _run(bundled, session, b"\x00\x00" * 32000)  # 2 s of silence
    state = session.resume_state()
    assert state.open == () and state.next_id == 0
    assert state.vad_from <= 32000 and state.vad_from % 480 == 0
    assert state.replay == state.position <= state.vad_from - 8000  # the VAD warm-up


@pytest.mark.parametrize("replay_frame", [3200, 64000])
def test_a_resumed_session_continues_the_open_utterance_word_for_word(
    bundled: LoadedModel, replay_frame: int
) -> None:
    """Replayed at the pace of the first run: the very same finals. Replayed in one burst:
    the windows before the cut are replayed as they were (so the committed words are read
    from the same frames), the later ones catch up in longer windows, which may change a
    word's confidence or a time by a frame (as a burst of audio does in any stream), but
    not the committed words nor, here, the text."""
    pcm = _demo(7.6)
    whole = _session(bundled)
    expected = _run(bundled, whole, pcm) + whole.end()
    while (request := whole.next_request()) is not None:
        expected += whole.complete(request, bundled.infer(request.samples[None])[0])

    cut = 5 * 16000 * 2  # inside the second sentence
    first = _session(bundled)
    before = _run(bundled, first, pcm[:cut])
    state = first.resume_state()
    assert state.open and state.open[0].words, "a commit inside the open utterance"
    second = _session(bundled)
    second.resume(state)
    assert second.audio_ms == state.replay // 16
    after = _run(bundled, second, pcm[state.replay * 2 :], replay_frame) + second.end()
    while (request := second.next_request()) is not None:
        after += second.complete(request, bundled.infer(request.samples[None])[0])

    def finals(events: list[object]) -> list[object]:
        return [e for e in events if type(e).__name__ == "Final"]

    got = finals(before) + finals(after)
    if replay_frame == 3200:
        assert got == finals(expected)
    else:
        assert [f.text for f in got] == [f.text for f in finals(expected)]  # type: ignore[attr-defined]
        seeded = len(state.open[0].words)
        assert got[1].words[:seeded] == finals(expected)[1].words[:seeded]  # type: ignore[attr-defined]
    committed = [w[0] for w in state.open[0].words]
    partials = [e for e in after if type(e).__name__ == "Partial"]
    assert all(p.committed.split()[: len(committed)] == committed for p in partials)  # type: ignore[attr-defined]
    assert np.all(np.diff([f.utterance_id for f in finals(before) + finals(after)]) == 1)  # type: ignore[attr-defined]


def test_a_resampled_stream_resumes_with_the_same_words_and_times(bundled: LoadedModel) -> None:
    """8 kHz input: the replay starts where both rates meet, with resampler warm-up; the
    restarted resampler is not bit-exact, so only confidences may differ a little."""
    from streaming.audio import AudioFormat

    pcm = np.frombuffer(_demo(7.6), dtype="<i2")[::2].tobytes()
    fmt = AudioFormat(8000, "pcm_s16le")

    def run(session: Session, audio: bytes, end: bool) -> list[object]:
        events = _run(bundled, session, audio, frame=1600)
        if end:
            events += session.end()
            while (request := session.next_request()) is not None:
                events += session.complete(request, bundled.infer(request.samples[None])[0])
        return [e for e in events if type(e).__name__ == "Final"]

    whole = _session(bundled)
    whole.start(fmt)
    expected = run(whole, pcm, True)
    first = _session(bundled)
    first.start(fmt)
    before = run(first, pcm[: 5 * 8000 * 2], False)
    state = first.resume_state()
    assert state.skip and state.replay * 2 == state.position - state.skip
    second = _session(bundled)
    second.resume(state)
    got = before + run(second, pcm[state.replay * 2 :], True)

    def words(finals: list[object]) -> list[object]:
        return [[(w.word, w.start_ms, w.end_ms) for w in f.words] for f in finals]  # type: ignore[attr-defined]

    assert words(got) == words(expected)


def test_with_lm_finals_a_resumed_stream_keeps_the_early_committed_words_once(
    bundled: LoadedModel,
) -> None:
    """LM early commits travel in the token like greedy ones: the resumed utterance's
    partials and its LM final start with them, and no word is said twice."""
    pytest.importorskip("pyctcdecode")
    pytest.importorskip("kenlm")
    from streaming.beam_commit import CommitSearch
    from streaming.lm import LMDecoder
    from streaming.session import PendingFinal

    lm = LMDecoder.from_model_dir(BUNDLED)

    def lm_session() -> Session:
        return Session(
            bundled.vocab, bundled.geometry, VadConfig(), WindowConfig(), rescore_finals=True
        )

    def answer(session: Session, events: list[object]) -> list[object]:
        """Run the searches at once, as a free decoder thread would; resolve the finals."""
        out: list[object] = []
        for event in events:
            if isinstance(event, CommitSearch):
                words = lm.decode_words(event.scores, context=event.context)
                out += answer(session, list(session.beam_committed(event, words)))
            elif isinstance(event, PendingFinal):
                out.append(event.resolve(lm.decode_words(event.scores, context=event.context)))
            else:
                out.append(event)
        return out

    def run(session: Session, pcm: bytes) -> list[object]:
        events: list[object] = []
        for i in range(0, len(pcm), 3200):
            events += answer(session, list(session.feed(pcm[i : i + 3200])))
            while (request := session.next_request()) is not None:
                logprobs = bundled.infer(request.samples[None])[0]
                events += answer(session, list(session.complete(request, logprobs)))
        return events

    pcm = _demo(7.6)
    cut = 5 * 16000 * 2  # inside the second sentence
    first = lm_session()
    run(first, pcm[:cut])
    state = first.resume_state()
    assert state.open and state.open[0].words, "an early commit inside the open utterance"
    seeds = [w[0] for w in state.open[0].words]
    second = lm_session()
    second.resume(state)
    after = run(second, pcm[state.replay * 2 :])
    after += answer(second, list(second.end()))
    while (request := second.next_request()) is not None:
        logprobs = bundled.infer(request.samples[None])[0]
        after += answer(second, list(second.complete(request, logprobs)))
    partials = [e for e in after if type(e).__name__ == "Partial"]
    assert all(p.committed.split()[: len(seeds)] == seeds for p in partials)  # type: ignore[attr-defined]
    final = next(e for e in after if type(e).__name__ == "Final")
    assert final.utterance_id == state.open[0].id  # type: ignore[attr-defined]
    assert final.text.split()[: len(seeds)] == seeds  # type: ignore[attr-defined]
    starts = [w.start_ms for w in final.words]  # type: ignore[attr-defined]
    assert starts == sorted(set(starts)), "a word said twice"
