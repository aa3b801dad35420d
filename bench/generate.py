"""Benchmark: generation speed with per-stage KV caches, on this machine (CPU, float32).

What it measures, side by side in one process:

1. cache vs full recomputation: bytes/s of `Session.push` (one new byte: splitter
   streamer + model + logits) with the per-stage caches, against `--no-cache` (the whole
   model over the whole text at every byte), after a context of 256, 1k and 4k bytes;
   for AU-Net-1 and AU-Net-2. Ratio = cached / full.
2. AU-Net-2 against AU-Net-1 at equal FLOPs per byte (aunet_cli.flops with the stage
   lengths measured on the text): cached bytes/s over --steps bytes after a 1k context,
   timed in interleaved chunks of 64 bytes (AU-Net-1, AU-Net-2, AU-Net-1, ...) so load
   from other processes hits both alike.
3. A long generation: --long bytes (default 8k) from an empty prompt with the
   sliding-window AU-Net-2: seconds per byte over the first and the last 1000 bytes
   (flat = no hidden quadratic term, splitter included), and the process RSS after
   1k and after all bytes (flat = bounded caches).

Both models use sliding windows at every stage (so texts can grow without bound);
weights are random. The bytes fed are real text (Python docs; --corpus), forced: at
every step the sampler runs on the logits (top-k + temperature, the same work as
sampling) but the next byte is taken from the text, so pooling points occur at the
real-text rate (random weights would emit random bytes with few word boundaries,
which would flatter AU-Net-2). torch threads: --threads (default 1: on a
shared 2-core machine two threads stall each other).

Targets: cached >= 10x full at 1k context; AU-Net-2 >= 1.2x AU-Net-1 bytes/s;
RSS within 10% between 1k and 8k bytes; time per byte within 20% between the
first and the last thousand bytes.

    .venv/bin/python bench/generate.py           # the tables (~5 min on 2 cores)
    .venv/bin/python bench/generate.py --quick   # smaller models and counts
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aunet_cli.flops import flops_per_byte  # noqa: E402
from aunet_cli.generate import SampleOptions, Session, pick  # noqa: E402
from aunet_cli.model import AUNet, ModelConfig  # noqa: E402
from splitters import Pipeline, TextBatch  # noqa: E402

CORPUS = Path("/work/shared/corpora/en/pydocs.txt")
SEQ_LEN = 1024


def corpus_text(path: Path, n: int) -> bytes:
    if path.exists():
        data = path.read_bytes()
    else:  # no shared corpora: the Python docs every Python ships
        from aunet_cli.builtin_data import pydoc_topics

        data = pydoc_topics()
    while len(data) < n:
        data += data
    return data[:n]


def configs(quick: bool) -> dict[str, tuple[ModelConfig, list[str]]]:
    """AU-Net-1 and AU-Net-2 at equal FLOPs per byte (within ~5% on English text)."""
    d1, d2, trunk = (256, 128, 9) if quick else (512, 256, 9)
    au1 = ModelConfig(stages=[dict(dim=d1, layers=8, heads=8, window=1024)], seq_len=SEQ_LEN)
    au2 = ModelConfig(
        stages=[
            dict(dim=d2, layers=2, decoder_layers=2, heads=4, window=1024),
            dict(dim=4 * d2, layers=trunk, heads=16, window=256),
        ],
        seq_len=SEQ_LEN,
    )
    return {"AU-Net-1": (au1, []), "AU-Net-2": (au2, ["regex-words"])}


def stage_lengths(cfg: ModelConfig, specs: list[str], text: bytes) -> list[float]:
    """Mean positions per SEQ_LEN-byte window at each stage, on the text."""
    levels = Pipeline.from_specs(specs).levels(TextBatch.from_docs([text]))
    windows = len(text) // SEQ_LEN
    return [float(SEQ_LEN)] + [
        float((levels[: windows * SEQ_LEN] >= s).sum()) / windows + 1
        for s in range(1, cfg.n_stages)
    ]


class Runner:
    """One model generating from a prompt, forced along the text."""

    def __init__(self, model: AUNet, pipe: Pipeline, text: bytes, context: int, cache: bool):
        self.session = Session(model, pipe, [text[: context - 1]], cache=cache)
        self.text, self.next = text, context - 1
        self.logits = self.session.prefill()
        self.opts = SampleOptions(temperature=0.8, top_k=50)
        self.gen = torch.Generator().manual_seed(0)

    def step(self, n: int) -> float:
        """Seconds for n more bytes."""
        t0 = time.perf_counter()
        for _ in range(n):
            pick(self.logits, self.opts, self.gen)
            self.logits = self.session.push([self.text[self.next]])
            self.next += 1
        return time.perf_counter() - t0


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--steps", type=int, default=512, help="bytes per model in section 2")
    ap.add_argument("--long", type=int, default=8192, help="bytes of the long generation")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    quick = args.quick
    cached_steps, full_steps = (16, 2) if quick else (64, 4)
    contexts = [256, 1024] if quick else [256, 1024, 4096]
    long_n = 2048 if quick else args.long
    text = corpus_text(args.corpus, 64 * SEQ_LEN + long_n + 8192)
    print(f"# bench/generate.py on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip

    models = {}
    rows = []
    for name, (cfg, specs) in configs(quick).items():
        torch.manual_seed(0)
        model = AUNet(cfg).eval()
        pipe = Pipeline.from_specs(specs)
        report = flops_per_byte(cfg, stage_lengths(cfg, specs, text[: 64 * SEQ_LEN]))
        models[name] = (model, pipe, report)
        params = sum(p.numel() for p in model.parameters())
        bpp = [SEQ_LEN / n for n in report.stage_lengths]
        rows.append([name, f"{params / 1e6:.1f}M", f"{report.per_byte / 1e6:.2f}",
                     " / ".join(f"{b:.2f}" for b in bpp)])  # fmt: skip
    table("Models (random weights, sliding windows at every stage)",
          ["model", "params", "MFLOPs/byte", "bytes per stage position"], rows)  # fmt: skip

    # 1. cache vs full recomputation
    rows = []
    for ctx in contexts:
        for name, (model, pipe, _) in models.items():
            cached = Runner(model, pipe, text, ctx, cache=True)
            cached.step(4)  # warm-up
            c = cached_steps / cached.step(cached_steps)
            full = Runner(model, pipe, text, ctx, cache=False)
            full.step(1)
            f = full_steps / full.step(full_steps)
            rows.append([f"{ctx}", name, f"{c:.1f}", f"{f:.2f}", f"{c / f:.1f}x"])
    header = ["context bytes", "model", "cached bytes/s", "full bytes/s", "cached / full"]
    table("Cached generation vs full recomputation (bytes/s after a context)", header, rows)

    # 2. AU-Net-2 vs AU-Net-1 at equal FLOPs per byte
    runners = {n: Runner(m, p, text, 1024, cache=True) for n, (m, p, _) in models.items()}
    for r in runners.values():
        r.step(8)
    spent = {n: 0.0 for n in runners}
    chunk = 64
    for _ in range(max(1, args.steps // chunk) if not quick else 2):
        for n, r in runners.items():
            spent[n] += r.step(chunk)
    done = max(1, args.steps // chunk) * chunk if not quick else 2 * chunk
    rates = {n: done / s for n, s in spent.items()}
    rows = [[n, f"{models[n][2].per_byte / 1e6:.2f}", f"{rates[n]:.1f}",
             f"{rates[n] / rates['AU-Net-1']:.2f}x"] for n in runners]  # fmt: skip
    table(f"Equal FLOPs per byte: cached bytes/s over {done} bytes after 1k context",
          ["model", "MFLOPs/byte", "bytes/s", "vs AU-Net-1"], rows)  # fmt: skip

    # 3. long generation: flat time per byte and flat memory
    model, pipe, _ = models["AU-Net-2"]
    proc = psutil.Process()
    runner = Runner(model, pipe, text, 1, cache=True)
    per_k, rss = [], {}
    for k in range(long_n // 1000):
        per_k.append(runner.step(1000) / 1000)
        if k == 0:
            rss["1k"] = proc.memory_info().rss
    rss["end"] = proc.memory_info().rss
    first, last = per_k[0], per_k[-1]
    table(f"Long generation, AU-Net-2 (sliding windows), {len(per_k)}k bytes",
          ["measure", "first 1000 bytes", f"last 1000 bytes (#{len(per_k)})", "ratio"],
          [["ms per byte", f"{first * 1e3:.2f}", f"{last * 1e3:.2f}", f"{last / first:.2f}"],
           ["RSS MB (after 1k / at end)", f"{rss['1k'] / 1e6:.1f}", f"{rss['end'] / 1e6:.1f}",
            f"{rss['end'] / rss['1k']:.3f}"]])  # fmt: skip
    print("\nms per byte for each 1000 bytes: " + ", ".join(f"{t * 1e3:.2f}" for t in per_k))
    print(f"median {statistics.median(per_k) * 1e3:.2f} ms; "
          f"load average at end {os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
