"""`aunet prep` end to end through the installed console script, plus the other commands.

Every test runs the real `aunet` executable in a subprocess on files made here, and
reads what it wrote with pyarrow. The helpers at the top are shared with
test_prep_bad_input.py and test_prep_resume.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import zstandard

from splitters import Pipeline, levels_string, load

AUNET = Path(sys.executable).with_name("aunet")
SPECS = ("regex-words", "regex-word-pairs", "regex-4words")
STAGE_ARGS = [a for s in SPECS for a in ("-s", s)]


# --- helpers (imported by the other test_prep_* modules) -------------------------------


def aunet_env(columns: int | None = 10_000) -> dict[str, str]:
    """The environment for `aunet`: a wide console by default, so rich never wraps lines."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return env


def aunet(
    *args: object,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    timeout: float = 120,
    columns: int | None = 10_000,
) -> subprocess.CompletedProcess:
    """Run the installed `aunet` with `args`; stdout/stderr decoded as text."""
    proc = subprocess.run(
        [str(AUNET), *map(str, args)],
        cwd=cwd,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=aunet_env(columns),
    )
    proc.stdout = proc.stdout.decode("utf-8", "replace")
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


def prep(*args: object, cwd: Path | None = None, stdin: bytes | None = None, ok: bool = True):
    """`aunet prep ARGS -s regex-words -s regex-word-pairs -s regex-4words -q`."""
    proc = aunet("prep", *args, *STAGE_ARGS, "-q", cwd=cwd, stdin=stdin)
    if ok:
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
    return proc


def read_split(out: Path, split: str) -> pa.Table | None:
    """All shards of one split as one table (None if the split has no shards)."""
    if not (out / split).exists():
        return None
    return ds.dataset(out / split, format="arrow").to_table()


def read_rows(out: Path) -> dict[str, dict]:
    """{id: row} over train and val; fails on a duplicated id."""
    rows: dict[str, dict] = {}
    for split in ("train", "val"):
        table = read_split(out, split)
        for row in table.to_pylist() if table is not None else []:
            assert row["id"] not in rows, f"document {row['id']} appears twice"
            rows[row["id"]] = row | {"split": split}
    return rows


def texts(out: Path) -> dict[str, bytes]:
    return {i: r["text"] for i, r in read_rows(out).items()}


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def jsonl(*objs: object) -> bytes:
    return b"".join(json.dumps(o, ensure_ascii=False).encode() + b"\n" for o in objs)


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- the mixed corpus of the round trip ------------------------------------------------

TXT = (
    b"First paragraph, two lines.\nIts second line.\n\n"
    b"NUL \x00 inside, invalid UTF-8 \xff\xfe and \xc3( here.\n\n\n\n"
    b"  After three blank lines: caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x99\x82.\n"
)
JSONL = (
    jsonl({"text": "plain ascii line"})
    + jsonl({"text": "NUL \u0000 escaped, é literal, 中文, tab\tend", "meta": {"n": 1}})
    + b'{"text": "raw \xff\xfe bytes \xc3( in a string"}\n'  # invalid UTF-8 inside JSON
    + b'{"text": "escaped \\udcff byte and \\u0000"}\n'  # surrogate escape = raw byte 0xff
    + jsonl({"id": 7, "text": "  leading spaces, trailing newline\n"})
)
GZ_LINES = [{"text": f"gzip document {i}: {'word ' * i}"} for i in range(1, 6)]
ZST_LINES = [{"text": f"zstd document {i} — ünïcödé {i * 3.5}"} for i in range(1, 5)]
DCLM_LINES = [{"text": f"dclm style {i}", "url": "http://x"} for i in range(1, 4)]
STDIN = b"stdin paragraph one\nstill one\n\nstdin \xff paragraph two\n"
PARQUET_TEXTS = ["parquet row one", "row two ünïcödé \x00 nul", "row three"]
PARQUET_BINARY = [b"\xff\x00raw binary row", b"second \xc3\xa9 row"]


