"""Bad input to `aunet prep`: exit code, one `error:` line naming the place, no traceback.

Exit codes (README): 2 usage / missing or unreadable path / unknown splitter,
3 bad record or corrupt stream under --on-error fail, 4 output directory conflict.
Invalid UTF-8, NUL bytes and empty documents are not errors.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .test_prep_cli import AUNET, STAGE_ARGS, aunet, aunet_env, jsonl, manifest, texts, write, zst

GOOD = jsonl({"text": "a good document"})


def expect_error(proc, code: int, *needles: str) -> str:
    """Exit `code`; stderr is exactly one `error: ...` line holding every needle."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def run_prep(cwd: Path, *args: object, stages=STAGE_ARGS, columns: int | None = 10_000):
    """`aunet prep ARGS --out out -q --workers 1` in `cwd`, without checking the outcome."""
    return aunet(
        "prep", *args, *stages, "--out", "out", "-q", "--workers", "1", cwd=cwd, columns=columns
    )


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def lines_corpus(n: int = 400) -> bytes:
    return jsonl(*({"text": f"line {i} of a compressed file " * 3} for i in range(n)))


# --- one failing run per case, all run up front (four processes at a time) -------------


def _parquet(table: dict) -> Callable[[Path], None]:
    return lambda path: pq.write_table(pa.table(table), path)


@dataclass(frozen=True)
class Case:
    """Files to create, `aunet prep` arguments, the exit code and what the line must say."""

    files: dict[str, bytes | Callable[[Path], None]]
    args: tuple[str, ...]
    code: int
    needles: tuple[str, ...]
    stages: tuple[str, ...] = tuple(STAGE_ARGS)


