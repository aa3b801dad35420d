"""Find input files and stream documents out of them with bounded memory.

Every reader yields `Record`s in a fixed order, so the same inputs always give the
same documents, ids and chunk boundaries (what makes prep resumable and the
output independent of the number of workers).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import re
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from .builtin_data import BUILTIN_INPUTS, pydoc_topics
from .errors import AunetError, BadInputError

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

    @property
    def display(self) -> str:
        if self.builtin:
            return f"@{self.name}"
        return "<stdin>" if self.path is None else str(self.path)


@dataclass
class Record:
    """A document, or a skipped record with the reason and place."""

    doc_id: str
    data: bytes | None
    skip_reason: str | None = None
    where: str = ""


def discover(
    inputs: list[str], include: list[str], exclude: list[str], fmt: str
) -> list[InputFile]:
    """Expand arguments into input files (directories recursively, sorted)."""
    if not inputs:
        raise AunetError("no inputs given (files, directories or - for standard input)")
    found: list[InputFile] = []
    for arg in inputs:
        if arg == "-":
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
            files = sorted(p for p in path.rglob("*") if p.is_file())
            picked = [p for p in files if _selected(p.relative_to(path), include, exclude, fmt)]
            if not picked:
                raise AunetError(f"{arg}: directory holds no input files matching the filters")
            found.extend(
                _input(p, f"{path.name}/{p.relative_to(path).as_posix()}", fmt) for p in picked
            )
        else:
            found.append(_input(path, path.name, fmt))
    names = [f.name for f in found]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise AunetError(
            f"two inputs share the name {sorted(dupes)[0]!r}; document ids would clash"
        )
    return found


def _selected(rel: Path, include: list[str], exclude: list[str], fmt: str) -> bool:
    s = rel.as_posix()
    if any(fnmatch.fnmatch(s, g) or fnmatch.fnmatch(rel.name, g) for g in exclude):
        return False
    if include:
        return any(fnmatch.fnmatch(s, g) or fnmatch.fnmatch(rel.name, g) for g in include)
    return fmt != "auto" or _format_of(rel.name) is not None


def _format_of(name: str) -> tuple[str, str | None] | None:
    lower = name.lower()
    compression = None
    for ext, comp in ((".gz", "gz"), (".zst", "zst"), (".zstd", "zst")):
        if lower.endswith(ext):
            lower, compression = lower[: -len(ext)], comp
            break
    if lower.endswith((".jsonl", ".json", ".ndjson")):
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
        with path.open("rb"):
            pass
    except OSError as exc:
        raise AunetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return InputFile(path, name, fmt_, comp, st.st_size, st.st_mtime_ns)


class Tap(io.RawIOBase):
    """Counts and hashes the raw bytes of an input as they are read."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = self.raw.readinto(buffer)
        if n:
            self.sha256.update(memoryview(buffer)[:n])
            self.position += n
        return n or 0


class TruncatedStreamError(Exception):
    pass


class _Decompressing(io.RawIOBase):
    """Decompress gzip/zstd (multi-member) and fail loudly if the stream is cut short."""

    def __init__(self, raw: BinaryIO, new: Callable[[], object]) -> None:
        self.raw, self.new = raw, new
        self.dec = new()
        self.out = b""
        self.started = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self.out:
            chunk = self.raw.read(1 << 20)
            if not chunk:
                if self.started and not self.dec.eof:
                    raise TruncatedStreamError("compressed stream ends early (truncated file?)")
                return 0
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


def read_records(inp: InputFile, opts: ReadOptions, stream: BinaryIO) -> Iterator[Record]:
    """Documents of one input in order; a truncated stream raises BadInputError at the end."""
    try:
        if inp.fmt == "txt":
            yield from _txt(inp, opts, stream)
        elif inp.fmt == "jsonl":
            yield from _jsonl(inp, opts, stream)
        elif inp.fmt == "parquet":
            yield from _parquet(inp, opts)
        else:
            raise AunetError(f"{inp.display}: unknown input format {inp.fmt!r}")
    except TruncatedStreamError as exc:
        raise BadInputError(f"{inp.display}: {exc}") from None
    except zstandard.ZstdError as exc:
        raise BadInputError(f"{inp.display}: corrupt zstd stream ({exc})") from None
    except zlib.error as exc:
        raise BadInputError(f"{inp.display}: corrupt gzip stream ({exc})") from None
    except OSError as exc:
        raise AunetError(f"{inp.display}: read failed ({exc})") from None


