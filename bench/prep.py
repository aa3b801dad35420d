"""Benchmark: `aunet prep` against the official regex splitting, on this machine.

What it measures, for an English corpus (Python docs, repeated to --mb MB) and a
Chinese one (all of /work/shared/corpora/zh/*.txt, repeated to --zh-mb MB), with
1, 2 and 3 pooling stages (regex-words, + regex-word-pairs, + regex-4words):

* reference split MB/s -- `bench/reference_split.levels_reference` (the official
  semantics written plainly with the `regex` module, one paragraph at a time) on an
  evenly spaced sample of the paragraphs (--ref-mb MB); only the splitting is timed;
* aunet split MB/s -- `Pipeline.from_specs(specs).levels(TextBatch.from_docs(batch))`
  over all paragraphs in batches of ~4 MB; only batching + splitting is timed;
* prep 1 worker / N workers MB/s -- input bytes / wall seconds of the whole
  `aunet prep FILE -s ... --out DIR --quiet --doc-per paragraph --val-fraction 0.01
  --shard-size 8MB --workers W` process (start-up, reading, splitting, writing
  Arrow shards, manifest), W = 1 and W = N = all cores;
* peak RSS -- the prep process's high-water mark of RSS (VmHWM in /proc/PID/status,
  the kernel's own peak, read every 20 ms; the last reading before the process ends
  counts). Regex preps have no worker processes (their workers are threads), so
  that is all of it. Polling the RSS of the whole process tree with psutil instead,
  as bench/prep_scaling.py still does for its worker processes, cost the 2-core
  50 MB 3-stage prep about 12 ms of its 0.69 s (8 alternating runs, median 700 ms
  polled, 687 ms not), and could miss a peak between two readings;
* speedup = N-worker MB/s / 1-worker MB/s; ratio vs reference = prep 1-worker MB/s /
  reference split MB/s;
* start-up s -- the wall time of the same 1-worker `aunet prep` on a one-paragraph
  input: the fixed cost of every run (interpreter, imports, output claim,
  manifest), paid once whatever the input size; "excl. start-up" columns divide the
  corpus by (wall - start-up), the rate a long run approaches. The headline ratio
  keeps the start-up in;
* prep 1 worker on 1 core -- the same 1-worker run held to one core (taskset).
  A worker is a thread that splits, compresses and writes a chunk (a process, for
  splitters that hold the GIL); reading and the input's sha256 run on threads of
  their own, and Arrow compresses a shard's columns on its pool, so even one worker
  keeps more than one core busy; "speedup vs 1 core" = N-worker MB/s / this, the
  per-core scaling. bench/prep_scaling.py measures N = 1, 2, 4, ... on bigger machines;
* N separate 1-core preps -- N 1-worker preps at once, each held to its own core
  and each on 1/N of the corpus (whole paragraphs; none where a long paragraph
  makes the pieces uneven): a yardstick for N-way prep with nothing shared but the
  hardware (a VM's N vCPUs need not do N times the work of one: caches, memory
  bandwidth, the host's other guests). Their start-up is that of N one-paragraph
  preps started at once. "N workers vs N separate" = N-worker MB/s / theirs, both
  without start-up; like for like only when N is all the cores (an N-worker prep is
  not held to N cores: its reading and writing threads use the others).

This machine's speed varies from second to second (a shared VM: the same pure-Python
loop takes from 0.15 to 0.33 s), so every column is the best of --repeat rounds, and
each round times every column once, the reference included: the best-of of each
column then samples the same stretches of time.

Paragraphs are cut exactly as `aunet prep --doc-per paragraph` cuts them (blank
lines separate them), so every column processes the same documents (note that
zh/manpages_zh_CN.txt has no blank line: it is one 2.4 MB paragraph). MB = 10**6
bytes. The footer also shows the wall and CPU seconds of each prep run, how busy
other processes kept the machine during each row (before each row the script
waits up to --wait-quiet s for them to go idle; it cannot stop them), and that
aunet's mode=official equals the reference on the sampled paragraphs.

Target: three-stage prep, end to end, with ONE worker, at >= 25x the reference's
splitting alone (the "ratio vs reference" column of the 3-stage rows), and
near-linear scaling with workers (speedup close to N).

    .venv/bin/python bench/prep.py            # full run (50 MB en, 20 MB zh)
    .venv/bin/python bench/prep.py --quick    # 5 MB corpora, a sanity run
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import importlib
import importlib.util
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from reference_split import levels_reference  # noqa: E402

from splitters import Pipeline, TextBatch  # noqa: E402

MB = 1_000_000
CORPORA = Path("/work/shared/corpora")  # --corpora
STAGES = ("regex-words", "regex-word-pairs", "regex-4words")
# The same paragraph break as aunet_cli/readers.py (--doc-per paragraph).
PARAGRAPH_BREAK = re.compile(rb"\r?\n(?:[ \t\f\v\r]*\n)+")
BATCH_BYTES = 4 * MB
POLL_S = 0.02
WARM_UP = "warm-up: 中文, ü, 123 -- \n\n".encode()


# --- corpora ---------------------------------------------------------------------------


def build_corpus(sources: list[Path], target: int, dest: Path) -> tuple[Path, bytes]:
    """Concatenate `sources` (blank line between) and repeat until >= target bytes,
    then cut at the first paragraph break after `target`. Returns the file and one
    copy of the text (at most the whole corpus)."""
    base = b"\n\n".join(p.read_bytes().strip(b"\n") for p in sources) + b"\n\n"
    reps = -(-target // len(base))
    data = base * reps
    cut = PARAGRAPH_BREAK.search(data, target)
    if cut is not None:
        data = data[: cut.end()]
    dest.write_bytes(data)
    return dest, data[: len(base)]


def paragraphs(data: bytes) -> list[bytes]:
    out = []
    for piece in PARAGRAPH_BREAK.split(data):
        piece = piece.strip(b"\r\n")
        if piece:
            out.append(piece)
    return out


def sample(docs: list[bytes], target: int) -> list[bytes]:
    """About `target` bytes of paragraphs, evenly spaced through `docs` (all of them
    when they are not much more than that)."""
    total = sum(map(len, docs))
    if total <= 1.25 * target:
        return docs
    picked, seen, taken = [], 0, 0
    for d in docs:
        # Decided before looking at d's size, so long paragraphs are not favoured.
        if taken <= seen * target / total:
            picked.append(d)
            taken += len(d)
        seen += len(d)
    return picked


def split_files(corpus: Path, k: int, sep: bytes, folder: Path) -> Path:
    """The corpus as k files of about equal size, cut only after `sep` (a paragraph
    break or a line end), in `folder`; returns the folder (prep's input)."""
    data = corpus.read_bytes()
    folder.mkdir()
    start = 0
    for i in range(k):
        stop = len(data) if i == k - 1 else data.find(sep, (i + 1) * len(data) // k)
        stop = len(data) if stop < 0 else max(stop + len(sep), start)
        (folder / f"part-{i:03d}{corpus.suffix}").write_bytes(data[start:stop])
        start = stop
    return folder


def separate_pieces(corpus: Path, n: int, cores: int, folder: Path) -> list[Path]:
    """The corpus in n files of whole paragraphs for n separate preps; none (no such
    yardstick) where n exceeds the cores or the pieces are too uneven for n runs at
    once to finish together (a long paragraph makes one piece far bigger)."""
    if n > cores:
        return []
    pieces = sorted(split_files(corpus, n, b"\n\n", folder).iterdir())
    largest, even = max(p.stat().st_size for p in pieces), corpus.stat().st_size / n
    if largest > 1.2 * even:
        print(f"- {corpus.name}: no separate-preps yardstick (its largest of {n} pieces is "
              f"{largest / even:.2f}x an even share)")  # fmt: skip
        return []
    return pieces


def topology(cores: list[int]) -> tuple[int, list[int]]:
    """(physical cores among `cores`, `cores` ordered one hardware thread per physical
    core first, then their siblings), from Linux's sysfs; each cpu its own core
    elsewhere."""
    groups: dict[tuple[str, str], list[int]] = {}
    for cpu in cores:
        top = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            key = ((top / "physical_package_id").read_text(), (top / "core_id").read_text())
        except OSError:
            key = (str(cpu), "")
        groups.setdefault(key, []).append(cpu)
    rounds = max((len(g) for g in groups.values()), default=0)
    spread = [g[i] for i in range(rounds) for g in groups.values() if i < len(g)]
    return len(groups), spread


def independent(parts: list[Path], specs: list[str], work: Path, cpus: list[int]) -> float:
    """Wall seconds of len(cpus) separate 1-worker preps run at once, prep i on
    parts[i] and held to cpus[i] (with taskset: these start from several threads,
    where a preexec_fn is not safe): N times the work of one such run with nothing
    shared but the machine (cores, caches, memory bandwidth, the disk). Give it N
    one-paragraph inputs for the start-up of N preps at once."""
    failures: list[BaseException] = []

    def one(i: int) -> None:
        try:
            run_prep(parts[i], specs, 1, work / f"out-alone-{i}", {cpus[i]})
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(cpus))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    return time.perf_counter() - t0


# --- splitting alone -------------------------------------------------------------------


def bench_reference(docs: list[bytes], n_stages: int) -> float:
    nbytes = sum(map(len, docs))
    for d in docs[:100]:  # warm-up, untimed
        levels_reference(d, n_stages)
    t0 = time.perf_counter()
    for d in docs:
        levels_reference(d, n_stages)
    return nbytes / MB / (time.perf_counter() - t0)


def batches(docs: list[bytes], size: int = BATCH_BYTES) -> list[list[bytes]]:
    out, cur, n = [], [], 0
    for d in docs:
        cur.append(d)
        n += len(d)
        if n >= size:
            out.append(cur)
            cur, n = [], 0
    if cur:
        out.append(cur)
    return out


def bench_aunet(docs: list[bytes], specs: list[str]) -> float:
    pipe = Pipeline.from_specs(specs)
    groups = batches(docs)
    nbytes = sum(map(len, docs))
    pipe.levels(TextBatch.from_docs([*docs[:100], WARM_UP]))  # lazy tables; untimed
    t0 = time.perf_counter()
    for g in groups:
        pipe.levels(TextBatch.from_docs(g))
    return nbytes / MB / (time.perf_counter() - t0)


def official_agreement(docs: list[bytes], n_stages: int) -> tuple[int, int]:
    """Paragraphs on which aunet's mode=official equals the reference (a sanity check
    that both sides compute the same thing; not timed)."""
    pipe = Pipeline.from_specs([f"{s}:mode=official" for s in STAGES[:n_stages]])
    same = 0
    for g in batches(docs):
        batch = TextBatch.from_docs(g)
        lv = pipe.levels(batch)
        for i, d in enumerate(g):
            lo, hi = batch.offsets[i], batch.offsets[i + 1]
            same += lv[lo:hi].tolist() == levels_reference(d, n_stages)
    return same, len(docs)


# --- end to end ------------------------------------------------------------------------


def aunet_exe() -> str:
    exe = Path(sys.executable).parent / "aunet"
    return str(exe) if exe.exists() else (shutil.which("aunet") or "aunet")


def status_bytes(pid: int, field: str) -> int:
    """A memory figure of /proc/PID/status in bytes (0 where not reported, or once the
    process has exited): RssShmem (resident shared memory), VmHWM (peak RSS so far)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_rss(proc: psutil.Process) -> int:
    """RSS of a process tree, counting shared memory once: the N-worker prep hands
    chunks to its workers in shared buffers that the parent and each worker map, and
    a plain sum would count those pages once per process (the largest process's
    share stands for all: the parent touches every buffer)."""
    total = shared = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.Error):  # a worker may exit meanwhile
            own = status_bytes(p.pid, "RssShmem")
            total += p.memory_info().rss - own
            shared = max(shared, own)
    return total + shared


def startup_seconds(specs: list[str], work: Path, repeat: int = 3) -> float:
    """Best wall time of a 1-worker prep of one paragraph: the fixed cost of a run."""
    tiny = work / "tiny.txt"
    tiny.write_bytes(WARM_UP)
    return min(run_prep(tiny, specs, 1, work / "out-tiny").wall for _ in range(repeat))


# `aunet prep` with worker processes even for splitters that release the GIL (bench
# only: prep_scaling.py --processes compares them with the default worker threads).
PROCESS_WORKERS = (
    "import aunet_cli.prep as p; p.releases_gil = lambda pipe: False; "
    "from aunet_cli.entry import run; run()"
)


def arrow_pool() -> str:
    """Arrow's CPU pool as a process starts with it here (it compresses the shards)."""
    import pyarrow as pa

    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    return (
        f"Arrow CPU pool {pa.cpu_count()} threads at start (OMP_NUM_THREADS={omp}); "
        "prep gives it at least --workers threads while it runs"
    )


def precompile() -> bool:
    """Compile aunet's modules to bytecode files, as `pip install` does for a wheel and
    Python does at a first import, so that no timed start-up compiles sources (it
    would at every start with PYTHONDONTWRITEBYTECODE set and an editable install).
    Whether every module compiled (not in a read-only install, say)."""
    ok = True
    for package in ("aunet_cli", "splitters"):
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            ok = bool(compileall.compile_dir(folder, quiet=1)) and ok
    return ok


def run_prep(
    corpus: Path,
    specs: list[str],
    workers: int,
    out: Path,
    cores: set[int] | None = None,
    processes: bool = False,
) -> Run:
    """One `aunet prep` run (on `cores` only, when given: its threads and workers then
    share them; with worker processes when `processes`)."""
    exe = [sys.executable, "-c", PROCESS_WORKERS] if processes else [aunet_exe()]
    cmd = [*exe, "prep", str(corpus)]
    for s in specs:
        cmd += ["-s", s]
    cmd += [
        "--out", str(out), "--quiet", "--doc-per", "paragraph", "--workers", str(workers),
        "--val-fraction", "0.01", "--shard-size", "8MB",
    ]  # fmt: skip
    peak = 0
    done = threading.Event()
    pin = None
    if cores and shutil.which("taskset"):  # no Python between fork and exec: see independent()
        cmd = ["taskset", "-c", ",".join(map(str, sorted(cores))), *cmd]
    elif cores:
        pin = lambda: os.sched_setaffinity(0, cores)  # noqa: E731
    with tempfile.TemporaryFile() as log:  # its output, read after it ends (a pipe could fill)
        t0 = time.perf_counter()
        popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin)

        def poll() -> None:
            nonlocal peak
            try:
                proc = psutil.Process(popen.pid)
            except psutil.Error:
                return
            while not done.is_set():  # worker processes: their RSS adds up
                own = tree_rss(proc) if processes else status_bytes(popen.pid, "VmHWM")
                peak = max(peak, own)
                done.wait(POLL_S)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            _, status, usage = os.wait4(popen.pid, 0)  # the prep and its reaped workers
        except BaseException:  # interrupted: leave no prep running behind us
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(popen.pid).children(recursive=True):
                    child.kill()
            popen.kill()
            popen.wait()
            raise
        wall = time.perf_counter() - t0
        popen.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        poller.join()
        log.seek(0)
        output = log.read().decode(errors="replace")
    cpu = usage.ru_utime + usage.ru_stime
    if popen.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({popen.returncode}):\n{output}")
    if not (out / "manifest.json").exists():
        raise RuntimeError(f"{' '.join(cmd)}: no manifest.json written")
    shutil.rmtree(out)
    return Run(wall, peak, cpu)