CASES = {
    # bad records under the default --on-error fail: exit 3, FILE line/row N: reason
    "invalid-json": Case(
        {"bad.jsonl": GOOD + b'{"text": "unterminated\n' + GOOD},
        ("bad.jsonl",), 3, ("bad.jsonl", "line 2", "invalid JSON", "--on-error skip"),
    ),
    "missing-field": Case(
        {"miss.jsonl": GOOD + GOOD + jsonl({"body": "no text field"})},
        ("miss.jsonl",), 3, ("miss.jsonl", "line 3", "missing field", "text"),
    ),
    "non-string-field": Case(
        {"num.jsonl": GOOD + jsonl({"text": 42})},
        ("num.jsonl",), 3, ("num.jsonl", "line 2", "text", "string"),
    ),
    "not-an-object": Case(
        {"arr.jsonl": GOOD + jsonl(["text", "in a list"])},
        ("arr.jsonl",), 3, ("arr.jsonl", "line 2", "object"),
    ),
    "parquet-null": Case(
        {"t.parquet": _parquet({"text": ["fine", None, "fine too"]})},
        ("t.parquet",), 3, ("t.parquet", "row 2", "null"),
    ),
    # corrupt and truncated streams: exit 3 naming the file
    "truncated-jsonl-zst": Case(
        {"cut.jsonl.zst": truncated(zst(lines_corpus()))},
        ("cut.jsonl.zst",), 3, ("cut.jsonl.zst", "truncated"),
    ),
    "truncated-gz": Case(
        {"cut.jsonl.gz": truncated(gzip.compress(lines_corpus()))},
        ("cut.jsonl.gz",), 3, ("cut.jsonl.gz", "truncated"),
    ),
    "corrupt-zst": Case(
        {"junk.jsonl.zst": b"this is not a zstd frame\n" * 8},
        ("junk.jsonl.zst",), 3, ("junk.jsonl.zst", "zstd"),
    ),
    "not-parquet": Case(
        {"fake.parquet": b"plain text, not parquet\n"},
        ("fake.parquet",), 3, ("fake.parquet", "Parquet"),
    ),
    # paths: exit 2
    "nonexistent": Case({}, ("nope.jsonl",), 2, ("nope.jsonl", "no such file")),
    "unknown-format": Case({"data.bin": GOOD}, ("data.bin",), 2, ("data.bin", "--input-format")),
    "no-matching-files": Case(
        {"d/a.jsonl": GOOD}, ("d", "--include", "*.txt"), 2, ("d", "no input files")
    ),
    "parquet-without-column": Case(
        {"t.parquet": _parquet({"body": ["x"]})},
        ("t.parquet",), 2, ("t.parquet", "body", "--field"),
    ),
    # splitters and options: exit 2
    "unknown-splitter": Case(
        {"a.jsonl": GOOD}, ("a.jsonl",), 2,
        ("no-such-splitter", "regex-words", "regex-word-pairs", "regex-4words"),
        ("-s", "no-such-splitter"),
    ),
    "bad-splitter-option-value": Case(
        {"a.jsonl": GOOD}, ("a.jsonl",), 2, ("mode", "nope", "causal", "official"),
        ("-s", "regex-words:mode=nope"),
    ),
    "unknown-splitter-option": Case(
        {"a.jsonl": GOOD}, ("a.jsonl",), 2, ("colour",), ("-s", "regex-words:colour=red")
    ),
    "bad-shard-size": Case(
        {"a.jsonl": GOOD}, ("a.jsonl", "--shard-size", "lots"), 2, ("--shard-size", "lots")
    ),
    "shard-index-out-of-range": Case(
        {"a.jsonl": GOOD}, ("a.jsonl", "--num-shards", "2", "--shard-index", "2"), 2,
        ("--shard-index",),
    ),
    # the output directory: exit 4
    "out-holds-other-files": Case(
        {"a.jsonl": GOOD, "out/precious.txt": b"not ours"}, ("a.jsonl",), 4,
        ("out", "not made by `aunet prep`", "choose another --out"),
    ),
    "out-holds-other-files-overwrite": Case(
        {"a.jsonl": GOOD, "out/precious.txt": b"not ours"}, ("a.jsonl", "--overwrite"), 4,
        ("out", "not made by `aunet prep`", "--overwrite only replaces"),
    ),
    "parquet-int-column": Case(
        {"t.parquet": _parquet({"text": [1, 2, 5_000_000]})},
        ("t.parquet",), 2, ("t.parquet", "'text'", "int64", "not text", "--field"),
    ),
    "parquet-list-column": Case(
        {"t.parquet": _parquet({"text": [["a"], ["b"]]})},
        ("t.parquet",), 2, ("t.parquet", "list<", "not text"),
    ),
    "parquet-from-stdin": Case(
        {}, ("-", "--input-format", "parquet"), 2, ("standard input", "Parquet")
    ),
    "same-file-twice": Case(
        {"d/x/a.jsonl": GOOD}, ("d/x/a.jsonl", "d"), 2, ("a.jsonl", "d/x/a.jsonl", "same file")
    ),
    "splitter-typo": Case(
        {"a.jsonl": GOOD}, ("a.jsonl",), 2, ("did you mean 'regex-words'",), ("-s", "regex-word")
    ),
    "splitter-option-twice": Case(
        {"a.jsonl": GOOD}, ("a.jsonl",), 2, ("'mode' given twice",),
        ("-s", "regex-words:mode=official,mode=causal"),
    ),
    "empty-gz": Case({"e.jsonl.gz": b""}, ("e.jsonl.gz",), 3, ("e.jsonl.gz", "empty")),
    "empty-zst": Case({"e.jsonl.zst": b""}, ("e.jsonl.zst",), 3, ("e.jsonl.zst", "empty")),
    "prep-output-as-input": Case(
        {"old/.state/prep.json": b"{}", "old/train/shard-00000-00000.arrow": b"x"}, ("old",), 2,
        ("old", "holds the output of `aunet prep`", "data.prepared"),
    ),
    "val-fraction-nan": Case(
        {"a.jsonl": GOOD}, ("a.jsonl", "--val-fraction", "nan"), 2, ("--val-fraction", "nan")
    ),
    "out-is-a-file": Case(
        {"a.jsonl": GOOD, "out": b"not ours"}, ("a.jsonl",), 4, ("out", "not a directory"),
    ),
    "out-is-a-file-overwrite": Case(
        {"a.jsonl": GOOD, "out": b"not ours"}, ("a.jsonl", "--overwrite"), 4,
        ("out", "not a directory"),
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """Every CASES entry run in its own directory (in parallel: each is a process)."""

    def run(name: str, cwd: Path):
        case = CASES[name]
        for rel, data in case.files.items():
            path = cwd / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            data(path) if callable(data) else path.write_bytes(data)
        return cwd, run_prep(cwd, *case.args, stages=case.stages)

    # mktemp here, not in the threads: pytest makes its base directory on first use,
    # and two threads doing that at once made two (one mktemp then failed)
    dirs = [tmp_path_factory.mktemp(name) for name in CASES]
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(CASES, pool.map(run, CASES, dirs), strict=True))


@pytest.mark.parametrize("name", CASES)
def test_bad_input_fails_with_one_line(outcomes, name):
    """The documented exit code; one `error:` line naming the file and line/row; no output."""
    cwd, res = outcomes[name]
    case = CASES[name]
    expect_error(res, case.code, *case.needles)
    assert not (cwd / "out" / "manifest.json").exists()
    for rel, data in case.files.items():  # inputs (and foreign files in --out) untouched
        if not callable(data):
            assert (cwd / rel).read_bytes() == data


# --- --on-error skip -------------------------------------------------------------------

MIXED = (
    GOOD  # 1
    + b"{not json}\n"  # 2
    + jsonl({"body": "x"})  # 3 missing field
    + jsonl({"text": 3.5})  # 4 non-string
    + jsonl([1, 2])  # 5 not an object
    + b"\n"  # 6 blank line
    + jsonl({"text": ""})  # 7 empty document
    + jsonl({"text": "kept too"})  # 8
    + b'{"text": "cut\n'  # 9 invalid JSON
)


def test_on_error_skip_counts_skipped_records_by_reason(tmp_path):
    """Fails at line 2 by default; rerun into the same --out with --on-error skip: exit 0,
    good records kept, manifest counts every skipped record by reason."""
    write(tmp_path / "mixed.jsonl", MIXED)
    expect_error(run_prep(tmp_path, "mixed.jsonl"), 3, "mixed.jsonl", "line 2", "invalid JSON")
    res = run_prep(tmp_path, "mixed.jsonl", "--on-error", "skip")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    assert texts(out) == {"mixed.jsonl#1": b"a good document", "mixed.jsonl#8": b"kept too"}
    m = manifest(out)
    skipped = m["totals"]["skipped"]
    assert skipped["invalid JSON"] == 2
    assert skipped["blank line"] == 1
    assert skipped["empty document"] == 1

    def count(word: str) -> int:
        return sum(n for reason, n in skipped.items() if word in reason)

    assert count("missing field") == 1
    assert count("string") == 1
    assert count("object") == 1
    assert sum(skipped.values()) == 7
    assert m["inputs"][0]["skipped"] == skipped
    assert m["totals"]["documents"] == 2


# --- not errors: empty documents, invalid UTF-8, NUL -----------------------------------


def test_empty_documents_are_skipped_and_counted_even_under_fail(tmp_path):
    """Empty documents (jsonl "", empty parquet value, empty txt line) never fail the run;
    empty input files (plain and .zst) just give no documents."""
    write(tmp_path / "e.jsonl", jsonl({"text": ""}) + GOOD + jsonl({"text": ""}))
    write(tmp_path / "e.txt", b"first\n\nthird")
    pq.write_table(pa.table({"text": ["", "row"]}), tmp_path / "e.parquet")
    write(tmp_path / "none.jsonl", b"")
    write(tmp_path / "none.jsonl.zst", zst(b""))
    res = run_prep(
        tmp_path, "e.jsonl", "e.txt", "e.parquet", "none.jsonl", "none.jsonl.zst",
        "--doc-per", "line",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert texts(tmp_path / "out") == {
        "e.jsonl#2": b"a good document",
        "e.txt#1": b"first",
        "e.txt#3": b"third",
        "e.parquet#2": b"row",
    }
    m = manifest(tmp_path / "out")
    assert m["totals"]["skipped"] == {"empty document": 4}
    assert [i["skipped"] for i in m["inputs"][:3]] == [{"empty document": n} for n in (2, 1, 1)]
    assert [i["documents"] for i in m["inputs"]] == [1, 2, 1, 0, 0]


JSONL_BAD_BYTES = b"a\xff\xfe\x80b \xc3( \xed\xa0\x80"
TXT_BAD_BYTES = b"\xff\xfe\xc0\xaf overlong \xf4\x90\x80\x80"
RAW = {
    # jsonl: raw invalid UTF-8 inside the string, \u0000, and \udcXX escapes (= raw bytes)
    "r.jsonl#1": (b'{"text": "' + JSONL_BAD_BYTES + b'"}\n', JSONL_BAD_BYTES),
    "r.jsonl#2": (b'{"text": "nul \\u0000 end"}\n', b"nul \x00 end"),
    "r.jsonl#3": (b'{"text": "esc \\udc80\\udcff"}\n', b"esc \x80\xff"),
    # txt lines: NUL, invalid and overlong sequences, a code point above U+10FFFF
    "r.txt#1": (b"\x00\x00 nul line\n", b"\x00\x00 nul line"),
    "r.txt#2": (TXT_BAD_BYTES, TXT_BAD_BYTES),
}


def test_invalid_utf8_and_nul_are_kept_byte_exact(tmp_path):
    """Invalid UTF-8 and NUL bytes are data: exit 0 under --on-error fail, bytes unchanged."""
    for name in ("r.jsonl", "r.txt"):
        write(tmp_path / name, b"".join(raw for k, (raw, _) in RAW.items() if k.startswith(name)))
    write(tmp_path / "r.jsonl.gz", gzip.compress(b'{"text": "gz \xff\\u0000"}\n'))
    res = run_prep(tmp_path, "r.jsonl", "r.txt", "r.jsonl.gz", "--doc-per", "line")
    assert res.returncode == 0, res.stderr
    want = {k: v for k, (_, v) in RAW.items()} | {"r.jsonl.gz#1": b"gz \xff\x00"}
    assert texts(tmp_path / "out") == want
    assert manifest(tmp_path / "out")["totals"]["skipped"] == {}


def test_lone_surrogate_escape_is_not_an_internal_error(tmp_path):
    """A JSON \\ud800 escape is kept or reported as a bad record; never a traceback."""
    write(tmp_path / "s.jsonl", GOOD + b'{"text": "a\\ud800b"}\n')
    res = run_prep(tmp_path, "s.jsonl")
    assert "Traceback" not in res.stderr
    assert res.returncode in (0, 3), res.stderr
    if res.returncode == 3:
        expect_error(res, 3, "s.jsonl", "line 2")


# --- more on messages ------------------------------------------------------------------


def test_truncated_stream_message_names_the_offset(outcomes):
    _, res = outcomes["truncated-jsonl-zst"]
    msg = expect_error(res, 3, "cut.jsonl.zst")
    assert re.search(r"\b(line|byte|bytes|offset)\b\D{0,20}\d", msg), msg


def test_long_error_message_stays_one_line_on_a_non_terminal(tmp_path):
    """Without COLUMNS (as in CI logs), a long error message is still a single line."""
    write(tmp_path / "bad.jsonl", GOOD + b"{oops\n")
    res = run_prep(tmp_path, "bad.jsonl", columns=None)
    expect_error(res, 3, "bad.jsonl", "line 2")


def test_error_is_the_last_line_when_progress_is_shown(tmp_path):
    """Without -q the error is still one line (the last), and there is no traceback."""
    write(tmp_path / "bad.jsonl", GOOD + b"{oops\n")
    res = aunet("prep", "bad.jsonl", *STAGE_ARGS, "--out", "out", "--workers", "1", cwd=tmp_path)
    assert res.returncode == 3 and "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "bad.jsonl line 2" in last


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path):
    """A file without read permission: exit 2, 'cannot read'."""
    path = write(tmp_path / "locked.jsonl", GOOD)
    path.chmod(0)
    try:
        expect_error(run_prep(tmp_path, "locked.jsonl"), 2, "locked.jsonl", "cannot read")
    finally:
        path.chmod(0o644)


# --- the output directory --------------------------------------------------------------


def test_output_of_another_configuration_is_refused(tmp_path):
    """Shards of other splitters in --out: exit 4, left untouched, until --overwrite."""
    write(tmp_path / "a.jsonl", GOOD)
    res = run_prep(tmp_path, "a.jsonl", stages=["-s", "regex-words"])
    assert res.returncode == 0, res.stderr
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    expect_error(run_prep(tmp_path, "a.jsonl"), 4, "out", "different configuration", "--overwrite")
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before
    res = run_prep(tmp_path, "a.jsonl", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert len(manifest(tmp_path / "out")["options"]["splitters"]) == 3


@pytest.mark.parametrize("out", ["blocker/out", "/proc/aunet-no-such-dir/out"])
def test_an_output_directory_that_cannot_be_made(tmp_path, out):
    """--out below a regular file (ENOTDIR), or somewhere no directory can be made
    (ENOENT under /proc): exit 5 and one line naming the path, not a traceback."""
    if out.startswith("/proc") and not Path("/proc/self").exists():
        pytest.skip("no /proc here")
    write(tmp_path / "a.jsonl", GOOD)
    write(tmp_path / "blocker", b"a file")
    res = aunet("prep", "a.jsonl", *STAGE_ARGS, "--out", out, "-q", cwd=tmp_path)
    line = expect_error(res, 5, f"cannot write {out}/.state/inputs.json")
    assert (tmp_path / "blocker").read_bytes() == b"a file"
    if out.startswith("blocker"):
        assert "blocker is a file, not a folder" in line


def test_overwrite_never_deletes_the_inputs_or_the_working_directory(tmp_path):
    """--overwrite of a prep directory that holds an input, or is (or holds) the working
    directory: exit 4, nothing deleted."""
    write(tmp_path / "a.jsonl", GOOD)
    assert run_prep(tmp_path, "a.jsonl").returncode == 0
    write(tmp_path / "out" / "mine.jsonl", GOOD)
    expect_error(run_prep(tmp_path, "out/mine.jsonl", "--overwrite"), 4, "would delete the input")
    assert (tmp_path / "out" / "mine.jsonl").read_bytes() == GOOD
    res = aunet("prep", "../a.jsonl", *STAGE_ARGS, "--out", ".", "-q", "--overwrite",
                cwd=tmp_path / "out")  # fmt: skip
    expect_error(res, 4, "would delete the working directory")
    assert (tmp_path / "out" / "manifest.json").exists()


def test_a_rerun_with_other_inputs_is_refused(tmp_path):
    """Output of two inputs, rerun with one: exit 4 naming the input that differs (before,
    the other input's shards stayed beside the new manifest and were trained on)."""
    write(tmp_path / "d" / "one.jsonl", GOOD)
    write(tmp_path / "d" / "two.jsonl", GOOD)
    assert run_prep(tmp_path, "d/one.jsonl", "d/two.jsonl").returncode == 0
    before = sorted(p.name for p in (tmp_path / "out" / "train").iterdir())
    expect_error(run_prep(tmp_path, "d/one.jsonl"), 4, "other inputs", "two.jsonl", "now: nothing")
    expect_error(run_prep(tmp_path, "d/two.jsonl", "d/one.jsonl"), 4, "other inputs")
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == before
    (tmp_path / "out" / ".state" / "inputs.json").unlink()  # as an earlier aunet left it
    expect_error(run_prep(tmp_path, "d/one.jsonl"), 4, "other inputs", "two.jsonl", "now: nothing")
    res = run_prep(tmp_path, "d/one.jsonl", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert [i["name"] for i in manifest(tmp_path / "out")["inputs"]] == ["one.jsonl"]
    assert len(list((tmp_path / "out" / "train").iterdir())) == 1


def test_standard_input_is_not_resumed_over_an_earlier_run(tmp_path):
    """What an earlier run read from standard input cannot be compared with this one's:
    a second run into the same --out is refused rather than keeping the old text."""
    res = aunet("prep", "-", *STAGE_ARGS, "--out", "out", "-q", cwd=tmp_path, stdin=b"one two\n")
    assert res.returncode == 0, res.stderr
    res = aunet("prep", "-", *STAGE_ARGS, "--out", "out", "-q", cwd=tmp_path, stdin=b"three\n")
    expect_error(res, 4, "standard input", "--overwrite")
    res = aunet("prep", "-", *STAGE_ARGS, "--out", "out", "-q", "--overwrite", cwd=tmp_path,
                stdin=b"three\n")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert texts(tmp_path / "out") == {"stdin#1": b"three"}


def test_a_directory_scan_skips_the_output_and_hidden_paths(tmp_path):
    """--out inside an input folder: the rerun is a no-op (before, it read the first
    run's state files as input). Hidden folders (.git) are left out unless an
    --include names them; `**/*.jsonl` also takes top-level files; `prep .` names its
    documents after the folder, as `prep ../d` does."""
    write(tmp_path / "d" / "a.jsonl", GOOD)
    write(tmp_path / "d" / ".git" / "x.jsonl", jsonl({"text": "hidden"}))
    write(tmp_path / "d" / "notes.json", b'{"not": "lines"}')
    for _ in range(2):
        res = aunet("prep", "d", *STAGE_ARGS, "--out", "d/out", "-q", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    assert [i["name"] for i in manifest(tmp_path / "d" / "out")["inputs"]] == ["d/a.jsonl"]
    for globs, want in [
        (["**/*.jsonl"], ["d/a.jsonl"]),  # a glob must name the hidden part to take it
        (["**/*.jsonl", ".git/*"], ["d/.git/x.jsonl", "d/a.jsonl"]),
    ]:
        includes = [arg for g in globs for arg in ("--include", g)]
        res = aunet("prep", "d", *STAGE_ARGS, "--out", "inc", "-q", "--overwrite", *includes,
                    cwd=tmp_path)  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert [i["name"] for i in manifest(tmp_path / "inc")["inputs"]] == want
    res = aunet("prep", ".", *STAGE_ARGS, "--out", "../dot", "-q", "--exclude", "out/*",
                cwd=tmp_path / "d")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert [i["name"] for i in manifest(tmp_path / "dot")["inputs"]] == ["d/a.jsonl"]
    res = aunet("prep", "d", *STAGE_ARGS, "--out", "d", "-q", cwd=tmp_path)
    expect_error(res, 2, "is the --out directory itself")


def test_a_byte_order_mark_before_the_first_json_line_is_skipped(tmp_path):
    write(tmp_path / "bom.jsonl", b"\xef\xbb\xbf" + jsonl({"text": "a b"}, {"text": "c"}))
    res = run_prep(tmp_path, "bom.jsonl", "--val-fraction", "0")
    assert res.returncode == 0, res.stderr
    assert texts(tmp_path / "out") == {"bom.jsonl#1": b"a b", "bom.jsonl#2": b"c"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_is_read_once_and_not_resumed(tmp_path):
    """A FIFO given as input: its data is read (before, checking that it could be
    opened consumed and lost it, and prep waited forever); a rerun into the same --out
    is refused like standard input's."""
    fifo = tmp_path / "f.txt"
    os.mkfifo(fifo)

    def feed(data: bytes) -> threading.Thread:
        writer = threading.Thread(target=fifo.write_bytes, args=(data,), daemon=True)
        writer.start()
        return writer

    writer = feed(b"x y\n\nz\n")
    res = run_prep(tmp_path, "f.txt", "--val-fraction", "0")
    writer.join(5)
    assert res.returncode == 0, res.stderr
    assert texts(tmp_path / "out") == {"f.txt#1": b"x y", "f.txt#2": b"z"}
    assert manifest(tmp_path / "out")["inputs"][0]["size"] == 7
    expect_error(run_prep(tmp_path, "f.txt", "--val-fraction", "0"), 4, "standard input or a pipe")


def test_ctrl_c_says_how_to_resume(tmp_path):
    """SIGINT mid-run: exit 130 and the line that says to rerun (Typer alone exits 130
    in silence)."""
    write(tmp_path / "big.jsonl", lines_corpus(200_000))
    proc = subprocess.Popen(
        [str(AUNET), "prep", "big.jsonl", *STAGE_ARGS, "--out", "out", "-q"],
        cwd=tmp_path, env=aunet_env(), stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (tmp_path / "out" / ".state").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("prep finished before the interrupt")
    assert proc.returncode == 130, stderr
    assert stderr.decode().strip().endswith("interrupted; rerun the same command to resume.")
