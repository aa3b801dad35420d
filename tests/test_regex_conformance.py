"""The paper's regex splitters against the official implementation's vectors."""

from __future__ import annotations

import json

import pytest

from splitters import Pipeline, levels_string

from .conftest import shared_path

STAGES = {
    "words": ["regex-words"],
    "words+pairs": ["regex-words", "regex-word-pairs"],
    "words+pairs+quads": ["regex-words", "regex-word-pairs", "regex-4words"],
}


@pytest.fixture(scope="module")
def vectors() -> list[dict]:
    entries = json.loads(shared_path("conformance/regex_levels.json").read_text())
    assert len(entries) == 630
    return entries


def _levels(entry: dict, mode: str) -> str:
    pipe = Pipeline.from_specs(f"{s}:mode={mode}" for s in STAGES[entry["stages"]])
    return levels_string(pipe.levels_of(entry["text"].encode("utf-8")))


def test_official_mode_reproduces_every_vector(vectors):
    mismatches = [e["text"] for e in vectors if _levels(e, "official") != e["levels"]]
    assert mismatches == []


def test_causal_mode_differs_only_where_official_looks_ahead(vectors):
    """Causal mode moves the point of a whitespace run that reaches CR/LF from the
    run's start to its first CR/LF; every other byte of every vector is identical."""
    differing = 0
    for e in vectors:
        got, want = _levels(e, "causal"), e["levels"]
        if got == want:
            continue
        differing += 1
        text = e["text"]
        char_at = [i for i, ch in enumerate(text) for _ in ch.encode("utf-8")]
        for byte, (a, b) in enumerate(zip(got, want, strict=True)):
            if a == b:
                continue
            c = char_at[byte]
            run = text[c:][: len(text[c:]) - len(text[c:].lstrip())]
            if b > a:  # official pools earlier: at non-CR/LF space starting a run that has CR/LF
                assert text[c].isspace() and text[c] not in "\r\n"
                assert "\n" in run or "\r" in run
            else:  # causal pools at the first CR/LF of that run instead
                assert text[c] in "\r\n"
                assert text[c - 1].isspace()
    assert differing == 36  # 12 texts x 3 stage sets; they all contain such a run


def test_streaming_equals_batch_on_vectors(vectors):
    for e in vectors:
        pipe = Pipeline.from_specs(STAGES[e["stages"]])
        data = e["text"].encode("utf-8")
        streamed = "".join(map(str, pipe.streamer().feed(data)))
        assert streamed == levels_string(pipe.levels_of(data)), e["text"]