def make_corpus(root: Path) -> tuple[list[str], dict[str, bytes]]:
    """Write the inputs under `root`; return (prep arguments, {document id: bytes})."""
    c = root / "corpus"
    write(c / "notes.txt", TXT)
    write(c / "docs.jsonl", JSONL)
    gz_half = len(GZ_LINES) // 2  # two gzip members, as `cat a.gz b.gz` makes
    write(
        c / "sub" / "more.jsonl.gz",
        gzip.compress(jsonl(*GZ_LINES[:gz_half])) + gzip.compress(jsonl(*GZ_LINES[gz_half:])),
    )
    write(c / "sub" / "data.jsonl.zst", zst(jsonl(*ZST_LINES[:2])) + zst(jsonl(*ZST_LINES[2:])))
    write(c / "dclm.zst", zst(jsonl(*DCLM_LINES)))
    pq.write_table(pa.table({"text": PARQUET_TEXTS, "n": [1, 2, 3]}), c / "table.parquet")
    # left out by the globs:
    write(c / "skip_me.txt", b"excluded by --exclude\n")
    write(c / "notes.md", b"not matched by any --include\n")
    write(c / "sub" / "ignored.log", b"not an input\n")
    pq.write_table(pa.table({"text": pa.array(PARQUET_BINARY, pa.binary())}), root / "bin.parquet")

    expected = {
        "corpus/notes.txt#1": b"First paragraph, two lines.\nIts second line.",
        "corpus/notes.txt#2": b"NUL \x00 inside, invalid UTF-8 \xff\xfe and \xc3( here.",
        "corpus/notes.txt#3": (
            b"  After three blank lines: caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x99\x82."
        ),
        "corpus/docs.jsonl#1": b"plain ascii line",
        "corpus/docs.jsonl#2": "NUL \x00 escaped, é literal, 中文, tab\tend".encode(),
        "corpus/docs.jsonl#3": b"raw \xff\xfe bytes \xc3( in a string",
        "corpus/docs.jsonl#4": b"escaped \xff byte and \x00",
        "corpus/docs.jsonl#5": b"  leading spaces, trailing newline\n",
        "stdin#1": b"stdin paragraph one\nstill one",
        "stdin#2": b"stdin \xff paragraph two",
    }
    for name, lines in (
        ("corpus/sub/more.jsonl.gz", GZ_LINES),
        ("corpus/sub/data.jsonl.zst", ZST_LINES),
        ("corpus/dclm.zst", DCLM_LINES),
    ):
        expected |= {f"{name}#{i}": o["text"].encode() for i, o in enumerate(lines, 1)}
    expected |= {f"corpus/table.parquet#{i}": t.encode() for i, t in enumerate(PARQUET_TEXTS, 1)}
    expected |= {f"bin.parquet#{i}": b for i, b in enumerate(PARQUET_BINARY, 1)}
    args = [
        "corpus",
        "bin.parquet",
        "-",
        "--include", "*.txt",
        "--include", "*.jsonl*",
        "--include", "*.zst",
        "--include", "*.parquet",
        "--exclude", "skip_*",
    ]  # fmt: skip
    return args, expected


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """One prep of the mixed corpus (default workers, --val-fraction 0.3)."""
    root = tmp_path_factory.mktemp("round_trip")
    args, expected = make_corpus(root)
    prep(*args, "--out", "out", "--val-fraction", "0.3", cwd=root, stdin=STDIN)
    return root, root / "out", expected


# --- round trip ------------------------------------------------------------------------


def test_round_trip_keeps_every_document_byte_exact(round_trip):
    """Every input document comes back exactly once with its raw bytes (NUL, invalid UTF-8)."""
    _, out, expected = round_trip
    got = texts(out)
    assert sorted(got) == sorted(expected)
    for doc_id, data in expected.items():
        assert got[doc_id] == data, doc_id


def test_round_trip_pooling_columns_match_the_pipeline(round_trip):
    """pool_k lists exactly the bytes whose Pipeline level is >= k, for every document."""
    _, out, _ = round_trip
    pipe = Pipeline.from_specs(SPECS)
    rows = read_rows(out)
    assert rows
    for doc_id, row in rows.items():
        levels = pipe.levels_of(row["text"])
        for k in range(1, len(SPECS) + 1):
            want = np.flatnonzero(levels >= k).tolist()
            assert row[f"pool_{k}"] == want, (doc_id, k)
    assert any(row["pool_3"] for row in rows.values())  # the corpus reaches stage 4


def test_round_trip_uses_both_splits(round_trip):
    """--val-fraction 0.3 puts some documents in val/ and keeps the rest in train/."""
    _, out, expected = round_trip
    splits = Counter(r["split"] for r in read_rows(out).values())
    assert splits["train"] > 0 and splits["val"] > 0
    assert splits["train"] + splits["val"] == len(expected)


