"""benchmarks/live_load.py: splitting a level's streams over client processes, and one tiny
level run through two spawned client processes against a real server process."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks import live_load, server_process, testset

REPO = Path(__file__).resolve().parent.parent


def _fake_files(count: int) -> list[testset.ComposedFile]:
    return [testset.ComposedFile(Path(f"/nowhere/f{i}.wav"), 10.0 + i) for i in range(count)]


@pytest.mark.parametrize("n", [1, 2, 7, 37, 200, 1001])
def test_split_assigns_every_stream_once_with_the_single_process_files_and_starts(n: int) -> None:
    files = _fake_files(8)
    plan = live_load.plan_level(files, n, seed=n, ramp_s=2.5)
    # what the one-process level has always done: file i mod len(files), seeded offsets
    rng = random.Random(n)
    assert [(s.number, s.path, s.delay_s) for s in plan] == [
        (i, str(files[i % len(files)].path), rng.uniform(0.0, 2.5)) for i in range(n)
    ]
    (single,) = live_load.split_plan(plan, 1)
    assert single == plan
    for procs in (2, 3, 5, 8, 64):
        parts = live_load.split_plan(plan, procs)
        assert len(parts) == min(procs, n)
        assert all(parts), "no client process may be left without streams"
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1
        numbers = [s.number for p in parts for s in p]
        assert sorted(numbers) == list(range(n))  # each stream exactly once
        by_number = {s.number: s for p in parts for s in p}
        assert [by_number[i] for i in range(n)] == plan  # same file and start as with one
        if n >= 8 * procs:  # every block sees every file
            assert all({s.path for s in p} == {str(f.path) for f in files} for p in parts)


def test_client_procs_choice() -> None:
    auto = live_load.client_procs_for
    assert auto(1, 0, cpu_count=16) == 1
    assert auto(200, 0, cpu_count=16) == 1
    assert auto(201, 0, cpu_count=16) == 2
    assert auto(1000, 0, cpu_count=16) == 5
    assert auto(5000, 0, cpu_count=16) == 8  # at most half the cores
    assert auto(1000, 0, cpu_count=2) == 1
    assert auto(1000, 0, cpu_count=1) == 1
    assert auto(10, 1, cpu_count=16) == 1
    assert auto(10, 4, cpu_count=2) == 4  # an explicit count is taken as given …
    assert auto(3, 4, cpu_count=16) == 3  # … but never more than the streams
    args = live_load.parse_args(["--client-procs", "auto"])
    assert args.client_procs == 0
    assert live_load.parse_args([]).client_procs == 1
    assert live_load.parse_args([]).ramp_s == 1.0
    assert live_load.parse_args(["--client-procs", "3", "--ramp-s", "10"]).client_procs == 3
    with pytest.raises(SystemExit):
        live_load.parse_args(["--client-procs", "-1"])


def _short_files(folder: Path) -> list[testset.ComposedFile]:
    """Two ~3–4 s pieces of the committed demo WAV, one utterance each."""
    audio, rate = sf.read(str(REPO / "training" / "samples" / "demo.wav"), dtype="float32")
    assert rate == testset.SAMPLE_RATE
    out = []
    for name, (a, b), (start, end), text in (
        ("a", (0.0, 3.2), (0.5, 2.39), "the company was paying all the rest"),
        (
            "b",
            (7.9, 12.29),
            (8.08, 11.79),
            "remember that your doctor has a professional reputation to uphold",
        ),
    ):
        path = folder / f"{name}.wav"
        piece = np.asarray(audio[int(a * rate) : int(b * rate)])
        sf.write(str(path), piece, rate, subtype="PCM_16")
        segment = {"text": text, "voice": "espeak", "start": start - a, "end": end - a}
        out.append(testset.ComposedFile(path, len(piece) / rate, [segment]))
    return out


def test_level_over_two_client_processes(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = _short_files(tmp_path)
    # any CPU at all counts as "saturated" here, to see the warning and the flag
    monkeypatch.setattr(live_load, "CLIENT_CPU_WARN_PERCENT", -1.0)
    log = tmp_path / "server.log"
    with server_process.ServerProcess(
        str(tiny_model_dir), ["--max-sessions", "16"], log_path=log
    ) as srv:
        level = live_load.run_level(srv, files, 4, seed=4, ramp_s=0.5, client_procs=2)
    out = capsys.readouterr().out

    assert level["streams"] == 4
    assert level["client_procs"] == 2
    assert level["failed_streams"] == 0, level["failures"]
    assert level["errors"] == 0
    # every stream came back: both files twice, each one utterance with its final
    assert level["utterances_sent"] == 4
    assert level["finals"] == 4
    assert level["audio_s"] == pytest.approx(2 * (3.2 + 4.39), abs=0.5)
    for key in ("partial_ms", "commit_ms", "final_ms"):
        stats = level[key]
        assert stats["count"] >= 4 if key == "final_ms" else stats["count"] > 0, (key, stats)
        assert stats["p50"] > 0 and stats["p95"] >= stats["p50"] > 0, (key, stats)
        assert stats["p99"] < 10_000, (key, stats)  # one clock per stream, not across processes
    assert level["words_shown"] > 0
    assert level["tail_s"]["count"] == 4
    # the load generator's CPU: one figure per client process, and their total
    per_proc = level["client_proc_cpu_percent"]
    assert len(per_proc) == 2 and all(p is not None and p >= 0 for p in per_proc)
    assert level["client_cpu_percent"] >= 0
    assert level["client_saturated"] is True
    assert "warning: N=4: a client process averaged" in out
    assert level["wall_s"] < 30


def test_stream_records_are_plain_data() -> None:
    from client.connection import StreamResult

    res = StreamResult(source="/x.wav", url="ws://h/", sample_rate=16000)
    record = live_load.stream_record(3, res)
    assert pickle.loads(pickle.dumps(record)) == record
    assert record["index"] == 3 and record["exception"] is None
    failed = live_load.stream_record(5, ConnectionRefusedError("no"))
    assert failed == {"index": 5, "exception": "ConnectionRefusedError: no"}


class _NoServer:
    url = "ws://127.0.0.1:9/"

    def health(self) -> dict[str, float]:
        raise OSError("no server")


def test_stream_exceptions_in_client_processes_come_back_as_records(tmp_path: Path) -> None:
    missing = [testset.ComposedFile(tmp_path / "missing.wav", 1.0)]
    plan = live_load.plan_level(missing, 3, seed=3, ramp_s=0.0)
    began: list[bool] = []
    records, _loads, usage, wall = live_load._level_in_procs(
        _NoServer(),  # type: ignore[arg-type]
        plan,
        2,
        lambda: began.append(True),
    )
    assert began == [True]
    assert [r["index"] for r in records] == [0, 1, 2]
    assert all(r["exception"] and "missing.wav" in r["exception"] for r in records), records
    assert len(usage) == 2 and all(u["cpu_s"] is not None for u in usage)
    assert wall < 30
