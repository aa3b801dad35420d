"""Chunks travel to `aunet prep`'s worker processes through shared memory (slots.py).

* a forked process reads what the parent put into a slot, and the parent reads what
  the child wrote back: the mapping is shared, not copied at fork;
* `_ship` / `_unship` give back the same chunk; a chunk too large for a slot travels
  pickled, unchanged;
* workers are threads for the C regex stages and processes for the others;
* end to end, with --workers 2 and a splitter that keeps the GIL (worker
  processes): a document larger than a slot (the pickled path) beside ordinary
  chunks (the slot path) gives the same shards as --workers 1.
"""

from __future__ import annotations

import json
import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest

from aunet_cli import prep as prep_mod
from aunet_cli.prep import Chunk, _ship, _unship, releases_gil
from aunet_cli.readers import DocBatch, DocBlock
from aunet_cli.slots import Slots
from splitters import Pipeline

from .test_prep_cli import aunet


def _child_reads_and_writes(slots: Slots, slot: int, result) -> None:
    got = slots.get(slot, [5, 3])
    slots._maps[slot][0:4] = b"back"  # what the parent must see
    result.put(got)


def test_a_forked_process_shares_the_slots():
    slots = Slots(2, 64)
    try:
        slot = slots.put([b"hello", b"abc"])
        assert slot is not None
        ctx = multiprocessing.get_context("fork")
        result = ctx.Queue()
        child = ctx.Process(target=_child_reads_and_writes, args=(slots, slot, result))
        child.start()
        assert result.get(timeout=30) == [b"hello", b"abc"]
        child.join(30)
        assert child.exitcode == 0
        assert slots.get(slot, [4]) == [b"back"]
    finally:
        slots.close()


def test_slots_run_out_and_refuse_what_does_not_fit():
    slots = Slots(1, 8)
    try:
        assert slots.put([b"123456789"]) is None  # 9 bytes > 8
        first = slots.put([b"1234", b"5678"])
        assert first == 0
        assert slots.put([b"x"]) is None  # none free
        slots.release(first)
        assert slots.put([b"x"]) == 0
    finally:
        slots.close()


def _chunk(docs: list[bytes], val_fraction: float = 0.4) -> Chunk:
    """A chunk of two blocks, the second a view into a larger one (as the reader cuts)."""
    whole = DocBlock.from_batch(DocBatch(list(range(1, len(docs) + 2)), [*docs, b"next"]))
    first = DocBlock.from_batch(DocBatch([0], [b"head \xff"]))
    return Chunk(3, "in.txt", 7, [first, whole.slice(0, len(docs))], val_fraction,
                 {"empty document": 2}, 123, 456)  # fmt: skip


def test_ship_and_unship_give_back_the_chunk(monkeypatch):
    slots = Slots(2, 1 << 10)
    monkeypatch.setattr(prep_mod, "_slots", slots)
    try:
        docs = [b"ab", b"c\xff\x00d", b"e", b"\xe4\xb8\xad", b"f", *[b"g%d" % i for i in range(30)]]
        chunk = _chunk(docs)
        want = chunk.parts()
        assert set(want) == {"train", "val"}  # both splits are exercised
        shipped = _ship(chunk, slots)
        assert shipped.slot is not None
        assert all(b.data == b"" for b in shipped.blocks)
        back = _unship(shipped)
        assert back.slot is None and back.key == chunk.key and back.skipped == chunk.skipped
        got = back.parts()
        assert set(got) == set(want)
        for split, (keys, batch) in want.items():
            got_keys, got_batch = got[split]
            assert bytes(got_batch.data) == bytes(batch.data)
            assert np.array_equal(got_batch.offsets, batch.offsets)
            assert np.array_equal(got_keys, keys)

        big = _chunk([b"x" * 2000])
        pickled = _ship(big, slots)  # too large for a slot: one bytes object, picklable
        assert pickled.slot is None and len(pickled.blocks) == 1
        assert isinstance(pickled.blocks[0].data, bytes)
        assert pickle.loads(pickle.dumps(pickled)).parts()["train"][1].data == (
            big.parts()["train"][1].data
        )
    finally:
        slots.close()


def shard_files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and ".state" not in p.parts
    }


def test_threads_for_the_c_regex_scan_processes_for_the_rest():
    pytest.importorskip("splitters._fast")
    assert releases_gil(Pipeline.from_specs(["regex-words", "regex-word-pairs"]))
    assert releases_gil(Pipeline.from_specs(["regex-words:mode=official"]))
    assert not releases_gil(Pipeline.from_specs(["utf8-chars"]))
    assert not releases_gil(Pipeline.from_specs(["utf8-chars", "regex-words"]))


@pytest.mark.parametrize("val", ["0", "0.2"])
def test_worker_processes_with_a_document_larger_than_a_slot(tmp_path, val):
    """utf8-chars keeps the GIL, so --workers 2 forks worker processes. --shard-size
    100KB: slots of 100 KB + 1 MB; one 1.5 MB paragraph must go pickled."""
    rng = np.random.default_rng(0)
    words = [b"alpha", b"beta", b"\xe4\xb8\xad\xe6\x96\x87", b"x\xffy", b"gamma,"]
    paras = [b" ".join(rng.choice(words, 40)) for _ in range(3000)]
    paras.insert(1500, b" ".join(rng.choice(words, 250_000)))  # ~1.5 MB
    (tmp_path / "in.txt").write_bytes(b"\n\n".join(paras) + b"\n")
    outs = {}
    for workers in ("1", "2"):
        out = f"w{workers}"
        res = aunet(
            "prep", "in.txt", "-s", "utf8-chars", "--out", out, "-q", "--workers", workers,
            "--shard-size", "100KB", "--val-fraction", val, cwd=tmp_path,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        outs[workers] = shard_files(tmp_path / out)
    shards = json.loads(outs["1"]["manifest.json"])["shards"]
    assert len(shards) >= 5
    assert max(s["bytes"] for s in shards) > (100 << 10) + (1 << 20)  # did not fit a slot
    assert outs["1"] == outs["2"]
