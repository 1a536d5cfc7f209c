"""The server CLI: --help explains every option; bad models fail with one clear line."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import server_config

from streaming import settings
from streaming.__main__ import build_parser, config_from_args
from streaming.config import SETTING_GROUPS, LmConfig, ModelConfig, ServerConfig, setting
from streaming.cpu import cpu_flags, native_bf16, usable_cores, workers_hint
from streaming.errors import ModelLoadError
from streaming.model import load_model, pick_dtype, resolve_model
from streaming.server import Server
from streaming.settings import DeclaredSetting, declared_settings


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


def _leaf_fields(cls: type[Any], path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for f in dataclasses.fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default
        if dataclasses.is_dataclass(default):
            found |= _leaf_fields(type(default), (*path, f.name))
        else:
            found.add((*path, f.name))
    return found


def _get(config: object, path: tuple[str, ...]) -> object:
    for name in path:
        config = getattr(config, name)
    return config


def _other_value(s: DeclaredSetting) -> tuple[list[str], object]:
    """Flags that set ``s`` to a value other than its default, and that value."""
    if s.kind is bool:
        return [s.flag], not s.default
    if s.declared.const is not None:
        return [s.flag], s.declared.const
    if s.repeated:
        return [s.flag, "a", s.flag, "b"], ("a", "b")
    if s.declared.choices:
        value = next(c for c in s.declared.choices if c != s.default)
        return [s.flag, str(value)], value
    if s.kind is str:
        return [s.flag, "other"], "other"
    value = s.kind(s.default or 0) + s.kind(3)  # type: ignore[operator]
    return [s.flag, str(value)], value


def test_every_config_field_is_a_declared_setting_with_its_own_flag() -> None:
    declared = list(declared_settings())
    assert {s.path for s in declared} == _leaf_fields(ServerConfig)
    flags = [s.flag for s in declared]
    assert len(set(flags)) == len(flags)
    options = {o for action in build_parser()._actions for o in action.option_strings}
    assert set(flags) <= options


def test_no_flags_give_the_default_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMING_AUTH_TOKENS", raising=False)
    assert config_from_args(build_parser().parse_args([])) == ServerConfig()


def test_each_flag_sets_its_own_field_and_nothing_else() -> None:
    parser = build_parser()
    for s in declared_settings():
        argv, expected = _other_value(s)
        config = settings.config_from_args(parser.parse_args(argv))
        assert _get(config, s.path) == expected, argv
        others = {p: _get(config, p) for p in _leaf_fields(ServerConfig) if p != s.path}
        assert others == {p: _get(ServerConfig(), p) for p in others}, argv


@pytest.mark.parametrize(
    ("argv", "path", "expected"),
    [
        (["--model", "tiny-en"], ("model", "name"), "tiny-en"),
        (["--no-warmup"], ("model", "warmup"), False),
        (["--keep-case"], ("model", "lowercase"), False),
        (["--preroll-ms", "120"], ("vad", "preroll_ms"), 120),
        (["--vad-frame-ms", "20"], ("vad", "frame_ms"), 20),
        (["--threads", "2"], ("engine", "threads"), 2),
        (["--lm-threads", "3"], ("lm", "threads"), 3),
        (["--lm"], ("lm", "path"), "model"),
        (["--lm", "words.arpa"], ("lm", "path"), "words.arpa"),
        (["--tls-cert", "c.pem"], ("tls_cert_file",), "c.pem"),
        (["--allow-origin", "https://a", "--allow-origin", "https://b"],
         ("allowed_origins",), ("https://a", "https://b")),
        (["--shared-engine"], ("shared_engine",), True),
        (["--engine", "triton://gpu-1:8001/w2v"], ("inference",), "triton://gpu-1:8001/w2v"),
    ],
)  # fmt: skip
def test_flags_fill_the_nested_field_they_name(
    argv: list[str], path: tuple[str, ...], expected: object
) -> None:
    assert _get(settings.config_from_args(build_parser().parse_args(argv)), path) == expected


def test_tokens_come_from_flags_files_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# team\nfile-token\n\nflag-token\n")
    monkeypatch.setenv("STREAMING_AUTH_TOKENS", "env-token, flag-token")
    args = build_parser().parse_args(
        ["--auth-token", " flag-token ", "--auth-token-file", str(tokens)]
    )
    assert config_from_args(args).auth_tokens == ("flag-token", "file-token", "env-token")


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "eighty"],
        ["--dtype", "fp8"],
        ["--vad-aggressiveness", "4"],
        ["--stream-context", "sometimes"],
        ["--lm-alpha", "heavy"],
        ["--protocol", "sip"],
        ["--no-warmup", "yes"],
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_help_shows_every_group_with_defaults_and_examples() -> None:
    text = build_parser().format_help()
    for group in SETTING_GROUPS:
        assert f"\n{group.title}:\n" in text
        if group.description:
            assert group.description.split()[0] in text
    assert "examples:" in text
    assert "(default: 8765)" in text  # --port
    assert "(default: facebook/wav2vec2-base-960h)" in text  # --model
    assert "--lm [ARPA]" in text
    assert "(default: False)" not in text and "(default: None)" not in text


def test_an_undeclared_config_field_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Half:
        declared: int = setting(1, help="declared", group=SETTING_GROUPS[0])
        forgotten: int = 2

    with pytest.raises(TypeError, match="forgotten is not declared"):
        list(declared_settings(Half))


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


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--engine", "grpc://x"], "engine must be 'local' or 'triton://"),
        (["--engine", "triton://x", "--shared-engine"], "excludes --engine"),
    ],
)
def test_an_engine_url_nobody_builds_is_rejected_before_loading(
    argv: list[str], expected: str
) -> None:
    result = run_cli(*argv, "--port", "0")
    assert result.returncode == 2 and expected in result.stderr


def test_unreachable_triton_gives_one_clear_line_and_no_traceback() -> None:
    result = run_cli("--engine", "triton://127.0.0.1:1", "--port", "0")
    assert result.returncode == 2
    assert "cannot reach Triton at 127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr


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


def test_a_single_cpu_process_with_cores_to_spare_is_told_how_to_use_them() -> None:
    hint = workers_hint(4, device="cpu", workers=1)
    assert hint is not None and "--workers 4 --threads 1" in hint and "4 cores" in hint
    assert workers_hint(1, device="cpu", workers=1) is None, "one core: nothing to spread"
    assert workers_hint(4, device="cpu", workers=4) is None, "already several processes"
    assert workers_hint(4, device="cuda:0", workers=1) is None, "the GPU runs the model"
    assert usable_cores() >= 1


async def test_the_server_logs_the_workers_hint_at_start_on_this_cpu(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = server_config(tiny_model_dir, lm=LmConfig(path="none"))
    with caplog.at_level("INFO", logger="streaming.server"):
        async with Server(config.replace(model=ModelConfig(str(tiny_model_dir), device="cpu"))):
            pass
    expected = workers_hint(usable_cores(), device="cpu", workers=1)
    assert (expected in caplog.text) if expected else ("--workers" not in caplog.text)


def test_load_log_says_why_auto_chose_its_dtype(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="streaming.model"):
        model = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu", warmup=False))
    expected = "bf16" if native_bf16() else "fp32"
    assert model.dtype == expected
    assert f"on cpu/{expected} (auto:" in caplog.text
