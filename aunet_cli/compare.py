"""`aunet compare`: train several recipes for the same training FLOPs, score them alike.

Every model gets the same budget (its step count follows from its FLOPs per byte and
batch), is evaluated on the same validation bytes (checked by hash) with the same
windows, and on the same spelling probes. OUT/ holds one run directory per recipe
(finished runs are reused, unfinished ones resume), compare.json, compare.md and
compare.png (bits per byte against training FLOPs).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from .atomic import write_json_atomic, write_text_atomic
from .errors import AunetError
from .recipe import Recipe, RecipeError, build_config, load_recipe, read_yaml

REPORT_FORMAT = "aunet-compare/1"


@dataclass
class EvalSection:
    spelling_probes: int = 500  # held-out words for the spelling probe (0: skip it)
    stride: int | None = None  # window step for long documents (default seq_len / 2)
    seed: int = 0


@dataclass
class CompareConfig:
    """A compare recipe: training recipes (paths relative to this file) and one budget."""

    models: list[str]
    budget: float  # training FLOPs per model
    name: str = ""
    eval: EvalSection = field(default_factory=EvalSection)


def load_compare(path: Path) -> tuple[CompareConfig, list[Path]]:
    raw, lines = read_yaml(path, "a compare recipe is a mapping with models and budget")
    cfg = build_config(CompareConfig, raw, str(path), lines)
    if not cfg.models:
        raise RecipeError(f"{path}: models: list at least one training recipe")
    if not (math.isfinite(cfg.budget) and cfg.budget > 0):
        raise RecipeError(f"{path}: budget: must be positive FLOPs, got {cfg.budget}")
    return cfg, [(path.parent / m) for m in cfg.models]


def is_compare_file(path: Path) -> bool:
    try:
        raw, _ = read_yaml(path, "not a mapping")
    except RecipeError:
        return False
    return "models" in raw


def budgeted(paths: list[Path], budget: float) -> list[Recipe]:
    """The recipes with trainer.flops_budget = budget (steps follow from it)."""
    recipes = []
    for p in paths:
        overrides = [f"trainer.flops_budget={budget!r}", "trainer.max_steps=null",
                     "trainer.max_time=null"]  # fmt: skip
        recipes.append(load_recipe(p, overrides))
    names = [r.name or p.stem for r, p in zip(recipes, paths, strict=True)]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise AunetError(f"compare: two recipes share the name {sorted(dupes)[0]!r}; rename one")
    for r, n in zip(recipes, names, strict=True):
        r.name = n
    return recipes


def check_same_data(recipes: list[Recipe], paths: list[Path]) -> None:
    """Equal compute means nothing unless the text and its held-out part are the same."""
    first = recipes[0].data
    key = (first.inputs, first.prepared, first.doc_per, first.val_fraction)
    for r, p in zip(recipes, paths, strict=True):
        d = r.data
        if (d.inputs, d.prepared, d.doc_per, d.val_fraction) != key:
            raise AunetError(
                f"{p}: its data (inputs, doc_per, val_fraction) differ from {paths[0]}'s; "
                "a comparison needs the same text and the same validation documents"
            )
        if d.val_tail or not d.prepared and d.val_fraction <= 0:
            raise AunetError(
                f"{p}: a comparison needs held-out documents (data.val_fraction > 0); "
                "data.val_tail holds out part of a byte stream, which a token model cannot share"
            )


def _model_kind(r: Recipe) -> str:
    return "BPE" if r.tokenizer else f"AU-Net-{r.model.n_stages}"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def train_or_reuse(r: Recipe, run_dir: Path, console: Console, quiet: bool) -> str:
    """'reused' for a finished run of this exact recipe, else train (resuming if begun)."""
    from .train import run_training

    recipe_json = run_dir / "recipe.json"
    if recipe_json.exists():
        try:
            old = json.loads(recipe_json.read_text())
        except ValueError as exc:
            raise AunetError(f"{recipe_json}: corrupt ({exc}); delete that run") from None
        if old.get("trainer", {}).get("flops_budget") != r.trainer.flops_budget:
            raise AunetError(
                f"{run_dir}: trained for another budget "
                f"({old.get('trainer', {}).get('flops_budget')!r} FLOPs, not "
                f"{r.trainer.flops_budget!r}); use another --out"
            )
        new = r.to_dict()
        differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if differ:  # absent = None (runs from before a section existed)
            raise AunetError(
                f"{run_dir}: holds a run of a different recipe ({', '.join(differ)} "
                "differ); use another --out, or delete that run to retrain it"
            )
        if (run_dir / "model.safetensors").exists():
            return "reused"
    run_training(r, run_dir, quiet=quiet)
    return "trained"


def val_documents(r: Recipe, run_dir: Path) -> tuple[list[bytes], list[Any], str]:
    """(documents, per-document levels, sha256 of the documents) of a run's val split."""
    import numpy as np

    from .evaluate import shard_documents

    prep_dir = Path(r.data.prepared) if r.data.prepared else run_dir / "data"
    manifest = json.loads((prep_dir / "manifest.json").read_text())
    docs, levels = [], []
    h = hashlib.sha256()
    for data, lv in shard_documents(prep_dir, "val", manifest["options"]["splitters"]):
        docs.append(data)
        levels.append(np.asarray(lv))
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return docs, levels, h.hexdigest()


