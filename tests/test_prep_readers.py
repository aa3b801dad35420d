"""Several inputs read at once (`PrepOptions.readers`): the same shards and manifest as
one reader, the same error as one reader would meet first, and a failing chunk stops
every reader."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from aunet_cli.atomic import write_json_atomic
from aunet_cli.errors import AunetError, OutputWriteError
from aunet_cli.prep import PrepOptions, fingerprint, prep, reading_threads
from aunet_cli.readers import InputFile, ReadOptions, discover
from splitters import Pipeline

from .test_prep_cli import aunet

STAGES = ("regex-words", "regex-word-pairs", "regex-4words")


def _paragraphs(rng: random.Random, n: int) -> list[str]:
    words = ["alpha", "beta", "中文", "gamma,", "delta.", "x\u00e9y", "(eps)"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 60))) for _ in range(n)]


def _lines(texts: list[str]) -> bytes:
    return b"".join(json.dumps({"text": t}).encode() + b"\n" for t in texts)


def make_inputs(root: Path, bad: dict[str, str] | None = None, big: int = -1) -> list[str]:
    """Five inputs of five kinds; `bad` maps a name to "first" or "last": a line of
    invalid JSON there; input number `big` is 20 times longer (about 100 chunks)."""
    rng = random.Random(7)
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(5):
        texts = _paragraphs(rng, (400 + 150 * i) * (20 if i == big else 1))
        kind = ("txt", "jsonl", "jsonl.zst", "parquet", "jsonl.gz")[i]
        name = f"in{i}.{kind}"
        if kind == "txt":
            data = "\n\n".join(texts).encode() + b"\n"
            (root / name).write_bytes(data)
        elif kind == "parquet":
            pq.write_table(pa.table({"text": texts}), root / name)
        else:
            data = _lines(texts)
            where = (bad or {}).get(name)
            if where == "first":
                data = b"{not json\n" + data
            elif where == "last":
                data = data + b'{"text": "unterminated\n'
            if kind.endswith("zst"):
                data = zstandard.ZstdCompressor().compress(data)
            elif kind.endswith("gz"):
                data = gzip.compress(data)
            (root / name).write_bytes(data)
        names.append(str(root / name))
    return names


def run(inputs: list[str], out: Path, readers: int, workers: int = 2, **kw) -> dict:
    opts = PrepOptions(
        splitters=STAGES,
        read=ReadOptions(doc_per="paragraph"),
        val_fraction=0.1,
        shard_bytes=20 << 10,
        workers=workers,
        readers=readers,
        **kw,
    )
    return prep(discover(inputs, [], [], "auto"), out, opts)


def files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_reading_threads_one_per_four_workers_at_most_one_per_input():
    def files_(n: int) -> list[InputFile]:
        return [InputFile(Path(f"{i}.txt"), f"{i}.txt", "txt", None, 1, 0) for i in range(n)]

    def threads(n_inputs: int, **kw) -> int:
        return reading_threads(PrepOptions(splitters=STAGES, **kw), files_(n_inputs))

    assert threads(9, workers=2) == 1
    assert threads(9, workers=8) == 2
    assert threads(3, workers=16) == 3
    assert threads(9, readers=5) == 5
    assert threads(0) == 1
    stdin = InputFile(None, "stdin", "txt", None, 0, 0)
    assert reading_threads(PrepOptions(splitters=STAGES, readers=4), [*files_(3), stdin]) == 1


@pytest.mark.parametrize("splitters", [STAGES, ("utf8-chars",)])
def test_several_readers_write_what_one_reader_writes(tmp_path, splitters):
    """utf8-chars keeps the GIL, so it runs in worker processes fed through shared
    slots from all the reading threads at once."""
    inputs = make_inputs(tmp_path / "in")
    outs = {}
    for readers in (1, 3, 5):
        out = tmp_path / f"r{readers}"
        opts = PrepOptions(
            splitters=splitters,
            read=ReadOptions(doc_per="paragraph"),
            val_fraction=0.1,
            shard_bytes=20 << 10,
            workers=2,
            readers=readers,
        )
        manifest = prep(discover(inputs, [], [], "auto"), out, opts)
        assert len(manifest["shards"]) > 20
        outs[readers] = files(out)
    assert outs[1] == outs[3] == outs[5]


def test_several_readers_with_a_job_array_give_the_single_run(tmp_path):
    inputs = make_inputs(tmp_path / "in")
    single = run(inputs, tmp_path / "one", readers=1)
    for k in range(2):
        run(inputs, tmp_path / "arr", readers=3, num_shards=2, shard_index=k)
    assert files(tmp_path / "arr") == files(tmp_path / "one")
    assert single["totals"]["documents"] > 0


def test_the_error_is_the_one_a_single_reader_meets_first(tmp_path):
    """in1's bad line is its last, after ~100 chunks; in4's is its first, so a reader
    of in4 meets its error first. Both runs must report in1, like reading in order."""
    bad = {"in1.jsonl": "last", "in4.jsonl.gz": "first"}
    inputs = make_inputs(tmp_path / "in", bad, big=1)
    messages = {}
    for readers in (1, 5):
        with pytest.raises(AunetError) as err:
            run(inputs, tmp_path / f"r{readers}", readers=readers)
        messages[readers] = str(err.value)
    assert "in1.jsonl" in messages[1]
    assert messages[5] == messages[1]


def obstruct(out: Path, shard: str) -> Path:
    """A directory where `shard` must go, in an output claimed for run()'s options:
    writing that shard fails with a real IsADirectoryError (an OutputWriteError)."""
    opts = PrepOptions(splitters=STAGES, read=ReadOptions(doc_per="paragraph"),
                       val_fraction=0.1, shard_bytes=20 << 10)  # fmt: skip
    write_json_atomic(out / ".state" / "prep.json", fingerprint(opts, Pipeline.from_specs(STAGES)))
    obstacle = out / "train" / f"shard-{shard}.arrow"
    obstacle.mkdir(parents=True)
    return obstacle


def test_a_bad_record_before_a_failing_chunk_is_the_error(tmp_path):
    """in3's first shard cannot be written, which happens long before in1's reader
    reaches in1's bad last line; a single reader stops at that line without reaching
    in3. Several readers must report the same."""
    bad = {"in1.jsonl": "last"}
    inputs = make_inputs(tmp_path / "in", bad, big=1)
    messages = {}
    for readers in (1, 5):
        out = tmp_path / f"r{readers}"
        obstruct(out, "00003-00000")
        with pytest.raises(AunetError) as err:
            run(inputs, out, readers=readers)
        messages[readers] = str(err.value)
    assert "in1.jsonl" in messages[1]
    assert messages[5] == messages[1]


def test_a_failing_chunk_stops_every_reader(tmp_path):
    """A directory where in0's first shard must go makes its rename fail (a real
    OSError, reported as an OutputWriteError naming the shard). in0 has ~100 chunks,
    so its reader meets the failure long before its end: prep raises it, no reader
    goes on to another input, and a rerun once the obstacle is gone finishes with
    what an uninterrupted run writes."""
    inputs = make_inputs(tmp_path / "in", big=0)
    out = tmp_path / "out"
    obstacle = obstruct(out, "00000-00000")
    with pytest.raises(OutputWriteError, match=r"shard-00000-00000\.arrow: Is a directory"):
        run(inputs, out, readers=2)
    done = sorted(p.name for p in (out / ".state").glob("input-*.json"))
    assert done in ([], ["input-00001.json"])  # in1's reader may finish before the stop
    obstacle.rmdir()
    run(inputs, out, readers=3)
    run(inputs, tmp_path / "clean", readers=1)
    assert files(out) == files(tmp_path / "clean")


def test_the_readers_option_on_the_command_line(tmp_path):
    make_inputs(tmp_path / "in")
    outs = {}
    for readers in ("1", "4"):
        res = aunet(
            "prep", "in", *[a for s in STAGES for a in ("-s", s)], "--out", f"r{readers}", "-q",
            "--doc-per", "paragraph", "--shard-size", "20KB", "--workers", "2",
            "--readers", readers, cwd=tmp_path,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        outs[readers] = files(tmp_path / f"r{readers}")
    assert len(outs["1"]) > 20 and outs["1"] == outs["4"]
    bad = aunet("prep", "in", "--out", "r0", "--readers", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "--readers" in bad.stderr
