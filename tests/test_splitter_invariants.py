"""DESIGN.md section 2 invariants, on arbitrary bytes (hypothesis)."""

from __future__ import annotations

import subprocess
import sys
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from splitters import Pipeline, SplitterError, TextBatch

CAUSAL = [
    ["regex-words"],
    ["regex-words", "regex-word-pairs"],
    ["regex-words", "regex-word-pairs", "regex-4words"],
    ["regex-words", "regex-4words"],
]
OFFICIAL = [[f"{s}:mode=official" for s in specs] for specs in CAUSAL]
CAUSAL += [["utf8-chars"], ["utf8-chars", "regex-words"], ["utf8-chars", "utf8-chars:every=2"]]

# Characters that exercise every rule: spaces of all kinds, CR/LF, digits of several
# scripts, letters, CJK, emoji, punctuation, combining marks, NUL.
ALPHABET = list(" \t\r\n\x0b\x0c\x1c\xa0\u3000\u2028a Zé中文🙂0912٣४½Ⅻ.,;!?'\"()[]{}-_\u0301\x00")
FRAGMENTS = [
    b"\x80", b"\xbf", b"\xc0", b"\xc1", b"\xc3", b"\xe4\xb8", b"\xed\xa0\x80", b"\xf0\x9f",
    b"\xf0\x9f\x98", b"\xf4\x90\x80\x80", b"\xff", b"\xfe", b"\r\n", b"\n\r", b"\x00",
]  # fmt: skip


@st.composite
def byte_strings(draw) -> bytes:
    parts = draw(
        st.lists(
            st.one_of(
                st.text(alphabet=ALPHABET, max_size=12).map(
                    lambda s: s.encode("utf-8", "surrogatepass")
                ),
                st.sampled_from(FRAGMENTS),
                st.binary(max_size=6),
            ),
            max_size=24,
        )
    )
    return b"".join(parts)


def levels(specs: list[str], data: bytes) -> np.ndarray:
    return Pipeline.from_specs(specs).levels_of(data)


def char_ends(data: bytes) -> set[int]:
    """Byte indices that end a character (each invalid byte is its own character)."""
    ends, pos = set(), 0
    for ch in data.decode("utf-8", "surrogateescape"):
        pos += 1 if 0xDC80 <= ord(ch) <= 0xDCFF else len(ch.encode("utf-8"))
        ends.add(pos - 1)
    assert pos == len(data)
    return ends


@pytest.mark.parametrize("specs", CAUSAL + OFFICIAL, ids=lambda s: "+".join(s))
@given(data=byte_strings())
def test_any_bytes_no_crash_and_only_at_char_ends(specs, data):
    lv = levels(specs, data)
    assert lv.dtype == np.uint8 and len(lv) == len(data)
    assert lv.max(initial=0) <= len(specs)
    assert set(np.flatnonzero(lv).tolist()) <= char_ends(data)


@pytest.mark.parametrize("specs", CAUSAL, ids=lambda s: "+".join(s))
@given(data=byte_strings())
def test_prefix_stable(specs, data):
    full = levels(specs, data)
    cuts = range(len(data) + 1) if len(data) <= 80 else np.linspace(0, len(data), 40, dtype=int)
    for t in cuts:
        assert levels(specs, data[:t]).tolist() == full[:t].tolist(), t


@pytest.mark.parametrize("specs", CAUSAL, ids=lambda s: "+".join(s))
@given(data=byte_strings())
def test_streaming_equals_batch(specs, data):
    pipe = Pipeline.from_specs(specs)
    assert pipe.streamer().feed(data) == pipe.levels_of(data).tolist()


@pytest.mark.parametrize("specs", CAUSAL + OFFICIAL, ids=lambda s: "+".join(s))
@given(docs=st.lists(byte_strings(), max_size=6))
def test_batch_of_documents_equals_each_alone(specs, docs):
    """Batching is an optimisation only: documents never influence each other, even
    when one ends inside a UTF-8 sequence and the next starts with continuation bytes."""
    pipe = Pipeline.from_specs(specs)
    batch = TextBatch.from_docs(docs)
    together = pipe.levels(batch)
    for i, doc in enumerate(docs):
        alone = pipe.levels_of(doc)
        assert together[batch.offsets[i] : batch.offsets[i + 1]].tolist() == alone.tolist()


@pytest.mark.parametrize("specs", CAUSAL + OFFICIAL, ids=lambda s: "+".join(s))
@given(data=byte_strings())
def test_nested_and_deterministic(specs, data):
    pipe = Pipeline.from_specs(specs)
    masks = pipe.stage_masks(TextBatch.from_docs([data]))
    for outer, inner in pairwise(masks):
        assert not (inner & ~outer).any()
    # each regex stage is nested by itself, before the pipeline intersects
    raw = [s.points(TextBatch.from_docs([data]), None) for s in pipe.stages]
    for outer, inner in pairwise(raw):
        assert not (inner & ~outer).any()
    assert pipe.levels_of(data).tolist() == pipe.levels_of(data).tolist()


