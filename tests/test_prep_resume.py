"""Determinism and resumption of `aunet prep`: workers, reruns, SIGKILL, job arrays.

Output is compared file by file (sha256 of every shard, and manifest.json byte for
byte) against an uninterrupted single-process run over the same input path.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from aunet_cli.atomic import boot_id, temporary_name
from aunet_cli.prep import PrepOptions
from aunet_cli.prep import prep as prep_in_process
from aunet_cli.readers import ReadOptions, discover

from .test_prep_cli import AUNET, SPECS, STAGE_ARGS, aunet, aunet_env, prep, sha256, write, zst

WORDS = [
    *("the", "of", "and", "a", "to", "in", "is", "was", "for", "on", "that", "with"),
    *("données", "straße", "naïve", "façade", "中文", "日本語", "мир", "κόσμος", "🙂", "🚀"),
    *("can't", "e.g.", "(see)", "[1]", "42", "3.14", "1,000", "2025-06-01", "x86_64"),
    *("--flag", "foo.bar", "a/b/c"),
]


def varied_corpus(n_bytes: int, seed: int = 0) -> bytes:
    """~n_bytes of JSON lines: varied lengths, scripts, digits, punctuation, newlines."""
    rng = random.Random(seed)
    vocab = WORDS + [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyzé", k=rng.randint(1, 12)))
        for _ in range(3000)
    ]
    seps = [" "] * 12 + ["  ", ", ", ". ", "\t", "\n", " \n\n", "; ", " - "]
    pool = []
    for _ in range(400):  # distinct bodies; each document adds its own number
        n = rng.randint(3, 600)
        words, gaps = rng.choices(vocab, k=n), rng.choices(seps, k=n)
        pool.append("".join(w + g for w, g in zip(words, gaps, strict=True)).strip())
    lines, size, i = [], 0, 0
    while size < n_bytes:
        text = f"Document {i}. {pool[rng.randrange(len(pool))]} {rng.randint(0, 10**6)}"
        line = json.dumps({"text": text, "id": i}, ensure_ascii=rng.random() < 0.3) + "\n"
        lines.append(line)
        size += len(line.encode())
        i += 1
    return "".join(lines).encode()


def snapshot(out: Path, hidden: bool = True) -> dict[str, str]:
    """{relative path: sha256} of every file under train/ and val/, and of manifest.json."""
    assert (out / "manifest.json").is_file(), f"{out} is not complete"
    files = [out / "manifest.json", *(out / "train").rglob("*"), *(out / "val").rglob("*")]
    return {
        p.relative_to(out).as_posix(): sha256(p.read_bytes())
        for p in files
        if p.is_file() and (hidden or not p.name.startswith("."))
    }


def mtimes(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*")}


def ids(out: Path) -> list[str]:
    found: list[str] = []
    for split in ("train", "val"):
        if (out / split).exists():
            table = ds.dataset(out / split, format="arrow").to_table(columns=["id"])
            found += table["id"].to_pylist()
    return found


def n_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")


# --- ~1.5 MB, several 200 KB shards ----------------------------------------------------


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> Path:
    """A directory holding c.jsonl (~1.5 MB), and the same text as three inputs."""
    root = tmp_path_factory.mktemp("medium")
    data = varied_corpus(1_500_000, seed=1)
    write(root / "c.jsonl", data)
    lines = data.splitlines(keepends=True)
    third = len(lines) // 3
    write(root / "three" / "a.jsonl", b"".join(lines[:third]))
    write(root / "three" / "b.jsonl.zst", zst(b"".join(lines[third : 2 * third])))
    write(root / "three" / "c.jsonl", b"".join(lines[2 * third :]))
    return root


MEDIUM_OPTS = ("--shard-size", "200KB", "--val-fraction", "0.1", "--workers", "1")


@pytest.fixture(scope="module")
def single(medium) -> dict[str, Path]:
    """References, one process each: c.jsonl alone, and the three inputs of three/."""
    prep("c.jsonl", *MEDIUM_OPTS, "--out", "single-c.jsonl", cwd=medium)
    prep("three", *MEDIUM_OPTS, "--out", "single-three", cwd=medium)
    return {"c.jsonl": medium / "single-c.jsonl", "three": medium / "single-three"}


def test_workers_give_byte_identical_output(medium, single):
    """--workers 1 and --workers 2: the same shard files and manifest.json, byte for byte."""
    prep("c.jsonl", *MEDIUM_OPTS, "--workers", "2", "--out", "two", cwd=medium)
    one, two = snapshot(single["c.jsonl"]), snapshot(medium / "two")
    assert len([p for p in one if p.startswith("train/")]) >= 5
    assert any(p.startswith("val/") for p in one)
    assert one == two
    got = ids(medium / "two")
    assert len(got) == len(set(got)) == n_lines(medium / "c.jsonl")


def test_rerun_over_finished_output_is_a_no_op(medium, single):
    """A second run over finished output exits 0 at once and touches no file."""
    out = medium / "rerun"
    shutil.copytree(single["c.jsonl"], out)
    before = mtimes(out)
    t0 = time.perf_counter()
    res = aunet("prep", "c.jsonl", *MEDIUM_OPTS, *STAGE_ARGS, "--out", out.name, cwd=medium)
    assert res.returncode == 0, res.stderr
    assert time.perf_counter() - t0 < 10
    assert "nothing to do" in res.stderr
    assert mtimes(out) == before


def test_reading_inputs_at_once_gives_byte_identical_output(medium, single):
    """Three inputs read by three threads (--readers 3): one reader's files, byte for byte."""
    prep("three", *MEDIUM_OPTS, "--workers", "2", "--readers", "3", "--out", "r3", cwd=medium)
    assert snapshot(medium / "r3") == snapshot(single["three"])