def test_shard_schema_and_metadata_name_the_stages(round_trip):
    """Each shard: id/text/pool_1..3 columns; metadata gives format, version, stages."""
    _, out, _ = round_trip
    version = aunet("--version").stdout.split()[-1]
    want_stages = [
        {"name": s, "version": load(s).version, "options": {"mode": "causal"}} for s in SPECS
    ]
    assert want_stages == Pipeline.from_specs(SPECS).describe()
    shard_files = sorted(out.glob("*/*.arrow"))
    assert shard_files
    for path in shard_files:
        with pa.memory_map(str(path)) as src:
            sch = pa.ipc.open_file(src).schema
        assert sch.names == ["id", "text", "pool_1", "pool_2", "pool_3"]
        assert sch.field("id").type == pa.string()
        assert sch.field("text").type == pa.binary()
        assert all(sch.field(f"pool_{k}").type == pa.list_(pa.int32()) for k in (1, 2, 3))
        meta = sch.metadata
        assert meta[b"aunet.format"] == b"aunet-shard/1"
        assert meta[b"aunet.version"].decode() == version
        assert json.loads(meta[b"aunet.splitters"]) == want_stages


def test_manifest_inputs_hashes_and_counts(round_trip):
    """manifest.json: each input's sha256/size equal the file's; counts equal the shards."""
    root, out, _ = round_trip
    m = manifest(out)
    rows = read_rows(out)
    by_input = Counter(i.rsplit("#", 1)[0] for i in rows)
    bytes_by_input = Counter()
    for i, r in rows.items():
        bytes_by_input[i.rsplit("#", 1)[0]] += len(r["text"])

    names = [i["name"] for i in m["inputs"]]
    assert names == [
        "corpus/dclm.zst",
        "corpus/docs.jsonl",
        "corpus/notes.txt",
        "corpus/sub/data.jsonl.zst",
        "corpus/sub/more.jsonl.gz",
        "corpus/table.parquet",
        "bin.parquet",
        "stdin",
    ]
    for entry in m["inputs"]:
        raw = STDIN if entry["name"] == "stdin" else (root / entry["path"]).read_bytes()
        assert entry["sha256"] == sha256(raw), entry["name"]
        assert entry["size"] == len(raw), entry["name"]
        assert entry["documents"] == by_input[entry["name"]], entry["name"]
        assert entry["bytes"] == bytes_by_input[entry["name"]], entry["name"]
    formats = {i["name"]: (i["format"], i["compression"]) for i in m["inputs"]}
    assert formats["corpus/dclm.zst"] == ("jsonl", "zst")
    assert formats["corpus/sub/more.jsonl.gz"] == ("jsonl", "gz")
    assert formats["corpus/table.parquet"] == ("parquet", None)
    assert formats["stdin"] == ("txt", None)

    assert m["totals"]["documents"] == len(rows)
    assert m["totals"]["bytes"] == sum(len(r["text"]) for r in rows.values())
    assert m["totals"]["skipped"] == {}
    for split in ("train", "val"):
        part = [r for r in rows.values() if r["split"] == split]
        s = m["splits"][split]
        assert s["documents"] == len(part)
        assert s["bytes"] == sum(len(r["text"]) for r in part)
        assert s["units"] == [sum(len(r[f"pool_{k}"]) for r in part) for k in (1, 2, 3)]
    assert m["options"]["splitters"] == Pipeline.from_specs(SPECS).describe()
    assert m["options"]["val_fraction"] == 0.3


def test_manifest_lists_every_shard_with_size_and_hash(round_trip):
    """The manifest's shard list equals the files on disk: rows, bytes, size, sha256."""
    _, out, _ = round_trip
    m = manifest(out)
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.arrow"))
    assert sorted(s["path"] for s in m["shards"]) == on_disk
    for shard in m["shards"]:
        path = out / shard["path"]
        data = path.read_bytes()
        assert shard["size"] == len(data)
        assert shard["sha256"] == hashlib.sha256(data).hexdigest()  # what sha256sum prints
        assert shard["split"] == shard["path"].split("/")[0]
        table = ds.dataset(path, format="arrow").to_table()
        assert shard["rows"] == table.num_rows
        assert shard["bytes"] == sum(len(t) for t in table.column("text").to_pylist())


def test_inspect_prints_the_stage_table(round_trip):
    """`aunet inspect DIR` exits 0 and shows the per-stage table with every splitter."""
    _, out, _ = round_trip
    res = aunet("inspect", out)
    assert res.returncode == 0, res.stderr
    assert "Units per stage" in res.stdout
    for name in SPECS:
        assert name in res.stdout
    assert "train" in res.stdout and "val" in res.stdout


