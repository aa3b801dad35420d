"""Find input files and stream documents out of them with bounded memory.

Every reader yields `Record`s in a fixed order, so the same inputs always give the
same documents, ids and chunk boundaries (what makes prep resumable and the
output independent of the number of workers).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import fnmatch
import hashlib
import io
import json
import os
import queue
import re
import stat
import sys
import threading
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
import zstandard

from .builtin_data import BUILTIN_INPUTS, pydoc_topics
from .errors import AunetError, BadInputError

try:  # the document cutting of _txt in C (see splitters/_fast.c)
    from splitters._fast import cut as _c_cut
    from splitters._fast import gather as _c_gather
except ImportError:  # built without a compiler
    _c_cut = _c_gather = None

BLOCK = 1 << 22
TEXT_FORMATS = ("txt", "jsonl", "parquet")
_PARAGRAPH_BREAK = re.compile(rb"\r?\n(?:[ \t\f\v\r]*\n)+")
_LINE_BREAK = re.compile(rb"\r?\n")


@dataclass(frozen=True)
class ReadOptions:
    doc_per: str = "paragraph"  # txt: file | paragraph | line
    field: str = "text"  # jsonl field / parquet column
    input_format: str = "auto"  # auto | txt | jsonl | parquet
    max_doc_bytes: int = 64 << 20


@dataclass(frozen=True)
class InputFile:
    path: Path | None  # None = standard input
    name: str  # stable name used in document ids
    fmt: str
    compression: str | None  # None | "gz" | "zst"
    size: int
    mtime_ns: int
    builtin: bool = False  # embedded text (see builtin_data), not a file
    pipe: bool = False  # a named pipe or other non-regular file: readable once

    @property
    def streamed(self) -> bool:
        """Read once, as it comes (standard input, a pipe): its size is unknown until
        it ends, and an earlier run's reading of it cannot be checked."""
        return (self.path is None and not self.builtin) or self.pipe

    @property
    def display(self) -> str:
        if self.builtin:
            return f"@{self.name}"
        return "<stdin>" if self.path is None else str(self.path)


def discover(
    inputs: list[str],
    include: list[str],
    exclude: list[str],
    fmt: str,
    output: Path | None = None,
) -> list[InputFile]:
    """Expand arguments into input files (directories recursively, sorted).

    A directory scan leaves out hidden files and folders (.git, .state, ...) unless an
    --include glob names the hidden part (`_selected`), and anything inside `output`,
    the run's own output directory: a rerun must not read the first run's shards and
    state files."""
    if not inputs:
        raise AunetError("no inputs given (files, directories or - for standard input)")
    found: list[InputFile] = []
    for arg in inputs:
        if arg == "-":
            if fmt == "parquet":
                raise AunetError(
                    "standard input cannot be read as Parquet (it needs a file it can seek "
                    "in); save it to a file and pass that"
                )
            found.append(InputFile(None, "stdin", "txt" if fmt == "auto" else fmt, None, 0, 0))
            continue
        if arg in BUILTIN_INPUTS:
            found.append(
                InputFile(None, arg[1:], "txt", None, len(pydoc_topics()), 0, builtin=True)
            )
            continue
        path = Path(arg)
        if not path.exists():
            raise AunetError(f"{arg}: no such file or directory")
        if path.is_dir():
            if (path / ".state" / "prep.json").is_file():
                raise AunetError(
                    f"{arg}: holds the output of `aunet prep` (shards), not raw text; "
                    "`aunet train` takes it as data.prepared"
                )
            files = sorted(p for p in path.rglob("*") if p.is_file())
            inside = _inside(output, path)
            if inside == ():
                raise AunetError(f"{arg}: is the --out directory itself; inputs are read elsewhere")
            picked = [
                p
                for p in files
                if _selected(p.relative_to(path), include, exclude, fmt)
                and (inside is None or p.relative_to(path).parts[: len(inside)] != inside)
            ]
            if not picked:
                raise AunetError(f"{arg}: directory holds no input files matching the filters")
            name = Path(os.path.abspath(path)).name  # "." and ".." by their names
            prefix = f"{name}/" if name else ""
            found.extend(_input(p, prefix + p.relative_to(path).as_posix(), fmt) for p in picked)
        else:
            found.append(_input(path, path.name, fmt))
    seen: dict[tuple[int, int], InputFile] = {}
    for f in found:
        if f.path is None:
            continue
        st = f.path.stat()
        first = seen.setdefault((st.st_dev, st.st_ino), f)
        if first is not f:
            raise AunetError(
                f"inputs {first.name!r} and {f.name!r} are the same file ({f.display}); its "
                "documents would be in the data twice (leave one out)"
            )
    names = [f.name for f in found]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise AunetError(
            f"two inputs share the name {sorted(dupes)[0]!r}; document ids would clash"
        )
    return found


