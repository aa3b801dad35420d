"""The training byte stream built from prep shards (aunet_cli/data.py): what it holds,
and a write the system refuses while building it."""

from __future__ import annotations

import json
import resource
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from aunet_cli.atomic import replacing
from aunet_cli.data import _append, build_stream
from aunet_cli.errors import BadInputError, OutputWriteError

from .test_prep_cli import prep, read_split, write


@contextmanager
def file_size_limit(n_bytes: int) -> Iterator[None]:
    """This process may not write files past n_bytes (as a full disk refuses writes);
    Python ignores SIGXFSZ, so a write past it fails with EFBIG."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.fixture(scope="module")
def prepped(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    paragraphs = [f"Paragraph {i}: the quick brown fox, number {i * 7}." for i in range(800)]
    write(root / "c.txt", "\n\n".join(paragraphs).encode())
    prep("c.txt", "--doc-per", "paragraph", "--val-fraction", "0.1", "--out", "p", cwd=root)
    return root / "p"


def test_the_stream_is_every_train_document_between_its_markers(prepped, tmp_path):
    tokens, levels = build_stream(prepped, "train", tmp_path / "cache")
    table = read_split(prepped, "train")
    meta = json.loads(next((tmp_path / "cache").glob("train-*/meta.json")).read_text())
    n_bytes = sum(len(t) for t in table["text"].to_pylist())
    assert meta["documents"] == table.num_rows and meta["bytes"] == n_bytes
    assert len(tokens) == len(levels) == meta["tokens"] == n_bytes + 2 * table.num_rows
    text = b"".join(table["text"].to_pylist())
    assert bytes(tokens[tokens < 256].astype(np.uint8)) == text


def test_a_refused_write_is_one_error_and_leaves_no_half_built_stream(prepped, tmp_path):
    """A 4 KiB file size limit (as a full disk would) while the ~40 KB stream is written:
    an OutputWriteError naming the file, no temporary file and no meta.json left, so
    the next build starts over and succeeds."""
    cache = tmp_path / "cache"
    refused = pytest.raises(OutputWriteError, match=r"(tokens\.u16|levels\.u8): File too large")
    with file_size_limit(4096), refused:
        build_stream(prepped, "train", cache)
    assert [p.name for p in cache.rglob("*") if p.is_file()] == []
    tokens, _ = build_stream(prepped, "train", cache)
    assert len(tokens) > 4096


def test_an_unreadable_shard_is_not_taken_for_a_refused_write(prepped, tmp_path):
    """A truncated shard: a bad-input error (exit 3) naming the split directory as
    unreadable, not the stream's files as unwritable; no temporary file is left."""
    broken = tmp_path / "p"
    shutil.copytree(prepped, broken)
    shard = sorted((broken / "train").glob("*.arrow"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    cache = tmp_path / "cache"
    with pytest.raises(BadInputError, match="cannot read its shards") as err:
        build_stream(broken, "train", cache)
    assert str(broken / "train") in str(err.value)
    assert [p.name for p in cache.rglob("*") if p.is_file()] == []


def test_a_refusal_of_the_last_buffered_bytes_is_not_lost(tmp_path):
    """Three 3000-byte appends under a 4 KiB file size limit: the refusal comes when the
    buffered tail is flushed at the end, and must still raise (ndarray.tofile dropped it
    and the file was renamed into place short)."""
    refused = pytest.raises(OutputWriteError, match="tokens.u16: File too large")
    with file_size_limit(4096), refused, replacing(tmp_path / "tokens.u16") as f:
        for _ in range(3):
            _append(f, np.zeros(1500, np.uint16))
    assert list(tmp_path.iterdir()) == []
