"""`aunet split`: see how text is cut (coloured units), or levels as JSON lines."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import numpy as np
from rich.console import Console
from rich.text import Text

from splitters import Pipeline, TextBatch, levels_string

from .errors import BadInputError
from .readers import to_bytes

STYLES = ("black on bright_cyan", "black on bright_yellow")


def _units(data: bytes, points: np.ndarray) -> list[bytes]:
    ends = list(points + 1) + ([len(data)] if not len(points) or points[-1] + 1 < len(data) else [])
    starts = [0, *ends[:-1]]
    return [data[s:e] for s, e in zip(starts, ends, strict=True)]


def render(console: Console, specs: list[str], data: bytes) -> None:
    pipe = Pipeline.from_specs(specs)
    levels = pipe.levels_of(data)
    for k, stage in enumerate(pipe.stages, 1):
        points = np.flatnonzero(levels >= k)
        units = _units(data, points)
        line = Text(f"stage {k + 1} ({stage!r}): ", style="bold")
        for i, unit in enumerate(units):
            shown = unit.decode("utf-8", "replace").replace("\n", "⏎\n")
            line.append(shown, style=STYLES[i % 2])
        console.print(line)
        if len(points):
            per = len(data) / len(points)
            plural = "s" if len(points) > 1 else ""
            console.print(f"  {len(points)} pooling point{plural}, {per:.2f} bytes per unit\n")
        else:  # the model would see no position of this stage yet
            console.print(f"  no pooling point in these {len(data)} bytes\n")


def split_jsonl(specs: list[str], files: list[Path], stdin: TextIO, stdout: TextIO) -> None:
    """Machine form (a stable contract): {"text": ...} per line in, {"levels": ...} out,
    line for line (a blank line answers a blank line)."""
    pipe = Pipeline.from_specs(specs)
    batch: list[bytes | None] = []  # None: a blank input line

    def flush() -> None:
        if not batch:
            return
        tb = TextBatch.from_docs([text for text in batch if text is not None])
        levels = pipe.levels(tb) if tb.n_docs else None
        i = 0
        for text in batch:
            if text is None:
                stdout.write("\n")
                continue
            lv = levels_string(levels[tb.offsets[i] : tb.offsets[i + 1]])
            stdout.write(json.dumps({"levels": lv}) + "\n")
            i += 1
        batch.clear()

    for name, lineno, line in _lines(files, stdin):
        if not line.strip():  # a blank line for a blank line: outputs stay in step
            batch.append(None)
            continue
        try:
            obj = json.loads(line)
            text = obj["text"]
            if not isinstance(text, str):
                raise TypeError
        except (json.JSONDecodeError, RecursionError) as exc:
            flush()  # every line before the bad one is answered
            why = exc if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise BadInputError(f"{name} line {lineno}: invalid JSON ({why})") from None
        except (KeyError, TypeError):
            flush()
            raise BadInputError(
                f'{name} line {lineno}: expected an object with a string "text" field'
            ) from None
        batch.append(to_bytes(text))
        if len(batch) >= 4096:
            flush()
    flush()


def _lines(files: list[Path], stdin: TextIO) -> Iterable[tuple[str, int, str]]:
    if not files:
        for i, line in enumerate(stdin, 1):
            yield "<stdin>", i, line
        return
    for path in files:
        try:
            with path.open(encoding="utf-8", errors="surrogateescape") as f:
                for i, line in enumerate(f, 1):
                    yield str(path), i, line
        except OSError as exc:
            raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
