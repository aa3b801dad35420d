"""The C fast paths of `aunet prep` equal the plain Python/numpy ones they replace.

* readers: `_txt_blocks` (documents cut in C, joined) == `_txt` (a bytes object per
  document), on random text full of CR/LF runs, for any read size;
* shards: point lists straight from the scan flags (`flag_point_lists`) and the C
  `point_lists` == the numpy version over `Pipeline.levels`;
* ids and the val/train gather == their Python equivalents.
"""

from __future__ import annotations

import ctypes
import gzip
import hashlib
import io
import json
import random
import zlib
from collections import Counter

import numpy as np
import pytest

import aunet_cli.readers as readers
from aunet_cli import shards
from aunet_cli.prep import keep_freed_memory
from aunet_cli.readers import DocBatch, DocBlock, ReadOptions
from splitters import Pipeline, TextBatch, regex_family
from splitters.regex_family import flag_levels, flag_point_lists

fast = pytest.importorskip("splitters._fast")

PIECES = [b"a", b"b", b" ", b"\n", b"\r", b"\n\n", b"\r\n", b"\xc3\xa9", b"\t", b"\xe4\xb8"]


def random_text(rng: random.Random, n: int) -> bytes:
    return b"".join(rng.choice(PIECES) for _ in range(n))


def as_docs(batches) -> tuple[list[tuple[int, bytes]], Counter]:
    docs, skipped = [], Counter()
    for b in batches:
        skipped += b.skipped
        if isinstance(b, DocBatch):
            docs += list(zip(b.keys, b.docs, strict=True))
        else:
            docs += [
                (int(k), b.data[b.offsets[i] : b.offsets[i + 1]]) for i, k in enumerate(b.keys)
            ]
    return docs, skipped


@pytest.mark.parametrize("doc_per", ["paragraph", "line"])
def test_c_cut_equals_python_cut(monkeypatch, doc_per):
    rng = random.Random(doc_per)
    opts = ReadOptions(doc_per=doc_per)
    for trial in range(1500):
        text = random_text(rng, rng.randint(0, 80))
        monkeypatch.setattr(readers, "BLOCK", rng.choice([1, 2, 3, 5, 8, 64, 1 << 22]))
        want = as_docs(readers._txt(opts, io.BytesIO(text)))
        got = as_docs(readers._txt_blocks(opts, io.BytesIO(text)))
        assert got == want, (trial, text)


@pytest.mark.parametrize("doc_per", ["paragraph", "line"])
def test_c_cut_read_straight_from_the_tap_equals_python_cut(monkeypatch, doc_per):
    """Uncompressed input is read from its Tap into one buffer per block (no copies):
    the same documents, and the Tap still hashes every byte once, in order."""
    rng = random.Random(f"tap {doc_per}")
    opts = ReadOptions(doc_per=doc_per)
    for trial in range(500):
        text = random_text(rng, rng.randint(0, 80))
        monkeypatch.setattr(readers, "BLOCK", rng.choice([1, 2, 3, 5, 8, 64, 1 << 22]))
        want = as_docs(readers._txt(opts, io.BytesIO(text)))
        tap = readers.Tap(io.BytesIO(text))
        got = as_docs(readers._txt_blocks(opts, io.BufferedReader(tap)))
        assert got == want, (trial, text)
        assert (tap.sha256(), tap.position) == (hashlib.sha256(text).hexdigest(), len(text))


def test_c_cut_keeps_the_carry_and_counts_records():
    data, offsets, keys, records, empty, carry = fast.cut(b"a\n\nb\n\n\nc\n", True, False)
    assert data == b"ab" and list(np.frombuffer(offsets, np.int64)) == [0, 1, 2]
    assert list(np.frombuffer(keys, np.int64)) == [1, 2] and (records, empty) == (2, 0)
    assert carry == len(b"a\n\nb\n\n")  # "\nc\n" goes on in the next buffer
    data, offsets, keys, records, empty, carry = fast.cut(b"x\r\n\r\ny\n", False, False)
    assert data == b"xy" and list(np.frombuffer(keys, np.int64)) == [1, 3]
    assert (records, empty, carry) == (3, 1, 7)


