"""Benchmark: how `aunet prep --workers N` scales with N, on a machine with many cores.

bench/prep.py answers "how fast is prep against the reference splitting" on a small
machine; this answers "what do more workers buy". For N in --workers (default: 1, 2,
4, ... up to the usable cores), it runs the whole three-stage prep process

    aunet prep CORPUS -s regex-words -s regex-word-pairs -s regex-4words --out DIR
        --quiet --doc-per paragraph --val-fraction 0.01 --shard-size 8MB --workers N

on the English corpus (Python docs repeated to --mb MB; bench/prep.py's corpus
builder) and prints, per N: wall and CPU seconds, cores kept busy (CPU / wall),
MB/s, the speedup over N = 1, and the same rate and speedup with the start-up (a
one-paragraph prep, the fixed cost of every run) taken out.

A worker is a thread that splits, compresses and writes one chunk at a time; reading
and the input's sha256 run on threads of their own, and Arrow compresses a shard's
columns on its pool, so N = 1 already keeps about two cores busy. Two baselines
therefore show the per-core scaling: "1 worker on 1 core" (the same run held to one
core with sched_setaffinity), and the speedup column "vs 1 core", which is MB/s excl.
start-up / that baseline's MB/s excl. start-up. Near-linear scaling means "vs 1 core"
close to N until the reading thread (reading, cutting documents, handing chunks over)
or the input's sha256 (one stream per input file) is the limit.

A machine's N vCPUs need not do N times the work of one (hyperthreads, a host that
steals time): "threads ceiling" is what N threads of plain C code that releases the
GIL (sha256 over a 1 MB buffer) get, against one thread, measured just before each
run (the one of the best round is shown); "efficiency" = "vs 1 core" / that ceiling.
It can pass 100%: the one-core baseline holds prep's reading, hashing and Arrow
threads to that core too, while an N-worker run spreads them. Each worker writes a
chunk of about --shard-size, so N workers need many more than N chunks to be kept
busy: use a corpus of at least N x 8 shards (the default 8MB shards: 1000 MB for 16
workers). `--processes` adds rows with worker processes (what prep uses for
splitters that hold the GIL) in place of threads, to see whether the threads contend
for the GIL.

One reading thread cuts one input at a time; `--files K` splits the corpus into K
files (whole paragraphs or lines) in one folder, so that prep's reading threads (one
per 4 workers, `--readers`) read several at once.

`--independent` adds a yardstick: N separate 1-worker preps run at once, each held
to its own core (one hardware thread per physical core first, from sysfs) and each
on its own piece of the corpus (1/K of it, K the largest N), against one such run
alone. Nothing is shared between them but the machine (physical cores, caches,
memory bandwidth, the disk); their start-up is that of N one-paragraph preps
started at once. "vs N separate" is prep's N-worker rate over theirs, both without
start-up. It compares like with like only when N is all the cores: with fewer, an
N-worker prep is not held to N cores (its reading and writing threads use others).

Every cell is the best of --repeat interleaved rounds (each round runs every N once).

    .venv/bin/python bench/prep_scaling.py                     # 200 MB, N = 1, 2, 4, ...
    .venv/bin/python bench/prep_scaling.py --mb 400 --workers 1,2,4,8,16
    .venv/bin/python bench/prep_scaling.py --jsonl --files 8  # like a folder of DCLM files
    .venv/bin/python bench/prep_scaling.py --mb 1000 --files 16 --processes  # threads vs processes
    .venv/bin/python bench/prep_scaling.py --independent  # against N separate one-core preps
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from prep import (  # noqa: E402  (bench/prep.py)
    CORPORA,
    MB,
    STAGES,
    Run,
    arrow_pool,
    best,
    build_corpus,
    cpu_model,
    git_head,
    independent,
    paragraphs,
    precompile,
    run_prep,
    scaling_ceiling,
    split_files,
    startup_seconds,
    topology,
)


def usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]


def default_workers(cores: int) -> list[int]:
    ns, n = [], 1
    while n < cores:
        ns.append(n)
        n *= 2
    return [*ns, cores]


def as_jsonl(corpus: Path) -> tuple[Path, int]:
    """The corpus's paragraphs as {"text": ...} lines; (file, bytes of text)."""
    dest, text_bytes = corpus.with_suffix(".jsonl"), 0
    with dest.open("w", encoding="utf-8", errors="surrogateescape") as f:
        for para in paragraphs(corpus.read_bytes()):
            text_bytes += len(para)
            text = para.decode("utf-8", "surrogateescape")
            f.write(json.dumps({"text": text, "source": "pydocs"}, ensure_ascii=False) + "\n")
    return dest, text_bytes


