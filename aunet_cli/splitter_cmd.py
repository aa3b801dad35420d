"""`aunet splitter train` / `aunet splitter eval`: the learned splitter's own tools."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from splitters import SplitterError, parse_spec

from . import __version__
from .consoles import err, out
from .errors import AunetError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

app = typer.Typer(
    help="Train and evaluate learned splitters (learned-zh).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _bar(console: Console, quiet: bool) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
    )


@app.command("train")
def train_cmd(
    texts: Annotated[
        list[Path], typer.Argument(help="UTF-8 text files to learn from (raw, or gold-segmented).")
    ],
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="Artifact path: writes OUT.json + OUT.safetensors.")
    ],
    teacher: Annotated[
        str, typer.Option(help="jieba, sentencepiece (unigram pieces) or gold (space-separated).")
    ] = "jieba",
    placement: Annotated[
        str, typer.Option(help="Heads to train: both, end or next-start.")
    ] = "both",
    bits: Annotated[
        int, typer.Option(min=10, max=22, help="2**bits hash buckets per n-gram template.")
    ] = 15,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training examples.")] = 1,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 0.05,
    dictionary_chars: Annotated[
        int,
        typer.Option(
            help="jieba teacher: also learn from this many characters of sentences drawn from "
            "jieba's dictionary (vocabulary the corpora lack); 0 = off."
        ),
    ] = 2_000_000,
    dictionary_alpha: Annotated[
        float, typer.Option(help="Draw dictionary words with probability ~ frequency**alpha.")
    ] = 0.75,
    val_every: Annotated[
        int, typer.Option(min=2, help="Hold out every Nth training document for validation.")
    ] = 20,
    spm_vocab: Annotated[int, typer.Option(help="sentencepiece teacher: vocabulary size.")] = 8000,
    sources: Annotated[
        Path | None,
        typer.Option(help="SOURCES.md listing the texts' licences (recorded in the artifact)."),
    ] = None,
    gold: Annotated[
        Path | None,
        typer.Option(help="Gold segmented file: score the result on it (evaluation only)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train a causal boundary model from a teacher segmentation and write an artifact."""
    from splitters import learned_train as lt
    from splitters.learned_model import PLACEMENTS, save_artifact

    if teacher not in lt.TEACHERS:
        raise AunetError(f"--teacher must be one of {', '.join(lt.TEACHERS)}, got {teacher!r}")
    heads = list(PLACEMENTS) if placement == "both" else [placement]
    if not set(heads) <= set(PLACEMENTS):
        raise AunetError(f"--placement must be both, end or next-start, got {placement!r}")
    for path in texts:
        if not path.is_file():
            raise AunetError(f"{path}: no such file")
    started = time.time()
    files = lt.read_lines(texts)
    all_lines = [ln for _, lines in files for ln in lines]
    seg = lt.teacher_segmenter(teacher, all_lines, spm_vocab)
    synthetic: list[tuple[Path, list[str]]] = []
    if teacher == "jieba" and dictionary_chars > 0:
        synthetic = [
            (
                Path("<jieba dictionary>"),
                lt.dictionary_lines(dictionary_chars, dictionary_alpha, seed),
            )
        ]
    with _bar(err(), quiet) as bar:
        n_lines = len(all_lines) + sum(len(lines) for _, lines in synthetic)
        task = bar.add_task(f"teacher {teacher}", total=n_lines)
        docs = lt.segment_docs(files, seg, lambda n: bar.advance(task, n))
        extra = lt.segment_docs(synthetic, seg, lambda n: bar.advance(task, n))
    train_docs = lt.Docs.from_tokens([d for i, d in enumerate(docs) if i % val_every] + extra)
    val_docs = lt.Docs.from_tokens([d for i, d in enumerate(docs) if i % val_every == 0])

    weights: dict[str, np.ndarray] = {}
    bias: dict[str, float] = {}
    metrics: dict[str, Any] = {}
    for head in heads:
        x, y = train_docs.examples(head, bits)
        xv, yv = val_docs.examples(head, bits)
        with _bar(err(), quiet) as bar:
            task = bar.add_task(f"train {head}", total=None)

            def on_step(done: int, total: int, task=task, bar=bar) -> None:
                bar.update(task, completed=done, total=total)

            def on_eval(epoch: float, m: dict[str, float], head=head, bar=bar) -> None:
                bar.console.print(
                    f"{head}: epoch {epoch:.2f}  validation F1 {m['f1']:.4f} "
                    f"(P {m['precision']:.4f} R {m['recall']:.4f})"
                )

            w, b, m = lt.fit(
                x, y, xv, yv, bits, epochs=epochs, lr=lr, seed=seed, on_step=on_step,
                on_eval=on_eval,
            )  # fmt: skip
        weights[head], bias[head] = w, b
        metrics[head] = {
            "validation": m,
            "train_sites": int(len(x)),
            "validation_sites": int(len(xv)),
        }

    licences = lt.licences_from_sources(sources)
    meta: dict[str, Any] = {
        "name": out_path.with_suffix("").name if out_path.suffix == ".json" else out_path.name,
        "created": lt.now_utc(),
        "aunet_version": __version__,
        "architecture": lt.architecture(bits),
        "teacher": _teacher_record(teacher, spm_vocab),
        "training": {
            "files": [lt.file_record(p, licences) for p in texts],
            "dictionary_chars": dictionary_chars if synthetic else 0,
            "dictionary_alpha": dictionary_alpha if synthetic else None,
            "lines_per_document": lt.LINES_PER_DOC,
            "validation": f"every {val_every}th document of the files (teacher labels)",
            "epochs": epochs,
            "lr": lr,
            "seed": seed,
            "seconds": round(time.time() - started, 1),
        },
        "metrics": metrics,
    }
    json_path = save_artifact(out_path, weights, bias, meta)
    if gold is not None:
        from splitters.learned_zh import LearnedZh

        results = {}
        for head in heads:
            results[head] = _score(LearnedZh(path=str(json_path), placement=head), gold)
        meta["metrics"]["gold"] = {"file": gold.name, **results}
        json_path = save_artifact(out_path, weights, bias, meta)
        for head, r in results.items():
            out().print(
                f"{head}: gold boundary F1 {r['f1']:.4f} (P {r['precision']:.4f} "
                f"R {r['recall']:.4f}), word F1 {r['word_f1']:.4f}"
            )
    out().print(f"wrote {json_path} ({time.time() - started:.0f} s)")


