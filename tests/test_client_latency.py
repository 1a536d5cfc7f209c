"""Latency bookkeeping against hand-computed values (no network, no clocks)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.latency import LatencyTracker, SendLog, Stats, percentile


def send_log_100ms(n_chunks: int, t0: float = 0.0) -> SendLog:
    """100 ms chunks, chunk k (covering up to (k+1)*100 ms) sent at t0 + (k+1)*0.1 s."""
    log = SendLog()
    for k in range(1, n_chunks + 1):
        log.record(t0 + k * 0.1, k * 100.0)
    return log


def word(text: str, start: float, end: float, committed: bool = False) -> dict[str, Any]:
    return {"word": text, "start_ms": start, "end_ms": end, "conf": 0.9, "committed": committed}


def partial(utt: int, words: list[dict[str, Any]], audio_ms: float) -> dict[str, Any]:
    committed = " ".join(w["word"] for w in words if w["committed"])
    tentative = " ".join(w["word"] for w in words if not w["committed"])
    return {
        "type": "partial",
        "utterance_id": utt,
        "committed": committed,
        "tentative": tentative,
        "text": f"{committed} {tentative}".strip(),
        "start_ms": words[0]["start_ms"] if words else 0,
        "audio_ms": audio_ms,
        "words": words,
    }


def final(utt: int, words: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    return {
        "type": "final",
        "utterance_id": utt,
        "text": " ".join(w["word"] for w in words),
        "start_ms": start,
        "end_ms": end,
        "audio_ms": end + 600,
        "words": [{k: v for k, v in w.items() if k != "committed"} for w in words],
        "reason": "vad",
    }


# ---- SendLog -------------------------------------------------------------------------


def test_time_at_is_when_the_chunk_holding_the_position_was_sent() -> None:
    log = send_log_100ms(5)
    assert log.time_at(0) == pytest.approx(0.1)
    assert log.time_at(1) == pytest.approx(0.1)
    assert log.time_at(100) == pytest.approx(0.1)  # last sample of chunk 1
    assert log.time_at(100.5) == pytest.approx(0.2)
    assert log.time_at(480) == pytest.approx(0.5)
    assert log.time_at(500) == pytest.approx(0.5)
    assert log.time_at(501) is None  # never sent
    assert log.sent_ms == 500
    assert len(log) == 5


def test_send_log_rejects_positions_going_backwards() -> None:
    log = SendLog()
    log.record(1.0, 200)
    with pytest.raises(ValueError):
        log.record(1.1, 100)


def test_empty_send_log() -> None:
    log = SendLog()
    assert log.time_at(0) is None
    assert log.sent_ms == 0
    assert log.first_time is None and log.last_time is None


# ---- per word --------------------------------------------------------------------------


def test_partial_and_commit_latency_of_one_word() -> None:
    log = send_log_100ms(30)
    tr = LatencyTracker(log, tolerance_ms=100)
    # "hello" ends at 480 ms, sent at 0.5 s; shown tentative at 0.75 s
    tr.on_message(partial(0, [word("hello", 100, 480)], 600), 0.75)
    # same word, boundary moved by 10 ms, now committed, at 1.2 s
    tr.on_message(partial(0, [word("hello", 100, 490, True), word("wor", 500, 700)], 1000), 1.2)
    assert len(tr.words) == 2
    hello = tr.words[0]
    assert hello.partial_latency_ms == pytest.approx(250)
    assert hello.commit_latency_ms == pytest.approx(700)
    assert not hello.retracted
    assert hello.end_ms == 490  # latest position


def test_commit_latency_measured_against_the_position_at_commit_time() -> None:
    log = send_log_100ms(30)
    tr = LatencyTracker(log, tolerance_ms=100)
    tr.on_message(partial(0, [word("far", 0, 450)], 600), 0.6)  # sent@0.5 -> 100 ms
    tr.on_message(partial(0, [word("far", 0, 520, True)], 900), 0.95)  # sent@0.6 -> 350 ms
    (rec,) = tr.words
    assert rec.partial_latency_ms == pytest.approx(100)
    assert rec.commit_latency_ms == pytest.approx(350)


def test_revised_tentative_word_is_retracted_and_not_in_partial_summary() -> None:
    log = send_log_100ms(30)
    tr = LatencyTracker(log)
    tr.on_message(partial(0, [word("hallo", 100, 480)], 600), 0.7)
    tr.on_message(partial(0, [word("hello", 100, 480)], 700), 0.8)
    tr.on_message(final(0, [word("hello", 100, 480)], 100, 480), 1.5)
    hallo, hello = tr.words
    assert hallo.retracted and hallo.commit_latency_ms is None
    assert not hello.retracted and hello.in_final
    assert hello.partial_latency_ms == pytest.approx(300)
    assert hello.commit_latency_ms == pytest.approx(1000)  # committed by the final
    assert tr.partial_latencies() == [pytest.approx(300)]
    s = tr.summary()
    assert (s["words_shown"], s["words_committed"], s["words_retracted"]) == (2, 1, 1)


def test_word_moving_beyond_tolerance_is_a_new_word() -> None:
    log = send_log_100ms(30)
    tr = LatencyTracker(log, tolerance_ms=50)
    tr.on_message(partial(0, [word("go", 0, 300)], 500), 0.5)
    tr.on_message(partial(0, [word("go", 0, 360)], 600), 0.6)  # moved 60 ms > 50
    tr.on_message(partial(0, [word("go", 0, 340)], 700), 0.7)  # 20 ms from the latest
    assert len(tr.words) == 2
    assert tr.words[1].end_ms == 340


def test_repeated_word_at_different_positions_is_two_words() -> None:
    log = send_log_100ms(30)
    tr = LatencyTracker(log, tolerance_ms=100)
    words = [word("the", 0, 200, True), word("the", 300, 500, True)]
    tr.on_message(partial(0, words, 800), 0.9)
    tr.on_message(partial(0, words, 900), 1.0)
    assert len(tr.words) == 2
    assert [w.commit_latency_ms for w in tr.words] == [pytest.approx(700), pytest.approx(400)]


def test_two_close_same_words_in_one_message_do_not_share_a_record() -> None:
    log = send_log_100ms(30)
    tr = LatencyTracker(log, tolerance_ms=100)
    tr.on_message(partial(0, [word("ha", 0, 200), word("ha", 220, 260)], 500), 0.5)
    tr.on_message(partial(0, [word("ha", 0, 210), word("ha", 220, 270)], 600), 0.6)
    assert len(tr.words) == 2
    assert [w.end_ms for w in tr.words] == [210, 270]


def test_same_word_in_another_utterance_is_another_word() -> None:
    log = send_log_100ms(40)
    tr = LatencyTracker(log)
    tr.on_message(final(0, [word("yes", 0, 300)], 0, 300), 1.0)
    tr.on_message(final(1, [word("yes", 0, 300)], 0, 300), 2.0)
    assert len(tr.words) == 2


def test_word_first_seen_in_final_has_equal_partial_and_commit_latency() -> None:
    log = send_log_100ms(30)
    tr = LatencyTracker(log)
    tr.on_message(final(0, [word("ok", 200, 650)], 200, 650), 1.6)
    (rec,) = tr.words
    assert rec.partial_latency_ms == pytest.approx(900)  # 650 ms sent at 0.7 s
    assert rec.commit_latency_ms == pytest.approx(900)


# ---- per utterance ---------------------------------------------------------------------


def test_final_latency_after_a_known_silence_gap() -> None:
    """Speech until 1000 ms, then 700 ms of silence sent in real time; the VAD closes the
    utterance and the final arrives 50 ms after the last silence chunk was sent. The final's
    latency counts from the end of *speech*, so it includes the silence the VAD waited for."""
    log = send_log_100ms(17)  # 1.7 s: speech 0-1000 ms, silence 1000-1700 ms
    tr = LatencyTracker(log)
    tr.on_message(final(0, [word("stop", 600, 1000)], 100, 1000), 1.75)
    (utt,) = tr.utterances
    assert utt.end_sent_at == pytest.approx(1.0)
    assert utt.final_latency_ms == pytest.approx(750)
    assert utt.reason == "vad"
    assert tr.final_latencies() == [pytest.approx(750)]


def test_send_log_with_a_pause_in_sending() -> None:
    """The sender stalls (e.g. network) between 500 and 800 ms: positions after the gap
    map to the late send time."""
    log = SendLog()
    for k in range(1, 6):
        log.record(k * 0.1, k * 100.0)
    log.record(2.0, 800.0)  # 300 ms of audio sent late in one go
    tr = LatencyTracker(log)
    tr.on_message(final(0, [word("late", 500, 750)], 0, 750), 2.4)
    assert tr.utterances[0].final_latency_ms == pytest.approx(400)


def test_final_beyond_sent_audio_has_no_latency() -> None:
    log = send_log_100ms(3)
    tr = LatencyTracker(log)
    tr.on_message(final(0, [], 0, 900), 1.0)
    assert tr.utterances[0].final_latency_ms is None
    assert tr.final_latencies() == []


def test_messages_without_words_or_of_other_types_are_ignored() -> None:
    tr = LatencyTracker(send_log_100ms(3))
    tr.on_message({"type": "ready"}, 0.0)
    tr.on_message({"type": "partial", "utterance_id": 0, "words": []}, 0.1)
    tr.on_message({"type": "error", "code": "x"}, 0.2)
    assert tr.words == [] and tr.utterances == []


def test_records_serialise_to_json() -> None:
    log = send_log_100ms(30)
    tr = LatencyTracker(log)
    tr.on_message(partial(0, [word("hi", 0, 200)], 400), 0.5)
    tr.on_message(final(0, [word("hi", 0, 200)], 0, 200), 1.0)
    w = tr.words[0].to_json()
    assert w["word"] == "hi" and w["partial_latency_ms"] == 300.0
    assert w["commit_latency_ms"] == 800.0 and w["retracted"] is False
    u = tr.utterances[0].to_json()
    assert u["final_latency_ms"] == 800.0 and u["text"] == "hi"
    # times relative to the stream's start
    w = tr.words[0].to_json(t0=0.1)
    assert w["shown_at_s"] == pytest.approx(0.4) and w["shown_sent_at_s"] == pytest.approx(0.1)
    assert w["committed_at_s"] == pytest.approx(0.9) and w["in_final"] is True
    u = tr.utterances[0].to_json(t0=0.1)
    assert u["arrived_at_s"] == pytest.approx(0.9) and u["end_sent_at_s"] == pytest.approx(0.1)


# ---- percentiles -----------------------------------------------------------------------


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 90) == 90
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([5.0, 1.0, 3.0], 50) == 3  # unsorted input
    assert percentile([7.0], 99) == 7


def test_percentile_errors() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_stats_summary() -> None:
    s = Stats.of([100.0, 200.0, 300.0, 400.0, 1000.0])
    assert (s.count, s.p50, s.p90, s.p99, s.max) == (5, 300, 1000, 1000, 1000)
    assert s.mean == pytest.approx(400)
    assert Stats.of([]).to_json() == {
        "count": 0,
        "p50": None,
        "p90": None,
        "p99": None,
        "max": None,
        "mean": None,
    }
    assert Stats.from_json(s.to_json()) == s


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1), st.floats(0, 100))
def test_percentile_is_an_observed_value_and_monotonic(values: list[float], p: float) -> None:
    v = percentile(values, p)
    assert v in values
    assert min(values) <= v <= max(values)
    assert percentile(values, min(100.0, p + 10)) >= v