def _inside(output: Path | None, folder: Path) -> tuple[str, ...] | None:
    """Where `output` lies in `folder` (path parts), or None if it does not."""
    if output is None:
        return None
    try:
        return output.resolve().relative_to(folder.resolve()).parts
    except ValueError:
        return None


def _selected(rel: Path, include: list[str], exclude: list[str], fmt: str) -> bool:
    """Whether a file found in a scanned directory is an input. A hidden one (in .git,
    .venv, ...) only if an --include glob that itself names a hidden part takes it:
    `*.txt` must not take .venv's LICENSE.txt."""
    if any(_matches(rel, g) for g in exclude):
        return False
    hidden = any(part.startswith(".") for part in rel.parts)
    if include:
        return any(_matches(rel, g) and (not hidden or _names_hidden(g)) for g in include)
    return not hidden and (fmt != "auto" or _format_of(rel.name) is not None)


def _names_hidden(glob: str) -> bool:
    return any(part.startswith(".") for part in glob.split("/"))


def _matches(rel: Path, glob: str) -> bool:
    """A glob against a path inside a scanned directory, or its file name; a leading
    `**/` also matches at the top (`**/*.txt` takes a.txt)."""
    s = rel.as_posix()
    globs = [glob, glob[3:]] if glob.startswith("**/") else [glob]
    return any(fnmatch.fnmatch(s, g) or fnmatch.fnmatch(rel.name, g) for g in globs)


def _format_of(name: str) -> tuple[str, str | None] | None:
    lower = name.lower()
    compression = None
    for ext, comp in ((".gz", "gz"), (".zst", "zst"), (".zstd", "zst")):
        if lower.endswith(ext):
            lower, compression = lower[: -len(ext)], comp
            break
    if lower.endswith((".jsonl", ".ndjson")):  # not .json: often one JSON document
        return "jsonl", compression
    if lower.endswith(".parquet") and compression is None:
        return "parquet", None
    if lower.endswith((".txt", ".text", ".md", ".rst", ".raw")):
        return "txt", compression
    if compression is not None:  # DCLM ships *.zst holding JSON lines
        return "jsonl", compression
    return None