def test_official_mode_is_not_causal_and_refuses_to_stream():
    """The counterexample that forces the causal default: a space's level depends on
    the CR/LF that comes after it."""
    specs = ["regex-words:mode=official", "regex-word-pairs:mode=official"]
    assert levels(specs, b"a b c \n").tolist()[5] == 2
    assert levels(specs, b"a b c ").tolist()[5] == 1
    assert not Pipeline.from_specs(specs).causal
    with pytest.raises(SplitterError, match="mode=causal"):
        Pipeline.from_specs(specs).streamer()


def test_long_line_and_garbage():
    """A 1 MB line of mixed text and garbage: no crash, streaming agrees with batch."""
    rng = np.random.default_rng(0)
    pieces = [b"word ", b"12345", b"...\r\n", "中文".encode(), b"\xe4\xb8", b"\x00", b"\xff"]
    data = b"".join(pieces[i] for i in rng.integers(0, len(pieces), 1 << 17))[: 1 << 20]
    specs = CAUSAL[2]
    pipe = Pipeline.from_specs(specs)
    lv = pipe.levels_of(data)
    assert len(lv) == len(data)
    head = data[:200_000]
    assert pipe.streamer().feed(head) == lv[: len(head)].tolist()


@pytest.mark.slow
def test_fifty_megabyte_line():
    data = (b"alpha beta 12 \xe4\xb8\xad,  \r\n" * 2_000_000)[: 50 << 20]
    lv = levels(CAUSAL[2], data)
    assert len(lv) == len(data) and lv.max() == 3


@pytest.mark.parametrize("specs", CAUSAL + OFFICIAL, ids=lambda s: "+".join(s))
@given(docs=st.lists(byte_strings(), max_size=4))
def test_c_and_numpy_backends_agree(specs, docs):
    """The compiled scan and the numpy fallback implement the same semantics."""
    from splitters import regex_family

    if regex_family._c_scan is None:
        pytest.skip("C extension not built")
    pipe = Pipeline.from_specs(specs)
    backend = regex_family.BACKEND["name"]
    try:
        regex_family.BACKEND["name"] = "numpy"
        slow = pipe.levels(TextBatch.from_docs(docs))
        regex_family.BACKEND["name"] = "c"
        fast = pipe.levels(TextBatch.from_docs(docs))
    finally:
        regex_family.BACKEND["name"] = backend
    assert fast.tolist() == slow.tolist()


def test_cached_class_table_matches_a_fresh_build():
    from splitters.unicode_classes import _build_table, class_table

    assert (class_table() == _build_table()).all()


def test_a_cached_class_table_is_found_without_importing_regex(tmp_path, monkeypatch):
    """Start-up: a prep whose table is cached does not import `regex` (about 4-7 ms saved)."""
    from splitters import unicode_classes

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # a cache this test writes itself
    unicode_classes.class_table.cache_clear()
    try:
        unicode_classes.class_table()  # builds the table and caches it in tmp_path
    finally:
        unicode_classes.class_table.cache_clear()
    assert list(tmp_path.glob("aunet/unicode-classes-regex-*.npy"))
    code = (
        "import sys; from splitters import Pipeline, TextBatch; "
        "p = Pipeline.from_specs(['regex-words', 'regex-word-pairs', 'regex-4words']); "
        "p.levels(TextBatch.from_docs([b'a b, c'])); print('regex' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_utf8_chars_every_pools_every_nth_character_of_each_document():
    text = "中文ab汉字".encode()  # ends of the six characters: bytes 2, 5, 6, 7, 10, 13
    every1 = np.flatnonzero(Pipeline.from_specs(["utf8-chars"]).levels_of(text))
    assert every1.tolist() == [2, 5, 6, 7, 10, 13]
    two = Pipeline.from_specs(["utf8-chars", "utf8-chars:every=2"])
    assert np.flatnonzero(two.levels_of(text) == 2).tolist() == [5, 7, 13]
    # the count restarts with every document
    batch = TextBatch.from_docs([text, text])
    assert np.flatnonzero(two.levels(batch) == 2).tolist() == [5, 7, 13, 19, 21, 27]


def test_utf8_chars_records_every_only_when_set():
    """Data prepared before the option existed recorded no options: it still matches."""
    assert Pipeline.from_specs(["utf8-chars"]).describe()[0]["options"] == {}
    assert Pipeline.from_specs(["utf8-chars:every=2"]).describe()[0]["options"] == {"every": 2}
    with pytest.raises(SplitterError, match="every must be >= 1"):
        Pipeline.from_specs(["utf8-chars:every=0"])