def _doc(inp: InputFile, key: str | int, data: bytes, where: str) -> Record:
    doc_id = f"{inp.name}#{key}"
    if not data:
        return Record(doc_id, None, "empty document", where)
    return Record(doc_id, data)


def _txt(inp: InputFile, opts: ReadOptions, stream: BinaryIO) -> Iterator[Record]:
    if opts.doc_per == "file":
        yield from _txt_file(inp, opts, stream)
        return
    paragraphs = opts.doc_per == "paragraph"
    sep = _PARAGRAPH_BREAK if paragraphs else _LINE_BREAK
    carry = b""
    k = 0
    while True:
        block = stream.read(BLOCK)
        if block:
            pieces = sep.split(carry + block)
            carry = pieces.pop()  # may continue in the next block
        else:
            pieces = [carry] if carry else []
        for piece in pieces:
            if paragraphs:
                # Blank lines separate paragraphs; they are not documents.
                piece = piece.strip(b"\r\n")
                if not piece:
                    continue
            k += 1
            yield _doc(inp, k, piece, f"line {k}" if not paragraphs else f"paragraph {k}")
        if not block:
            return


def _txt_file(inp: InputFile, opts: ReadOptions, stream: BinaryIO) -> Iterator[Record]:
    """The whole file as one document, cut at line ends beyond --max-doc-bytes."""
    part = 0
    buf = b""
    while True:
        block = stream.read(BLOCK)
        buf += block
        while len(buf) > opts.max_doc_bytes:
            cut = buf.rfind(b"\n", 0, opts.max_doc_bytes) + 1 or opts.max_doc_bytes
            yield Record(f"{inp.name}#{part}", buf[:cut])
            buf, part = buf[cut:], part + 1
        if not block:
            if buf or part == 0:
                yield _doc(inp, part, buf, "file")
            return


def _jsonl(inp: InputFile, opts: ReadOptions, stream: BinaryIO) -> Iterator[Record]:
    for lineno, line in enumerate(stream, 1):
        where = f"line {lineno}"
        if not line.strip():
            yield Record(f"{inp.name}#{lineno}", None, "blank line", where)
            continue
        try:
            obj = json.loads(line.decode("utf-8", "surrogateescape"))
        except (json.JSONDecodeError, RecursionError) as exc:
            yield Record(f"{inp.name}#{lineno}", None, "invalid JSON", f"{where}: {exc}")
            continue
        if not isinstance(obj, dict):
            yield Record(f"{inp.name}#{lineno}", None, "not a JSON object", where)
            continue
        value = obj.get(opts.field)
        if opts.field not in obj:
            yield Record(f"{inp.name}#{lineno}", None, f"missing field {opts.field!r}", where)
        elif not isinstance(value, str):
            reason = f"field {opts.field!r} is {type(value).__name__}, expected a string"
            yield Record(f"{inp.name}#{lineno}", None, reason, where)
        else:  # raw bytes come back exactly, invalid UTF-8 and lone surrogates included
            yield _doc(inp, lineno, value.encode("utf-8", "surrogateescape"), where)


def _parquet(inp: InputFile, opts: ReadOptions) -> Iterator[Record]:
    import pyarrow.parquet as pq

    assert inp.path is not None
    try:
        pf = pq.ParquetFile(inp.path)
    except Exception as exc:
        raise BadInputError(f"{inp.display}: not a readable Parquet file ({exc})") from None
    if opts.field not in pf.schema_arrow.names:
        cols = ", ".join(pf.schema_arrow.names)
        raise AunetError(f"{inp.display}: no column {opts.field!r} (columns: {cols}); use --field")
    row = 0
    for batch in pf.iter_batches(batch_size=8192, columns=[opts.field]):
        for value in batch.column(0).to_pylist():
            row += 1
            where = f"row {row}"
            if value is None:
                yield Record(f"{inp.name}#{row}", None, "null text", where)
            elif isinstance(value, str):
                yield _doc(inp, row, value.encode("utf-8", "surrogateescape"), where)
            else:
                yield _doc(inp, row, bytes(value), where)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(BLOCK):
            h.update(chunk)
    return h.hexdigest()


def same_file(inp: InputFile, size: int, mtime_ns: int) -> bool:
    return inp.builtin or (inp.path is not None and (inp.size, inp.mtime_ns) == (size, mtime_ns))