def _input(path: Path, name: str, fmt: str) -> InputFile:
    guess = _format_of(path.name)
    if fmt == "auto":
        if guess is None:
            raise AunetError(
                f"{path}: cannot tell the format from the name; pass --input-format "
                "txt|jsonl|parquet"
            )
        fmt_, comp = guess
    else:
        fmt_, comp = fmt, guess[1] if guess else None
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a pipe: opening it here would lose its data
            if not os.access(path, os.R_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            return InputFile(path, name, fmt_, comp, 0, 0, pipe=True)
        with path.open("rb"):
            pass
    except OSError as exc:
        raise AunetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return InputFile(path, name, fmt_, comp, st.st_size, st.st_mtime_ns)


class Tap(io.RawIOBase):
    """Counts the raw bytes of an input as they are read and hashes them (sha256).

    Hashing runs on a helper thread (hashlib releases the GIL), overlapping the
    splitting instead of adding to it.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.position = 0
        self._sha256 = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._hash, daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._sha256.update(chunk)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = self.raw.readinto(buffer)
        if n:
            self._queue.put(bytes(memoryview(buffer)[:n]))  # the caller may reuse `buffer`
            self.position += n
        return n or 0

    def read_after(self, head: bytes, n: int) -> memoryview:
        """`head`, then up to `n` bytes read next, in a new buffer that nothing writes to
        again: the hashing thread reads the new bytes there, without a copy of them."""
        buf = bytearray(len(head) + n)
        buf[: len(head)] = head
        view = memoryview(buf)
        got = self.raw.readinto(view[len(head) :]) or 0
        if got:
            self._queue.put(view[len(head) : len(head) + got])
            self.position += got
        return view[: len(head) + got]

    def sha256(self) -> str:
        """The hex digest of everything read (call once, after the last read)."""
        self._queue.put(None)
        self._thread.join()
        return self._sha256.hexdigest()


class TruncatedStreamError(Exception):
    pass


class _Decompressing(io.RawIOBase):
    """Decompress gzip/zstd (multi-member) and fail loudly if the stream is cut short."""

    def __init__(self, raw: BinaryIO, new: Callable[[], object]) -> None:
        self.raw, self.new = raw, new
        self.dec = new()
        self.out = b""
        self.started = False
        self.consumed = 0  # compressed bytes read so far

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self.out:
            chunk = self.raw.read(1 << 20)
            if not chunk:
                if self.consumed == 0:  # gzip and zstd streams have a header, at least
                    raise TruncatedStreamError(
                        "compressed file is empty (0 bytes; truncated or never written)"
                    )
                if self.started and not self.dec.eof:
                    raise TruncatedStreamError(
                        f"compressed stream ends early at byte {self.consumed} "
                        "(truncated file?); documents before it were read"
                    )
                return 0
            self.consumed += len(chunk)
            self.started = True
            while chunk:
                self.out += self.dec.decompress(chunk)
                chunk = b""
                if self.dec.eof:
                    chunk = self.dec.unused_data
                    self.dec = self.new()
                    self.started = bool(chunk)
        n = min(len(buffer), len(self.out))
        buffer[:n] = self.out[:n]
        self.out = self.out[n:]
        return n


def open_stream(inp: InputFile) -> tuple[Tap, BinaryIO]:
    """(tap on the raw bytes, buffered decompressed stream)."""
    if inp.builtin:
        raw: BinaryIO = io.BytesIO(pydoc_topics())
    else:
        raw = sys.stdin.buffer if inp.path is None else inp.path.open("rb")
    tap = Tap(raw)
    stream: io.RawIOBase = tap
    if inp.compression == "gz":
        stream = _Decompressing(io.BufferedReader(tap, BLOCK), lambda: zlib.decompressobj(31))
    elif inp.compression == "zst":
        stream = _Decompressing(
            io.BufferedReader(tap, BLOCK), lambda: zstandard.ZstdDecompressor().decompressobj()
        )
    return tap, io.BufferedReader(stream, BLOCK)


def _raw_bytes(err: UnicodeError) -> tuple[bytes, int]:
    """Encode error handler: escaped raw bytes (U+DC80..U+DCFF) become those bytes again;
    other lone surrogates (e.g. a JSON \\ud800) keep their 3-byte form."""
    chars = err.object[err.start : err.end]  # type: ignore[attr-defined]
    out = bytearray()
    for ch in chars:
        cp = ord(ch)
        out += (
            bytes([cp - 0xDC00]) if 0xDC80 <= cp <= 0xDCFF else ch.encode("utf-8", "surrogatepass")
        )
    return bytes(out), err.end  # type: ignore[attr-defined]


codecs.register_error("aunet-raw", _raw_bytes)


def to_bytes(text: str) -> bytes:
    """Text read from JSON / Parquet back to the exact bytes (see `_raw_bytes`)."""
    return text.encode("utf-8", "aunet-raw")


@dataclass
class DocBatch:
    """Consecutive documents of one input: ids are f"{input name}#{key}"."""

    keys: list[int]
    docs: list[bytes]
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, key: int, data: bytes) -> None:
        """A document, unless it is empty (then it is counted as skipped)."""
        if data:
            self.keys.append(key)
            self.docs.append(data)
        else:
            self.skipped["empty document"] += 1


@dataclass
class DocBlock:
    """Consecutive documents of one input, joined: document i is
    data[offsets[i]:offsets[i + 1]] with record number keys[i] (no per-document objects)."""

    data: bytes | memoryview  # a memoryview for a slice (see `slice`)
    offsets: np.ndarray  # int64, len n + 1, offsets[0] == 0
    keys: np.ndarray  # int64 record numbers
    skipped: Counter[str] = field(default_factory=Counter)

    @classmethod
    def from_batch(cls, batch: DocBatch) -> DocBlock:
        offsets = np.zeros(len(batch.docs) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, batch.docs), np.int64, len(batch.docs)), out=offsets[1:])
        keys = np.asarray(batch.keys, dtype=np.int64)
        return cls(b"".join(batch.docs), offsets, keys, batch.skipped)

    @property
    def n_docs(self) -> int:
        return len(self.keys)

    @property
    def n_bytes(self) -> int:
        return int(self.offsets[-1])

    def slice(self, lo: int, hi: int) -> DocBlock:
        """Documents lo..hi-1 (skipped counts stay with the caller); the text is a view,
        not a copy: the reader cuts blocks into chunks, and the chunk's worker joins them."""
        a, b = int(self.offsets[lo]), int(self.offsets[hi])
        view = memoryview(self.data)[a:b]
        return DocBlock(view, self.offsets[lo : hi + 1] - a, self.keys[lo:hi])

    def as_bytes(self) -> DocBlock:
        """The same documents, their text as bytes (a copy if it was a view)."""
        if isinstance(self.data, bytes):
            return self
        return DocBlock(bytes(self.data), self.offsets, self.keys, self.skipped)

    def select(self, mask: np.ndarray) -> DocBlock:
        """The documents where mask is True."""
        if mask.all():
            return DocBlock(self.data, self.offsets, self.keys)
        if _c_gather is not None:
            return DocBlock.gather([self], mask)
        lengths = np.diff(self.offsets)
        u8 = np.frombuffer(self.data, np.uint8)
        data = u8[np.repeat(mask, lengths)].tobytes()
        offsets = np.zeros(int(mask.sum()) + 1, dtype=np.int64)
        np.cumsum(lengths[mask], out=offsets[1:])
        return DocBlock(data, offsets, self.keys[mask])

    @staticmethod
    def all_keys(blocks: list[DocBlock]) -> np.ndarray:
        """The record numbers of the documents of `blocks`, in order."""
        return np.concatenate([b.keys for b in blocks]) if blocks else np.zeros(0, np.int64)

    @classmethod
    def gather(cls, blocks: list[DocBlock], mask: np.ndarray) -> DocBlock:
        """One block of the documents of `blocks` where mask (one entry per document of
        all blocks, in order) is True, its text as bytes: `join` then `select`, with
        one copy of the text instead of two."""
        if _c_gather is None:
            return cls.join(blocks).select(mask)
        mask = np.ascontiguousarray(mask, dtype=np.uint8)
        data, offsets = _c_gather([(b.data, b.offsets) for b in blocks], mask)
        return cls(data, np.frombuffer(offsets, np.int64), cls.all_keys(blocks)[mask != 0])

    @classmethod
    def join(cls, blocks: list[DocBlock]) -> DocBlock:
        """One block of all their documents, its text as bytes."""
        if len(blocks) == 1:
            return blocks[0].as_bytes()
        data = b"".join(b.data for b in blocks)
        offsets = np.zeros(sum(b.n_docs for b in blocks) + 1, dtype=np.int64)
        at, base = 1, 0
        for b in blocks:
            offsets[at : at + b.n_docs] = b.offsets[1:] + base
            at += b.n_docs
            base += b.n_bytes
        return cls(data, offsets, cls.all_keys(blocks))


class BadRecords:
    """Applies --on-error: raise for a bad record, or count it as skipped."""

    def __init__(self, inp: InputFile, on_error: str) -> None:
        self.inp, self.on_error = inp, on_error

    def __call__(self, batch: DocBatch, reason: str, where: str, detail: str = "") -> None:
        if self.on_error == "fail":
            raise BadInputError(
                f"{self.inp.display} {where}: {reason}{detail} "
                "(fix the record, or pass --on-error skip to count and skip it)"
            )
        batch.skipped[reason] += 1


@contextlib.contextmanager
def _stream_errors(inp: InputFile) -> Iterator[None]:
    """Read failures and corrupt or truncated streams as one line naming the input."""
    try:
        yield
    except TruncatedStreamError as exc:
        raise BadInputError(f"{inp.display}: {exc}") from None
    except zstandard.ZstdError as exc:
        raise BadInputError(f"{inp.display}: corrupt zstd stream ({exc})") from None
    except zlib.error as exc:
        raise BadInputError(f"{inp.display}: corrupt gzip stream ({exc})") from None
    except OSError as exc:
        raise AunetError(f"{inp.display}: read failed ({exc})") from None


def read_batches(
    inp: InputFile, opts: ReadOptions, stream: BinaryIO, on_error: str = "fail"
) -> Iterator[DocBatch]:
    """Documents of one input in order, in batches; corrupt streams raise BadInputError."""
    bad = BadRecords(inp, on_error)
    with _stream_errors(inp):
        if inp.fmt == "txt":
            yield from (
                _txt_file(inp, opts, stream) if opts.doc_per == "file" else _txt(opts, stream)
            )
        elif inp.fmt == "jsonl":
            _skip_bom(stream)
            yield from _jsonl(opts, stream, bad)
        elif inp.fmt == "parquet":
            yield from _parquet(inp, opts, bad)
        else:
            raise AunetError(f"{inp.display}: unknown input format {inp.fmt!r}")


def read_blocks(
    inp: InputFile, opts: ReadOptions, stream: BinaryIO, on_error: str = "fail"
) -> Iterator[DocBlock]:
    """`read_batches` as joined blocks: the same documents, keys and skip counts;
    plain text is cut in C without a bytes object per document."""
    if inp.fmt == "txt" and opts.doc_per != "file" and _c_cut is not None:
        with _stream_errors(inp):
            yield from _txt_blocks(opts, stream)
        return
    if inp.fmt == "jsonl":
        with _stream_errors(inp):
            _skip_bom(stream)
            yield from _jsonl_blocks(opts, stream, BadRecords(inp, on_error))
        return
    for batch in read_batches(inp, opts, stream, on_error):
        yield DocBlock.from_batch(batch)


def _skip_bom(stream: BinaryIO) -> None:
    """A byte order mark before the first JSON line (written by some Windows tools) is
    not part of any record: skip it."""
    peek = getattr(stream, "peek", None)
    if peek is not None and peek(3)[:3] == b"\xef\xbb\xbf":
        stream.read(3)


def _txt_blocks(opts: ReadOptions, stream: BinaryIO) -> Iterator[DocBlock]:
    """What `_txt` yields, cut by `_c_cut` (same pieces, record numbers, skip counts).

    An uncompressed input not read from yet is read straight from its Tap, into one
    new buffer per block after the carried-over text: no copy for the hash and none to
    join the carry (50 MB of paragraphs: 78 ms of CPU instead of 93, 2 cores)."""
    assert _c_cut is not None
    paragraphs = opts.doc_per == "paragraph"
    tap = getattr(stream, "raw", None)
    if isinstance(tap, Tap) and tap.position == 0:  # nothing sits in `stream`'s buffer
        read_after = tap.read_after
    else:
        read_after = partial(_read_after, stream)
    carry = b""
    k = 0  # record number of the last piece
    while True:
        buf = read_after(carry, BLOCK)
        final = len(buf) == len(carry)  # nothing more to read
        data, offsets, keys, records, empty, at = _c_cut(buf, paragraphs, final)
        carry = bytes(buf[at:])
        skipped: Counter[str] = Counter()
        if empty:
            skipped["empty document"] = empty
        yield DocBlock(
            data, np.frombuffer(offsets, np.int64), np.frombuffer(keys, np.int64) + k, skipped
        )
        k += records
        if final:
            return


def _read_after(stream: BinaryIO, head: bytes, n: int) -> bytes:
    """`head`, then up to `n` bytes read next from `stream`."""
    block = stream.read(n)
    return head + block if head else block


_CRLF_PARAGRAPH_BREAK = re.compile(rb"\n\r?\n")


def _txt(opts: ReadOptions, stream: BinaryIO) -> Iterator[DocBatch]:
    """Paragraphs (separated by empty lines) or lines, block by block."""
    paragraphs = opts.doc_per == "paragraph"
    carry = b""
    k = 0  # record number of the last piece
    while True:
        block = stream.read(BLOCK)
        buf = carry + block
        crlf = b"\r" in buf
        if not block:  # end of input: what is left is the last document, if any
            pieces = [buf] if buf else []
        elif paragraphs:
            pieces = _CRLF_PARAGRAPH_BREAK.split(buf) if crlf else buf.split(b"\n\n")
        else:
            pieces = buf.split(b"\n")
        carry = pieces.pop() if block else b""
        skipped: Counter[str] = Counter()
        if paragraphs and (crlf or not block or b"\n\n\n" in buf or buf.startswith(b"\n")):
            # blank lines separate paragraphs and are not documents themselves
            pieces = [p for p in (p.strip(b"\r\n") for p in pieces) if p]
        elif paragraphs and b"" in pieces:
            pieces = [p for p in pieces if p]
        elif crlf:
            pieces = [p[:-1] if p.endswith(b"\r") else p for p in pieces]
        if b"" in pieces:  # empty lines
            skipped["empty document"] = pieces.count(b"")
            keys = [k + 1 + i for i, p in enumerate(pieces) if p]
            k += len(pieces)
            pieces = [p for p in pieces if p]
        else:
            keys = list(range(k + 1, k + 1 + len(pieces)))
            k += len(pieces)
        yield DocBatch(keys, pieces, skipped)
        if not block:
            return


def _txt_file(inp: InputFile, opts: ReadOptions, stream: BinaryIO) -> Iterator[DocBatch]:
    """The whole file as one document, cut at line ends beyond --max-doc-bytes (within
    a line without end: at a character boundary)."""
    part = 0
    buf = bytearray()
    while True:
        block = stream.read(BLOCK)
        buf += block
        while len(buf) > opts.max_doc_bytes:
            cut = buf.rfind(b"\n", 0, opts.max_doc_bytes) + 1 or _char_start(
                buf, opts.max_doc_bytes
            )
            yield DocBatch([part], [bytes(buf[:cut])])
            del buf[:cut]
            part += 1
        if not block:
            if buf:
                yield DocBatch([part], [bytes(buf)])
            elif part == 0:
                yield DocBatch([], [], Counter({"empty document": 1}))
            return


def _char_start(buf: bytearray, at: int) -> int:
    """`at`, moved back to the start of the UTF-8 character it falls in (bytes that are
    not UTF-8 are cut where they are)."""
    back = at
    while back > max(at - 3, 1) and 0x80 <= buf[back] < 0xC0:
        back -= 1
    return back if buf[back] >= 0xC0 or buf[back] < 0x80 else at


JSONL_BATCH = 8192
JSON_PARSE_BLOCK = 1 << 20
JSONL_AHEAD = 3  # blocks of JSON lines parsed at once (`_jsonl_blocks`)


def _jsonl(
    opts: ReadOptions, stream: BinaryIO, bad: BadRecords, first_line: int = 1
) -> Iterator[DocBatch]:
    batch = DocBatch([], [])
    field_ = opts.field
    for lineno, line in enumerate(stream, first_line):
        if len(batch.keys) >= JSONL_BATCH:
            yield batch
            batch = DocBatch([], [])
        where = f"line {lineno}"
        if not line.strip():
            batch.skipped["blank line"] += 1
            continue
        try:
            obj = json.loads(line.decode("utf-8", "surrogateescape"))
        except RecursionError:  # valid JSON nested past Python's limit: as the Arrow path
            deep = _arrow_jsonl(line.rstrip(b"\n"), 1, field_)
            if deep is None:
                bad(batch, "invalid JSON", where)
            else:
                batch.add(lineno, deep[0])
            continue
        except json.JSONDecodeError as exc:
            bad(batch, "invalid JSON", where, f" ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(obj, dict):
            bad(batch, "not a JSON object", where)
            continue
        if field_ not in obj:
            bad(batch, f"missing field {field_!r}", where)
            continue
        value = obj[field_]
        if not isinstance(value, str):
            bad(batch, f"field {field_!r} is {type(value).__name__}, expected a string", where)
            continue
        batch.add(lineno, to_bytes(value))
    yield batch


def _jsonl_blocks(opts: ReadOptions, stream: BinaryIO, bad: BadRecords) -> Iterator[DocBlock]:
    """What `_jsonl` yields, as blocks: a block of whole lines is parsed by Arrow's JSON
    reader (C++, without the GIL, about 3x json.loads per line), and by `_jsonl` where
    Arrow might not give the same answer (see `_arrow_jsonl`).

    Arrow parses up to JSONL_AHEAD blocks at once, on threads of their own, while
    this thread reads on: one block's parse ran only 4 pieces in parallel, which held
    a whole prep to ~150 MB/s on 16 cores. Blocks are yielded, and read line by line
    when Arrow cannot take them, in input order, so records and errors come as before.
    """
    ahead: deque[tuple[int, int, bytes, Future]] = deque()

    def finish(line: int, n_lines: int, body: bytes, parse: Future) -> Iterator[DocBlock]:
        fast = parse.result()
        if fast is not None:
            data, offsets = fast
            yield DocBlock(data, offsets, np.arange(line, line + n_lines, dtype=np.int64))
        else:
            for batch in _jsonl(opts, io.BytesIO(body), bad, line):
                yield DocBlock.from_batch(batch)

    blocks = _line_blocks(stream)
    with ThreadPoolExecutor(JSONL_AHEAD, thread_name_prefix="aunet-json") as parser:
        try:
            while True:
                try:
                    line, n_lines, body = next(blocks)
                except StopIteration:
                    break
                except Exception:  # a corrupt or truncated stream: the lines read
                    while ahead:  # before it come first, with their records' errors
                        yield from finish(*ahead.popleft())
                    raise
                parse = parser.submit(_arrow_jsonl, body, n_lines, opts.field)
                ahead.append((line, n_lines, body, parse))
                if len(ahead) >= JSONL_AHEAD:
                    yield from finish(*ahead.popleft())
            while ahead:
                yield from finish(*ahead.popleft())
        finally:  # stopped early (an error, a closed generator): drop what is queued
            for *_, parse in ahead:
                parse.cancel()


def _line_blocks(stream: BinaryIO) -> Iterator[tuple[int, int, bytes]]:
    """(number of the first line, number of lines, whole lines) per read of the stream;
    a line longer than a read is carried on, and joined once it ends."""
    carry: list[bytes] = []  # the start of a line that goes on in the next read
    line = 1  # number of the block's first line
    while True:
        block = stream.read(BLOCK)
        end = block.rfind(b"\n") + 1  # 0 at the end of the input
        if block and not end:  # no line ends in this read: keep it (linear in the line)
            carry.append(block)
            continue
        body = b"".join([*carry, block[:end]]) if carry else block[:end]
        carry = [block[end:]] if end < len(block) else []
        if body:
            n_lines = body.count(b"\n") + (not body.endswith(b"\n"))
            yield line, n_lines, body
            line += n_lines
        if not block:
            return


def _one_object_per_line(lines: bytes) -> bool:
    """Every line starts with { and ends with } (or }\\r): then no JSON object spans
    two lines (a newline inside an object is followed by , } ] or a value, and a bare
    value such as null, which Arrow 26 crashes on, starts no line). Blank lines and
    byte order marks fail too: Arrow skips those, `_jsonl` counts or refuses them."""
    if not lines.startswith(b"{") or not lines.endswith((b"}", b"}\r")):
        return False
    u8 = np.frombuffer(lines, np.uint8)
    ends = np.flatnonzero(u8 == ord("\n"))  # never first or last: those are { and }
    before = u8[ends - 1]
    return bool(
        (u8[ends + 1] == ord("{")).all()
        and ((before == ord("}")) | ((before == ord("\r")) & (u8[ends - 2] == ord("}")))).all()
    )


def _number_words(body: bytes) -> bool:
    """Whether a line may hold an unquoted NaN or Inf that json.loads refuses (Arrow
    also takes Inf, -NaN and others). Lines where one may stand (after : , or [, so
    also text such as "ratio: NaN" inside a string) are checked with json.loads."""
    checked = set()
    for word in (b"Inf", b"NaN"):
        at = body.find(word)
        while at >= 0:
            before = body[max(at - 16, 0) : at].rstrip(b" \t\r+-")
            start = body.rfind(b"\n", 0, at) + 1
            if before.endswith((b":", b",", b"[")) and start not in checked:
                checked.add(start)
                end = body.find(b"\n", at)
                line = body[start : end if end >= 0 else len(body)]
                try:
                    json.loads(line.decode("utf-8", "surrogateescape"))
                except (ValueError, RecursionError):
                    return True
            at = body.find(word, at + len(word))
    return False


def _arrow_jsonl(body: bytes, n_lines: int, field_: str) -> tuple[bytes, np.ndarray] | None:
    """(documents joined, int64 offsets): one per line, each a non-empty string field;
    None when a line might be otherwise (the caller then reads the block line by line):
    a bad record, an empty document, a blank line, a lone surrogate escape, an object
    that spans lines or shares one (the row count differs), NaN or Inf."""
    import pyarrow as pa
    import pyarrow.json as pa_json

    lines = body[:-1] if body.endswith(b"\n") else body
    if not _one_object_per_line(lines) or _number_words(lines):
        return None
    schema = pa.schema([(field_, pa.string())])
    # 1 MB blocks parse in parallel on Arrow's threads; a line longer than a block
    # straddles two and fails there, so a failed block is tried again whole
    for block_size in dict.fromkeys((min(JSON_PARSE_BLOCK, len(body) + 1), len(body) + 1)):
        try:
            table = pa_json.read_json(
                pa.BufferReader(body),
                read_options=pa_json.ReadOptions(block_size=block_size),
                parse_options=pa_json.ParseOptions(
                    explicit_schema=schema, unexpected_field_behavior="ignore"
                ),
            )
            column = table.column(field_).combine_chunks()
            break
        except pa.ArrowException:
            continue
    else:
        return None
    if table.num_rows != n_lines or column.null_count:
        return None
    _, offsets_buf, data_buf = column.buffers()
    offsets = np.frombuffer(offsets_buf, np.int32)[column.offset : column.offset + n_lines + 1]
    if not (np.diff(offsets) > 0).all():  # an empty document: `_jsonl` counts it
        return None
    data = data_buf.slice(int(offsets[0]), int(offsets[-1] - offsets[0])).to_pybytes()
    return data, offsets.astype(np.int64) - offsets[0]


def _parquet(inp: InputFile, opts: ReadOptions, bad: BadRecords) -> Iterator[DocBatch]:
    import pyarrow.parquet as pq

    assert inp.path is not None
    try:
        pf = pq.ParquetFile(inp.path)
    except Exception as exc:
        raise BadInputError(f"{inp.display}: not a readable Parquet file ({exc})") from None
    if opts.field not in pf.schema_arrow.names:
        cols = ", ".join(pf.schema_arrow.names)
        raise AunetError(f"{inp.display}: no column {opts.field!r} (columns: {cols}); use --field")
    column_type = pf.schema_arrow.field(opts.field).type
    if not _is_text_type(column_type):
        raise AunetError(
            f"{inp.display}: column {opts.field!r} holds {column_type}, not text (string or "
            "binary); name the text column with --field"
        )
    row = 0
    for record_batch in pf.iter_batches(batch_size=8192, columns=[opts.field]):
        batch = DocBatch([], [])
        for value in record_batch.column(0).to_pylist():
            row += 1
            if value is None:
                bad(batch, "null text", f"row {row}")
                continue
            batch.add(row, to_bytes(value) if isinstance(value, str) else bytes(value))
        yield batch


def _is_text_type(t) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return any(
        check(t)
        for check in (
            pa.types.is_string,
            pa.types.is_large_string,
            pa.types.is_binary,
            pa.types.is_large_binary,
            pa.types.is_fixed_size_binary,
            getattr(pa.types, "is_string_view", lambda _: False),
            getattr(pa.types, "is_binary_view", lambda _: False),
        )
    )


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(BLOCK):
            h.update(chunk)
    return h.hexdigest()