def test_doc_block_select_join_slice():
    rng = random.Random(3)
    docs = [random_text(rng, rng.randint(1, 30)) or b"z" for _ in range(200)]
    block = DocBlock.from_batch(DocBatch(list(range(1, 201)), docs))
    mask = np.array([rng.random() < 0.3 for _ in docs])
    picked = block.select(mask)
    assert as_docs([picked])[0] == [
        (k, d) for k, d, m in zip(range(1, 201), docs, mask, strict=True) if m
    ]
    monkey = readers._c_gather
    try:
        readers._c_gather = None
        assert as_docs([block.select(mask)]) == as_docs([picked])
    finally:
        readers._c_gather = monkey
    parts = [block.slice(0, 50), block.slice(50, 51), block.slice(51, 200)]
    assert as_docs([DocBlock.join(parts)]) == as_docs([block])
    assert DocBlock.join([]).n_docs == 0
    # gather: straight from the parts (views), as join then select
    for m in (mask, ~mask, np.ones(200, bool), np.zeros(200, bool)):
        gathered = DocBlock.gather(parts, m)
        assert isinstance(gathered.data, bytes)
        assert as_docs([gathered]) == as_docs([DocBlock.join(parts).select(m)])
    assert DocBlock.gather([], np.zeros(0, bool)).n_docs == 0
    with pytest.raises(ValueError):
        DocBlock.gather(parts, mask[:-1])  # a mask that does not cover every document
    with pytest.raises(ValueError):
        DocBlock.gather(parts, np.append(mask, True))  # nor one for more documents


def _cpu_has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " avx2" in f.read()
    except OSError:
        return False


@pytest.fixture(params=[True, False], ids=["avx2-fill", "scalar-fill"])
def simd_fill(request):
    """The point lists filled with AVX2 (where the CPU has it) and without."""
    before = fast.simd_fill(request.param)
    yield request.param
    fast.simd_fill(before)


def test_the_avx2_fill_is_on_where_the_cpu_has_avx2():
    before = fast.simd_fill(True)
    try:
        assert fast.simd_fill(True) == _cpu_has_avx2()  # what the first call turned on
    finally:
        fast.simd_fill(before)


