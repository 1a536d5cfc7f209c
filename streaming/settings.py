"""The server's command line, derived from the settings declared on the config.

Each setting is declared once, on its config field (``setting()`` in ``streaming/config.py``):
type (the annotation), default, help, flag, choices, metavar and ``--help`` group. This module
turns those declarations into argparse arguments (``add_settings``) and a parsed namespace
back into a ``ServerConfig`` (``config_from_args``); checking values stays in
``ServerConfig.validate()``.

Why a small generator rather than tyro, simple-parsing or pydantic-settings: the flags are
a published interface whose names do not follow the config's nesting (``--model`` is
``model.name``, ``--preroll-ms`` is ``vad.preroll_ms``, ``--no-warmup`` sets
``model.warmup`` to False, ``--lm`` takes an optional file, ``--threads`` is not
``--lm-threads``), and the ``--help`` groups cut across the nested configs. Those libraries
derive flag names and help layout from the nesting and would need an override on nearly
every field to keep the flags as they are; pydantic-settings would also turn the frozen
dataclasses everyone constructs into pydantic models. What is needed here is one loop over
the fields, a dependency none of them is.

Help: a declared help is plain prose; ``(default: …)`` is appended unless the help speaks
of its default itself, or there is none to show (None, a flag without a value, a
repeatable flag).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from .config import SECTION, SETTING, SETTING_GROUPS, ServerConfig, Setting, SettingGroup

_C = TypeVar("_C")


@dataclass(frozen=True)
class DeclaredSetting:
    """One setting of the config tree, as the command line sees it."""

    path: tuple[str, ...]  # where it lives in ServerConfig, e.g. ("model", "name")
    declared: Setting
    group: SettingGroup
    default: object
    kind: type  # int, float, str or bool: what the flag's value is converted to
    repeated: bool  # a tuple field: the flag may be given several times

    @property
    def flag(self) -> str:
        return self.declared.flag or "--" + self.path[-1].replace("_", "-")

    @property
    def dest(self) -> str:
        """argparse's own name for the flag, so metavars read as before (``CHUNK_MS``)."""
        return self.flag.removeprefix("--").replace("-", "_")


def declared_settings(
    cls: type[Any] = ServerConfig,
    path: tuple[str, ...] = (),
    group: SettingGroup | None = None,
) -> Iterator[DeclaredSetting]:
    """Every setting of the config class ``cls`` and its nested configs, in field order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        where = (*path, f.name)
        if SECTION in f.metadata:
            yield from declared_settings(hints[f.name], where, f.metadata[SECTION])
            continue
        declared = f.metadata.get(SETTING)
        if not isinstance(declared, Setting):
            raise TypeError(f"{'.'.join(where)} is not declared: give it a setting()")
        in_group = declared.group or group
        if in_group is None:
            raise TypeError(f"{'.'.join(where)} has no --help group")
        kind, repeated = _value_type(hints[f.name])
        yield DeclaredSetting(where, declared, in_group, f.default, kind, repeated)


def _value_type(hint: Any) -> tuple[type, bool]:
    """(type of one value, repeatable) for an annotation: int, str | None, tuple[str, ...]."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0], True
    if origin in (typing.Union, types.UnionType):
        (value,) = (a for a in args if a is not type(None))
        return value, False
    if isinstance(hint, type) and hint in (int, float, str, bool):
        return hint, False
    raise TypeError(f"no command-line form for a setting of type {hint!r}")


def add_settings(parser: argparse.ArgumentParser) -> dict[SettingGroup, Any]:
    """Add a flag for every declared setting; return the ``--help`` groups made for them."""
    declared = list(declared_settings())
    groups = {}
    for group in SETTING_GROUPS:  # group by group, so the usage line reads in their order
        groups[group] = parser.add_argument_group(group.title, group.description)
        for s in declared:
            if s.group == group:
                groups[group].add_argument(s.flag, dest=s.dest, help=_help(s), **_how(s))
    if unknown := {s.group.title for s in declared} - {g.title for g in SETTING_GROUPS}:
        raise TypeError(f"groups missing from SETTING_GROUPS: {', '.join(sorted(unknown))}")
    return groups


def _how(s: DeclaredSetting) -> dict[str, Any]:
    """The add_argument keywords besides the flag, its dest and its help."""
    d = s.declared
    if s.kind is bool:
        return {"action": "store_true"}  # given: the opposite of the default (_value)
    how: dict[str, Any] = {"type": s.kind, "metavar": d.metavar}
    if d.choices is not None:
        how["choices"] = d.choices
    if s.repeated:
        how["action"] = "append"  # default None: argparse appends to a copy of no list
    else:
        how["default"] = s.default
    if d.const is not None:
        how.update(nargs="?", const=d.const)
    return how


def _help(s: DeclaredSetting) -> str:
    text = s.declared.help.replace("%", "%%")
    shown = s.default is not None and s.kind is not bool and not s.repeated
    if shown and "(default" not in text:
        text += " (default: %(default)s)"
    return text


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The ServerConfig the parsed flags of ``add_settings`` describe (not yet validated)."""
    values = {s.path: _value(s, getattr(args, s.dest)) for s in declared_settings()}
    return _build(ServerConfig, (), values)


def _value(s: DeclaredSetting, parsed: Any) -> object:
    if s.kind is bool:  # parsed: whether the flag was given
        return (not s.default) if parsed else s.default
    if s.repeated:
        return tuple(parsed or ())
    return parsed


def _build(cls: type[_C], path: tuple[str, ...], values: dict[tuple[str, ...], object]) -> _C:
    """``cls`` with its settings from ``values`` and its nested configs built likewise."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, object] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        where = (*path, f.name)
        nested = SECTION in f.metadata
        kwargs[f.name] = _build(hints[f.name], where, values) if nested else values[where]
    return cls(**kwargs)
