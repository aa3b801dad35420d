"""Find splitters through the ``aunet.splitters`` entry-point group.

Built-ins are registered by this project's own pyproject.toml, so a third-party
package adds a splitter the same way: an entry point naming a `Splitter` subclass.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from .base import Splitter, SplitterError

GROUP = "aunet.splitters"


@cache
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)  # first wins if two distributions claim a name
    return found


def names() -> list[str]:
    return sorted(_entry_points())


def load(name: str) -> type[Splitter]:
    """The splitter class registered as `name`."""
    eps = _entry_points()
    if name not in eps:
        close = difflib.get_close_matches(name, names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SplitterError(
            f"unknown splitter {name!r}; {hint}installed: {', '.join(names()) or 'none'} "
            "(see `aunet splitters`)"
        )
    ep = eps[name]
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin must not look like our bug
        raise SplitterError(f"splitter {name!r} ({ep.value}) failed to load: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Splitter)):
        raise SplitterError(f"splitter {name!r} ({ep.value}) is not a splitters.Splitter subclass")
    return cls


def parse_spec(spec: str) -> Splitter:
    """Build a splitter from ``NAME`` or ``NAME:KEY=VALUE[,KEY=VALUE...]``."""
    name, _, opts = spec.strip().partition(":")
    options: dict[str, str] = {}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SplitterError(f"{spec!r}: options are KEY=VALUE, got {item!r}")
        if key.strip() in options:
            raise SplitterError(f"{spec!r}: option {key.strip()!r} given twice")
        options[key.strip()] = value.strip()
    return load(name)(**options)
