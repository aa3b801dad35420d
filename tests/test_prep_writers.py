"""Writer threads (fewer workers than cores): a worker splits a chunk and hands its
shards to a writer, then goes on to its next chunk. The output is the same as when
each worker writes its own; a failure in either step stops prep with that error, and
a rerun finishes the job; chunks in flight stay bounded."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from aunet_cli import prep as prep_module

from .test_prep_readers import files, make_inputs, run


@pytest.fixture
def writer_threads(monkeypatch) -> list[str]:
    """Names of the threads that wrote each chunk."""
    seen: list[str] = []
    real = prep_module.write_chunk

    def write_chunk(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(prep_module, "write_chunk", write_chunk)
    return seen


@pytest.mark.parametrize(("workers", "writers"), [(1, True), (3, True), (4, False), (6, False)])
def test_writers_only_with_fewer_workers_than_cores(
    tmp_path, monkeypatch, writer_threads, workers, writers
):
    monkeypatch.setattr(prep_module, "default_workers", lambda: 4)  # the machine's cores
    run(make_inputs(tmp_path / "in"), tmp_path / "out", readers=1, workers=workers)
    assert len(writer_threads) > 20
    prefix = "aunet-write" if writers else "aunet-chunk"
    assert all(name.startswith(prefix) for name in writer_threads), set(writer_threads)


def test_writers_write_the_same_files_as_workers(tmp_path, monkeypatch, writer_threads):
    inputs = make_inputs(tmp_path / "in")
    monkeypatch.setattr(prep_module, "default_workers", lambda: 2)
    run(inputs, tmp_path / "own", readers=1, workers=2)
    assert not any(name.startswith("aunet-write") for name in writer_threads)
    writer_threads.clear()
    monkeypatch.setattr(prep_module, "default_workers", lambda: 8)
    run(inputs, tmp_path / "behind", readers=1, workers=2)
    assert writer_threads and all(name.startswith("aunet-write") for name in writer_threads)
    assert files(tmp_path / "own") == files(tmp_path / "behind")


@pytest.mark.parametrize("workers", [1, 2])
def test_chunks_in_flight_stay_bounded_with_slow_writers(tmp_path, monkeypatch, workers):
    """A chunk keeps its place until it is written: with writers slower than the
    workers, chunks split and not yet written never exceed workers + 1 (memory)."""
    monkeypatch.setattr(prep_module, "default_workers", lambda: 4)
    lock = threading.Lock()
    now = peak = 0
    split, write = prep_module.split_chunk, prep_module.write_chunk

    def counted_split(chunk):
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        return split(chunk)

    def slow_write(*args):
        nonlocal now
        time.sleep(0.01)
        result = write(*args)
        with lock:
            now -= 1
        return result

    monkeypatch.setattr(prep_module, "split_chunk", counted_split)
    monkeypatch.setattr(prep_module, "write_chunk", slow_write)
    run(make_inputs(tmp_path / "in"), tmp_path / "out", readers=1, workers=workers)
    assert peak == workers + 1


@pytest.mark.parametrize("step", ["split_chunk", "write_chunk"])
def test_a_failing_step_stops_prep_and_a_rerun_finishes(
    tmp_path, monkeypatch, writer_threads, step
):
    inputs = make_inputs(tmp_path / "in")
    monkeypatch.setattr(prep_module, "default_workers", lambda: 4)
    run(inputs, tmp_path / "whole", readers=1, workers=1)
    assert writer_threads and all(name.startswith("aunet-write") for name in writer_threads)

    real = getattr(prep_module, step)
    calls = 0
    lock = threading.Lock()

    def fails_on_the_tenth(*args, **kwargs):
        nonlocal calls
        with lock:
            calls += 1
            n = calls
        if n == 10:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(prep_module, step, fails_on_the_tenth)
    with pytest.raises(OSError, match="No space left on device"):
        run(inputs, tmp_path / "out", readers=1, workers=1)
    assert not (tmp_path / "out" / "manifest.json").exists()
    monkeypatch.setattr(prep_module, step, real)
    run(inputs, tmp_path / "out", readers=1, workers=1)
    assert files(tmp_path / "out") == files(tmp_path / "whole")


def test_a_chunk_handed_to_stopped_writers_fails_instead_of_hanging(tmp_path):
    """Writers shut down while a split is running (prep stopping): the chunk's future
    still ends, so nothing waits for it forever."""
    pool, writers = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    release = threading.Event()
    try:
        dispatch = prep_module.Dispatch(pool, 2, None, tmp_path, writers)
        pool.submit(release.wait)  # the split below queues behind this
        prep_module._init_worker(("regex-words",))
        chunk = prep_module.Chunk(0, "in", 0, [], 0.0, {}, 0, 0)
        done = dispatch._split_then_write(chunk, writers)
        writers.shutdown()
        release.set()
        with pytest.raises(RuntimeError, match="shutdown"):
            done.result(timeout=30)
    finally:
        release.set()
        pool.shutdown()
