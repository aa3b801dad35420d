"""Third-party splitters are discovered through the entry-point group and used by prep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds

from splitters import Pipeline, SplitterError, load, names, parse_spec

FIXTURE = Path(__file__).parent / "fixtures" / "thirdparty"
AUNET = Path(sys.executable).with_name("aunet")


def aunet(*args: str, **kw) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(FIXTURE)}
    return subprocess.run([str(AUNET), *args], capture_output=True, text=True, env=env, **kw)


def test_builtins_are_registered_through_entry_points():
    assert {"regex-words", "regex-word-pairs", "regex-4words"} <= set(names())
    cls = load("regex-words")
    assert cls.version and cls.description and cls().causal


def test_plugin_is_listed():
    res = aunet("splitters", "--format", "json")
    assert res.returncode == 0, res.stderr
    listed = {s["name"]: s for s in json.loads(res.stdout)}
    assert listed["demo-every-n"]["version"] == "0.1.0"
    assert listed["demo-every-n"]["causal"] is True
    assert "regex-words" in listed


def test_plugin_is_usable_by_prep_and_nests_under_words(tmp_path):
    src = tmp_path / "doc.txt"
    src.write_bytes(b"abcdefgh ijkl mnop\n\nqrstuvwx yz")
    res = aunet(
        "prep", str(src), "-s", "regex-words", "-s", "demo-every-n:n=3",
        "--out", str(tmp_path / "out"), "--val-fraction", "0", "--workers", "1", "-q",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    table = ds.dataset(tmp_path / "out" / "train", format="arrow").to_table()
    first = table.to_pylist()[0]
    assert first["text"] == b"abcdefgh ijkl mnop"
    assert first["pool_1"] == [8, 13]  # word ends
    # every 3rd character is a demo point; only those that are also word ends survive
    assert first["pool_2"] == [8]
    meta = json.loads(table.schema.metadata[b"aunet.splitters"])
    assert meta[1] == {"name": "demo-every-n", "version": "0.1.0", "options": {"n": 3}}


def test_unknown_splitter_and_bad_option_are_clear():
    res = aunet("split", "-t", "x", "-s", "no-such-splitter")
    assert res.returncode == 2
    assert "unknown splitter 'no-such-splitter'" in res.stderr and "regex-words" in res.stderr
    assert "Traceback" not in res.stderr
    try:
        parse_spec("regex-words:mode=nope")
    except SplitterError as exc:
        assert "causal, official" in str(exc)
    else:
        raise AssertionError("bad option accepted")
    try:
        Pipeline.from_specs(["regex-words:colour=blue"])
    except SplitterError as exc:
        assert "unknown option 'colour'" in str(exc)
    else:
        raise AssertionError("unknown option accepted")
