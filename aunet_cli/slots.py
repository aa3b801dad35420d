"""Shared memory that carries chunks' text from the reading process to worker processes.

Sending an 8-32 MB chunk through the process pool's pipe cost the reading process more
CPU than reading and cutting it: pickling copies it into a fresh buffer (whose pages the
kernel zeroes), the pipe copies it again in 64 KB writes, and the worker copies it twice
more on the way in. That capped `aunet prep --workers N` at the reader's speed. Slots are
anonymous shared mappings made before the workers fork, so every worker sees them; each
chunk costs one copy in and one copy out, and a slot's pages are faulted in once and
then reused. Linux and other systems with fork only (prep's worker pool forks).
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence


class Slots:
    """`count` shared buffers of `size` bytes; the parent puts, a worker gets, the parent
    releases the slot once that worker's result is in."""

    def __init__(self, count: int, size: int) -> None:
        self.size = size
        self._maps = [mmap.mmap(-1, size) for _ in range(count)]  # MAP_SHARED | ANONYMOUS
        self._free = list(range(count - 1, -1, -1))

    def put(self, blobs: Sequence[bytes]) -> int | None:
        """Copy `blobs` one after another into a free slot and return its number; None
        when they do not fit (the caller then sends them pickled, as before)."""
        if sum(map(len, blobs)) > self.size:
            return None
        try:
            slot = self._free.pop()  # atomic: several reading threads may put at once
        except IndexError:
            return None
        buf, at = self._maps[slot], 0
        for blob in blobs:
            buf[at : at + len(blob)] = blob
            at += len(blob)
        return slot

    def get(self, slot: int, lengths: Sequence[int]) -> list[bytes]:
        """The blobs `put` into `slot`, given their lengths (copies: the slot is reused)."""
        buf, at, blobs = self._maps[slot], 0, []
        for n in lengths:
            blobs.append(buf[at : at + n])
            at += n
        return blobs

    def release(self, slot: int) -> None:
        self._free.append(slot)

    def close(self) -> None:
        for buf in self._maps:
            buf.close()
        self._maps.clear()
