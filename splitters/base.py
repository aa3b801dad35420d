"""The splitter plugin interface.

A splitter is one pooling stage: it marks which bytes are pooling points. Stages
compose: stage s+1 only keeps points that stage s also has (nesting), so the
per-byte level (how many leading stages pool at a byte) is well defined.

Every splitter offers two equivalent paths:
* ``points``: vectorized over a `TextBatch` (preparation, evaluation);
* ``streamer``: one byte at a time with constant work (generation).
Tests hold them equal on arbitrary bytes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .text import TextBatch


class SplitterError(ValueError):
    """A splitter spec or option that cannot be honoured (a user mistake)."""


@dataclass(frozen=True)
class Option:
    """One option of a splitter: `--splitter NAME:KEY=VALUE`."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    def parse(self, splitter: str, raw: Any) -> Any:
        if self.type is bool and isinstance(raw, str):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise SplitterError(
                    f"{splitter}: option {self.name} expects true/false, got {raw!r}"
                )
            return raw.lower() in ("true", "1", "yes")
        try:
            value = self.type(raw)
        except (TypeError, ValueError):
            raise SplitterError(
                f"{splitter}: option {self.name} expects {self.type.__name__}, got {raw!r}"
            ) from None
        if self.choices and value not in self.choices:
            raise SplitterError(
                f"{splitter}: option {self.name} must be one of {', '.join(self.choices)}, "
                f"got {raw!r}"
            )
        return value


class StageStreamer(ABC):
    """Incremental state of one stage: feed bytes in order, get decisions back."""

    @abstractmethod
    def push(self, byte: int, prev_point: bool) -> bool:
        """Is this byte a pooling point? `prev_point`: the previous stage's decision."""


class Splitter(ABC):
    """Base class for pooling-stage plugins (entry-point group ``aunet.splitters``)."""

    name: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, **raw_options: Any) -> None:
        known = {o.name: o for o in self.options}
        unknown = sorted(set(raw_options) - set(known))
        if unknown:
            expected = ", ".join(known) or "no options"
            raise SplitterError(f"{self.name}: unknown option {unknown[0]!r} (expected {expected})")
        self.config = {
            o.name: o.parse(self.name, raw_options[o.name]) if o.name in raw_options else o.default
            for o in self.options
        }

    @property
    def causal(self) -> bool:
        """True if the decision at byte t depends only on bytes <= t (needed to generate)."""
        return True

    @abstractmethod
    def points(self, batch: TextBatch, prev: np.ndarray | None) -> np.ndarray:
        """Boolean mask over `batch.data`: True at this stage's pooling points."""

    @abstractmethod
    def streamer(self) -> StageStreamer:
        """A fresh streaming state (raises SplitterError if the splitter is not causal)."""

    def describe(self) -> dict[str, Any]:
        """Name, version and options: stored with every shard and run."""
        return {"name": self.name, "version": self.version, "options": dict(self.config)}

    def __repr__(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.config.items())
        return f"{self.name}:{opts}" if opts else self.name