class OtherLoad:
    """CPU seconds that processes outside this benchmark's process tree used meanwhile
    (system busy time minus ours): a check that nothing else skewed the numbers."""

    def __init__(self) -> None:
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)

    @staticmethod
    def _own() -> float:
        t = os.times()  # children: every waited-for descendant (prep and its workers)
        return t.user + t.system + t.children_user + t.children_system

    def cores(self) -> float:
        """Average number of cores the rest of the machine kept busy."""
        other = (self._busy() - self.busy0) - (self._own() - self.own0)
        return max(other, 0.0) / (time.perf_counter() - self.t0)


def wait_quiet(limit_s: float, max_cores: float = 0.15) -> float:
    """Wait (up to limit_s) for a second in which other processes keep less than
    max_cores busy; returns the last measured load."""
    deadline = time.perf_counter() + limit_s
    while True:
        load = OtherLoad()
        time.sleep(1.0)
        cores = load.cores()
        if cores < max_cores or time.perf_counter() >= deadline:
            return cores


def _spin(seconds: float) -> int:
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(10_000):
            n += 1
    return n


def scaling_ceiling(n: int, seconds: float = 1.5) -> float:
    """Work done by n busy processes / by one, in the same time (vCPUs may share
    physical cores or caches, so this can be well below n)."""
    with ProcessPoolExecutor(n) as pool:
        list(pool.map(_spin, [0.2] * n))  # start the workers first
        one = pool.submit(_spin, seconds).result()
        many = sum(pool.map(_spin, [seconds] * n))
    return many / one


