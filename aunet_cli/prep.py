"""`aunet prep`: raw inputs -> Arrow shards with pooling points, resumably.

Each input is cut into chunks of about `shard_bytes`; a chunk's documents always
land in the same shard files, whatever the number of workers, reading threads or
machines. A chunk is done when its state file exists (written after
its shards are renamed into place), so a killed run restarts where it stopped
and re-creates any half-written chunk byte for byte (state files and the manifest:
prep_output.py).
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from splitters import Pipeline, TextBatch
from splitters.regex_family import flag_levels, flag_point_lists

from . import __version__
from .atomic import write_json_atomic
from .prep_output import (
    PREP_FORMAT,
    chunk_done,
    claim_output,
    finish,
    input_state_path,
    state_path,
    up_to_date,
)
from .readers import DocBlock, InputFile, ReadOptions, file_sha256, open_stream, read_blocks
from .shards import build_table, id_column, point_lists, schema, write_atomic
from .slots import Slots

LEVEL_BATCH_BYTES = 4 << 20  # bounds the splitter's working memory


@dataclass(frozen=True)
class PrepOptions:
    splitters: tuple[str, ...]
    read: ReadOptions = field(default_factory=ReadOptions)
    val_fraction: float = 0.0
    shard_bytes: int = 32 << 20
    on_error: str = "fail"
    workers: int = 1
    readers: int = 0  # inputs read at once; 0: one per 4 workers (`reading_threads`)
    num_shards: int = 1
    shard_index: int = 0


@dataclass
class Chunk:
    """Consecutive documents of one input that always land in the same shards.

    The reader only cuts: joining the documents and choosing the validation split
    happen in the worker (`parts`), so one reading thread can feed many workers."""

    input_index: int
    input_name: str
    index: int
    blocks: list[DocBlock]  # the documents, in order
    val_fraction: float
    skipped: dict[str, int]
    input_size: int
    input_mtime_ns: int
    slot: int | None = None  # set when the blocks' text travels in shared memory (slots.py)

    @property
    def key(self) -> str:
        return f"{self.input_index:05d}-{self.index:05d}"

    @property
    def n_docs(self) -> int:
        return sum(b.n_docs for b in self.blocks)

    def parts(self) -> dict[str, tuple[np.ndarray, TextBatch]]:
        """split -> (record keys, joined documents)."""
        keys = DocBlock.all_keys(self.blocks)
        val = val_mask(self.input_name, keys, self.val_fraction)
        if not val.any():
            block = DocBlock.join(self.blocks)
            return {"train": (block.keys, TextBatch(block.data, block.offsets))}
        return {  # straight from the blocks: one copy of the text, not a join and then another
            split: (b.keys, TextBatch(b.data, b.offsets))
            for split, b in (
                ("train", DocBlock.gather(self.blocks, ~val)),
                ("val", DocBlock.gather(self.blocks, val)),
            )
        }


def fingerprint(opts: PrepOptions, pipeline: Pipeline) -> dict[str, Any]:
    """What must match for an output directory to be resumed (not workers or job split)."""
    return {
        "format": PREP_FORMAT,
        "splitters": pipeline.describe(),
        "read": asdict(opts.read),
        "val_fraction": opts.val_fraction,
        "shard_bytes": opts.shard_bytes,
    }


def val_mask(input_name: str, keys: list[int], fraction: float) -> np.ndarray:
    """Deterministic validation split by document id (input name, record number).

    A document is held out when splitmix64(crc32(name) << 32 ^ record) / 2**64 < fraction:
    the same answer on every machine, for any number of workers or shards.
    """
    k = np.asarray(keys, dtype=np.uint64)
    if fraction <= 0 or not len(k):
        return np.zeros(len(k), dtype=bool)
    with np.errstate(over="ignore"):
        z = k ^ np.uint64(zlib.crc32(input_name.encode()) << 32)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z < np.uint64(min(int(fraction * 2.0**64), 2**64 - 1))


# --- work on one chunk (runs on a worker thread or in a worker process) ---------------

_pipeline: Pipeline | None = None
_slots: Slots | None = None  # made before the worker processes fork, so they share it
_compress_on_pool = True  # see _init_worker
_scan_threads = 1  # see _init_worker
MAX_SCAN_THREADS = 4


def _init_worker(
    specs: tuple[str, ...],
    arrow_threads: bool = True,
    compress_on_pool: bool = True,
    scan_threads: int = 1,
) -> None:
    """Set up this process's workers. `compress_on_pool`: compress a chunk's shards on
    Arrow's thread pool, all its buffers at once, rather than on the worker's own
    thread. That pays only while cores are idle: with as many workers as cores the
    hand-offs cost more than they give (2 cores, 200 MB, 2 workers: 1.91-1.95 s on
    the worker's thread, 2.06-2.25 s on the pool; 1 worker: 3.24-3.44 s against
    2.55-2.73 s). `scan_threads`: the C regex scan of a chunk runs in that many parts
    at once (see `scan_threads_for`). The bytes written are the same either way."""
    global _pipeline, _compress_on_pool, _scan_threads
    _pipeline = Pipeline.from_specs(specs)
    _compress_on_pool = arrow_threads and compress_on_pool
    _scan_threads = scan_threads
    if not arrow_threads:  # one process per core already: Arrow's thread pool would oversubscribe
        pa.set_cpu_count(1)
        pa.set_io_thread_count(1)


def _init_worker_process(parent: int, specs: tuple[str, ...]) -> None:
    """A worker process ends with prep: killed (SIGKILL) when the process that forked
    it dies, even by SIGTERM or SIGKILL, which leave no time to stop the pool; an
    orphan would wait forever on its task queue, holding the caller's pipes open.
    Linux only (prctl PR_SET_PDEATHSIG); elsewhere the pool's own shutdown remains."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # prep died before the line above
        os._exit(1)
    _init_worker(specs, False)


