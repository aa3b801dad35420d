"""The yardstick: the official AU-Net regex splitting, written out plainly.

This is a direct restatement of what the official implementation (lingua
``apps/aunet``, regex "word" strategy) computes, one document at a time, with the
``regex`` module and no vectorisation. It is what ``mode=official`` of our
``regex-*`` splitters must reproduce, and the speed baseline of ``bench/prep.py``.

For a document ``text`` (``bytes`` decoded as UTF-8 with ``surrogateescape``):

* stage n, for n in (1, 2, 4) (words, pairs, quads), holds ``m.end() - 1`` of every
  match of ``regex.finditer(r'(?:\\S+\\s){n}', text)`` (the whitespace that ends
  every n-th word of a chain);
* every stage also holds ``m.start()`` of every match of
  ``regex.finditer(r'\\p{N}{1,3}|[^\\s\\p{L}\\p{N}]{1,3}[\\r\\n]*|\\s*[\\r\\n]+', text)``;
* a character's level is the number of leading stages that contain it (level L:
  a point of stages 1..L), and that level is put on the character's LAST byte
  (a character from ``surrogateescape`` stands for exactly one byte).

Run ``python bench/reference_split.py`` to check it against the 630 conformance
vectors of the official implementation (prints ``630/630``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import regex

STAGE_WORDS = (1, 2, 4)  # words per group at stage 1, 2, 3
_GROUPS = [regex.compile(r"(?:\S+\s){" + str(n) + "}") for n in STAGE_WORDS]
_SPECIAL = regex.compile(r"\p{N}{1,3}|[^\s\p{L}\p{N}]{1,3}[\r\n]*|\s*[\r\n]+")
CONFORMANCE = Path("/work/shared/conformance/regex_levels.json")
STAGE_SETS = {"words": 1, "words+pairs": 2, "words+pairs+quads": 3}


def char_levels(text: str, n_stages: int) -> dict[int, int]:
    """Char position -> level (>= 1) for every pooling point of `text`."""
    if not 1 <= n_stages <= len(STAGE_WORDS):
        raise ValueError(f"n_stages must be 1..{len(STAGE_WORDS)}, got {n_stages}")
    specials = {m.start() for m in _SPECIAL.finditer(text)}
    levels: dict[int, int] = {}
    for k in range(n_stages):
        stage = {m.end() - 1 for m in _GROUPS[k].finditer(text)} | specials
        if k == 0:
            levels = dict.fromkeys(stage, 1)
        else:
            for p in stage:
                if levels.get(p) == k:  # in every earlier stage
                    levels[p] = k + 1
    return levels


def levels_reference(data: bytes, n_stages: int) -> list[int]:
    """Per-byte levels of one document (0 = no pooling point)."""
    text = data.decode("utf-8", "surrogateescape")
    points = char_levels(text, n_stages)
    out = [0] * len(data)
    if len(text) == len(data):  # one byte per char (ASCII, or only escapes)
        for p, lv in points.items():
            out[p] = lv
        return out
    # Walk the points in order, counting the bytes of the text in between.
    byte_end = -1  # last byte of char `char_pos`
    char_pos = -1
    for p in sorted(points):
        byte_end += len(text[char_pos + 1 : p + 1].encode("utf-8", "surrogateescape"))
        char_pos = p
        out[byte_end] = points[p]
    return out


def self_test(path: Path = CONFORMANCE) -> tuple[int, int, list[str]]:
    entries = json.loads(path.read_text(encoding="utf-8"))
    failures = []
    for i, e in enumerate(entries):
        data = e["text"].encode("utf-8", "surrogateescape")
        got = "".join(map(str, levels_reference(data, STAGE_SETS[e["stages"]])))
        if got != e["levels"]:
            failures.append(
                f"#{i} [{e['stages']}] {e['text']!r}\n  want {e['levels']}\n  got  {got}"
            )
    return len(entries) - len(failures), len(entries), failures


if __name__ == "__main__":
    ok, total, failures = self_test()
    for f in failures[:20]:
        print(f)
    print(f"{ok}/{total}")
    sys.exit(0 if ok == total else 1)