@pytest.mark.parametrize("mode", ["causal", "official"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_point_lists_from_scan_flags_equal_numpy(mode, depth, simd_fill):
    rng = random.Random(depth)
    stages = ["regex-words", "regex-word-pairs", "regex-4words", "regex-words"][:depth]
    pipe = Pipeline.from_specs([f"{s}:mode={mode}" for s in stages])
    docs = [random_text(rng, rng.randint(1, 120)) for _ in range(300)]
    docs += ["中文，一二三 4567 ü...!! \n\n\r\n x".encode(), b"\xff\xfe a b c d e f g h"]
    docs += [b"word " * 2000, b"x" * 50 + b" " * 37, b" " * 16, b"abcdefghijklmnop" * 3]
    batch = TextBatch.from_docs(docs)
    levels = pipe.levels(batch)
    want = shards._point_lists_numpy(levels, batch.offsets, depth)
    assert shards.point_lists(levels, batch.offsets, depth) == want
    fused = flag_levels(pipe.stages)
    assert fused is not None and fused[0] == mode
    got = flag_point_lists(TextBatch(batch.data, batch.offsets), mode, depth, fused[1])
    assert [(bytes(o), bytes(v)) for o, v in got] == [(bytes(o), bytes(v)) for o, v in want]
    for threads in (2, 3, 8, 1000):  # the scan in parts at once: the same lists
        got = flag_point_lists(batch, mode, depth, fused[1], threads)
        assert [(bytes(o), bytes(v)) for o, v in got] == [(bytes(o), bytes(v)) for o, v in want]


@pytest.mark.parametrize("threads", [2, 4, 8])
def test_threaded_scan_of_uneven_or_partial_batches(threads):
    """Parts are whole documents of about equal bytes: one huge document among small
    ones, no documents, and documents that do not start at byte 0 or end at the last
    byte (positions are relative to each document) are all scanned as on one thread."""
    mode, lut = flag_levels(Pipeline.from_specs(["regex-words", "regex-word-pairs"]).stages)
    table = regex_family.class_table()

    def lists(data: bytes, offsets: list[int], n: int) -> list[tuple[bytes, bytes]]:
        got = fast.scan_points(data, np.array(offsets, np.int64), table, False, 2, lut, n)
        return [(bytes(o), bytes(v)) for o, v in got]

    big = b"word " * 20_000
    data = b"a b " + big + b"c d e f g"
    cases = [
        (data, [0, 4, 4 + len(big), len(data)]),
        (data, [2, 4, 4 + len(big)]),  # bytes before and after the documents: not scanned
        (data, [0, len(data)]),  # one document
        (data, [5]),  # none
    ]
    for case, offsets in cases:
        assert lists(case, offsets, threads) == lists(case, offsets, 1)
    with pytest.raises(ValueError):
        lists(data, [0, len(data)], 0)


def test_flag_levels_only_for_one_mode_of_regex_stages():
    assert (
        flag_levels(Pipeline.from_specs(["regex-words", "regex-4words:mode=official"]).stages)
        is None
    )
    mode, lut = flag_levels(Pipeline.from_specs(["regex-word-pairs", "regex-words"]).stages)
    assert mode == "causal" and lut[1] == 0 and lut[3] == 2 and lut[8] == 2


def test_id_column_equals_python():
    keys = np.array([1, 2, 10, 99, 100, 123456789012, 0], dtype=np.int64)
    col = shards.id_column("dir/a b.txt#", keys)
    assert col.to_pylist() == [f"dir/a b.txt#{k}" for k in keys.tolist()]
    c_ids = shards._c_ids
    try:
        shards._c_ids = None
        assert shards.id_column("ü#", keys).to_pylist() == [f"ü#{k}" for k in keys.tolist()]
    finally:
        shards._c_ids = c_ids


class _MallInfo2(ctypes.Structure):
    _fields_ = [  # glibc's struct mallinfo2 (malloc.h), all size_t
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mapped_bytes() -> int:
    """Bytes glibc holds in mmapped chunks (outside its heap)."""
    info = ctypes.CDLL(None).mallinfo2
    info.restype = _MallInfo2
    return info().hblkhd


def test_keep_freed_memory_serves_big_buffers_from_the_heap_until_restored():
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("not glibc >= 2.33: keep_freed_memory is a no-op there")
    size = 8 << 20
    restore = keep_freed_memory()
    try:
        before = _mapped_bytes()
        buf = bytearray(size)  # would be its own mmap under glibc's defaults
        assert _mapped_bytes() - before < size
        del buf
    finally:
        restore()
    before = _mapped_bytes()
    buf = bytearray(size)
    assert _mapped_bytes() - before >= size  # defaults back, kept memory returned: mmapped
    del buf


# --- JSON lines: Arrow's reader on blocks == json.loads line by line --------------------

JSONL_LINES = [
    b'{"text": "plain words"}',
    b'{"text": "caf\\u00e9 \\u4e2d\\u6587", "url": "http://x", "n": [1, {"a": null}]}',
    '{"text": "ünïcödé 中文 🙂"}'.encode(),
    b'{"text": "\\ud83d\\ude00 pair"}',
    b'{"text": "lone \\ud800"}',  # a lone surrogate escape: kept as its 3-byte form
    b'{"text": "raw \\udc80 escape"}',
    b'{"text": "bad utf-8 \xff\xfe\xed\xa0\x80"}',
    b'{"text": "nul \\u0000 and \x01"}',
    b'{"text": ""}',  # empty document
    b'{"other": "no text"}',  # missing field
    b'{"text": 5}',  # not a string
    b'{"text": null}',
    b'["not", "an object"]',
    b'{"text": "a", "text": "last wins"}',
    b'{"text": "x", "n": NaN}',
    b'{"text": "one"} {"text": "two"}',  # two objects on one line
    b'{"text": "one"}\r{"text": "two"}',
    b'{"text": "trailing",}',
    b'{"text": "crlf"}\r',
    b'  {"text": "spaced"}\t',
    b'\xef\xbb\xbf{"text": "bom"}',
    b"",  # blank line
    b"  \r",  # blank line (whitespace)
    b'{"t\\u0065xt": "escaped key"}',
    b'{"text": "half',
    b"null",  # a bare value (Arrow 26 crashes on one that starts a block)
    b'{"text": "x", "n": Inf}',  # Arrow takes Inf, -Inf and -NaN; json.loads does not
    b'{"text": "x", "n": -Inf}',
    b'{"text": "x", "n": -NaN}',
    b'{"text": "Inf, NaN: [Inf] inside a string"}',
    b'{"text": "deep", "n": ' + b"[" * 1200 + b"]" * 1200 + b"}",  # past json's recursion
    b'{"text": "deep but empty", "n": ' + b"[" * 1200 + b"]" * 1200 + b', "text": ""}',
    b'{"text": "one"} {"text": "two"}\n{"text":\n"three"}',  # row counts that cancel
    b'{"text": "split"\n}',
    b' {"text": "indented"}',
]


def jsonl_docs(fn, opts, data: bytes, on_error: str):
    """(documents, skip counts) or the error message, through reader `fn`."""
    inp = readers.InputFile(None, "t.jsonl", "jsonl", None, 0, 0)
    try:
        return as_docs(fn(opts, io.BytesIO(data), readers.BadRecords(inp, on_error)))
    except readers.BadInputError as exc:
        return str(exc)


@pytest.mark.parametrize("on_error", ["skip", "fail"])
def test_arrow_jsonl_equals_line_by_line(monkeypatch, on_error):
    """Random mixes of good lines and every kind of odd one, any block size: the same
    documents, record numbers, skip counts and first error as `_jsonl`."""
    rng = random.Random(on_error)
    opts = ReadOptions()
    good = JSONL_LINES[:4]
    fast_blocks: list[bool] = []  # appended to from the parsing threads
    real_arrow = readers._arrow_jsonl

    def counting(*args):
        got = real_arrow(*args)
        fast_blocks.append(got is not None)
        return got

    monkeypatch.setattr(readers, "_arrow_jsonl", counting)
    for trial in range(400):
        pool = good if rng.random() < 0.5 else JSONL_LINES
        lines = [rng.choice(pool) for _ in range(rng.randint(1, 30))]
        data = b"\n".join(lines) + rng.choice([b"\n", b""])
        monkeypatch.setattr(readers, "BLOCK", rng.choice([7, 50, 200, 1 << 22]))
        # Arrow's parse blocks: smaller than some lines (those straddle) or not
        monkeypatch.setattr(readers, "JSON_PARSE_BLOCK", rng.choice([16, 64, 1 << 20]))
        monkeypatch.setattr(
            readers, "JSONL_AHEAD", rng.choice([1, 2, 3, 5])
        )  # blocks parsed at once
        want = jsonl_docs(readers._jsonl, opts, data, on_error)
        got = jsonl_docs(readers._jsonl_blocks, opts, data, on_error)
        assert got == want, (trial, data)
    assert sum(fast_blocks) > 100  # the Arrow path did run


def test_jsonl_field_option_reaches_arrow():
    data = b'{"body": "x y", "text": "no"}\n{"body": "z"}\n'
    opts = ReadOptions(field="body")
    docs, _ = jsonl_docs(readers._jsonl_blocks, opts, data, "fail")
    assert docs == [(1, b"x y"), (2, b"z")]
    assert readers._arrow_jsonl(data, 2, "body") is not None


def _recoverable(compressed: bytes, cut: int) -> int:
    """Bytes a reader gets out of the first `cut` bytes of a gzip stream (zlib gives
    out what it has decoded, so this grows smoothly with `cut`)."""
    return len(zlib.decompressobj(31).decompress(compressed[:cut]))


@pytest.mark.parametrize("on_error", ["skip", "fail"])
def test_jsonl_read_ahead_keeps_records_before_a_truncated_stream(tmp_path, monkeypatch, on_error):
    """A bad line ~3 KB before the point where a .jsonl.gz is cut off, read in 4 KB
    blocks: parsing blocks ahead must not let the stream error overtake that line (the
    error with --on-error fail; the documents yielded before the error with skip)."""
    rng = random.Random(5)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 30))) for _ in range(4000)]
    lines = [json.dumps({"text": t}).encode() for t in texts]
    bad_at = 2500
    lines[bad_at] = b'{"text": bad}'
    data = b"\n".join(lines) + b"\n"
    bad_offset = sum(len(x) + 1 for x in lines[:bad_at])
    compressed = gzip.compress(data)
    lo, hi = 0, len(compressed)  # the shortest cut that keeps 3 KB after the bad line
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if _recoverable(compressed, mid) < bad_offset + 3000 else (lo, mid)
    assert _recoverable(compressed, lo) < bad_offset + 4000
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(compressed[:lo])
    monkeypatch.setattr(readers, "BLOCK", 4096)
    results = {}
    for ahead in (1, 3):  # 1: each block parsed before the next is read
        monkeypatch.setattr(readers, "JSONL_AHEAD", ahead)
        inp = readers.discover([str(path)], [], [], "auto")[0]
        _, stream = readers.open_stream(inp)
        keys: list[int] = []
        try:
            for block in readers.read_blocks(inp, ReadOptions(), stream, on_error):
                keys += block.keys.tolist()
            error = ""
        except readers.AunetError as exc:
            error = str(exc)
        finally:
            stream.close()
        results[ahead] = (keys, error)
    assert results[3] == results[1]
    keys, error = results[1]
    if on_error == "fail":
        assert f"line {bad_at + 1}" in error
    else:
        assert "truncated" in error and keys[-1] > bad_at + 1
