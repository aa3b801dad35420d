"""The output directory of `aunet prep`: what makes a run resumable, and its manifest.

A directory is claimed by `.state/prep.json` (the options that must match to resume
it). Each chunk's state file is written once its shards are renamed into place and
their names are on disk (atomic.fsync_directory), and each input's once all its
chunks are handed over. A chunk whose shards are not all there, at their size, is
done again. The manifest is built from these files when every input and chunk is
done, whichever job or run did the work.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .atomic import remove_stale_temporaries, write_json_atomic
from .errors import OutputConflictError
from .readers import InputFile

if TYPE_CHECKING:
    from .prep import Chunk

PREP_FORMAT = "aunet-prep/1"
SPLITS = ("train", "val")


class ResumeConflict(OutputConflictError):
    """`out` holds work this run cannot continue: `reason`, then prep's advice (callers
    such as `aunet train` give their own)."""

    ADVICE = "choose another --out or pass --overwrite"

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason}; {self.ADVICE}")
        self.reason = reason


def state_path(out: Path, key: str) -> Path:
    return out / ".state" / f"chunk-{key}.json"


def input_state_path(out: Path, index: int) -> Path:
    return out / ".state" / f"input-{index:05d}.json"


def claim_output(out: Path, fp: dict[str, Any], overwrite: bool, inputs: list[InputFile]) -> None:
    """Make `out` this configuration's directory, or resume it if it already is one
    for the same inputs; refuse a directory of another configuration or other inputs,
    or not made by prep at all. `overwrite` deletes only a prep directory (or an
    empty one), and never one holding an input or the working directory."""
    prep_json = out / ".state" / "prep.json"
    if out.exists() and not out.is_dir():  # not even with --overwrite: not a prep's
        raise OutputConflictError(f"{out}: exists and is not a directory; choose another --out")
    foreign = (
        not prep_json.exists() and out.exists() and any(p.name != ".state" for p in out.iterdir())
    )
    if foreign:
        raise OutputConflictError(
            f"{out}: exists, is not empty and was not made by `aunet prep`; choose another "
            "--out (--overwrite only replaces an aunet prep directory)"
        )
    if out.exists() and overwrite:
        _refuse_deleting_inputs(out, inputs)
        shutil.rmtree(out)
    if prep_json.exists():
        old = json.loads(prep_json.read_text())
        if old != fp:
            diff = [k for k in fp if old.get(k) != fp[k]]
            raise ResumeConflict(
                f"{out}: holds shards of a different configuration ({', '.join(diff)} differ: "
                f"{json.dumps(old.get(diff[0]))} there, {json.dumps(fp[diff[0]])} now)"
            )
        _check_same_inputs(out, inputs)
        remove_stale_temporaries(out)
        return
    write_json_atomic(inputs_path(out), [i.name for i in inputs])  # first: prep.json
    write_json_atomic(prep_json, fp)  # claims the directory for these inputs


def inputs_path(out: Path) -> Path:
    return out / ".state" / "inputs.json"


def _check_same_inputs(out: Path, inputs: list[InputFile]) -> None:
    """A claimed directory is resumed only for the inputs it was claimed for: with one
    input fewer, its shards would stay beside the new manifest (and be trained on).
    Standard input cannot be compared with what an earlier run read."""
    if any(i.streamed for i in inputs):
        raise ResumeConflict(
            f"{out}: holds an earlier run's output, and standard input or a pipe cannot be "
            "checked against what it read"
        )
    names = [i.name for i in inputs]
    path = inputs_path(out)
    # claimed by an aunet that did not record them: what its state files say
    old = json.loads(path.read_text()) if path.exists() else _recorded_inputs(out, names)
    if old == names:
        if not path.exists():
            write_json_atomic(path, names)
        return
    for k in range(max(len(old), len(names))):
        there = old[k] if k < len(old) else "nothing"
        now = names[k] if k < len(names) else "nothing"
        if there != now:
            raise ResumeConflict(
                f"{out}: was prepared from other inputs ({len(old)} there, {len(names)} "
                f"now; input #{k} there: {there}, now: {now})"
            )


def _recorded_inputs(out: Path, names: list[str]) -> list[str]:
    """The inputs of a directory claimed without inputs.json, as far as its state files
    tell: each finished input's name; where only chunks of an input are on record,
    the name it has now (a changed file is caught by its size and mtime)."""
    recorded = {
        int(p.stem.split("-")[1]): json.loads(p.read_text())["name"]
        for p in (out / ".state").glob("input-*.json")
    }
    chunked = {int(p.stem.split("-")[1]) for p in (out / ".state").glob("chunk-*.json")}
    count = max([*recorded, *chunked], default=-1) + 1
    if count > len(names):
        return [recorded.get(k, names[k] if k < len(names) else "?") for k in range(count)]
    return [recorded.get(k, names[k]) for k in range(len(names))]


def _refuse_deleting_inputs(out: Path, inputs: list[InputFile]) -> None:
    """--overwrite must not delete what the run reads, nor the folder it runs in."""
    root = out.resolve()
    inside = [i.display for i in inputs if i.path is not None and root in i.path.resolve().parents]
    if inside:
        raise OutputConflictError(
            f"{out}: --overwrite would delete the input {inside[0]}; choose another --out"
        )
    cwd = Path.cwd().resolve()
    if cwd == root or root in cwd.parents:
        raise OutputConflictError(
            f"{out}: --overwrite would delete the working directory; choose another --out"
        )


def shards_intact(out: Path, shards: list[dict[str, Any]]) -> bool:
    """Whether every shard listed (in a chunk's state or the manifest) is in place, at
    the size it was written with: one was deleted, or cut short on a disk that lost
    it, is written again rather than trusted."""
    for shard in shards:
        try:
            if (out / shard["path"]).stat().st_size != shard["size"]:
                return False
        except FileNotFoundError:
            return False
    return True


def chunk_done(out: Path, chunk: Chunk) -> bool:
    """Whether an earlier run (or job) finished `chunk` and its shards are all there.
    Such a chunk is kept only if its input is unchanged."""
    path = state_path(out, chunk.key)
    if not path.exists():
        return False
    state = json.loads(path.read_text())
    if (state["input_size"], state["input_mtime_ns"]) != (chunk.input_size, chunk.input_mtime_ns):
        raise ResumeConflict(
            f"{out}: input {chunk.input_name} changed since it was prepared there (size "
            "or modification time differ)"
        )
    return shards_intact(out, state["shards"])


def up_to_date(out: Path, inputs: list[InputFile]) -> bool:
    """Whether the manifest there already covers exactly these inputs, unchanged."""
    manifest = json.loads((out / "manifest.json").read_text())
    if [i["name"] for i in manifest["inputs"]] != [i.name for i in inputs]:
        return False
    if not shards_intact(out, manifest["shards"]):
        return False
    for ii, inp in enumerate(inputs):
        path = input_state_path(out, ii)
        if inp.streamed or not path.exists():
            return False
        st = json.loads(path.read_text())
        if (st["name"], st["size"], st["mtime_ns"]) != (inp.name, inp.size, inp.mtime_ns):
            return False
    return True


def finish(out: Path, inputs: list[InputFile], fp: dict[str, Any], depth: int) -> dict:
    """Write manifest.json once every chunk of every input is done (by any job)."""
    input_states = []
    for ii in range(len(inputs)):
        path = input_state_path(out, ii)
        if not path.exists():
            return {"complete": False}
        input_states.append(json.loads(path.read_text()))
    chunks = []
    for ii, st in enumerate(input_states):
        for c in range(st["chunks"]):
            path = state_path(out, f"{ii:05d}-{c:05d}")
            if not path.exists():
                return {"complete": False}
            chunks.append(json.loads(path.read_text()))
            if not shards_intact(out, chunks[-1]["shards"]):  # its job runs again
                return {"complete": False}
    manifest = build_manifest(input_states, chunks, fp, depth)
    write_json_atomic(out / "manifest.json", manifest)
    remove_stale_temporaries(out)
    return manifest


def build_manifest(input_states, chunks, fp, depth: int) -> dict[str, Any]:
    """manifest.json from the input and chunk state files: counts per split, input
    and stage, skips by reason, and every shard with its size and hash."""

    def empty() -> dict[str, Any]:
        return {"documents": 0, "bytes": 0, "units": [0] * depth}

    splits = {s: empty() for s in SPLITS}
    per_input = [empty() | {"skipped": Counter()} for _ in input_states]
    skipped: Counter[str] = Counter()
    shards = []
    for st in chunks:
        skipped.update(st["skipped"])
        per_input[st["input_index"]]["skipped"].update(st["skipped"])
        for split, s in st["splits"].items():
            for tgt in (splits[split], per_input[st["input_index"]]):
                tgt["documents"] += s["documents"]
                tgt["bytes"] += s["bytes"]
                tgt["units"] = [a + b for a, b in zip(tgt["units"], s["units"], strict=True)]
        shards += [sh | {"split": sh["path"].split("/")[0]} for sh in st["shards"]]
    totals = empty()
    for s in splits.values():
        totals["documents"] += s["documents"]
        totals["bytes"] += s["bytes"]
        totals["units"] = [a + b for a, b in zip(totals["units"], s["units"], strict=True)]
    inputs = []
    for st, counts in zip(input_states, per_input, strict=True):
        entry = {k: st[k] for k in ("path", "name", "format", "compression", "size", "sha256")}
        inputs.append(entry | counts | {"skipped": dict(sorted(counts["skipped"].items()))})
    return {
        "format": PREP_FORMAT,
        "tool": {"name": "aunet", "version": __version__},
        "options": fp,
        "inputs": inputs,
        "totals": totals | {"skipped": dict(sorted(skipped.items()))},
        "splits": splits,
        "shards": sorted(shards, key=lambda s: s["path"]),
    }
