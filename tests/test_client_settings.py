"""The client's CLI is derived from its declared options (client/settings.py)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

import pytest

from client.__main__ import build_parser
from client.settings import FileOptions, MicOptions, OutputOptions, ServerOptions

COMMON = (ServerOptions, OutputOptions)
COMMANDS = {"mic": ([], MicOptions), "file": (["a.wav"], FileOptions)}


@pytest.mark.parametrize("command", COMMANDS)
def test_no_options_give_the_declared_defaults(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAMING_TOKEN", raising=False)
    extra, own = COMMANDS[command]
    args = vars(build_parser().parse_args([command, *extra]))
    declared = [f for options in (*COMMON, own) for f in dataclasses.fields(options)]
    assert set(args) == {f.name for f in declared} | {"command", "parser"}
    for f in declared:
        if f.name != "paths":  # required: there is no default to compare
            assert args[f.name] == f.default, f.name


def test_every_declared_option_is_in_its_commands_help() -> None:
    subparsers = next(a for a in build_parser()._actions if a.choices)
    choices: dict[str, Any] = subparsers.choices  # type: ignore[assignment]
    for command, (_, own) in COMMANDS.items():
        text = choices[command].format_help()
        for options in (*COMMON, own):
            assert f"\n{options.GROUP}:\n" in text
            for f in dataclasses.fields(options):
                flag = "--" + f.name.replace("_", "-")
                shown = f.metadata["option"].metavar if f.name == "paths" else flag
                assert shown in text, (command, f.name)


def test_the_token_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMING_TOKEN", "from-env")
    assert build_parser().parse_args(["mic"]).token == "from-env"
    assert build_parser().parse_args(["mic", "--token", "given"]).token == "given"


def test_values_are_checked_and_converted_while_parsing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(["file", "a.wav", "b", "--speed", "0", "-q", "--retries", "0"])
    assert (args.paths, args.speed, args.quiet, args.retries) == (["a.wav", "b"], 0.0, True, 0)
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["mic", "--chunk-ms", "6000"])
    assert exc.value.code == 2 and "at most 5000 ms" in capsys.readouterr().err


def test_the_client_imports_nothing_from_the_server() -> None:
    code = (
        "import sys, client.__main__, client.settings; "
        "print([m for m in sys.modules if m.split('.')[0] == 'streaming'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
