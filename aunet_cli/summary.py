"""Human summaries of a prep manifest (shared by prep and inspect)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def stage_table(manifest: dict[str, Any]) -> Table:
    table = Table(title="Units per stage")
    for col in ("split", "documents", "bytes", "stage", "splitter", "units", "bytes/unit"):
        table.add_column(col, justify="right" if col not in ("split", "splitter") else "left")
    names = [s["name"] for s in manifest["options"]["splitters"]]
    for split, s in manifest["splits"].items():
        if not s["documents"]:
            continue
        for k, units in enumerate(s["units"], 1):
            per = f"{s['bytes'] / units:.2f}" if units else "-"
            first = k == 1
            table.add_row(
                split if first else "",
                f"{s['documents']:,}" if first else "",
                f"{s['bytes']:,}" if first else "",
                str(k + 1),
                names[k - 1],
                f"{units:,}",
                per,
            )
    return table


def print_prep_summary(console: Console, manifest: dict[str, Any], seconds: float) -> None:
    t = manifest["totals"]
    console.print(stage_table(manifest))
    skipped = ", ".join(f"{n:,} {r}" for r, n in t["skipped"].items()) or "none"
    rate = t["bytes"] / seconds / 1e6 if seconds > 0 else 0.0
    console.print(
        f"{t['documents']:,} documents, {t['bytes']:,} bytes in {len(manifest['shards'])} shards; "
        f"skipped: {skipped}; {seconds:.1f} s ({rate:.1f} MB/s)"
    )