@pytest.mark.parametrize(
    "damage",
    ["corrupt-manifest", "list-manifest", "foreign-manifest", "shard-cut", "shard-gone",
     "shard-foreign"],
)  # fmt: skip
def test_inspect_of_a_damaged_directory_is_one_line(round_trip, tmp_path, damage):
    """A manifest that is not JSON or not prep's, or a listed shard missing, cut short
    or replaced by another Arrow file: exit 2 and one line saying what to do."""
    _, out, _ = round_trip
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shard = copy / manifest(copy)["shards"][0]["path"]
    if damage == "corrupt-manifest":
        (copy / "manifest.json").write_text("{bad")
    elif damage == "list-manifest":
        (copy / "manifest.json").write_text("[]")
    elif damage == "foreign-manifest":
        (copy / "manifest.json").write_text('{"format": "something else"}')
    elif damage == "shard-cut":
        shard.write_bytes(shard.read_bytes()[:100])
    elif damage == "shard-gone":
        shard.unlink()
    else:  # the same size, not an aunet shard: the histogram finds no pool_1
        size = shard.stat().st_size
        sink = pa.BufferOutputStream()
        table = pa.table({"x": [b"y" * size]})
        with pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table)
        shard.write_bytes(sink.getvalue().to_pybytes()[:size].ljust(size, b"\0"))
    split = shard.parent.name
    res = aunet("inspect", copy, "--split", split)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "aunet prep" in lines[0]


