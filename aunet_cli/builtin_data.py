"""Text every Python installation carries, so the quickstart needs no download."""

from __future__ import annotations

BUILTIN_INPUTS = {"@pydoc-topics": "the Python documentation topics (pydoc_data.topics, ~466 KB)"}


def pydoc_topics() -> bytes:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip("\n") for k in sorted(topics)).encode("utf-8")