@pytest.mark.parametrize(
    ("inputs", "order"),
    [("c.jsonl", "01"), ("three", "01"), ("three", "10")],
    ids=["one-input", "three-inputs", "three-inputs-reversed"],
)
def test_job_array_equals_a_single_run(medium, single, inputs, order):
    """--num-shards 2 with --shard-index 0 and 1 (either order) into one --out: the same
    files and manifest.json as a single run; manifest.json only after the last job."""
    out = medium / f"jobs-{inputs}-{order}"
    for index in order:
        assert not (out / "manifest.json").exists()
        prep(
            inputs, *MEDIUM_OPTS, "--out", out.name, "--num-shards", "2", "--shard-index", index,
            cwd=medium,
        )  # fmt: skip
    assert snapshot(out) == snapshot(single[inputs])
    got = ids(out)
    assert len(got) == len(set(got)) == n_lines(medium / "c.jsonl")


def test_a_job_writes_no_manifest_while_another_jobs_shard_is_missing(medium, single, tmp_path):
    """A job array over an output whose shard of job 0's chunk 2 was deleted: job 1,
    run first, finds its own chunks done but writes no manifest listing the missing
    shard; job 0 then writes the chunk again, and the manifest."""
    out = tmp_path / "out"
    shutil.copytree(single["c.jsonl"], out)
    (out / "manifest.json").unlink()
    (out / "train" / "shard-00000-00002.arrow").unlink()  # chunk 2 % 2 == 0: job 0's
    jobs = ("--num-shards", "2", "--shard-index")
    prep("c.jsonl", *MEDIUM_OPTS, "--out", out, *jobs, "1", cwd=medium)
    assert not (out / "manifest.json").exists()
    prep("c.jsonl", *MEDIUM_OPTS, "--out", out, *jobs, "0", cwd=medium)
    assert snapshot(out) == snapshot(single["c.jsonl"])


# --- SIGKILL and resume on ~30 MB ------------------------------------------------------

BIG_ARGS = ("big.jsonl", *STAGE_ARGS, "-q", "--workers", "1", "--shard-size", "1MB")


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """~30 MB of JSON lines and its uninterrupted reference output in ref/."""
    root = tmp_path_factory.mktemp("big")
    write(root / "big.jsonl", varied_corpus(30_000_000, seed=2))
    res = aunet("prep", *BIG_ARGS, "--out", "ref", cwd=root, timeout=300)
    assert res.returncode == 0, res.stderr
    return root


