"""`aunet inspect`: what a prep directory holds, per stage, with examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .errors import AunetError
from .prep_output import PREP_FORMAT, shards_intact
from .split_view import STYLES, _units
from .summary import stage_table

HIST_EDGES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128)


def inspect(console: Console, directory: Path, n_docs: int, split: str) -> None:
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        if (directory / ".state" / "prep.json").exists():
            hint = " (an unfinished run: rerun the same `aunet prep`)"
        elif directory.is_dir():
            hint = " (not an `aunet prep` output directory)"
        else:
            hint = " (not a directory)" if directory.exists() else " (no such directory)"
        raise AunetError(f"{directory}: no manifest.json{hint}")
    manifest = _read_manifest(manifest_path)
    stages = manifest["options"]["splitters"]
    t = manifest["totals"]
    lines = [
        f"aunet {manifest['tool']['version']}, {len(manifest['inputs'])} input(s), "
        f"{len(manifest['shards'])} shard(s)",
        "stages: " + " -> ".join(_stage_label(s) for s in stages),
        f"documents {t['documents']:,}, bytes {t['bytes']:,}, skipped "
        + (", ".join(f"{n:,} {r}" for r, n in t["skipped"].items()) or "none"),
    ]
    for inp in manifest["inputs"]:
        lines.append(f"  {inp['path']}: {inp['size']:,} B, sha256 {inp['sha256'][:16]}…")
    console.print(Panel("\n".join(lines), title=str(directory)))
    console.print(stage_table(manifest))

    shards = [s for s in manifest["shards"] if s["split"] == split]
    if not shards:
        console.print(f"no {split} shards")
        return
    if not shards_intact(directory, shards):
        raise AunetError(
            f"{directory}: a {split} shard listed in manifest.json is missing or cut short; "
            "rerun the same `aunet prep` to write it again"
        )
    try:
        dataset = ds.dataset([str(directory / s["path"]) for s in shards], format="arrow")
        _show(console, dataset, len(stages), n_docs)
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise AunetError(
            f"{directory}: its {split} shards cannot be read as aunet shards ({exc!r}); "
            "rerun `aunet prep` with --overwrite"
        ) from None


def _read_manifest(path: Path) -> dict:
    """The manifest, checked for what inspect reads: anything else is one line."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AunetError(f"{path}: cannot be read ({exc}); rerun the same `aunet prep`") from None
    keys = ("format", "tool", "options", "inputs", "totals", "splits", "shards")
    shape_ok = (
        isinstance(manifest, dict)
        and all(k in manifest for k in keys)
        and isinstance(manifest["shards"], list)
        and all(
            isinstance(s, dict) and {"path", "size", "split"} <= s.keys()
            for s in manifest["shards"]
        )
    )
    if not shape_ok or manifest["format"] != PREP_FORMAT:
        raise AunetError(
            f"{path}: not an `aunet prep` manifest of format {PREP_FORMAT}; rerun the same "
            "`aunet prep`"
        )
    return manifest


def _show(console: Console, dataset: ds.Dataset, n_stages: int, n_docs: int) -> None:
    """Unit length histograms and the first documents with their units."""
    console.print(_histograms(dataset, n_stages))
    head = dataset.head(n_docs)
    for row in head.to_pylist():
        data: bytes = row["text"]
        text = Text(f"{row['id']} ({len(data)} bytes)\n", style="bold")
        points = np.asarray(row["pool_1"])
        for i, unit in enumerate(_units(data[:600], points[points < 600])):
            text.append(unit.decode("utf-8", "replace"), style=STYLES[i % 2])
        if len(data) > 600:
            text.append(" …")
        console.print(Panel(text, subtitle="stage-2 units (alternating colours)"))


def _stage_label(stage: dict) -> str:
    opts = ",".join(f"{k}={v}" for k, v in stage["options"].items())
    return f"{stage['name']} {stage['version']}" + (f" ({opts})" if opts else "")


def _histograms(dataset: ds.Dataset, n_stages: int) -> Table:
    """Distribution of unit lengths in bytes per stage (from the first shard)."""
    table = Table(title="Unit lengths in bytes (first shard)")
    table.add_column("bytes", justify="right")
    for k in range(1, n_stages + 1):
        table.add_column(f"stage {k + 1}", justify="right")
    tbl = next(iter(dataset.get_fragments())).to_table()
    shares = []
    for k in range(1, n_stages + 1):
        col = tbl.column(f"pool_{k}").combine_chunks()
        offsets = col.offsets.to_numpy()
        values = col.values.to_numpy().astype(np.int64)
        # a unit runs from the previous point (exclusive) to this one (inclusive)
        prev = np.concatenate([[-1], values[:-1]])
        prev[offsets[:-1][offsets[:-1] < offsets[1:]]] = -1
        counts, _ = np.histogram(values - prev, bins=[*HIST_EDGES, np.iinfo(np.int64).max])
        shares.append(100 * counts / max(counts.sum(), 1))
    edges = [*HIST_EDGES, None]
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        label = f">={lo}" if hi is None else str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}"
        table.add_row(label, *(f"{s[i]:.1f}%" for s in shares))
    return table
