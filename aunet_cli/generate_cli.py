"""What `aunet generate` and `aunet eval` do around the library: inputs, output, errors."""

from __future__ import annotations

import codecs
import json
import sys
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import torch
from rich.console import Console

from splitters import Pipeline, SplitterError

from .errors import EXIT_INTERRUPTED, AunetError
from .export import load_model
from .model import AUNet
from .tokenizer import Codec, codec_for


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AunetError(f"--device {device}: no CUDA device is available here")
    if device != "cpu" and not device.startswith("cuda"):
        raise AunetError(f"--device must be auto, cpu or cuda[:N], got {device!r}")
    return device


def open_model(
    run: Path | None, model: Path | None, device: str
) -> tuple[AUNet, Pipeline, dict[str, Any], Codec]:
    """The model, the splitter pipeline it was trained with, its config and its codec
    (bytes, or the BPE tokenizer saved beside it)."""
    if (run is None) == (model is None):
        raise AunetError("give exactly one of --run RUN_DIR or --model model.safetensors")
    path = run if run is not None else model
    assert path is not None
    if not path.exists():
        raise AunetError(f"{path}: no such run directory or model file")
    net, config = load_model(path, resolve_device(device))
    if "checkpoint" in config:
        Console(stderr=True).print(
            f"[dim]{path}: no model.safetensors yet; using {config['checkpoint']}[/dim]",
            highlight=False,
        )
    try:
        pipeline = Pipeline.from_descriptions(config.get("splitters", []))
    except SplitterError as exc:
        raise AunetError(f"{path}: its splitters cannot be loaded here ({exc})") from None
    if len(pipeline.stages) != net.cfg.n_stages - 1:
        raise AunetError(
            f"{path}: the model has {net.cfg.n_stages} stages but its config names "
            f"{len(pipeline.stages)} splitters (expected {net.cfg.n_stages - 1})"
        )
    codec = codec_for(config, path if path.is_dir() else path.parent)
    if codec.vocab_size != net.cfg.vocab_size:
        raise AunetError(
            f"{path}: the model has {net.cfg.vocab_size} ids but its tokenizer {codec.vocab_size}"
        )
    return net, pipeline, config, codec


def read_prompts(
    prompts: list[str], prompt_file: Path | None, raw: bool, stdin: BinaryIO
) -> list[bytes]:
    """Prompts from arguments, a file or stdin; invalid UTF-8 is refused unless --raw."""
    if prompts and prompt_file is not None:
        raise AunetError("give the prompt as an argument or with --prompt-file, not both")
    if prompt_file is not None or prompts == ["-"]:
        where = str(prompt_file) if prompt_file is not None else "<stdin>"
        try:
            data = prompt_file.read_bytes() if prompt_file is not None else stdin.read()
        except OSError as exc:
            raise AunetError(f"--prompt-file {where}: cannot read ({exc.strerror})") from None
        if not raw:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise AunetError(
                    f"{where}: invalid UTF-8 at byte {exc.start} ({data[exc.start : exc.end]!r}); "
                    "pass --raw to feed the bytes as they are"
                ) from None
        return [data]
    if not prompts:
        return [b""]  # unconditional: the text starts right after BOS
    return [p.encode("utf-8", "surrogateescape") for p in prompts]


class TerminalStream:
    """Writes completion bytes as they come: whole characters only (or raw bytes)."""

    def __init__(self, out: TextIO, raw: bool) -> None:
        self.out, self.raw = out, raw
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, data: bytes) -> None:
        if self.raw:
            self.out.flush()
            self.out.buffer.write(data)
            self.out.buffer.flush()
            return
        self.out.write(self.decoder.decode(data))
        self.out.flush()

    def close(self) -> None:
        if not self.raw:
            self.out.write(self.decoder.decode(b"", final=True))
        self.out.flush()