def process_chunk(chunk: Chunk, out: Path) -> dict[str, Any]:
    """Split a chunk's documents, write its shards atomically, then its state file."""
    if chunk.slot is not None:
        chunk = _unship(chunk)
    return write_chunk(out, *split_chunk(chunk))


def _ship(chunk: Chunk, slots: Slots) -> Chunk:
    """The chunk with its text moved into a shared slot; when none fits, with its text
    as one bytes object (views cannot be pickled)."""
    slot = slots.put([b.data for b in chunk.blocks])
    if slot is None:
        return replace(chunk, blocks=[DocBlock.join(chunk.blocks)])
    blocks = [DocBlock(b"", b.offsets, b.keys) for b in chunk.blocks]
    return replace(chunk, blocks=blocks, slot=slot)


def _unship(chunk: Chunk) -> Chunk:
    assert _slots is not None and chunk.slot is not None
    blobs = _slots.get(chunk.slot, [b.n_bytes for b in chunk.blocks])
    blocks = [
        DocBlock(blob, b.offsets, b.keys) for b, blob in zip(chunk.blocks, blobs, strict=True)
    ]
    return replace(chunk, blocks=blocks, slot=None)


def split_chunk(chunk: Chunk) -> tuple[str, dict[str, Any], list[tuple[str, pa.Table]]]:
    """The CPU half of `process_chunk`: (chunk key, state without shard hashes, tables)."""
    assert _pipeline is not None
    pipe = _pipeline
    sch = schema(pipe.depth, pipe.describe(), __version__)
    state: dict[str, Any] = {
        "input_index": chunk.input_index,
        "chunk": chunk.index,
        "input_size": chunk.input_size,
        "input_mtime_ns": chunk.input_mtime_ns,
        "skipped": chunk.skipped,
        "splits": {},
        "shards": [],
    }
    tables = []
    for split, (keys, batch) in chunk.parts().items():
        if not len(keys):
            continue
        lists = _point_lists(pipe, batch)
        ids = id_column(f"{chunk.input_name}#", keys)
        rel = f"{split}/shard-{chunk.key}.arrow"
        tables.append((rel, build_table(sch, ids, batch.data, batch.offsets, lists)))
        units = [len(values) // 4 for _, values in lists]
        n_rows, n_bytes = len(keys), batch.n_bytes
        state["splits"][split] = {"documents": n_rows, "bytes": n_bytes, "units": units}
        state["shards"].append({"path": rel, "rows": n_rows, "bytes": n_bytes})
    return chunk.key, state, tables


def write_chunk(
    out: Path, key: str, state: dict[str, Any], tables: list[tuple[str, pa.Table]]
) -> dict[str, Any]:
    """The I/O half: compress and write the shards, then the state file (chunk done)."""
    for shard, (rel, table) in zip(state["shards"], tables, strict=True):
        assert shard["path"] == rel
        shard.update(write_atomic(out / rel, table, threads=_compress_on_pool))
    write_json_atomic(state_path(out, key), state)
    return state


def releases_gil(pipe: Pipeline) -> bool:
    """Whether a chunk's work runs almost all outside the GIL, so threads scale: the
    stages are the C regex scan (zstd and the hashes always release it). Other
    splitters (plugins in Python, the learned one) get worker processes instead."""
    return flag_levels(pipe.stages) is not None


def _point_lists(pipe: Pipeline, batch: TextBatch) -> list:
    """Arrow list buffers of every stage's points (see shards.point_lists)."""
    fused = flag_levels(pipe.stages)
    if fused is not None:  # one C scan, its flags mapped to levels on the fly
        mode, lut = fused
        return flag_point_lists(batch, mode, pipe.depth, lut, _scan_threads)
    return point_lists(_levels(pipe, batch), batch.offsets, pipe.depth)


def _levels(pipe: Pipeline, batch: TextBatch) -> np.ndarray:
    """Levels in sub-batches of whole documents, so memory stays bounded."""
    out = np.empty(batch.n_bytes, dtype=np.uint8)
    offsets = batch.offsets
    start = 0
    while start < batch.n_docs:
        stop = int(np.searchsorted(offsets, offsets[start] + LEVEL_BATCH_BYTES, side="right"))
        stop = min(max(stop - 1, start + 1), batch.n_docs)
        lo, hi = offsets[start], offsets[stop]
        sub = TextBatch(batch.data[lo:hi], offsets[start : stop + 1] - lo)
        out[lo:hi] = pipe.levels(sub)
        start = stop
    return out


# --- the driver ------------------------------------------------------------------------


class Progress:
    """Callbacks for a progress display (the CLI plugs rich in here)."""

    def start(self, total_bytes: int | None) -> None: ...
    def advance(self, raw_bytes: int, docs: int) -> None: ...
    def stop(self) -> None: ...


def keep_freed_memory() -> Callable[[], None]:
    """Serve buffers of up to 32 MiB from glibc's heap and keep freed memory for reuse,
    until the returned function puts glibc's defaults back.

    Every chunk allocates and frees tens of MB (text copies, scan flags, point lists,
    compressed shards). By default glibc maps each such buffer fresh from the kernel,
    which zeroes it page by page and unmaps it on free: a third of a 50 MB prep's
    system time (bench/prep.py). Peak memory is unchanged. No-op where the C library
    has no mallopt (not glibc)."""
    try:
        libc = ctypes.CDLL(None)
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed value
    mallopt(m_trim_threshold, 1 << 30)

    def restore() -> None:  # prep may run inside `aunet train`: give the memory back
        mallopt(m_mmap_threshold, 128 << 10)  # glibc's defaults
        mallopt(m_trim_threshold, 128 << 10)
        malloc_trim(0)

    return restore


def arrow_threads_for(workers: int) -> Callable[[], None]:
    """Give Arrow's CPU thread pool at least one thread per worker, until the returned
    function puts its size back.

    Arrow parses JSON lines on that one pool, and with fewer workers than cores it
    compresses the shards there too (zstd, about half of a chunk's work), for all
    worker threads. Its size is the cores, or OMP_NUM_THREADS where that is set: often
    1 on clusters, which queued all of it behind a single thread. `--workers` is the
    user's say."""
    before = pa.cpu_count()
    if workers <= before:
        return lambda: None
    pa.set_cpu_count(workers)

    def restore() -> None:
        if pa.cpu_count() == workers:  # unless someone else has resized it meanwhile
            pa.set_cpu_count(before)

    return restore


def prep(
    inputs: list[InputFile],
    out: Path,
    opts: PrepOptions,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run (or resume) preparation; returns the manifest (None parts for a partial job)."""
    progress = progress or Progress()
    pipeline = Pipeline.from_specs(opts.splitters)
    fp = fingerprint(opts, pipeline)
    claim_output(out, fp, overwrite, inputs)
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and up_to_date(out, inputs):
        return json.loads(manifest_path.read_text()) | {"up_to_date": True}

    idle_cores = opts.workers < default_workers()
    _init_worker(opts.splitters, compress_on_pool=idle_cores, scan_threads=scan_threads_for(opts))
    with ExitStack() as cleanup:  # undone in reverse order, on every path
        cleanup.callback(keep_freed_memory())  # before worker processes fork: they inherit it
        cleanup.callback(arrow_threads_for(opts.workers))
        writers = _start_writers(opts) if idle_cores and worker_threads(opts, pipeline) else None
        if writers is not None:
            cleanup.callback(writers.shutdown, cancel_futures=True)
        pool, limit, slots = _start_workers(opts, pipeline)
        cleanup.callback(_close_slots)
        cleanup.callback(pool.shutdown, cancel_futures=True)  # before the writers: see Dispatch
        _run_workers(inputs, out, opts, progress, Dispatch(pool, limit, slots, out, writers))
    return finish(out, inputs, fp, pipeline.depth)


def scan_threads_for(opts: PrepOptions) -> int:
    """Parts a worker thread scans each chunk in at once: the cores per worker (at most
    MAX_SCAN_THREADS). With fewer workers than cores, a chunk's scan would otherwise
    run on one core while the others wait for its shards to compress: at the start of
    a run (nothing to compress yet) and at its end. 2 cores, 8 MB of English, 3 stages:
    36 ms on one thread, 20 ms on two."""
    return max(1, min(MAX_SCAN_THREADS, default_workers() // max(opts.workers, 1)))


def _run_workers(
    inputs: list[InputFile], out: Path, opts: PrepOptions, progress: Progress, dispatch: Dispatch
) -> None:
    """Read this job's inputs into the workers (through `dispatch`) until all is written."""
    by_input = len(inputs) >= opts.num_shards
    todo = [
        ii for ii in range(len(inputs)) if not by_input or ii % opts.num_shards == opts.shard_index
    ]
    owns: Callable[[int], bool] = (
        (lambda c: True) if by_input else (lambda c: (c % opts.num_shards) == opts.shard_index)
    )

    def read_one(ii: int) -> None:
        _read_input(ii, inputs[ii], opts, out, dispatch, owns, progress)

    known = not any(i.streamed for i in inputs)
    try:
        progress.start(sum(i.size for i in inputs) if known else None)
        threads = reading_threads(opts, [inputs[ii] for ii in todo])
        _read_inputs(todo, read_one, threads, dispatch)
    finally:
        progress.stop()


def reading_threads(opts: PrepOptions, inputs: list[InputFile]) -> int:
    """How many inputs are read at once. One reading thread cuts plain text at about
    340 MB/s and parses JSON lines at about 150 MB/s on a 16-core machine, enough for
    8 and 4 workers (bench/prep_scaling.py), so there is one per 4 workers. Standard
    input or a pipe keeps one: a thread blocked reading a terminal would hold up Ctrl-C."""
    if any(i.streamed for i in inputs):
        return 1
    wanted = opts.readers or -(-opts.workers // 4)
    return max(1, min(wanted, len(inputs)))


class _Stopped(Exception):
    """Raised in a reading thread whose input is no longer needed."""


class Dispatch:
    """Hands chunks from the reading thread(s) to the worker pool, at most `limit` in
    flight (a free place is reused as soon as any chunk is done), and keeps the first
    failure of each input. A failure in input i stops the readers of input i and of
    every later input; earlier ones read on, as a single reader would have. With
    `writers`, a worker splits a chunk and hands its shards to them (see
    _start_writers); a chunk's place is free once it is written. So the pool is shut
    down before the writers: a split still running hands its chunk over."""

    def __init__(
        self,
        pool: Executor,
        limit: int,
        slots: Slots | None,
        out: Path,
        writers: Executor | None = None,
    ) -> None:
        self.pool, self.slots, self.out, self.writers = pool, slots, out, writers
        self.stop_after = float("inf")  # readers of inputs past this index stop
        self.failures: dict[int, BaseException] = {}  # input index -> first failure
        self._room = threading.Semaphore(limit)
        self._busy = 0  # chunks handed over and not done
        self._idle = threading.Condition()

    def fail(self, input_index: int, exc: BaseException) -> None:
        with self._idle:
            self.failures.setdefault(input_index, exc)
            self.stop_after = min(self.stop_after, input_index)

    def check(self, input_index: int) -> None:
        """Raise _Stopped when this input's reader should stop."""
        if input_index > self.stop_after or input_index in self.failures:
            raise _Stopped

    def submit(self, chunk: Chunk) -> None:
        self.check(chunk.input_index)
        if chunk_done(self.out, chunk):
            return
        while not self._room.acquire(timeout=0.1):  # wait for a place, or a stop
            self.check(chunk.input_index)
        slot = None
        try:
            self.check(chunk.input_index)
            if self.slots is not None:
                chunk = _ship(chunk, self.slots)
                slot = chunk.slot
            if self.writers is None:
                future = self.pool.submit(process_chunk, chunk, self.out)
            else:
                future = self._split_then_write(chunk, self.writers)
        except BaseException:
            self._give_back(slot)
            raise
        with self._idle:
            self._busy += 1
        index = chunk.input_index
        future.add_done_callback(lambda f: self._done(f, index, slot))

    def _split_then_write(self, chunk: Chunk, writers: Executor) -> Future:
        """process_chunk in two steps: a future that is done when `chunk` has been
        split on the pool and then written by `writers`."""
        done: Future = Future()

        def split(step: Future) -> None:
            if _failed(step, done):
                return
            try:
                write = writers.submit(write_chunk, self.out, *step.result())
            except BaseException as exc:  # the writers are shut down: prep is stopping
                done.set_exception(exc)
            else:
                write.add_done_callback(written)

        def written(step: Future) -> None:
            if not _failed(step, done):
                done.set_result(step.result())

        self.pool.submit(split_chunk, chunk).add_done_callback(split)
        return done

    def _give_back(self, slot: int | None) -> None:
        """Free a chunk's place (and its shared slot)."""
        if slot is not None and self.slots is not None:
            self.slots.release(slot)
        self._room.release()

    def _done(self, future: Future, input_index: int, slot: int | None) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.fail(input_index, future.exception())  # type: ignore[arg-type]
        self._give_back(slot)  # after the failure is on record: a waiting reader sees it
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def wait(self) -> None:
        """Until every chunk handed over is done (written or failed)."""
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0)


def _failed(step: Future, done: Future) -> bool:
    """Whether `step` was cancelled or failed; if so, `done` is too."""
    if step.cancelled():
        done.cancel()
    elif step.exception() is not None:
        done.set_exception(step.exception())
    else:
        return False
    return True


def _read_inputs(
    todo: list[int], read_one: Callable[[int], None], threads: int, dispatch: Dispatch
) -> None:
    """Read the inputs `todo`, `threads` at a time, and wait for their chunks. Then
    raise the failure (a bad record, or a chunk that could not be written) of the
    earliest input: the one a single reader would meet first."""

    def run(ii: int) -> None:
        if ii > dispatch.stop_after:
            return
        try:
            read_one(ii)
        except _Stopped:
            pass
        except Exception as exc:  # raised below, once every earlier input is done
            dispatch.fail(ii, exc)

    if threads <= 1:
        for ii in todo:
            run(ii)
    else:
        pool = ThreadPoolExecutor(threads, thread_name_prefix="aunet-read")
        try:
            for future in [pool.submit(run, ii) for ii in todo]:
                future.result()
        except BaseException:  # e.g. Ctrl-C in this thread: readers stop at their next block
            dispatch.stop_after = -1
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    dispatch.wait()
    if dispatch.failures:
        raise dispatch.failures[min(dispatch.failures)]


def worker_threads(opts: PrepOptions, pipe: Pipeline) -> bool:
    """Whether the workers are threads of this process (else processes)."""
    return opts.workers == 1 or releases_gil(pipe)


def _start_workers(opts: PrepOptions, pipe: Pipeline) -> tuple[Executor, int, Slots | None]:
    """(pool, chunks in flight, shared slots). Workers are threads of this process when
    the stages release the GIL (the C scan, zstd and the hashes do), so nothing is
    copied between processes (bench/prep_scaling.py); else forked processes, which get
    their chunks through shared slots."""
    global _slots
    if worker_threads(opts, pipe):
        pool = ThreadPoolExecutor(opts.workers, thread_name_prefix="aunet-chunk")
        return pool, opts.workers + 1, None  # one more: read ahead, or being written
    from concurrent.futures import ProcessPoolExecutor  # only for GIL-bound splitters
    from multiprocessing import get_context

    limit = 2 * opts.workers
    # one slot per chunk in flight; a chunk ends with the document that reaches
    # shard_bytes, so a larger one (a huge last document) goes pickled
    _slots = Slots(limit, opts.shard_bytes + max(opts.shard_bytes // 4, 1 << 20))
    pool = ProcessPoolExecutor(
        opts.workers,
        mp_context=get_context("fork"),
        initializer=_init_worker_process,
        initargs=(os.getpid(), opts.splitters),
    )
    try:
        pool.submit(int).result()  # fork the workers now, before any thread of ours starts
    except BaseException:
        pool.shutdown(cancel_futures=True)
        _close_slots()
        raise
    return pool, limit, _slots


def _start_writers(opts: PrepOptions) -> Executor:
    """Threads that write the shards of split chunks (compressed on Arrow's pool,
    hashed, written, fsynced), so that a worker goes on to its next chunk at once; for
    fewer worker threads than cores, where cores would otherwise wait for a worker's
    writes. 2 cores, 50 MB, 1 worker, 8 alternating rounds: median 0.83 s without,
    0.72 s with. One more than the workers: one chunk's hash and write overlap the
    next one's compression. Chunks in flight stay at most workers + 1: a chunk's place
    is free once it is written."""
    return ThreadPoolExecutor(opts.workers + 1, thread_name_prefix="aunet-write")


def _close_slots() -> None:
    global _slots
    if _slots is not None:
        _slots.close()
        _slots = None


def _read_input(ii, inp, opts, out, dispatch, owns, progress) -> None:
    """Cut one input into chunks of about `shard_bytes` and hand them to `dispatch`."""
    tap, stream = open_stream(inp)
    pending: list[DocBlock] = []  # documents not in a chunk yet
    size = 0
    skipped: Counter[str] = Counter()
    chunk_index = 0
    reported = 0

    def flush(blocks: list[DocBlock]) -> None:
        nonlocal skipped, chunk_index
        c = Chunk(
            ii, inp.name, chunk_index, blocks, opts.val_fraction, dict(skipped),
            inp.size, inp.mtime_ns,
        )  # fmt: skip
        if owns(chunk_index):
            dispatch.submit(c)
        progress.advance(0, c.n_docs)
        skipped = Counter()
        chunk_index += 1

    try:
        for block in read_blocks(inp, opts.read, stream, opts.on_error):
            dispatch.check(ii)
            skipped.update(block.skipped)
            if block.n_docs:
                pending.append(block)
                size += block.n_bytes
            while size >= opts.shard_bytes:
                # the chunk ends with the document that reaches shard_bytes
                need, taken = opts.shard_bytes, []
                while pending[0].n_bytes < need:
                    need -= pending[0].n_bytes
                    taken.append(pending.pop(0))
                head = pending[0]
                cut = int(np.searchsorted(head.offsets, need)) or 1  # docs in the chunk
                taken.append(head.slice(0, cut))
                if cut < head.n_docs:
                    pending[0] = head.slice(cut, head.n_docs)
                else:
                    pending.pop(0)
                size = sum(b.n_bytes for b in pending)
                flush(taken)
            progress.advance(tap.position - reported, 0)
            reported = tap.position
        if pending or skipped or chunk_index == 0:
            flush(pending)
    finally:
        if inp.path is not None:
            stream.close()
    sha = tap.sha256() if inp.fmt != "parquet" else file_sha256(inp.path)
    write_json_atomic(
        input_state_path(out, ii),
        {
            "path": inp.display,
            "name": inp.name,
            "format": inp.fmt,
            "compression": inp.compression,
            "size": tap.position if inp.streamed else inp.size,
            "mtime_ns": inp.mtime_ns,
            "sha256": sha,
            "chunks": chunk_index,
        },
    )


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
