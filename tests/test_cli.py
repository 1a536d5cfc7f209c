"""The server CLI: --help explains every option; bad models fail with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streaming.__main__ import build_parser, config_from_args
from streaming.config import ModelConfig
from streaming.cpu import cpu_flags, native_bf16
from streaming.errors import ModelLoadError
from streaming.model import load_model, pick_dtype, resolve_model


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streaming", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )


def test_help_explains_every_option() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    parser = build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{action.option_strings} has no help"
            assert action.option_strings[0] in result.stdout


def test_defaults_fill_a_valid_config() -> None:
    config = config_from_args(build_parser().parse_args([]))
    config.validate()
    assert config.model.name == "facebook/wav2vec2-base-960h"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("/no/such/folder", "does not exist"),
        ("facebook/wav2vec2-base-960h", "cannot be reached"),
    ],
)
def test_unloadable_model_gives_one_clear_line_and_no_traceback(model: str, expected: str) -> None:
    result = run_cli("--model", model, "--port", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    assert "--model /path/to/checkpoint" in result.stderr or "folder" in result.stderr


def test_folder_that_is_not_a_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"lacks config\.json"):
        load_model(ModelConfig(name=str(tmp_path)))


def test_invalid_settings_are_rejected_before_loading() -> None:
    result = run_cli("--chunk-ms", "250", "--port", "0")
    assert result.returncode == 2
    assert "multiple of 20" in result.stderr


def test_local_checkpoint_loads_through_from_pretrained(tiny_model_dir: Path) -> None:
    model = load_model(ModelConfig(name=str(tiny_model_dir)))
    assert model.geometry.stride == 320
    assert model.vocab.tokens[model.vocab.delimiter_id] == "|"
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)


def test_missing_lm_file_gives_one_clear_line_and_no_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.arpa"
    result = run_cli("--model", "tiny-en", "--lm", str(missing), "--port", "0", "--no-warmup")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"LM file {str(missing)!r} does not exist" in result.stderr


def test_padding_lengths_of_a_group_norm_model_gives_one_clear_line(tiny_model_dir: Path) -> None:
    result = run_cli(
        "--model", str(tiny_model_dir), "--pad-lengths", "on", "--port", "0", "--no-warmup"
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--pad-lengths on needs a model whose feature extractor takes an attention mask" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("flags", "device", "expected"),
    [
        ({"avx2", "avx512f", "avx512_bf16"}, "cpu", "bf16"),
        ({"avx2", "amx_bf16", "amx_tile"}, "cpu", "bf16"),
        ({"avx2", "avx512f", "avx512bw"}, "cpu", "fp32"),  # bf16 would only be emulated
        (set(), "cpu", "fp32"),
        ({"avx512_bf16"}, "cuda", "fp16"),
    ],
)
def test_auto_dtype_is_bf16_only_on_cpus_with_native_bf16(
    flags: set[str], device: str, expected: str
) -> None:
    assert pick_dtype("auto", device, cpu_flags=frozenset(flags)) == expected


def test_explicit_dtype_is_kept_whatever_the_cpu() -> None:
    assert pick_dtype("fp32", "cpu", cpu_flags=frozenset({"avx512_bf16"})) == "fp32"
    with pytest.raises(ModelLoadError, match="fp16 needs a CUDA device"):
        pick_dtype("fp16", "cpu")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512_bf16\n\nflags\t\t: other\n")
    assert cpu_flags(info) == frozenset({"fpu", "sse", "avx512_bf16"})
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert native_bf16(cpu_flags(info)) == "avx512_bf16"


def test_load_log_says_why_auto_chose_its_dtype(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="streaming.model"):
        model = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu", warmup=False))
    expected = "bf16" if native_bf16() else "fp32"
    assert model.dtype == expected
    assert f"on cpu/{expected} (auto:" in caplog.text
