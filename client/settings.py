"""The client's options, each declared once (type, default, help, flag), and the CLI from them.

One frozen dataclass per ``--help`` group: a field is an option, ``option()`` carries its
help, flag and the argparse ``type`` that checks a value. ``add_options`` puts a class on a
parser; the commands read the values from the parsed namespace under the field names.

The server derives its CLI the same way from ``streaming/config.py``, but the client never
imports ``streaming`` (it is the part a user runs anywhere), and its needs differ: flat
options, subcommands, values checked while parsing, a default from the environment. So it
has this small generator of its own rather than a shared one or a library.

Help: ``(default: …)`` is appended unless the help speaks of its default itself or there is
none to show (None, a flag without a value).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from client.connection import DEFAULT_MAX_UNACKED_S, DEFAULT_URL
from client.latency import DEFAULT_TOLERANCE_MS

TOKEN_ENV = "STREAMING_TOKEN"
OPTION = "option"  # dataclass field metadata key: the field's Option

_T = TypeVar("_T")
_N = TypeVar("_N", int, float)


@dataclass(frozen=True)
class Option:
    """How one field is given on the command line.

    ``flag`` defaults to ``--`` + the field name with dashes; ``""`` makes the field the
    command's positional arguments (one or more). A field whose default is False is a flag
    without a value. ``env`` names an environment variable that replaces the default.
    """

    help: str
    flag: str | None = None
    short: str | None = None
    parse: Callable[[str], Any] | None = None  # argparse ``type``: converts and checks
    metavar: str | None = None
    env: str | None = None


def option(
    default: _T,
    *,
    help: str,
    flag: str | None = None,
    short: str | None = None,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    env: str | None = None,
) -> _T:
    """A dataclass field declared as a command-line option."""
    return field(default=default, metadata={OPTION: Option(help, flag, short, parse, metavar, env)})


def add_options(parser: argparse.ArgumentParser, options: type[Any]) -> None:
    """Add every option of the class ``options`` to ``parser``, in a group titled ``GROUP``."""
    group = parser.add_argument_group(options.GROUP)
    for f in dataclasses.fields(options):
        o: Option = f.metadata[OPTION]
        if o.flag == "":
            parser.add_argument(f.name, nargs="+", metavar=o.metavar, help=o.help)
            continue
        names = [o.flag or "--" + f.name.replace("_", "-")]
        if o.short:
            names.insert(0, o.short)
        if f.default is False:
            group.add_argument(*names, dest=f.name, action="store_true", help=o.help)
            continue
        default = (os.environ.get(o.env) or f.default) if o.env else f.default
        checked: dict[str, Any] = {"type": o.parse} if o.parse else {}
        group.add_argument(
            *names,
            dest=f.name,
            default=default,
            metavar=o.metavar,
            help=_with_default(o.help, f.default),
            **checked,
        )


def _with_default(text: str, default: object) -> str:
    if default is None or "(default" in text:
        return text
    return f"{text} (default: %(default){'g' if isinstance(default, float) else 's'})"


def _number(
    convert: Callable[[str], _N], what: str, accept: Callable[[_N], bool], rule: str
) -> Callable[[str], _N]:
    """An argparse `type`: `convert` the text, then insist on `accept` ("must be RULE")."""

    def parse(text: str) -> _N:
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None
        if not accept(v):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return v

    return parse


_positive_float = _number(float, "number", lambda v: v > 0, "> 0")  # NaN is refused
_non_negative_float = _number(float, "number", lambda v: not v < 0, ">= 0")
_non_negative_int = _number(int, "whole number", lambda v: v >= 0, ">= 0")


def _positive_int(text: str) -> int:
    v = _non_negative_int(text)
    if v == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return v


def _chunk_ms(text: str) -> float:
    v = _positive_float(text)
    if v > 5000:
        raise argparse.ArgumentTypeError(f"at most 5000 ms, got {text}")
    return v


def _url(text: str) -> str:
    if not text.startswith(("ws://", "wss://")):
        raise argparse.ArgumentTypeError(f"must start with ws:// or wss://, got {text!r}")
    return text


@dataclass(frozen=True)
class ServerOptions:
    """Which server, and how to talk to it."""

    GROUP: ClassVar[str] = "server"

    url: str = option(DEFAULT_URL, parse=_url, help="websocket URL of the recognition server")
    token: str | None = option(
        None,
        env=TOKEN_ENV,
        help="access token for a server started with --auth-token, sent as 'Authorization:"
        f" Bearer TOKEN' (default: ${TOKEN_ENV}, else none)",
    )
    cafile: str | None = option(
        None,
        metavar="PEM",
        help="trust this certificate (or CA bundle) for wss:// URLs, e.g. a self-signed"
        " server certificate (default: the system's trusted CAs)",
    )
    retries: int = option(
        3,
        parse=_non_negative_int,
        metavar="N",
        help="connection attempts to retry, with growing pauses, while the server refuses"
        " or is full",
    )
    chunk_ms: float = option(
        100.0, parse=_chunk_ms, metavar="MS", help="audio per websocket message, in ms"
    )
    finish_timeout: float = option(
        30.0,
        parse=_positive_float,
        metavar="S",
        help="after the audio ends, give up when the server sends nothing for S seconds",
    )
    no_resume: bool = option(
        False,
        help="do not resume the stream when the connection drops or the server moves it"
        " (by default the client keeps the audio the server has not acknowledged, at most"
        " --max-unacked-s, reconnects to the same URL and resumes the stream)",
    )
    max_unacked_s: float = option(
        DEFAULT_MAX_UNACKED_S,
        parse=_positive_float,
        metavar="S",
        help="audio kept for a resume, at most; past it a dropped stream goes on as a new"
        " stream with a gap (the server's longest utterance is 30 s)",
    )


@dataclass(frozen=True)
class OutputOptions:
    """What is shown and saved."""

    GROUP: ClassVar[str] = "output"

    plain: bool = option(
        False,
        help="only finished utterances, one per line, no live updates or colours"
        " (automatic when stdout is not a terminal)",
    )
    json: bool = option(
        False, help="every server message as one JSON line on stdout (not with --plain)"
    )
    timestamps: bool = option(
        False, help="prefix captions with their position in the audio, [M:SS.s-M:SS.s]"
    )
    report: str | None = option(
        None,
        metavar="FILE.json",
        help="write summary, latency percentiles and per-word / per-utterance records as JSON",
    )
    srt: str | None = option(
        None,
        metavar="FILE",
        help="save the finished utterances as SubRip subtitles (several files: FILE is a"
        " folder, one NAME.srt per input)",
    )
    vtt: str | None = option(
        None,
        metavar="FILE",
        help="save the finished utterances as WebVTT subtitles (several files: as --srt)",
    )
    quiet: bool = option(
        False,
        short="-q",
        help="no progress messages or summary on stderr (errors are still shown)",
    )
    word_tolerance_ms: float = option(
        DEFAULT_TOLERANCE_MS,
        parse=_non_negative_float,
        metavar="MS",
        help="a word seen again within MS of its earlier end position counts as the same"
        " word for latency",
    )


@dataclass(frozen=True)
class MicOptions:
    """``mic``: the input device."""

    GROUP: ClassVar[str] = "audio input"

    device: str | None = option(
        None,
        metavar="DEV",
        help="input device: index or part of its name, see --list-devices"
        " (default: the system's default input)",
    )
    list_devices: bool = option(False, help="list input devices and exit")
    rate: int | None = option(
        None,
        parse=_positive_int,
        metavar="HZ",
        help="capture sample rate (default: the device's native rate; rates the server does"
        " not take are resampled to 16000)",
    )
    seconds: float | None = option(
        None,
        parse=_positive_float,
        metavar="N",
        help="stop by itself after N seconds (default: run until Ctrl-C)",
    )


@dataclass(frozen=True)
class FileOptions:
    """``file``: what to stream, and how fast."""

    GROUP: ClassVar[str] = "pace"

    paths: tuple[str, ...] = option((), flag="", metavar="PATH", help="audio files or folders")
    speed: float = option(
        1.0,
        parse=_non_negative_float,
        metavar="X",
        help="X times real time; 1 behaves like a live microphone, 0 sends as fast as"
        " the connection takes it",
    )
    fast: bool = option(False, help="same as --speed 0")