def thread_ceiling(n: int, seconds: float = 0.5) -> float:
    """Bytes hashed by n threads / by one thread, in the same time: what n threads of C
    code that releases the GIL (as prep's workers are, mostly) can get from this
    machine. On a shared VM vCPUs may be hyperthreads or stolen by the host, so this
    can be well below n; it is measured next to each prep run, on the same host state."""
    block = os.urandom(1 << 20)

    def spin(total: list[int], i: int) -> None:
        end, done = time.perf_counter() + seconds, 0
        while time.perf_counter() < end:
            hashlib.sha256(block).digest()
            done += len(block)
        total[i] = done

    def run(k: int) -> int:
        total = [0] * k
        threads = [threading.Thread(target=spin, args=(total, i)) for i in range(k)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(total)

    return run(n) / run(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=200, help="corpus size, MB (default 200)")
    ap.add_argument("--workers", help="comma-separated N (default: 1, 2, 4, ... all cores)")
    ap.add_argument("--repeat", type=int, default=2, help="best of this many rounds (2)")
    ap.add_argument("--corpora", type=Path, default=CORPORA, help=f"folder with en/ ({CORPORA})")
    ap.add_argument(
        "--jsonl", action="store_true", help='the corpus as JSON lines, {"text": paragraph}'
    )
    ap.add_argument(
        "--files", type=int, default=1, help="split the corpus into this many files (1)"
    )
    ap.add_argument(
        "--independent", action="store_true",
        help="also run N separate 1-worker preps at once, each held to its own core: "
        "the most N-way prep can get from this machine",
    )  # fmt: skip
    ap.add_argument(
        "--processes", action="store_true",
        help="also run each N > 1 with worker processes instead of threads",
    )  # fmt: skip
    args = ap.parse_args()
    cores = usable_cores()
    ns = [int(n) for n in args.workers.split(",")] if args.workers else default_workers(len(cores))
    specs = list(STAGES)

    print("# aunet prep scaling with --workers")
    print()
    print(f"- CPU: {cpu_model()}; usable cores = {len(cores)}; "
          f"memory = {psutil.virtual_memory().total / 2**30:.1f} GiB")  # fmt: skip
    physical, spread = topology(cores)
    print(f"- physical cores among them: {physical} (sysfs topology)")
    print(f"- Python {platform.python_version()}; aunet commit {git_head()}; {arrow_pool()}")
    precompile()
    backend = importlib.import_module("splitters.regex_family").BACKEND["name"]
    print(f"- regex splitter backend: {backend} (c = the compiled scan in splitters/_fast.c)")
    ceiling = scaling_ceiling(max(ns))
    print(f"- machine ceiling: {max(ns)} processes of a pure-Python loop do {ceiling:.2f}x "
          "the work of one")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="prep-scaling-"))
    try:
        corpus, _ = build_corpus([args.corpora / "en" / "pydocs.txt"], int(args.mb * MB),
                                 work / "en.txt")  # fmt: skip
        size = corpus.stat().st_size
        print(f"- corpus: en pydocs repeated to {size / MB:.1f} MB; 3 stages ({', '.join(specs)})")
        text_share = 1.0  # text bytes per corpus file byte
        if args.jsonl:
            corpus, size = as_jsonl(corpus)
            text_share = size / corpus.stat().st_size
            print(f"- as JSON lines: {corpus.stat().st_size / MB:.1f} MB, of which {size / MB:.1f} "
                  "MB documents' text (the MB/s below count the text)")  # fmt: skip
        sep = b"\n" if args.jsonl else b"\n\n"
        parts: list[Path] = []
        piece: list[float] = []
        if args.independent:
            parts = sorted(split_files(corpus, max(ns), sep, work / "independent").iterdir())
            piece = [p.stat().st_size * text_share / MB for p in parts]  # MB of text
            print(f"- independent runs: {max(ns)} pieces of about {size / max(ns) / MB:.1f} MB; "
                  f"cores taken in the order {','.join(map(str, spread[: max(ns)]))} "
                  "(one hardware thread per physical core first)")  # fmt: skip
        if args.files > 1:
            corpus = split_files(corpus, args.files, sep, work / "parts")
            print(f"- split into {args.files} files of about {size / args.files / MB:.1f} MB "
                  "(one folder; prep reads one file per reading thread)")  # fmt: skip
        print()
        sys.stdout.flush()
        rows = [(n, False) for n in ns]
        rows += [(n, True) for n in ns if n > 1 and args.processes]
        runs: dict[tuple[int, bool], Run] = {row: Run() for row in rows}
        ceilings: dict[tuple[int, bool], float] = {}  # measured before each row's best run
        core = Run()
        startup = math.inf
        # N -> wall of N separate preps, and of N one-paragraph preps started at once
        alone = dict.fromkeys(sorted({1, *(n for n in ns if n <= len(cores))}), math.inf)
        alone_startup = dict(alone)
        for r in range(args.repeat):
            print(f"  round {r + 1}/{args.repeat} ...", file=sys.stderr, flush=True)
            startup = min(startup, startup_seconds(specs, work, 2))
            core = best(core, run_prep(corpus, specs, 1, work / "out", {cores[0]}))
            for n in alone if args.independent else []:
                alone[n] = min(alone[n], independent(parts, specs, work, spread[:n]))
                tiny = [work / "tiny.txt"] * n  # written by startup_seconds
                alone_startup[n] = min(alone_startup[n], independent(tiny, specs, work, spread[:n]))
            for row in rows:
                ceiling = thread_ceiling(row[0])
                run = run_prep(corpus, specs, row[0], work / "out", processes=row[1])
                if run.wall < runs[row].wall:
                    runs[row], ceilings[row] = run, ceiling
    finally:
        shutil.rmtree(work, ignore_errors=True)

    separate: dict[int, float] = {}  # N -> MB/s excl. start-up of N separate one-core preps

    def rate(run: Run, excl: bool = False) -> float:
        return size / MB / max(run.wall - (startup if excl else 0.0), 1e-9)

    print(f"start-up (one-paragraph prep): {startup:.2f} s")
    if args.independent:
        print()
        print("N separate 1-worker preps at once, each held to its own core "
              "(one piece of the corpus each):")  # fmt: skip
        print()
        print("| N | wall s | start-up of N at once s | MB/s excl. start-up | vs 1 |")
        print("|---:|---:|---:|---:|---:|")
        for n, wall in alone.items():
            separate[n] = sum(piece[:n]) / max(wall - alone_startup[n], 1e-9)
            print(f"| {n} | {wall:.2f} | {alone_startup[n]:.2f} | {separate[n]:.1f} "
                  f"| {separate[n] / separate[1]:.2f}x |")  # fmt: skip
    print()
    print("| workers | wall s | CPU s | cores busy | MB/s | speedup | MB/s excl. start-up "
          "| speedup excl. | vs 1 core | threads ceiling | efficiency | vs N separate "
          "| peak RSS MB |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    first = runs[ns[0], False]
    base, base_x, core_x = rate(first), rate(first, True), rate(core, True)
    print(f"| 1 on 1 core | {core.wall:.2f} | {core.cpu:.2f} | {core.cpu / core.wall:.2f} | "
          f"{rate(core):.1f} | | {core_x:.1f} | | 1.00x | | | | "
          f"{core.rss / 2**20:.0f} |")  # fmt: skip
    for (n, procs), run in runs.items():
        label = f"{n} processes" if procs else str(n)
        vs_separate = f"{rate(run, True) / separate[n]:.0%}" if n in separate else ""
        print(f"| {label} | {run.wall:.2f} | {run.cpu:.2f} | {run.cpu / run.wall:.2f} | "
              f"{rate(run):.1f} | {rate(run) / base:.2f}x | {rate(run, True):.1f} | "
              f"{rate(run, True) / base_x:.2f}x | {rate(run, True) / core_x:.2f}x | "
              f"{ceilings[n, procs]:.2f}x | {rate(run, True) / core_x / ceilings[n, procs]:.0%} | "
              f"{vs_separate} | "
              f"{run.rss / 2**20:.0f} |")  # fmt: skip
    print()
    print(f"speedup = MB/s / MB/s of {ns[0]} worker(s); vs 1 core = MB/s excl. start-up / the "
          "same for 1 worker held to one core. Best of "
          f"{args.repeat} interleaved rounds; MB = 10^6 bytes. threads ceiling = bytes "
          "hashed (sha256, GIL released) by N threads / by one in the same time, measured "
          "just before the run shown: what N threads can get from this machine; "
          "efficiency = vs 1 core / threads ceiling (over 100% where one worker's own "
          "helper threads already used more than one core). vs N separate = MB/s excl. "
          "start-up / that of N separate 1-worker preps run at once, each on its own "
          "core and its own piece of the corpus (--independent), like for like when N "
          "is all the cores. peak RSS = the prep process's own peak (VmHWM) for worker "
          "threads; for worker processes, the largest sum over the process tree polled "
          "every 20 ms (shared memory counted once), which can miss a short peak.")  # fmt: skip


if __name__ == "__main__":
    main()
