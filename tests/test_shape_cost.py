"""benchmarks.shape_cost on the CPU: both modes measured, a recommendation, files written."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import shape_cost


def test_shape_cost_measures_both_modes_and_recommends_one(tmp_path: Path) -> None:
    args = shape_cost.parse_args(
        [
            "--model",
            "tiny-random",
            "--device",
            "cpu",
            "--dtype",
            "fp32",
            "--shapes",
            "2",
            "--max-batch",
            "2",
            "--fixed-batch",
            "2",
            "--fixed-ms",
            "800",
            "--split",
            "1",
            "--results-dir",
            str(tmp_path),
        ]
    )
    data = shape_cost.run(args)
    assert set(data["modes"]) == {"on", "off"} and data["recommended"] in data["modes"]
    for row in data["modes"].values():
        assert row["new_shapes"] == 2 and row["fixed_shape_ms"] > 0
        assert row["new_batch_only_ms"] > 0 and row["new_length_only_ms"] > 0
    (written,) = tmp_path.glob("shape_cost-*.json")
    assert json.loads(written.read_text())["recommended"] == data["recommended"]
