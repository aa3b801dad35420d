"""Learning curves of finished or running `aunet train` runs, as one PNG.

Two panels share the y axis (bits per byte): against optimizer steps, and against
training FLOPs = step x bytes_per_step x train_flops_per_byte (both from RUN/compute.json),
the paper's unit of comparison. Each run gets one colour; its training curve is a thin
line, its validation curve a thicker line with markers. Reads RUN/metrics.csv (Lightning's
CSVLogger: one row per log call, blank cells for metrics not logged in that call; after a
resume a step can appear twice, and the last row wins).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from .atomic import replacing_path
from .errors import AunetError

METRICS = ("train_bpb", "val_bpb")
COMPUTE_KEYS = ("bytes_per_step", "train_flops_per_byte")


def read_metrics(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value), ...] sorted by step}, the last row of each step kept."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        raise AunetError(f"{path}: missing (no metrics.csv: is {run_dir} an `aunet train` run?)")
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            if "step" not in columns:
                raise AunetError(f"{path}: no 'step' column (columns: {', '.join(columns)})")
            series: dict[str, dict[int, float]] = {m: {} for m in METRICS}
            for row in reader:
                try:
                    step = int(float(row["step"]))
                except (TypeError, ValueError):
                    continue
                for m in METRICS:
                    cell = row.get(m)
                    if not cell:
                        continue
                    try:
                        value = float(cell)
                    except ValueError:
                        continue
                    if math.isfinite(value):
                        series[m][step] = value  # later rows (after a resume) win
    except OSError as exc:
        raise AunetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not any(series.values()):
        raise AunetError(f"{path}: no {' or '.join(METRICS)} values to plot")
    return {m: sorted(points.items()) for m, points in series.items()}


def read_compute(run_dir: Path) -> tuple[float, float]:
    """(bytes_per_step, train_flops_per_byte) from RUN/compute.json."""
    path = run_dir / "compute.json"
    if not path.is_file():
        raise AunetError(f"{path}: missing (needed for the FLOPs axis)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AunetError(f"{path}: not readable JSON ({exc})") from None
    missing = [k for k in COMPUTE_KEYS if not isinstance(data.get(k), int | float)]
    if missing:
        raise AunetError(f"{path}: missing {', '.join(missing)}")
    return float(data["bytes_per_step"]), float(data["train_flops_per_byte"])


def plot_runs(run_dirs: list[Path], out: Path) -> Path:
    """Write a PNG of train/val bits per byte against steps and training FLOPs; return it."""
    if not run_dirs:
        raise AunetError("plot: give at least one run directory")
    runs = []
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise AunetError(f"{run_dir}: missing (not a run directory)")
        metrics = read_metrics(run_dir)
        bytes_per_step, flops_per_byte = read_compute(run_dir)
        label = run_dir.name or run_dir.resolve().name
        runs.append((label, metrics, bytes_per_step * flops_per_byte))

    # no pyplot: a bare Figure keeps no global state and renders with Agg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax_steps, ax_flops = fig.subplots(1, 2, sharey=True)
    cmap = None
    if len(runs) > 10:
        from matplotlib import colormaps

        cmap = colormaps["tab20"]
    for i, (label, metrics, flops_per_step) in enumerate(runs):
        colour = cmap(i % 20) if cmap else f"C{i}"
        for ax, scale in ((ax_steps, 1.0), (ax_flops, flops_per_step)):
            train, val = metrics["train_bpb"], metrics["val_bpb"]
            if train:
                xs, ys = zip(*train, strict=True)
                ax.plot([x * scale for x in xs], ys, color=colour, lw=0.8, alpha=0.55)
            if val:
                xs, ys = zip(*val, strict=True)
                ax.plot([x * scale for x in xs], ys, color=colour, lw=1.8, marker="o", ms=3)
        # one legend entry per run (drawn once, on an invisible point)
        ax_steps.plot([], [], color=colour, lw=1.8, label=label)
    ax_steps.plot([], [], color="0.4", lw=0.8, alpha=0.55, label="train (thin)")
    ax_steps.plot([], [], color="0.4", lw=1.8, marker="o", ms=3, label="val (markers)")
    ax_steps.set_xlabel("optimizer step")
    ax_steps.set_ylabel("bits per byte")
    ax_steps.set_title("bits per byte vs steps")
    ax_flops.set_xlabel("training FLOPs (step x bytes/step x train FLOPs/byte)")
    ax_flops.set_title("bits per byte vs training compute")
    if all(s > 0 for *_, s in runs):
        ax_flops.set_xscale("log")
    for ax in (ax_steps, ax_flops):
        ax.grid(True, alpha=0.3)
    ax_steps.legend(fontsize=8)

    out = Path(out)
    fmt = out.suffix.lower().lstrip(".") or "png"  # the format the name says
    known = fig.canvas.get_supported_filetypes()
    if fmt not in known:
        raise AunetError(
            f"{out}: matplotlib cannot write .{fmt} files; name one of "
            f"{', '.join('.' + k for k in sorted(known))}"
        )
    with replacing_path(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120)
    return out
