"""Command line: `python -m client mic` / `python -m client file speech.wav …`.

Exit codes: 0 success (a clean Ctrl-C stop included), 1 connection or server failure,
2 usage error (bad option, missing/unreadable file, unusable audio device), 130 aborted by a
second Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from client.captions import Captions, choose_mode
from client.connection import (
    ClientError,
    Listener,
    SessionOptions,
    StreamResult,
)
from client.files import AudioFileError, expand_paths
from client.report import build_report, format_summary, overall_summary, write_json
from client.settings import FileOptions, MicOptions, OutputOptions, ServerOptions, add_options

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_ABORTED = 0, 1, 2, 130

EPILOG = """\
examples:
  streaming-client file speech.wav                      live captions, real-time pace
  streaming-client file --fast recordings/ --report r.json
  streaming-client mic --device pulse --seconds 10 --srt talk.srt
  streaming-client mic --list-devices

exit codes: 0 ok (also after a Ctrl-C stop), 1 connection or server failure,
2 usage error, 130 aborted by a second Ctrl-C
"""

DESCRIPTION = """\
Stream speech to a streaming recognition server and show live captions, with
end-to-end latency measured per word and per utterance. Captions go to stdout;
progress, server errors and the summary go to stderr.
"""

MIC_DESCRIPTION = """\
Stream a microphone until Ctrl-C (or --seconds). Ctrl-C finishes cleanly: the
last utterance is finalized and shown, then the summary; a second Ctrl-C quits
at once.
"""

FILE_DESCRIPTION = """\
Stream WAV/FLAC/OGG files as if spoken live. Any rate and channel count: mixed
to mono, sent at the file's own rate when the server takes it (8000, 16000,
32000, 44100, 48000), else resampled to 16000 Hz. Each file is its own
session, one after the other; a folder means every audio file inside it.
"""


def build_parser() -> argparse.ArgumentParser:
    """The options declared in client/settings.py, on the ``mic`` and ``file`` commands."""
    common = argparse.ArgumentParser(add_help=False)
    add_options(common, ServerOptions)
    add_options(common, OutputOptions)

    parser = argparse.ArgumentParser(
        prog="streaming-client",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="{mic,file}", required=True)

    def command(name: str, summary: str, description: str, options: type[Any]) -> None:
        """A subcommand with the common options and its own; `args.parser` is it (for its
        usage errors)."""
        cmd = sub.add_parser(
            name,
            parents=[common],
            help=summary,
            description=description,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.set_defaults(parser=cmd)
        add_options(cmd, options)

    command("mic", "stream the microphone (Ctrl-C to stop)", MIC_DESCRIPTION, MicOptions)
    command("file", "stream audio files as if spoken live", FILE_DESCRIPTION, FileOptions)
    return parser


class _Interrupts:
    """Ctrl-C while streaming: finish cleanly (end, last final, summary); a second Ctrl-C,
    or one before streaming began, quits at once."""

    def __init__(self, task: asyncio.Task[Any], listener: Captions) -> None:
        self.stop = asyncio.Event()
        self.streaming = False
        self.aborted = False
        self._task = task
        self._listener = listener

    def __call__(self) -> None:
        if self.streaming and not self.stop.is_set():
            self._listener.notice("stopping: finishing the stream … (Ctrl-C again to quit now)")
            self.stop.set()
        else:
            self.aborted = True
            self._task.cancel()


class _Tracking:
    """Forwards to the captions and notices when audio starts flowing."""

    def __init__(self, inner: Captions, on_started: Callable[[], None]) -> None:
        self.inner = inner
        self._on_started = on_started

    def status(self, text: str) -> None:
        self.inner.status(text)

    def message(self, msg: dict[str, Any], t: float) -> None:
        if msg.get("type") == "started":
            self._on_started()
        self.inner.message(msg, t)


def _subtitle_paths(arg: str, results: Sequence[StreamResult], ext: str) -> list[Path]:
    if len(results) == 1:
        return [Path(arg)]
    folder = Path(arg)
    seen: dict[str, int] = {}
    paths = []
    for r in results:
        stem = Path(r.source).stem or "stream"
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        paths.append(folder / (f"{stem}{ext}" if n == 0 else f"{stem}-{n}{ext}"))
    return paths


def _unwritable_output(args: argparse.Namespace, several: bool) -> str | None:
    targets = [(args.report, False), (args.srt, several), (args.vtt, several)]
    for arg, is_folder in targets:
        if not arg:
            continue
        path = Path(arg)
        if path.is_dir() and not is_folder:
            return f"{path}: is a folder, expected a file name"
        folder = path if is_folder else path.parent
        existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            return f"{arg}: cannot write there ({existing} is not a writable folder)"
    return None


def _save_outputs(args: argparse.Namespace, results: Sequence[StreamResult], ui: Captions) -> None:
    from client.subtitles import to_srt, to_vtt

    if not results:
        return
    for arg, ext, fmt in ((args.srt, ".srt", to_srt), (args.vtt, ".vtt", to_vtt)):
        if not arg:
            continue
        for path, r in zip(_subtitle_paths(arg, results, ext), results, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(fmt(r.finals), encoding="utf-8")
            ui.status(f"subtitles written to {path}")
    if args.report:
        settings = {
            k: v
            for k, v in vars(args).items()
            if k not in ("report", "srt", "vtt", "list_devices", "parser", "token")
            and v is not None
        }
        write_json(args.report, build_report(results, settings))
        ui.status(f"report written to {args.report}")


async def run(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """The CLI inside an already running event loop (tests, embedding)."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
            if args.plain and args.json:
                args.parser.error("--plain and --json cannot be used together")
            if args.command == "file" and args.fast and args.speed != 1.0:
                args.parser.error("--fast and --speed cannot be used together")
    except SystemExit as exc:
        if exc.code is None:
            return EXIT_OK
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return await _execute(args, out, err)


