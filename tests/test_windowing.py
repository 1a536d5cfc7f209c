"""Window planning and stitching: frames line up exactly with whole-utterance decoding."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import GEOMETRY, VOCAB, ReceptiveFieldModel
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.config import WindowConfig
from streaming.decoding import best_path
from streaming.geometry import FrameGeometry
from streaming.stabilizer import Stabilizer
from streaming.utterance import StreamTail, Utterance
from streaming.windowing import WindowPlanner

RATE = 16000


def planner(**changes: int) -> WindowPlanner:
    return WindowPlanner(WindowConfig(**changes), GEOMETRY, RATE)


def test_frame_geometry_matches_wav2vec2_conv_stack() -> None:
    assert GEOMETRY.stride == 320
    assert GEOMETRY.frames(400) == 1
    assert GEOMETRY.frames(399) == 0
    assert GEOMETRY.frames(16000) == 49
    assert FrameGeometry((10, 3), (5, 2)).frames(100) == 9


def test_no_window_until_a_chunk_and_its_right_context_have_arrived() -> None:
    p = planner(chunk_ms=480, left_context_ms=960, right_context_ms=320)
    assert p.next(0, 12799, closed=False) is None
    plan = p.next(0, 12800, closed=False)
    assert plan is not None
    assert (plan.start, plan.end, plan.keep_from, plan.keep_to, plan.final) == (
        0, 12800, 0, 24, False,
    )  # fmt: skip


def test_steady_windows_carry_left_context_and_keep_only_the_chunk() -> None:
    p = planner(chunk_ms=480, left_context_ms=960, right_context_ms=320, max_catchup_chunks=4)
    plan = p.next(48, 100_000, closed=False)
    assert plan is not None
    assert plan.start == 48 * 320 - 15360
    assert plan.keep_from == 48
    assert plan.keep_to == 48 + 4 * 24  # catches up by at most max_catchup_chunks
    assert plan.length == 15360 + 4 * 7680 + 5120


def test_closed_utterance_gets_one_final_window_to_its_end() -> None:
    p = planner()
    plan = p.next(24, 20000, closed=True)
    assert plan is not None and plan.final
    assert plan.end == 20000
    assert plan.keep_to == GEOMETRY.frames(20000)
    assert p.next(plan.keep_to, 20000, closed=True) is None


def test_window_lengths_come_from_a_small_set_so_batches_bucket_well() -> None:
    p = planner()
    lengths = []
    for stable in range(0, 2000, p.chunk // GEOMETRY.stride):
        plan = p.next(stable, stable * GEOMETRY.stride + p.chunk + p.right, closed=False)
        assert plan is not None
        lengths.append(plan.length)
    filling = -(-p.left // p.chunk)  # windows while the left context is still filling up
    assert len(set(lengths)) <= filling + 1
    assert set(lengths[filling:]) == {p.steady_length}


def test_final_windows_come_in_a_few_lengths_with_at_least_the_usual_context() -> None:
    p = planner()
    lengths = set()
    for stable in range(200, 260):  # utterances long past the left context
        stable_end = stable * GEOMETRY.stride
        for extra in range(p.right, p.max_chunks * p.chunk + p.right + 1, 160):
            available = stable_end + extra  # utterance lengths in 10 ms steps
            plan = p.next(stable, available, closed=True)
            assert plan is not None and plan.final and plan.end == available
            assert plan.start % GEOMETRY.stride == 0
            assert plan.start <= stable_end - p.left  # never less context than usual
            assert plan.length < p.left + p.chunk * (p.max_chunks + 2) + GEOMETRY.stride
            lengths.add(plan.length)
    # one per whole number of chunks × two sub-frame remainders, not one per 10 ms
    assert len(lengths) <= 2 * (p.max_chunks + 2), sorted(lengths)


def stitch(
    audio: np.ndarray,
    chunk_sizes: list[int],
    window: WindowConfig,
    before: np.ndarray | None = None,
    lengths: list[int] | None = None,
) -> Utterance:
    """Feed ``audio`` in chunks, running every due window with the receptive-field model;
    ``before`` is stream audio ahead of the utterance; ``lengths`` collects window lengths."""
    model = ReceptiveFieldModel()
    planner = WindowPlanner(window, GEOMETRY, RATE)
    utt = Utterance(0, 0, planner, Stabilizer(VOCAB), before=before)
    lengths = [] if lengths is None else lengths
    position, i = 0, 0
    while position < audio.size:
        size = chunk_sizes[i % len(chunk_sizes)]
        utt.append(audio[position : position + size])
        position += size
        i += 1
        while (request := utt.next_request()) is not None:
            assert request.samples.size == request.plan.length
            lengths.append(request.plan.length)
            utt.apply(request.plan, model.window(request.samples))
    utt.close("end", audio.size)
    while (request := utt.next_request()) is not None:
        utt.apply(request.plan, model.window(request.samples))
    return utt


@settings(max_examples=40, deadline=None)
@given(
    seconds=st.floats(0.05, 6.0),
    chunks=st.lists(st.integers(1, 9000), min_size=1, max_size=5),
    chunk_frames=st.integers(1, 40),
    left_frames=st.integers(0, 60),
    right_frames=st.integers(2, 30),
    before_frames=st.integers(0, 80),
    seed=st.integers(0, 1000),
)
def test_stitched_frames_equal_whole_utterance_frames(
    seconds: float,
    chunks: list[int],
    chunk_frames: int,
    left_frames: int,
    right_frames: int,
    before_frames: int,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal(int(seconds * RATE)).astype(np.float32)
    # stream audio before the utterance (stream_context): context only, never its frames
    before = rng.standard_normal(before_frames * GEOMETRY.stride).astype(np.float32)
    window = WindowConfig(chunk_frames * 20, left_frames * 20, right_frames * 20)
    utt = stitch(audio, chunks, window, before)
    whole_ids, _ = (
        best_path(ReceptiveFieldModel().window(audio))
        if audio.size >= 400
        else (
            np.zeros(0, dtype=np.int32),
            None,
        )
    )
    assert utt.stable_frames == GEOMETRY.frames(audio.size)
    assert np.array_equal(utt._ids, whole_ids)


def test_with_stream_context_every_window_but_the_last_has_the_steady_length() -> None:
    p = planner()
    before = np.zeros(p.left, dtype=np.float32)
    audio = np.random.default_rng(1).standard_normal(4 * RATE).astype(np.float32)
    lengths: list[int] = []
    stitch(audio, [p.chunk // 2], WindowConfig(), before, lengths)  # a live stream's hops
    assert len(lengths) > 10 and set(lengths) == {p.steady_length}
    plan = p.next(0, p.chunk + p.right, closed=False, before=p.left)
    assert plan is not None and plan.start == -p.left and plan.keep_from == 0
    # without it, an utterance's first windows grow hop by hop
    lengths = []
    stitch(audio, [p.chunk // 2], WindowConfig(), None, lengths)
    assert len(set(lengths)) > 5


def test_a_whole_final_window_reads_the_utterance_and_the_context_before_it() -> None:
    p = planner()
    available = 3 * RATE
    stable = GEOMETRY.frames(available) - 20
    for before in (0, p.left):
        usual = p.next(stable, available, closed=True, before=before)
        whole = p.next(stable, available, closed=True, before=before, whole_final=True)
        assert usual is not None and whole is not None and whole.final
        assert usual.start > 0 and whole.start == -before
        assert (whole.keep_from, whole.keep_to) == (usual.keep_from, usual.keep_to)
    # it changes only the last window: one still catching up is the usual one
    far = p.next(0, available, closed=True, whole_final=True)
    assert far is not None and not far.final


def test_stream_tail_gives_the_audio_before_a_position_cut_to_whole_frames() -> None:
    tail = StreamTail(capacity=1000)
    stream = np.arange(5000, dtype=np.float32)
    for start in range(0, 5000, 700):
        tail.append(stream[start : start + 700])
    got = tail.before(4500, 960, 320)
    np.testing.assert_array_equal(got, stream[4500 - 960 : 4500])
    assert tail.before(4500, 1000, 320).size == 960  # whole frames only
    kept = sum(c.size for c in tail._chunks)
    assert 1000 <= kept <= 1000 + 2 * 700  # bounded: a stream does not grow it
    fresh = StreamTail(capacity=1000)
    fresh.append(stream[:700])
    assert fresh.before(200, 960, 320).size == 0  # stream start: less than one frame
    np.testing.assert_array_equal(fresh.before(700, 960, 320), stream[60:700])


def test_window_config_rejects_values_off_the_frame_grid() -> None:
    with pytest.raises(ValueError, match="multiple of 20"):
        planner(chunk_ms=250)
    with pytest.raises(ValueError, match="right context"):
        planner(right_context_ms=20)


def test_stream_context_auto_is_on_for_a_gpu_and_off_for_the_cpu() -> None:
    assert WindowConfig().resolved("cuda:0").stream_context == "on"
    assert WindowConfig().resolved("cpu").stream_context == "off"
    assert WindowConfig(stream_context="on").resolved("cpu").stream_context == "on"
    with pytest.raises(ValueError, match="stream context"):
        planner(stream_context="sometimes")  # type: ignore[arg-type]


def test_with_stream_context_final_windows_take_the_steady_length_plus_a_remainder() -> None:
    p = planner(stream_context="on")
    lengths = set()
    for stable in range(0, 60):  # from an utterance's first frames on
        stable_end = stable * GEOMETRY.stride
        for extra in range(p.right, p.chunk + p.right + 1, 480):  # 30 ms VAD frames
            available = stable_end + extra
            plan = p.next(stable, available, closed=True, before=p.left)
            assert plan is not None and plan.final and plan.end == available
            assert plan.start % GEOMETRY.stride == 0 and plan.start <= stable_end - p.left
            if p.left + available >= p.steady_length + GEOMETRY.stride:  # audio enough
                lengths.add(plan.length - p.steady_length)
            else:  # too little audio for a steady window: the usual final
                assert plan.start >= -p.left
    assert lengths == {0, 160}, sorted(lengths)  # the sub-frame remainder of 30 ms frames
