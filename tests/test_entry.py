"""The console script's lean start and fast exit (aunet_cli/entry.py), through the real
executable: nothing a command prints is lost, and exit statuses are kept."""

from __future__ import annotations

import json
import subprocess
import sys

from aunet_cli.entry import FAST_EXIT

from .test_prep_cli import AUNET, aunet, aunet_env


def test_fast_exit_flushes_large_output_through_a_pipe():
    lines = [json.dumps({"text": f"document number {i} has a few words"}) for i in range(5000)]
    proc = aunet("split", "-s", "regex-words", "--format", "jsonl", stdin="\n".join(lines).encode())
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert len(out) == 5000  # far more than a pipe buffer holds: every line arrived
    assert all(json.loads(line)["levels"] for line in out)


def test_fast_exit_keeps_the_exit_status_of_a_user_error(tmp_path):
    proc = aunet("prep", tmp_path / "missing.txt", "-s", "regex-words", "--out", tmp_path / "o")
    assert proc.returncode == 2
    assert "missing.txt" in proc.stderr and "Traceback" not in proc.stderr


def test_fast_exit_prints_the_prep_summary(tmp_path):
    (tmp_path / "a.txt").write_text("one paragraph here\n\nand another one\n")
    proc = aunet("prep", tmp_path / "a.txt", "-s", "regex-words", "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert "2 documents, " in proc.stdout  # the summary line, printed before the fast exit
    assert (tmp_path / "o" / "manifest.json").exists()


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    lines = tmp_path / "in.jsonl"
    lines.write_text("\n".join(json.dumps({"text": f"line {i} of text"}) for i in range(20000)))
    with lines.open("rb") as stdin:
        proc = subprocess.Popen(
            [str(AUNET), "split", "-s", "regex-words", "--format", "jsonl"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=aunet_env(),
        )
    assert proc.stdout.readline().startswith(b'{"levels"')
    proc.stdout.close()  # like `| head -1`
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 1)
    assert "Traceback" not in stderr


def test_only_commands_without_background_work_exit_fast():
    assert {"train", "generate", "compare", "eval"}.isdisjoint(FAST_EXIT)


def _arrow_pool_after_lean_start(env: dict[str, str]) -> str:
    code = (
        "from aunet_cli.entry import lean_start; lean_start(); "
        "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_arrow_allocates_from_the_heap_unless_the_user_chose():
    env = {k: v for k, v in aunet_env().items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    assert _arrow_pool_after_lean_start(env) == "system"
    assert (
        _arrow_pool_after_lean_start(env | {"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}) == "mimalloc"
    )


def test_the_entry_module_loads_neither_numpy_nor_pyarrow():
    """run() calls lean_start() before it imports the app: that only works while
    importing aunet_cli.entry (and the package) leaves numpy and pyarrow unloaded."""
    code = "import sys, aunet_cli.entry; print(sorted({'numpy', 'pyarrow'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