async def _execute(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    mode = choose_mode(plain=args.plain, json_lines=args.json, out=out)
    ui = Captions(out, err, mode, timestamps=args.timestamps, quiet=args.quiet)

    if args.command == "mic" and args.list_devices:
        from client.mic import MicError, list_devices

        try:
            out.write(list_devices() + "\n")
        except MicError as exc:
            ui.notice(f"error: {exc}")
            return EXIT_USAGE
        return EXIT_OK

    paths: list[Path] = []
    if args.command == "file":
        try:
            paths = expand_paths(args.paths)
        except AudioFileError as exc:
            ui.notice(f"error: {exc}")
            return EXIT_USAGE
    problem = _unwritable_output(args, several=len(paths) > 1)
    if problem:  # found out now, not after a long session
        ui.notice(f"error: {problem}")
        return EXIT_USAGE

    task = asyncio.current_task()
    assert task is not None
    interrupts = _Interrupts(task, ui)
    listener: Listener = _Tracking(ui, lambda: setattr(interrupts, "streaming", True))
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, interrupts)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signals on this platform

    results: list[StreamResult] = []
    code = EXIT_OK
    try:
        if args.command == "mic":
            code = await _run_mic(args, listener, ui, interrupts.stop, results)
        else:
            code = await _run_files(args, paths, listener, ui, interrupts.stop, results)
    except asyncio.CancelledError:
        if not interrupts.aborted:
            raise
        ui.finish()
        ui.notice("aborted")
        code = EXIT_ABORTED
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    try:
        _save_outputs(args, results, ui)
    except OSError as exc:
        ui.notice(f"error: cannot write output: {exc}")
        code = code or EXIT_FAILURE
    return code


def _finish_session(result: StreamResult, ui: Captions, quiet: bool, title: str | None) -> None:
    ui.finish()
    if result.failure:
        ui.notice(f"error: {result.source}: {result.failure}")
    if not quiet:
        ui.notice(format_summary(result.summary(), title))


def _session_options(
    args: argparse.Namespace, listener: Listener, stop: asyncio.Event
) -> SessionOptions:
    """The connection and latency options, the same for the microphone and for files."""
    return SessionOptions(
        listener=listener,
        retries=args.retries,
        finish_timeout=args.finish_timeout,
        tolerance_ms=args.word_tolerance_ms,
        token=args.token,
        cafile=args.cafile,
        stop=stop,
        resume=not args.no_resume,
        max_unacked_s=args.max_unacked_s,
    )


async def _run_mic(
    args: argparse.Namespace,
    listener: Listener,
    ui: Captions,
    stop: asyncio.Event,
    results: list[StreamResult],
) -> int:
    from client.api import stream_microphone
    from client.mic import MicError, parse_device

    try:
        result = await stream_microphone(
            args.url,
            device=parse_device(args.device),
            rate=args.rate,
            chunk_ms=args.chunk_ms,
            seconds=args.seconds,
            **_session_options(args, listener, stop),
        )
    except MicError as exc:
        ui.notice(f"error: {exc}")
        return EXIT_USAGE
    except ClientError as exc:
        ui.finish()
        ui.notice(f"error: {exc}")
        return EXIT_FAILURE
    results.append(result)
    _finish_session(result, ui, args.quiet, None)
    return EXIT_OK if result.ok else EXIT_FAILURE


async def _run_files(
    args: argparse.Namespace,
    paths: Sequence[Path],
    listener: Listener,
    ui: Captions,
    stop: asyncio.Event,
    results: list[StreamResult],
) -> int:
    from client.api import stream_file

    speed = 0.0 if args.fast else args.speed
    failed = unreadable = False
    for i, path in enumerate(paths, start=1):
        if stop.is_set():
            ui.status(f"skipping {len(paths) - i + 1} remaining file(s)")
            break
        title = f"[{i}/{len(paths)}] {path}" if len(paths) > 1 else str(path)
        if len(paths) > 1:
            ui.status(f"── {title}")
        try:
            result = await stream_file(
                path,
                args.url,
                speed=speed,
                chunk_ms=args.chunk_ms,
                **_session_options(args, listener, stop),
            )
        except AudioFileError as exc:
            ui.notice(f"error: {exc}")
            unreadable = True
            continue
        except ClientError as exc:
            ui.finish()
            ui.notice(f"error: {exc}")
            return EXIT_FAILURE  # the server is unreachable: the other files would fail too
        results.append(result)
        _finish_session(result, ui, args.quiet, title)
        failed = failed or not result.ok
    if len(results) > 1 and not args.quiet:
        ui.notice(format_summary(overall_summary(results), f"overall ({len(results)} files)"))
    return EXIT_FAILURE if failed else EXIT_USAGE if unreadable else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Console entry point (`streaming-client`)."""
    try:
        return asyncio.run(run(argv))
    except KeyboardInterrupt:  # Ctrl-C where no handler could be installed
        return EXIT_ABORTED


if __name__ == "__main__":
    sys.exit(main())
