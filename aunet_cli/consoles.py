"""The command line's rich consoles, made on first use.

Importing rich costs ~50 ms, which every command would pay at start-up; a scripted
`aunet prep --quiet` never prints through it.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@cache
def out() -> Console:
    """Standard output."""
    from rich.console import Console

    return Console()


@cache
def err() -> Console:
    """Standard error: progress, messages, errors."""
    from rich.console import Console

    return Console(stderr=True)


def escape(text: str) -> str:
    """`text` with rich markup escaped."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)