@dataclass(frozen=True)
class Run:
    """One `aunet prep` process: wall seconds, peak RSS of its tree, CPU seconds."""

    wall: float = math.inf
    rss: int = 0
    cpu: float = 0.0


def best(a: Run, b: Run) -> Run:
    return a if a.wall <= b.wall else b


@dataclass
class Row:
    """One corpus and stage count: every column of the table."""

    corpus: str
    stages: int
    size: int  # corpus bytes
    ref: float = 0.0  # reference split MB/s
    ours: float = 0.0  # aunet split MB/s
    one: Run = field(default_factory=Run)  # prep, 1 worker
    many: Run = field(default_factory=Run)  # prep, N workers
    core: Run = field(default_factory=Run)  # prep, 1 worker held to one core
    startup: float = math.inf  # s
    other: float = 0.0  # busy cores outside the benchmark
    separate: float = math.inf  # wall s of N separate one-core preps, each on 1/N
    separate_startup: float = math.inf  # wall s of N one-paragraph preps started at once

    def rate(self, run: Run, startup: float = 0.0) -> float:
        """MB/s of a run; with `startup`, once that fixed cost is taken out."""
        return self.size / MB / max(run.wall - startup, 1e-9)

    p1 = property(lambda self: self.rate(self.one))
    pn = property(lambda self: self.rate(self.many))
    pc = property(lambda self: self.rate(self.core))
    p1_excl = property(lambda self: self.rate(self.one, self.startup))
    pn_excl = property(lambda self: self.rate(self.many, self.startup))
    sep_excl = property(
        lambda self: self.size / MB / max(self.separate - self.separate_startup, 1e-9)
    )
    pc_excl = property(lambda self: self.rate(self.core, self.startup))


