"""The `aunet` executable: a lean start and end around the Typer app in main.py.

Every command pays its start-up and its exit, and a whole `aunet prep` of 50 MB
takes about a second, so both are kept small here (measured in bench/prep.py):

* numpy's OpenBLAS starts a thread per core that spins while the imports run;
  aunet does no BLAS work in numpy, so it gets one thread (unless the user chose);
* Arrow allocates from the C library's heap rather than mimalloc (unless the user
  chose, with ARROW_DEFAULT_MEMORY_POOL): mimalloc gives every shard's zstd
  buffers fresh pages, which the kernel zeroes 2 MB at a time where transparent
  huge pages are on, while `aunet prep` keeps glibc's freed memory for reuse
  (prep.keep_freed_memory). 2 cores, 50 MB in 32 MB shards, 3 stages, 1 worker, 8
  alternating runs (before shards were written straight to their files): median
  1.08 s wall and 0.53 s system time with mimalloc, 0.93 s and 0.30 s from the heap
  (pyarrow reads the choice when it loads);
* the garbage collector is off while ~300 modules are imported (each collection
  walks every object made so far and frees nothing), and the imported objects are
  then frozen out of later collections;
* commands that leave nothing behind to clean up (files written, closed and
  fsynced; no threads or child processes left) end with `os._exit` once their
  output is flushed, skipping the interpreter's teardown of numpy and pyarrow.
"""

from __future__ import annotations

import gc
import os
import sys

# Commands whose work is complete when they return (see the module docstring).
FAST_EXIT = frozenset({"prep", "split", "splitters", "inspect"})


def lean_start() -> None:
    """Settings read once, when numpy and pyarrow load: call before importing them."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


def run() -> None:
    lean_start()
    gc.disable()
    from .main import run as main

    gc.freeze()
    gc.enable()
    if not (len(sys.argv) > 1 and sys.argv[1] in FAST_EXIT):
        main()
        return
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    _flush_and_exit(code)


def _flush_and_exit(code: object) -> None:
    """What sys.exit(code) would print and return, without the interpreter's teardown."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed to stderr, status 1
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader stopped early (`aunet split ... | head`)
            pass
        except (OSError, ValueError):  # e.g. a full disk: the output is incomplete
            status = status or 1
    os._exit(status)