def _teacher_record(teacher: str, spm_vocab: int) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    record: dict[str, Any] = {"name": teacher}
    pkg = {"jieba": "jieba", "sentencepiece": "sentencepiece"}.get(teacher)
    if pkg:
        with contextlib.suppress(PackageNotFoundError):
            record["version"] = version(pkg)
    if teacher == "jieba":
        record["options"] = {"HMM": True}
    if teacher == "sentencepiece":
        record["options"] = {"model_type": "unigram", "vocab_size": spm_vocab}
    return record


def _read_gold(gold: Path) -> tuple[list[str], list[np.ndarray]]:
    from splitters import segeval

    try:
        sentences, masks = segeval.read_gold(gold)
    except (FileNotFoundError, IsADirectoryError):
        raise AunetError(f"{gold}: no such file") from None
    except UnicodeDecodeError as exc:
        raise AunetError(f"{gold}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not sentences:
        raise AunetError(f"{gold}: no sentences (expected one per line, words separated by spaces)")
    return sentences, masks


def _score(splitter, gold: Path, min_seconds: float = 0.5) -> dict[str, float]:
    from splitters import TextBatch, segeval

    sentences, masks = _read_gold(gold)
    result = segeval.score(segeval.predicted_boundaries(splitter, sentences), masks)
    docs = [s.encode("utf-8") for s in sentences]
    n_bytes, runs, t0 = sum(map(len, docs)), 0, time.perf_counter()
    while True:  # throughput of the batch path, decoding included
        splitter.points(TextBatch.from_docs(docs), None)
        runs += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            break
    result["mb_per_s"] = n_bytes * runs / elapsed / 1e6
    return result


@app.command("eval")
def eval_cmd(
    gold: Annotated[
        Path,
        typer.Option("--gold", help="Gold file: one sentence per line, words split by spaces."),
    ],
    splitter: Annotated[
        list[str] | None,
        typer.Option(
            "--splitter", "-s", help="Splitter to score (repeat to compare; default learned-zh)."
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Boundary precision / recall / F1, SIGHAN word F1 and throughput against gold text."""
    if fmt not in ("table", "json"):
        raise AunetError(f"--format must be table or json, got {fmt!r}")
    _read_gold(gold)  # a bad gold file is reported before any splitter loads
    rows = []
    for spec in splitter or ["learned-zh"]:
        try:
            stage = parse_spec(spec)
        except SplitterError as exc:
            raise AunetError(str(exc)) from None
        rows.append({"splitter": spec, **_score(stage, gold)})
    keys = ("precision", "recall", "f1", "word_f1", "mb_per_s")
    if fmt == "json":
        objs = [{"splitter": r["splitter"], **{k: r[k] for k in keys}} for r in rows]
        typer.echo(json.dumps(objs[0] if len(objs) == 1 else objs, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"Segmentation against {gold.name}")
    table.add_column("splitter", no_wrap=True)
    for k in ("boundary P", "boundary R", "boundary F1", "word F1", "MB/s"):
        table.add_column(k, justify="right")
    for r in rows:
        table.add_row(
            r["splitter"],
            *(f"{r[k]:.4f}" for k in keys[:4]),
            f"{r['mb_per_s']:.2f}",
        )
    out().print(table)