def evaluate_run(
    r: Recipe, run_dir: Path, docs: list[bytes], levels: list, val_hash: str,
    probes: list, ev: EvalSection, device: str = "cpu",
) -> dict[str, Any]:  # fmt: skip
    """Eval bpb and spelling of a finished run (cached in RUN/compare-eval.json)."""
    from .evaluate import evaluate
    from .generate_cli import open_model
    from .spelling import spelling_probe

    key = {
        "model_sha256": _sha256_file(run_dir / "model.safetensors"),
        "val_sha256": val_hash,
        "stride": ev.stride,
        "spelling_probes": ev.spelling_probes,
        "seed": ev.seed,
        "probes_sha256": hashlib.sha256(
            b"\0".join(p.text(w) for p in probes for w in (p.word, *p.variants.values()))
        ).hexdigest(),
    }
    cache = run_dir / "compare-eval.json"
    if cache.exists():
        try:
            old = json.loads(cache.read_text())
        except ValueError:
            old = {}  # unreadable: evaluate again
        if old.get("key") == key:
            return old["result"]
    model, pipeline, _, codec = open_model(run_dir, None, device)
    t0 = time.perf_counter()
    res = evaluate(model, zip(docs, levels, strict=True), ev.stride, 16, codec=codec)
    result: dict[str, Any] = {
        "val_bpb": res.summary(model.cfg.seq_len, ev.stride or model.cfg.seq_len // 2)["bpb"],
        "val_bytes": res.bytes,
        "eval_seconds": time.perf_counter() - t0,
    }
    if probes:
        result["spelling"] = spelling_probe(model, pipeline, probes, codec)
    write_json_atomic(cache, {"key": key, "result": result})
    return result


def run_compare(
    paths: list[Path], budget: float, out: Path, ev: EvalSection, name: str = "",
    quiet: bool = False, console: Console | None = None, device: str = "cpu",
) -> dict[str, Any]:  # fmt: skip
    """Train (or reuse) every recipe at `budget`, evaluate all alike, write the reports."""
    from .spelling import make_probes

    console = console or Console(stderr=True)
    recipes = budgeted(paths, budget)
    check_same_data(recipes, paths)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (r, p) in enumerate(zip(recipes, paths, strict=True), 1):
        run_dir = out / r.name
        console.print(f"[bold][{i}/{len(recipes)}] {r.name}[/bold] ({_model_kind(r)}, {p})")
        how = train_or_reuse(r, run_dir, console, quiet)
        console.print(f"  {how}: {run_dir}")
        rows.append((r, p, run_dir, how))

    docs, levels, val_hash = val_documents(recipes[0], rows[0][2])
    if not docs:
        raise AunetError(f"{rows[0][2]}/data: no validation documents (data.val_fraction is 0?)")
    probes = make_probes(docs, ev.spelling_probes, ev.seed) if ev.spelling_probes else []
    results = []
    for r, p, run_dir, how in rows:
        d, lv, h = val_documents(r, run_dir)
        if h != val_hash:
            raise AunetError(
                f"{run_dir}: its validation documents differ from {rows[0][2]}'s "
                "(same inputs, different split?); cannot compare"
            )
        console.print(f"evaluating {r.name} on {sum(map(len, docs)):,} validation bytes")
        scores = evaluate_run(r, run_dir, d, lv, h, probes, ev, device)
        results.append(_row(r, p, run_dir, how, scores))
    report = {
        "format": REPORT_FORMAT,
        "name": name,
        "budget_flops": budget,
        "validation": {"documents": len(docs), "bytes": sum(map(len, docs)), "sha256": val_hash},
        "spelling_probes": len(probes),
        "models": results,
    }
    write_json_atomic(out / "compare.json", report)
    write_text_atomic(out / "compare.md", render_markdown(report))
    from .plot import plot_runs

    plot_runs([run_dir for _, _, run_dir, _ in rows], out / "compare.png")
    return report


def _row(r: Recipe, p: Path, run_dir: Path, how: str, scores: dict[str, Any]) -> dict[str, Any]:
    from .plot import read_metrics

    compute = json.loads((run_dir / "compute.json").read_text())
    timing = json.loads((run_dir / "timing.json").read_text()) if (
        run_dir / "timing.json").exists() else {}  # fmt: skip
    val = read_metrics(run_dir)["val_bpb"]
    steps = timing.get("last_step") or compute["planned_steps"]
    return {
        "name": r.name,
        "recipe": str(p),
        "kind": _model_kind(r),
        "params": compute["params"]["total"],
        "flops_per_byte": compute["flops_per_byte"],
        "bytes_per_token": compute.get("bytes_per_token", 1.0),
        "bytes_per_stage_position": compute["bytes_per_stage_position"],
        "steps": steps,
        "bytes_seen": steps * compute["bytes_per_step"],
        "train_flops": steps * compute["bytes_per_step"] * compute["train_flops_per_byte"],
        "val_bpb": scores["val_bpb"],
        "last_logged_val_bpb": val[-1][1] if val else None,
        "spelling": scores.get("spelling"),
        "wall_seconds": timing.get("wall_seconds"),
        "run": str(run_dir),
        "status": how,
    }


def render_markdown(report: dict[str, Any]) -> str:
    v = report["validation"]
    lines = [
        f"# Compute-matched comparison{': ' + report['name'] if report['name'] else ''}",
        "",
        f"Training budget: **{report['budget_flops']:.3g} FLOPs** per model (3 x forward). "
        f"Validation: {v['documents']:,} held-out documents, {v['bytes']:,} bytes "
        f"(sha256 {v['sha256'][:12]}...), the same for every model.",
        "",
        "| model | kind | params | MFLOPs/byte | bytes seen | train FLOPs | val bpb "
        "| spelling acc. | swap only | wall time |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in report["models"]:
        sp = m["spelling"]["accuracy"] if m.get("spelling") else None
        swap = m["spelling"]["by_kind"]["swap"] if m.get("spelling") else None
        wall = f"{m['wall_seconds'] / 60:.1f} min" if m.get("wall_seconds") else "-"
        lines.append(
            f"| {m['name']} | {m['kind']} | {m['params'] / 1e6:.2f}M | "
            f"{m['flops_per_byte'] / 1e6:.2f} | {m['bytes_seen'] / 1e6:.2f}M | "
            f"{m['train_flops']:.3g} | **{m['val_bpb']:.4f}** | "
            f"{'-' if sp is None else f'{sp:.3f}'} | "
            f"{'-' if swap is None else f'{swap:.3f}'} | {wall} |"
        )
    best = min(report["models"], key=lambda m: m["val_bpb"])
    lines += [
        "",
        f"Lowest val bpb: **{best['name']}** ({best['val_bpb']:.4f}).",
        "",
        "- val bpb: total nats over the validation text / (ln 2 x its bytes); a document "
        "longer than a window is read in overlapping windows (stride seq_len / 2), every "
        "byte (or BPE token) scored once. A BPE model's nats are summed over its tokens.",
        "- MFLOPs/byte: forward matmul FLOPs per byte (a BPE model: per token / measured "
        "bytes per token); train FLOPs = 3 x forward x bytes seen.",
        f"- spelling acc.: share of {report['spelling_probes']:,} held-out words (x up to 3 "
        "misspellings: swapped, dropped, doubled letter) where the correct spelling gets the "
        "higher log-probability of the whole snippet. Misspelled words split into rarer, "
        "more numerous BPE pieces, which a BPE model penalizes even with little training; "
        "and a dropped letter makes the text one byte shorter (a doubled one, longer), "
        "which a byte model that pays several bits per byte rewards (penalizes) whatever "
        "the spelling. Swapped letters keep the length: *swap only* is the cleanest column.",
        "- wall time: training only, on whatever machine ran it (see compare.json).",
        "",
        "![val bpb against training FLOPs](compare.png)",
        "",
    ]
    return "\n".join(lines)