def run_generate(
    err: Console, run: Path | None, model_path: Path | None, prompts: list[bytes],
    opts: Any, num_samples: int, fmt: str, raw: bool, cache: bool, device: str,
) -> None:  # fmt: skip
    from .generate import generate

    if fmt not in ("text", "jsonl"):
        raise AunetError(f"--format must be text or jsonl, got {fmt!r}")
    if num_samples < 1:
        raise AunetError(f"--num-samples must be at least 1, got {num_samples}")
    opts.check()
    model, pipeline, _, codec = open_model(run, model_path, device)
    try:
        pipeline.streamer()
    except SplitterError as exc:
        raise AunetError(f"cannot generate with this model's splitters: {exc}") from None
    rows = [p for p in prompts for _ in range(num_samples)]
    stdout = sys.stdout
    live = fmt == "text" and len(rows) == 1
    stream = TerminalStream(stdout, raw)
    if live:
        stream.write(rows[0])
    emit = (lambda _row, data: stream.write(data)) if live else None
    results = generate(model, pipeline, rows, opts, cache=cache, emit=emit, codec=codec)
    for i, res in enumerate(results):
        n = len(res.completion)
        rate = n / res.seconds if res.seconds > 0 else 0.0
        if fmt == "jsonl":
            record = {
                "prompt": res.prompt.decode("utf-8", "replace"),
                "completion": res.completion.decode("utf-8", "replace"),
                "bytes": n,
                "seconds": round(res.seconds, 4),
                "bytes_per_s": round(rate, 1),
                "stop_reason": res.reason,
            }
            stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            stdout.flush()
            continue
        if not live:
            err.print(f"[dim]--- sample {i + 1}/{len(rows)} ---[/dim]", highlight=False)
            stream = TerminalStream(stdout, raw)
            stream.write(res.prompt + bytes(res.completion))
        stream.close()
        stdout.write("\n")
        stdout.flush()
        err.print(
            f"[dim]{n} bytes in {res.seconds:.2f} s ({rate:.0f} bytes/s), "
            f"stopped by {res.reason}[/dim]",
            highlight=False,
        )
    if any(r.reason == "interrupted" for r in results):
        err.print("interrupted: the text above is what was generated.")
        raise SystemExit(EXIT_INTERRUPTED)


def run_eval(
    out: Console, err: Console, run: Path, data: list[Path], split: str, doc_per: str,
    stride: int | None, batch_size: int, fmt: str, device: str, quiet: bool,
    task: str = "bpb", probes: int = 500, seed: int = 0,
) -> None:  # fmt: skip
    from .evaluate import evaluate, raw_documents, shard_documents

    if task not in ("bpb", "spelling"):
        raise AunetError(f"--task must be bpb or spelling, got {task!r}")
    if probes < 1:
        raise AunetError(f"--probes must be at least 1, got {probes}")
    if fmt not in ("table", "json"):
        raise AunetError(f"--format must be table or json, got {fmt!r}")
    if doc_per not in ("file", "paragraph", "line"):
        raise AunetError(f"--doc-per must be file, paragraph or line, got {doc_per!r}")
    if not data:
        raise AunetError("--data: give at least one prepared directory or raw text file")
    for p in data:
        if not p.exists():
            raise AunetError(f"--data {p}: no such file or directory")
    model, pipeline, config, codec = open_model(run, None, device)
    splitters = config.get("splitters", [])

    def documents():
        for p in data:
            if p.is_dir() and (p / "manifest.json").exists():
                yield from shard_documents(p, split, splitters)
            else:
                yield from raw_documents([p], pipeline, doc_per)

    if task == "spelling":
        from .spelling import make_probes, spelling_probe

        made = make_probes((d for d, _ in documents()), probes, seed)
        if not made:
            raise AunetError("no words of >= 5 ASCII letters in --data to build probes from")
        result = spelling_probe(model, pipeline, made, codec)
        if fmt == "json":
            out.print_json(json.dumps(result))
            return
        out.print(
            f"[bold]spelling accuracy[/bold] {result['accuracy']:.4f} "
            f"({result['pairs']:,} correct/misspelled pairs from {result['probes']:,} words)"
        )
        kinds = ", ".join(f"{k} {v:.3f}" for k, v in result["by_kind"].items() if v is not None)
        out.print(f"by kind: {kinds}; mean margin {result['mean_margin_bits']:.2f} bits")
        return

    from rich.progress import Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn("eval"), TransferSpeedColumn(), TextColumn("{task.completed:,.0f} bytes"),
        console=err, disable=quiet or fmt == "json", transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("eval", total=None)
        res = evaluate(
            model, documents(), stride, batch_size, lambda n: progress.advance(task, n), codec
        )
    if res.bytes == 0:
        raise AunetError("no bytes to evaluate in --data")
    summary = res.summary(model.cfg.seq_len, stride or max(1, model.cfg.seq_len // 2))
    if fmt == "json":
        out.print_json(json.dumps(summary))
        return
    out.print(f"[bold]bits per byte[/bold] {summary['bpb']:.4f}")
    out.print(
        f"{summary['bytes']:,} bytes in {summary['documents']:,} documents, "
        f"{summary['windows']:,} windows of up to {summary['seq_len']} bytes "
        f"(stride {summary['stride']})"
    )
    d = summary["per_document_bpb"]
    out.print(
        f"per document bpb: mean {d['mean']:.4f}, median {d['median']:.4f}, "
        f"min {d['min']:.4f}, max {d['max']:.4f}"
    )
    for s, bpu in enumerate(summary["bytes_per_unit"], start=2):
        out.print(f"stage {s}: {bpu:.2f} bytes per unit" if bpu else f"stage {s}: no units")
