"""The short soak (benchmarks/soak.py) as a test: 20 real-time streams for 30 s.

The server runs in its own process (``python -m streaming``) with a tiny random checkpoint;
the committed ``training/samples/*.wav`` are streamed by the project's client, session
after session. Every spoken utterance must get its final, no error may be sent, no session
may fail, and no session may be left open afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_short_soak_loses_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "benchmarks.soak",
        "--model", str(tiny_model_dir),
        "--streams", "20", "--minutes", "0.5",
        "--audio", "samples", "--stagger", "2",
        "--no-plot", "--results-dir", str(tmp_path),
    ]  # fmt: skip
    began = time.monotonic()
    proc = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=180, check=False
    )
    elapsed = time.monotonic() - began
    output = proc.stdout[-3000:] + proc.stderr[-3000:]
    results = list(tmp_path.glob("soak-*.json"))
    assert results, f"soak wrote no result (exit {proc.returncode}):\n{output}"
    data = json.loads(results[0].read_text())

    assert data["vad_count_matches_spoken"], output
    assert data["utterances_spoken"] > 0
    assert data["finals"] == data["utterances_spoken"], (data["missing"], output)
    assert data["client_errors"] == 0, data["client_error_codes"]
    assert not any(data["server_errors"].values()), data["server_errors"]
    assert data["failed_sessions"] == 0, data["failures"]
    assert data["open_sessions_after"] == 0
    assert data["sessions_active_gauge_after"] == 0
    assert data["sessions"] >= 20
    assert data["wall_s"] < 60, f"the streaming part took {data['wall_s']} s"
    assert elapsed < 120, f"the whole soak command took {elapsed:.0f} s"