def test_inspect_of_a_directory_without_manifest_is_a_usage_error(tmp_path):
    """inspect without a manifest: exit 2, one line naming manifest.json and why there
    is none (not a prep directory, an unfinished run, not a directory, no directory)."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "unfinished" / ".state").mkdir(parents=True)
    (tmp_path / "unfinished" / ".state" / "prep.json").write_text("{}")
    (tmp_path / "file").write_text("x")
    expected = {
        "plain": "not an `aunet prep` output directory",
        "unfinished": "an unfinished run: rerun the same `aunet prep`",
        "file": "(not a directory)",
        "missing": "(no such directory)",
    }
    for name, why in expected.items():
        res = aunet("inspect", tmp_path / name)
        assert res.returncode == 2, res.stderr
        assert f"{name}: no manifest.json" in res.stderr and why in res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


# --- documents in .txt inputs ----------------------------------------------------------

DOC_LF = b"l1 a\nl2 b\n\np3 \x00\xff\np4"
DOC_CRLF = b"a 1\r\nb 2\r\n\r\nc 3"


@pytest.mark.parametrize(
    ("doc_per", "expected", "skipped"),
    [
        (
            "line",
            {"lf.txt#1": b"l1 a", "lf.txt#2": b"l2 b", "lf.txt#4": b"p3 \x00\xff",
             "lf.txt#5": b"p4", "crlf.txt#1": b"a 1", "crlf.txt#2": b"b 2", "crlf.txt#4": b"c 3"},
            {"empty document": 2},
        ),
        (
            "paragraph",
            {"lf.txt#1": b"l1 a\nl2 b", "lf.txt#2": b"p3 \x00\xff\np4",
             "crlf.txt#1": b"a 1\r\nb 2", "crlf.txt#2": b"c 3"},
            {},
        ),
        ("file", {"lf.txt#0": DOC_LF, "crlf.txt#0": DOC_CRLF}, {}),
    ],
)  # fmt: skip
def test_doc_per(tmp_path, doc_per, expected, skipped):
    """--doc-per line|paragraph|file on LF and CRLF text: ids are <name>#<line / paragraph /
    part>; lines lose their line end, paragraphs split at empty lines; empty lines are
    counted as skipped 'empty document' in line mode."""
    write(tmp_path / "lf.txt", DOC_LF)
    write(tmp_path / "crlf.txt", DOC_CRLF)
    out = tmp_path / "out"
    prep("lf.txt", "crlf.txt", "--out", out, "--doc-per", doc_per, "--workers", "1", cwd=tmp_path)
    assert texts(out) == expected
    assert manifest(out)["totals"]["skipped"] == skipped


def test_doc_per_line_final_newline_is_not_an_empty_document(tmp_path):
    """A trailing newline ends the last line; it does not start an (empty) document."""
    write(tmp_path / "d.txt", b"a\nb\n")
    prep("d.txt", "--out", "out", "--doc-per", "line", "--workers", "1", cwd=tmp_path)
    assert texts(tmp_path / "out") == {"d.txt#1": b"a", "d.txt#2": b"b"}
    assert manifest(tmp_path / "out")["totals"]["skipped"] == {}


def test_doc_per_file_cuts_big_files_at_line_ends(tmp_path):
    """--doc-per file --max-doc-bytes N: parts end at a newline, are <= N, rejoin exactly."""
    data = b"".join(b"line %03d ..\n" % i for i in range(40))  # 13 bytes per line
    write(tmp_path / "big.txt", data)
    prep(
        "big.txt", "--out", "out", "--doc-per", "file", "--max-doc-bytes", "100B",
        "--workers", "1", cwd=tmp_path,
    )  # fmt: skip
    got = texts(tmp_path / "out")
    parts = [got[f"big.txt#{i}"] for i in range(len(got))]
    assert len(parts) > 1
    assert b"".join(parts) == data
    assert all(len(p) <= 100 and p.endswith(b"\n") for p in parts)


def test_doc_per_file_cuts_a_line_without_end_between_characters(tmp_path):
    """A line longer than --max-doc-bytes is cut at a UTF-8 character boundary (2-, 3-
    and 4-byte characters); bytes that are not UTF-8 are cut where the limit falls."""
    data = ("é" * 70 + "中" * 50 + "🙂" * 40).encode() + b"\xff" * 150
    write(tmp_path / "long.txt", data)
    prep(
        "long.txt", "--out", "out", "--doc-per", "file", "--max-doc-bytes", "101B",
        "--workers", "1", "--val-fraction", "0", cwd=tmp_path,
    )  # fmt: skip
    got = texts(tmp_path / "out")
    parts = [got[f"long.txt#{i}"] for i in range(len(got))]
    assert b"".join(parts) == data
    assert all(len(p) <= 101 for p in parts)
    text_parts = [p for p in parts if b"\xff" not in p]
    assert len(text_parts) >= 4
    for part in text_parts:
        part.decode("utf-8")  # whole characters only


# --- the validation split --------------------------------------------------------------


def _many_docs(n: int) -> bytes:
    return jsonl(*({"text": f"document number {i} with a few words"} for i in range(n)))


def test_val_split_is_deterministic_by_document_id(tmp_path):
    """The same ids go to val whatever the other inputs, shard size or worker count."""
    write(tmp_path / "a.jsonl", _many_docs(300))
    write(tmp_path / "b.jsonl", _many_docs(50))
    prep("a.jsonl", "--out", "one", "--val-fraction", "0.3", "--workers", "1", cwd=tmp_path)
    prep(
        "a.jsonl", "b.jsonl", "--out", "two", "--val-fraction", "0.3", "--workers", "2",
        "--shard-size", "2KB", cwd=tmp_path,
    )  # fmt: skip

    def val_ids(out: Path, name: str) -> set[str]:
        return {i for i, r in read_rows(out).items() if r["split"] == "val" and i.startswith(name)}

    one = val_ids(tmp_path / "one", "a.jsonl#")
    assert one == val_ids(tmp_path / "two", "a.jsonl#")
    assert 0.15 * 300 < len(one) < 0.45 * 300
    assert manifest(tmp_path / "one")["splits"]["val"]["documents"] == len(one)


def test_val_fraction_zero_writes_no_val_shards(tmp_path):
    """--val-fraction 0: every document in train, no val/ shards."""
    write(tmp_path / "a.jsonl", _many_docs(50))
    prep("a.jsonl", "--out", "out", "--val-fraction", "0", "--workers", "1", cwd=tmp_path)
    assert not list((tmp_path / "out").glob("val/*.arrow"))
    assert read_split(tmp_path / "out", "train").num_rows == 50


# --- the other commands ----------------------------------------------------------------


def test_version():
    res = aunet("--version")
    assert res.returncode == 0
    assert res.stdout.split()[0] == "aunet" and res.stdout.split()[1][0].isdigit()


def test_top_level_help_lists_commands():
    res = aunet("--help")
    assert res.returncode == 0, res.stderr
    for word in ("prep", "split", "splitters", "inspect", "--version"):
        assert word in res.stdout


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (
            "prep",
            [
                "--splitter", "--out", "--doc-per", "--field", "--input-format", "--include",
                "--exclude", "--val-fraction", "--shard-size", "--max-doc-bytes", "--workers",
                "--num-shards", "--shard-index", "--on-error", "--overwrite", "--quiet",
            ],
        ),
        ("split", ["--splitter", "--text", "--format"]),
        ("splitters", ["--format"]),
        ("inspect", ["--docs", "--split"]),
    ],
)  # fmt: skip
def test_subcommand_help_mentions_its_options(command, options):
    res = aunet(command, "--help")
    assert res.returncode == 0, res.stderr
    for opt in options:
        assert opt in res.stdout, opt


SPLIT_TEXTS = [
    "Hello world",
    "Hello world, this is a test.  Two  spaces\nand a newline\r\n",
    "NUL \u0000 byte, café 中文 🙂 1234567 ½",
    "",
    "x",
]


def test_split_jsonl_levels_match_the_pipeline():
    """`split --format jsonl`: one {"levels"} per line, one digit per UTF-8 byte."""
    stdin = jsonl(*({"text": t} for t in SPLIT_TEXTS))
    res = aunet("split", "--format", "jsonl", *STAGE_ARGS, stdin=stdin)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == len(SPLIT_TEXTS)
    pipe = Pipeline.from_specs(SPECS)
    for text, line in zip(SPLIT_TEXTS, lines, strict=True):
        levels = json.loads(line)["levels"]
        assert len(levels) == len(text.encode())
        assert levels == levels_string(pipe.levels_of(text.encode()))


def test_split_jsonl_answers_line_for_line_and_up_to_a_bad_line():
    """A blank line answers a blank line (outputs stay in step with inputs); a bad line
    (here nested too deeply for the JSON parser) is one error line, exit 3, after the
    answers to every line before it."""
    good = jsonl({"text": "a b"})
    res = aunet("split", "--format", "jsonl", "-s", "regex-words", stdin=good + b"\n" + good)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n") == ['{"levels": "010"}', "", '{"levels": "010"}', ""]
    res = aunet("split", "--format", "jsonl", "-s", "regex-words", stdin=good * 3 + b"[" * 100_000)
    assert "Traceback" not in res.stderr and res.returncode == 3, res.stderr
    assert "line 4: invalid JSON" in res.stderr
    assert res.stdout.splitlines() == ['{"levels": "010"}'] * 3


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
@pytest.mark.parametrize("command", [("splitters",), ("split", "-s", "regex-words", "-t", "a b")])
def test_output_to_a_full_disk_is_one_line(command):
    """Standard output on a full disk: exit 5, one line, not a traceback."""
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            [str(AUNET), *command], stdout=full, stderr=subprocess.PIPE, env=aunet_env(), timeout=60
        )
    stderr = proc.stderr.decode()
    assert "Traceback" not in stderr and proc.returncode == 5, stderr
    assert stderr.strip() == "error: cannot write the output: No space left on device"


def test_split_human_form_of_a_text_without_a_pooling_point():
    res = aunet("split", "-s", "regex-words", "--text", "word")
    assert res.returncode == 0, res.stderr
    assert "no pooling point in these 4 bytes" in res.stdout and "inf" not in res.stdout
    res = aunet("split", "-s", "regex-words", "--text", "two words")
    assert "1 pooling point, 9.00 bytes per unit" in res.stdout


def test_split_jsonl_readme_example():
    res = aunet(
        "split", "-s", "regex-words", "--format", "jsonl", stdin=b'{"text": "Hello world"}\n'
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"levels": "00000100000"}


def test_splitters_json_lists_the_builtins_as_causal():
    res = aunet("splitters", "--format", "json")
    assert res.returncode == 0, res.stderr
    listed = {s["name"]: s for s in json.loads(res.stdout)}
    for name in SPECS:
        assert listed[name]["causal"] is True
        assert listed[name]["version"] == load(name).version
        assert "mode" in listed[name]["options"]


def test_shell_completion_offers_splitters_and_values():
    """Typer's bash completion (as `aunet --install-completion` sets it up) completes
    -s with the installed splitters and --doc-per with its values."""

    def complete(words: str) -> list[str]:
        env = aunet_env() | {
            "_AUNET_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        proc = subprocess.run([str(AUNET)], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert complete("aunet prep -s regex-w") == ["regex-word-pairs", "regex-words"]
    assert complete("aunet split --splitter le") == ["learned-zh"]
    assert complete("aunet prep --doc-per p") == ["paragraph"]