def shards(out: Path) -> list[str]:
    train = out / "train"
    return [n for n in os.listdir(train) if n.endswith(".arrow")] if train.exists() else []


def writing_a_shard(out: Path) -> bool:
    train = out / "train"
    return train.exists() and any(".tmp-" in n for n in os.listdir(train))


@pytest.fixture(scope="module")
def killed(big) -> dict:
    """`aunet prep` SIGKILLed (whole process group) once a shard exists, ideally while the
    next one is being written; then the same command rerun to completion."""
    proc = subprocess.Popen(
        [str(AUNET), "prep", *BIG_ARGS, "--out", "killed"],
        cwd=big,
        env=aunet_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out, mid_write, done = big / "killed", False, 0
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            done = len(shards(out))
            mid_write = done >= 1 and writing_a_shard(out)
            if mid_write or done >= 3:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.001)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if proc.returncode != -signal.SIGKILL or (out / "manifest.json").exists():
        pytest.skip("the run finished before it could be killed")
    res = aunet("prep", *BIG_ARGS, "--out", "killed", cwd=big, timeout=300)
    return {"out": out, "shards_at_kill": done, "mid_write": mid_write, "rerun": res}


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_worker_processes_end_with_a_killed_prep(big, sig, tmp_path):
    """prep with worker processes (a splitter that holds the GIL) killed by SIGTERM (a
    timeout, Slurm, docker stop) or SIGKILL, the parent alone: its workers end too,
    rather than waiting forever on their task queue."""
    proc = subprocess.Popen(
        [str(AUNET), "prep", "big.jsonl", "-s", "learned-zh", "-q", "--workers", "2",
         "--out", str(tmp_path / "out")],
        cwd=big, env=aunet_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(workers := children(proc.pid)) < 2:
            assert proc.poll() is None, "prep ended before its workers could be seen"
            assert time.monotonic() < deadline, "no worker processes in time"
            time.sleep(0.01)
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == -sig
        deadline = time.monotonic() + 10
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(alive(w) for w in workers), "worker processes outlived prep"
    finally:
        for w in workers:
            if alive(w):
                os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_killed_run_resumes_to_identical_output(big, killed):
    """SIGKILL after the first shard, rerun: the files of an uninterrupted run, nothing
    lost or duplicated."""
    assert 1 <= killed["shards_at_kill"] < len(shards(big / "ref"))
    assert killed["rerun"].returncode == 0, killed["rerun"].stderr
    assert snapshot(killed["out"], hidden=False) == snapshot(big / "ref", hidden=False)
    got = ids(killed["out"])
    assert len(got) == len(set(got)) == n_lines(big / "big.jsonl")


def test_kill_during_a_shard_write_leaves_no_temporary_file(killed):
    """Killed while a shard's temporary file existed: after the rerun none is left."""
    if not killed["mid_write"]:
        pytest.skip("the kill did not land during a shard write")
    leftovers = [p.name for p in killed["out"].rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_killed_run_with_several_readers_resumes_to_one_readers_output(tmp_path):
    """Three ~8 MB inputs read at once (--readers 3), SIGKILLed once shards of two
    inputs exist, rerun: the files of one uninterrupted reader."""
    for i in range(3):
        write(tmp_path / "in" / f"part{i}.jsonl", varied_corpus(8_000_000, seed=10 + i))
    args = ("in", *STAGE_ARGS, "-q", "--workers", "2", "--shard-size", "1MB")
    res = aunet("prep", *args, "--readers", "1", "--out", "ref", cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    cmd = [str(AUNET), "prep", *args, "--readers", "3", "--out", "killed"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=aunet_env(), start_new_session=True)
    out, done, inputs_done = tmp_path / "killed", 0, 0
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and inputs_done < 2:
            names = shards(out)  # shard-IIIII-CCCCC.arrow: input, chunk
            done, inputs_done = len(names), len({n.split("-")[1] for n in names})
            time.sleep(0.001)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if proc.returncode != -signal.SIGKILL:
        pytest.skip("the run finished before it could be killed")
    assert inputs_done >= 2 and done < len(shards(tmp_path / "ref"))
    res = aunet("prep", *args, "--readers", "3", "--out", "killed", cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert snapshot(out, hidden=False) == snapshot(tmp_path / "ref", hidden=False)


def test_a_refused_write_is_one_line_keeps_what_is_written_and_resumes(medium, tmp_path):
    """The system refuses to write a shard (a 64 KiB file size limit, as a full disk
    would): exit 5 and one line naming the shard, no temporary file left, the small
    first input's shard kept; the rerun without the limit keeps that file as it is and
    ends with the files of an uninterrupted run."""
    lines = (medium / "c.jsonl").read_bytes().splitlines(keepends=True)
    write(tmp_path / "in" / "a.jsonl", b"".join(lines[:5]))  # one shard of a few KB
    write(tmp_path / "in" / "b.jsonl", b"".join(lines[5:]))  # 200 KB shards
    args = ["in", *MEDIUM_OPTS, *STAGE_ARGS, "-q"]
    prep("in", *MEDIUM_OPTS, "--out", "ref", cwd=tmp_path)
    cmd = " ".join([str(AUNET), "prep", *args, "--out", "out"])
    limited = subprocess.run(
        ["bash", "-c", f"ulimit -f 64 && exec {cmd}"],  # -f counts 1 KiB blocks
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=aunet_env(),
        timeout=120,
    )
    out = tmp_path / "out"
    assert limited.returncode == 5, limited.stderr
    assert "Traceback" not in limited.stderr
    message = limited.stderr.strip()
    assert message.count("\n") == 0 and message.startswith("error: cannot write ")
    assert re.search(r"out/(train|val)/shard-00001-\d{5}\.arrow: File too large", message)
    assert [p.name for p in out.rglob("*") if ".tmp-" in p.name] == []
    kept = sorted(out.glob("*/shard-00000-*.arrow"))
    assert kept and all(p.stat().st_size < 64 << 10 for p in kept)
    before = {p: p.stat().st_mtime_ns for p in kept}
    rerun = aunet("prep", *args, "--out", "out", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert {p: p.stat().st_mtime_ns for p in kept} == before
    assert snapshot(out) == snapshot(tmp_path / "ref")


def test_a_rerun_removes_the_temporary_files_of_a_killed_run(medium, single, tmp_path):
    """Temporaries a SIGKILL can leave (a shard's, a state file's, the manifest's) are
    removed when the same command runs again: those of a process of this host that no
    longer runs or ran before the last boot (a power loss: compared by boot id, not
    by clocks), and those of another host untouched for over an hour. A live writer's
    (this test's process; pid 1 in this boot; a fresh file of another host, as a job
    array's job writing into the same directory) and other files are left alone."""
    out = tmp_path / "out"
    shutil.copytree(single["c.jsonl"], out)
    (out / "manifest.json").unlink()  # killed while writing it
    dead = _finished_pid()
    host = socket.gethostname()
    boot = f".{boot_id()}" if boot_id() else ""
    other_boot = "00000000" if boot_id() != "00000000" else "11111111"
    gone = [
        out / f".manifest.json.tmp-{host}-{dead}{boot}",
        out / "train" / f".shard-00000-00009.arrow.tmp-{host}-{dead}{boot}",
        out / ".state" / ".input-00000.json.tmp-otherhost-1.0123abcd",
        out / "train" / ".shard-00000-00008.arrow.tmp-7",  # an older version's name
        # pid 1 runs now, but not the process that wrote this before the last boot
        out / "val" / f".shard-00000-00008.arrow.tmp-{host}-1.{other_boot}",
    ]
    live = [
        temporary_name(out / "train" / "shard-00000-00007.arrow"),
        out / "train" / f".shard-00000-00006.arrow.tmp-{host}-1{boot}",
        out / "val" / ".shard-00000-00009.arrow.tmp-otherhost-2.0123abcd",
    ]
    for path in gone + live:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half")
    hours_ago = time.time() - 2 * 3600
    for path in gone[2:4]:
        os.utime(path, (hours_ago, hours_ago))
    (out / "notes.txt").write_text("mine")
    prep("c.jsonl", *MEDIUM_OPTS, "--out", out, cwd=medium)
    assert [p for p in gone if p.exists()] == []
    assert [p for p in live if p.exists()] == live
    assert (out / "notes.txt").read_text() == "mine"
    for path in live:
        path.unlink()
    assert snapshot(out) == snapshot(single["c.jsonl"])


def _finished_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("damage", ["deleted", "cut short"])
def test_a_rerun_writes_again_a_shard_that_is_gone_or_cut_short(medium, single, tmp_path, damage):
    """A finished chunk is trusted only while its shards are there at the size they
    were written with (a user deleted one, or a disk lost it): the rerun is no no-op,
    it writes that chunk again and ends byte-identical to an uninterrupted run,
    leaving the shards of every other chunk untouched."""
    out = tmp_path / "out"
    shutil.copytree(single["c.jsonl"], out)
    victim = sorted((out / "train").glob("*.arrow"))[2]
    if damage == "deleted":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:-100])
    before = mtimes(out)
    res = prep("c.jsonl", *MEDIUM_OPTS, "--out", out, cwd=medium)
    assert "nothing to do" not in res.stderr
    assert snapshot(out) == snapshot(single["c.jsonl"])
    after = mtimes(out)
    rewritten = {p for p in after if after[p] != before.get(p)}
    assert victim.relative_to(out).as_posix() in rewritten
    chunk = {f"{split}/{victim.name}" for split in ("train", "val")}  # its chunk's shards
    assert not {p for p in rewritten if p.endswith(".arrow")} - chunk


def test_a_chunk_is_on_record_only_once_its_shards_names_are_on_disk(medium, tmp_path, monkeypatch):
    """Power loss: a file's fsync covers its bytes, its name needs its folder's fsync.
    In a real prep (in this process, every os.replace and os.fsync recorded), each
    shard's folder is fsynced after the shard is renamed into it and before its
    chunk's state file is renamed into place (a resumed run trusts that file); and
    every file renamed into place, manifest.json last, has its folder fsynced."""
    events: list[tuple[str, object]] = []
    lock = threading.Lock()
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src, dst, *a, **kw):
        real_replace(src, dst, *a, **kw)
        with lock:
            events.append(("renamed", Path(dst)))

    def fsync(fd):
        real_fsync(fd)
        st = os.fstat(fd)
        with lock:
            events.append(("fsynced", (st.st_dev, st.st_ino)))

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "out"
    opts = PrepOptions(
        splitters=tuple(SPECS),
        read=ReadOptions(),
        val_fraction=0.1,
        shard_bytes=200_000,
        workers=2,
    )
    manifest = prep_in_process(discover([str(medium / "c.jsonl")], [], [], "auto"), out, opts)
    monkeypatch.undo()
    assert len(manifest["shards"]) >= 6

    def folder_synced(path: Path, after: int, before: int) -> bool:
        st = path.parent.stat()
        key = (st.st_dev, st.st_ino)
        return any(e == ("fsynced", key) for e in events[after + 1 : before])

    renamed = {dst: i for i, (kind, dst) in enumerate(events) if kind == "renamed"}
    for shard in manifest["shards"]:
        shard_at = renamed[out / shard["path"]]
        key = shard["path"].split("-", 1)[1].removesuffix(".arrow")
        state_at = renamed[out / ".state" / f"chunk-{key}.json"]
        assert shard_at < state_at
        assert folder_synced(out / shard["path"], shard_at, state_at), shard["path"]
    assert max(renamed.values()) == renamed[out / "manifest.json"]
    for path, at in renamed.items():
        assert folder_synced(path, at, len(events)), path