# --- report ----------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_head() -> str:
    """The commit, and whether the source (bench/ aside) differs from it (read-only)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        diff = subprocess.run(
            ["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", ".", ":!bench"],
            capture_output=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + (" + uncommitted changes" if diff.returncode else " (tracked files clean)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=50, help="English corpus size, MB (default 50)")
    ap.add_argument("--zh-mb", type=float, default=20, help="Chinese corpus size, MB (default 20)")
    ap.add_argument("--ref-mb", type=float, default=5, help="reference sample size, MB (default 5)")
    ap.add_argument("--quick", action="store_true", help="5 MB corpora (sanity run)")
    ap.add_argument("--workers", type=int, help="N of the N-worker runs (default: all cores)")
    ap.add_argument(
        "--repeat", type=int, default=3, help="every column: best of this many rounds (3)"
    )
    ap.add_argument(
        "--wait-quiet", type=float, default=60,
        help="before each row, wait up to this many s for other processes to go idle (60)",
    )  # fmt: skip
    ap.add_argument("--no-check", action="store_true", help="skip the mode=official check")
    ap.add_argument(
        "--corpora", type=Path, default=CORPORA, help=f"folder with en/ and zh/ ({CORPORA})"
    )
    args = ap.parse_args()
    if args.quick:
        args.mb = args.zh_mb = 5
    n_workers = args.workers or (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )

    print("# aunet prep benchmark")
    print()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"- CPU: {cpu_model()}; os.cpu_count() = {os.cpu_count()}; usable cores = {usable}; "
          f"memory = {psutil.virtual_memory().total / 2**30:.1f} GiB")  # fmt: skip
    print(f"- Python {platform.python_version()}; aunet commit {git_head()}; {arrow_pool()}")
    compiled = precompile()
    backend = getattr(importlib.import_module("splitters.regex_family"), "BACKEND", {}).get("name")
    print(f"- regex splitter backend in this process: {backend}")
    print(f"- N workers = {n_workers}; --shard-size 8MB; --val-fraction 0.01; MB = 10^6 bytes")
    if args.wait_quiet > 0:
        wait_quiet(args.wait_quiet)
    ceiling = scaling_ceiling(n_workers)
    print(f"- machine scaling ceiling: {n_workers} processes of a pure-Python CPU loop do "
          f"{ceiling:.3f}x the work of one (about the best N-worker speedup here)")  # fmt: skip
    print("- load average at start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))

    one_core = {min(os.sched_getaffinity(0))} if hasattr(os, "sched_getaffinity") else None
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    physical, spread = topology(cores)
    if n_workers <= len(spread):
        print(f"- physical cores: {physical} (sysfs topology); the {n_workers} separate preps "
              f"take cores {','.join(map(str, spread[:n_workers]))}")  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still clean up the work dir
    work_root = BENCH / "_work"
    work_root.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="prep-", dir=work_root))
    rows = []
    checks = []
    try:
        corpora = [
            ("en pydocs", [args.corpora / "en" / "pydocs.txt"], args.mb),
            ("zh", sorted((args.corpora / "zh").glob("*.txt")), args.zh_mb),
        ]
        built = []
        for name, sources, mb in corpora:
            path, one_copy = build_corpus(sources, int(mb * MB), work / f"{name.split()[0]}.txt")
            data = path.read_bytes()
            docs = paragraphs(data)
            # From one copy of the sources: a repeated corpus adds nothing to the sample.
            ref_docs = sample(paragraphs(one_copy), int(args.ref_mb * MB))
            folder = work / f"{name.split()[0]}-pieces"
            pieces = separate_pieces(path, n_workers, len(spread), folder)
            built.append((name, path, len(data), docs, ref_docs, pieces))
            biggest = max(map(len, docs))
            print(f"- corpus {name}: {len(data) / MB:.2f} MB, {len(docs)} paragraphs "
                  f"(largest {biggest / MB:.2f} MB), reference sample "
                  f"{sum(map(len, ref_docs)) / MB:.2f} MB ({len(ref_docs)} paragraphs); "
                  f"from {', '.join(p.name for p in sources)}")  # fmt: skip
        print()
        sys.stdout.flush()

        for name, path, size, docs, ref_docs, pieces in built:
            for k in (1, 2, 3):
                specs = list(STAGES[:k])
                print(f"  running {name}, {k} stage(s) ...", file=sys.stderr, flush=True)
                if args.wait_quiet > 0:
                    wait_quiet(args.wait_quiet)
                load = OtherLoad()
                row = Row(name, k, size)
                # Interleaved: each round times every column once, so the best-of of every
                # column samples the same stretches of this (shared, variable) machine.
                for _ in range(args.repeat):
                    row.ref = max(row.ref, bench_reference(ref_docs, k))
                    row.ours = max(row.ours, bench_aunet(docs, specs))
                    row.one = best(row.one, run_prep(path, specs, 1, work / "out"))
                    row.many = best(row.many, run_prep(path, specs, n_workers, work / "out"))
                    row.core = best(row.core, run_prep(path, specs, 1, work / "out", one_core))
                    row.startup = min(row.startup, startup_seconds(specs, work, 2))
                    if pieces:
                        cpus = spread[:n_workers]
                        wall = independent(pieces, specs, work, cpus)
                        row.separate = min(row.separate, wall)
                        tiny = [work / "tiny.txt"] * n_workers  # written by startup_seconds
                        wall = independent(tiny, specs, work, cpus)
                        row.separate_startup = min(row.separate_startup, wall)
                row.other = load.cores()
                rows.append(row)
                if not args.no_check:
                    checks.append((name, k, *official_agreement(ref_docs, k)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):  # left there if something else is in it
            work_root.rmdir()
    report(rows, checks, n_workers, args.repeat, compiled)


def report(
    rows: list[Row], checks: list[tuple], n_workers: int, repeat: int, compiled: bool
) -> None:
    print(
        "| corpus | stages | reference split MB/s | aunet split MB/s | prep 1 worker MB/s "
        f"| prep {n_workers} workers MB/s | speedup | ratio vs reference "
        "| peak RSS 1w (MB) | peak RSS Nw (MB) | prep 1 worker on 1 core MB/s "
        "| speedup vs 1 core | start-up s | prep 1 worker excl. start-up MB/s "
        "| ratio excl. start-up | 1 core excl. start-up MB/s "
        f"| {n_workers} separate 1-core preps excl. start-up MB/s "
        f"| {n_workers} workers vs {n_workers} separate, excl. start-up |"
    )
    print("|---|" + "---:|" * 17)
    for r in rows:
        print(
            f"| {r.corpus} | {r.stages} | {r.ref:.3f} | {r.ours:.3f} | {r.p1:.3f} "
            f"| {r.pn:.3f} | {r.pn / r.p1:.3f}x | {r.p1 / r.ref:.2f}x | {r.one.rss / MB:.1f} "
            f"| {r.many.rss / MB:.1f} | {r.pc:.3f} | {r.pn / r.pc:.3f}x | {r.startup:.2f} "
            f"| {r.p1_excl:.3f} | {r.p1_excl / r.ref:.2f}x | {r.pc_excl:.3f} "
            + (f"| {r.sep_excl:.3f} | {r.pn_excl / r.sep_excl:.0%} |" if r.sep_excl else "| | |")
        )
    print()
    print(f"Every column is the best of {repeat} rounds; each round timed every column once.")
    print("prep wall s / CPU s of the process tree, 1 worker | N workers | 1 worker on 1 core: "
          + "; ".join(
        f"{r.corpus} {r.stages}st {r.one.wall:.2f}/{r.one.cpu:.2f} | "
        f"{r.many.wall:.2f}/{r.many.cpu:.2f} | {r.core.wall:.2f}/{r.core.cpu:.2f}"
        for r in rows))  # fmt: skip
    print(
        "Environment: PYTHONDONTWRITEBYTECODE="
        f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}; "
        + (
            "aunet's modules were compiled to bytecode before timing (as pip does when "
            "installing), so start-up loads them rather than compiling them"
            if compiled
            else "aunet's modules could NOT all be compiled to bytecode before timing: "
            "start-up may include compiling them"
        )
    )
    print("Other processes on the machine during each row (average busy cores; 0 = quiet): "
          + "; ".join(f"{r.corpus} {r.stages}st {r.other:.2f}" for r in rows))  # fmt: skip
    if checks:
        print("aunet mode=official == reference on the sampled paragraphs: " + "; ".join(
            f"{name} {k}st {same}/{total}" for name, k, same, total in checks))  # fmt: skip
    print()
    print("Targets:")
    for r in (r for r in rows if r.stages == 3):
        ratio = r.p1 / r.ref
        verdict = "MET" if ratio >= 25 else "NOT MET"
        print(f"- {r.corpus}, 3 stages, 1 worker: {ratio:.2f}x the reference split "
              f"(>= 25x: {verdict})")  # fmt: skip
    for r in (r for r in rows if r.stages == 3):
        print(f"- {r.corpus}, 3 stages, 1 worker, excluding the {r.startup:.2f} s start-up: "
              f"{r.p1_excl / r.ref:.2f}x the reference split (the rate of a long run)")  # fmt: skip
    for r in (r for r in rows if r.stages == 3):
        sp, spc = r.pn / r.p1, r.pn / r.pc
        busy = r.one.cpu / r.one.wall  # threads besides the worker's: reading, writing
        print(f"- {r.corpus}, 3 stages: {n_workers} workers = {sp:.3f}x one worker "
              f"(near-linear: ~{n_workers}x; efficiency {sp / n_workers:.0%}; one worker "
              f"kept {busy:.2f} cores busy on average); "
              f"= {spc:.3f}x one worker held to one core ({r.pc:.2f} MB/s; efficiency "
              f"{spc / n_workers:.0%})" + (
              f". Excluding start-up, {n_workers} separate one-core "
              f"preps, each on 1/{n_workers} of the corpus and sharing nothing but the "
              f"machine, did {r.sep_excl / r.pc_excl:.2f}x one worker held to one core "
              f"(whole corpus); {n_workers} "
              f"workers did {r.pn_excl / r.sep_excl:.0%} of what they did"
              if r.sep_excl else ""))  # fmt: skip
    for r in (r for r in rows if r.stages == 3):
        ratio = r.pc / r.ref
        print(f"- {r.corpus}, 3 stages, 1 worker on 1 core: {ratio:.2f}x the reference split")


if __name__ == "__main__":
    main()
