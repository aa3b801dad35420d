"""Benchmark: training-step throughput of AU-Net-1, -2 and -3 at equal FLOPs per byte.

What it measures, side by side in one process on this CPU (float32):

* one training step = forward + cross-entropy + backward + AdamW step (weight decay on
  matrices only, as `aunet train` sets it up), batch 8 windows of 512 bytes (--batch,
  --seq-len). Every model first runs --warmup untimed steps; then the --steps timed steps
  are INTERLEAVED (step i of AU-Net-1, of AU-Net-2, of AU-Net-3, then step i+1 ...), each
  timed with perf_counter, so load from other processes on the machine hits all models
  alike; the load average is printed before and after;
* bytes/s = timed steps x batch x seq_len / summed seconds of that model's steps;
* FLOPs/byte = aunet_cli.flops.flops_per_byte(cfg, stage_lengths).per_byte (forward
  matmul FLOPs, attention included) with the MEAN stage lengths of the windows used;
* achieved FLOP/s = 3 x FLOPs/byte x bytes/s (backward ~ 2 x forward), and its ratio to
  AU-Net-1's (also from the median step, which bursts of load move less); and the seconds
  per step spent in forward, backward and the optimizer.

The bytes are real text: /work/shared/corpora/en/shakespeare.txt (--corpus) cut into
512-byte windows, split by this project's `regex-words` + `regex-word-pairs` pipeline
(`splitters.Pipeline.from_specs([...]).levels_of(...)`): words every ~4.4 bytes, pairs
every ~7.2 (digits, punctuation and line ends pool at every stage). Without the corpus,
random levels with those rates are used.

Stage capacities (max_seqlen), --capacity:
* none (default): max_seqlen null, so each deeper stage runs on the batch's real points,
  padded only to the longest row of the batch (the model's no-capacity path); FLOPs/byte
  then count the mean lengths, and the configurations are compute-matched on those;
* fixed (static shapes, as the paper recipes train): the largest count over all the
  windows, rounded up to a multiple of 8, so nothing overflows. The model computes every
  capacity position and aunet_cli.flops counts them, so FLOPs/byte rise with the padding.
The share of computed deeper-stage positions that are padding is printed.

--adamw: default (torch.optim.AdamW's default implementation, as `aunet train` uses it;
on CPU that is the per-tensor loop) or fused (fused=True, one kernel).

The three configurations are chosen so their FLOPs/byte agree within ~5% (printed);
AU-Net-2/3 follow the paper's shape (a narrow byte stage, wider deeper stages).

Target: AU-Net-2's achieved FLOP/s >= 0.85 x AU-Net-1's.

    .venv/bin/python bench/train.py                  # the table
    .venv/bin/python bench/train.py --adamw fused    # with the fused optimizer
    .venv/bin/python bench/train.py --profile        # + where each model's step time goes
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aunet_cli import model as aunet_model
from aunet_cli.flops import flops_per_byte
from aunet_cli.model import AUNet, ModelConfig

CORPUS = Path("/work/shared/corpora/en/shakespeare.txt")
SPECS = ["regex-words", "regex-word-pairs"]

# name -> stages (capacities are filled in from the data). Forward FLOPs/byte on the
# Shakespeare windows: 15.08M, 14.82M, 14.74M (AU-Net-3's stage 2 has one decoder layer
# fewer than encoder layers to land within the match).
CONFIGS: dict[str, list[dict]] = {
    "AU-Net-1": [dict(dim=256, layers=8, heads=4)],
    "AU-Net-2": [
        dict(dim=128, layers=2, decoder_layers=2, heads=2),
        dict(dim=512, layers=8, heads=8),
    ],
    "AU-Net-3": [
        dict(dim=128, layers=2, decoder_layers=2, heads=2),
        dict(dim=384, layers=2, decoder_layers=1, heads=6),
        dict(dim=768, layers=4, heads=12),
    ],
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_windows(corpus: Path, seq_len: int, n_windows: int, seed: int):
    """(tokens, levels) of n_windows x (seq_len + 1) bytes; levels: 0, 1 words, 2 pairs."""
    need = n_windows * (seq_len + 1)
    if corpus.exists():
        from splitters import Pipeline

        data = corpus.read_bytes()
        data = (data * (need // len(data) + 1))[:need]
        levels = Pipeline.from_specs(SPECS).levels_of(data).astype(np.int64)
        tokens = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
        source = f"{corpus} split by {' + '.join(SPECS)}"
    else:  # random bytes, words every ~4.4 bytes and pairs every ~7.2
        rng = np.random.default_rng(seed)
        tokens = rng.integers(0, 256, need)
        u = rng.random(need)
        levels = (u < 1 / 4.4).astype(np.int64) + (u < 1 / 7.2)
        source = "random bytes and levels (corpus not found)"
    tokens = torch.from_numpy(tokens).view(n_windows, seq_len + 1)
    levels = torch.from_numpy(levels).view(n_windows, seq_len + 1)[:, :-1].clone()
    levels[:, 0] = len(SPECS)  # position 0 pools at every stage (as the data module does)
    return tokens, levels, source


def stage_counts(levels: torch.Tensor, n_stages: int) -> list[torch.Tensor]:
    """Positions per window at each stage (position 0 always counts)."""
    counts = [torch.full((levels.shape[0],), levels.shape[1])]
    for s in range(1, n_stages):
        is_point = levels >= s
        is_point[:, 0] = True
        counts.append(is_point.sum(1))
    return counts


def round8(x: int) -> int:
    return int(math.ceil(x / 8) * 8)


def build_config(
    name: str, seq_len: int, levels: torch.Tensor, capacity: str = "none"
) -> tuple[ModelConfig, list]:
    stages = [dict(st) for st in CONFIGS[name]]
    counts = stage_counts(levels, len(stages))
    for st, c in zip(stages[1:], counts[1:], strict=True):
        st["max_seqlen"] = round8(int(c.max())) if capacity == "fixed" else None
    cfg = ModelConfig(stages=stages, seq_len=seq_len)
    return cfg, [float(c.float().mean()) for c in counts]


def make_optimizer(model: AUNet, kind: str) -> torch.optim.Optimizer:
    """AdamW with the param groups of `aunet train` (no decay on vectors)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    extra = {"fused": True} if kind == "fused" else {}
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95), **extra)


class Runner:
    """One model, its optimizer and its timings."""

    def __init__(self, name: str, cfg: ModelConfig, lengths: list[float], adamw: str, seed: int):
        self.name, self.cfg, self.lengths = name, cfg, lengths
        torch.manual_seed(seed)
        self.model = AUNet(cfg)
        self.opt = make_optimizer(self.model, adamw)
        self.caps = [st.max_seqlen for st in cfg.stages[1:]]
        self.flops_per_byte = flops_per_byte(cfg, lengths).per_byte
        self.times = [0.0, 0.0, 0.0]  # forward, backward, optimizer
        self.steps: list[float] = []  # seconds of each step
        self.padding: list[list[float]] = [[] for _ in self.caps]

    def step(self, tokens: torch.Tensor, levels: torch.Tensor) -> None:
        counts = stage_counts(levels, self.cfg.n_stages)[1:]
        for pad, cap, c in zip(self.padding, self.caps, counts, strict=True):
            computed = cap or int(c.max())  # no capacity: padded to the longest row
            pad.append(1 - float(c.float().mean()) / computed)
        t0 = time.perf_counter()
        logits, _plans = self.model(tokens[:, :-1], levels)
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        t1 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        self.opt.step()
        t3 = time.perf_counter()
        for k, dt in enumerate((t1 - t0, t2 - t1, t3 - t2)):
            self.times[k] += dt
        self.steps.append(t3 - t0)

    def reset(self) -> None:
        self.times = [0.0, 0.0, 0.0]
        self.steps = []
        self.padding = [[] for _ in self.caps]


def train_steps(runner: Runner, batches, n: int) -> None:
    for i in range(n):
        runner.step(*batches[i % len(batches)])


def make_batches(tokens, levels, batch: int, count: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        idx = torch.randint(0, tokens.shape[0], (batch,), generator=g)
        out.append((tokens[idx], levels[idx]))
    return out


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


@contextmanager
def labelled_regions():
    """Wrap plan_stage, pooling, upsampling and attention in profiler labels."""
    from torch.profiler import record_function

    patched = []

    def wrap(owner, attr, label):
        orig = getattr(owner, attr)

        def wrapper(*a, **k):
            with record_function(label):
                return orig(*a, **k)

        setattr(owner, attr, wrapper)
        patched.append((owner, attr, orig))

    wrap(aunet_model, "plan_stage", "region: plan_stage (argsort, cumsum)")
    wrap(aunet_model.Pool, "forward", "region: pooling (gather + norm + proj)")
    wrap(aunet_model.Upsample, "forward", "region: upsampling (17 linears + gathers)")
    wrap(aunet_model.Attention, "forward", "region: attention (qkv, sdpa, out)")
    wrap(aunet_model.SwiGLU, "forward", "region: SwiGLU MLP")
    wrap(aunet_model.AUNet, "forward", "region: whole forward")
    try:
        yield
    finally:
        for owner, attr, orig in reversed(patched):
            setattr(owner, attr, orig)


def profile(runner: Runner, batches, steps: int) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    name = runner.name
    with labelled_regions(), tprofile(activities=[ProfilerActivity.CPU]) as prof:
        train_steps(runner, batches, steps)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"\n### {name}: {steps} profiled training steps, self CPU time by op (top 12)\n")
    print("| op | self CPU ms | share |")
    print("|---|---:|---:|")
    top = [e for e in events if not e.key.startswith("region:")]
    for e in sorted(top, key=lambda e: -e.self_cpu_time_total)[:12]:
        ms = e.self_cpu_time_total / 1e3
        print(f"| {e.key} | {ms:.1f} | {e.self_cpu_time_total / total:.1%} |")
    print(f"\n### {name}: forward time inside each region (CPU total, includes children)\n")
    print("| region | forward ms | share of forward |")
    print("|---|---:|---:|")
    regions = {e.key: e.cpu_time_total for e in events if e.key.startswith("region:")}
    whole = regions.pop("region: whole forward", 0) or 1
    for key, us in sorted(regions.items(), key=lambda kv: -kv[1]):
        print(f"| {key[8:]} | {us / 1e3:.1f} | {us / whole:.1%} |")
    fam: dict[str, float] = defaultdict(float)
    optimizer_ops = ("lerp", "addcdiv", "addcmul", "sqrt", "_fused_adamw", "mul_", "div_")
    for e in events:
        k = e.key
        if e.key.startswith("region:"):
            continue
        if "sort" in k:
            group = "argsort/sort (plan_stage)"
        elif "gather" in k or "scatter" in k or "index" in k:
            group = "gather/scatter/index (pooling, upsampling)"
        elif "attention" in k:
            group = "attention kernels (sdpa fwd+bwd)"
        elif k in ("aten::mm", "aten::addmm", "aten::bmm"):
            group = "matmul (linear layers fwd+bwd)"
        elif any(o in k for o in optimizer_ops):
            group = "AdamW-style elementwise (lerp/addcdiv/sqrt/mul_/div_)"
        else:
            group = "other elementwise (RoPE, RMSNorm, SiLU, adds, copies...)"
        fam[group] += e.self_cpu_time_total
    print(f"\n### {name}: self CPU time by op family (forward + backward + AdamW)\n")
    print("| family | ms | share |")
    print("|---|---:|---:|")
    for key, v in sorted(fam.items(), key=lambda kv: -kv[1]):
        print(f"| {key} | {v / 1e3:.1f} | {v / total:.1%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--windows", type=int, default=512, help="distinct windows to draw from")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--capacity", choices=("none", "fixed"), default="none")
    ap.add_argument("--adamw", choices=("default", "fused"), default="default")
    ap.add_argument("--profile", action="store_true", help="then profile 3 steps of each")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores)")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, float32")
    tokens, levels, source = load_windows(args.corpus, args.seq_len, args.windows, args.seed)
    batches = make_batches(tokens, levels, args.batch, args.warmup + args.steps, args.seed)
    print(f"data: {source}; {args.windows} windows of {args.seq_len} bytes, batch {args.batch}")
    print(
        f"steps: {args.warmup} warmup (not timed) + {args.steps} timed, interleaved; "
        f"capacity {args.capacity}; AdamW {args.adamw}"
    )

    runners = []
    for name in CONFIGS:
        cfg, lengths = build_config(name, args.seq_len, levels, args.capacity)
        runners.append(Runner(name, cfg, lengths, args.adamw, args.seed))
    for r in runners:
        train_steps(r, batches, args.warmup)
        r.reset()
    load_before = load_average()
    for i in range(args.warmup, args.warmup + args.steps):
        for r in runners:
            r.step(*batches[i])
    load_after = load_average()
    print(f"load average (1, 5, 15 min) before timing: {load_before}; after: {load_after}\n")

    rows = []
    for r in runners:
        seconds = sum(r.times)
        bps = args.steps * args.batch * args.seq_len / seconds
        fpb = r.flops_per_byte
        rows.append((r, r.model.num_params()["total"], fpb, bps, 3 * fpb * bps))
        pad = ", ".join(f"{np.mean(p):.0%}" for p in r.padding) or "-"
        caps = "-" if not r.caps else r.caps if all(r.caps) else "none (longest row per batch)"
        fwd, bwd, opt = (t / args.steps for t in r.times)
        print(
            f"{r.name}: mean positions/window {', '.join(f'{x:.1f}' for x in r.lengths)}; "
            f"capacities {caps}; padding {pad}; "
            f"s/step: forward {fwd:.3f} + backward {bwd:.3f} + AdamW {opt:.3f} "
            f"= {fwd + bwd + opt:.3f}"
        )

    fpbs = [row[2] for row in rows]
    print(f"\nFLOPs/byte spread: {max(fpbs) / min(fpbs) - 1:.1%} (max/min - 1)\n")
    base = rows[0][4]
    print("| model | params | FLOPs/byte (fwd) | bytes/s | achieved GFLOP/s | vs AU-Net-1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for r, params, fpb, bps, fps in rows:
        print(
            f"| {r.name} | {params / 1e6:.2f}M | {fpb / 1e6:.2f}M | {bps:,.0f} | "
            f"{fps / 1e9:.2f} | {fps / base:.2f}x |"
        )
    ratio = rows[1][4] / base
    verdict = "met" if ratio >= 0.85 else "MISSED"
    print(f"\nTarget AU-Net-2 >= 0.85x AU-Net-1: {verdict} ({ratio:.2f}x)")
    # Bursts of load from other processes slow a few steps ~3x (two threads on two cores);
    # the median and the fastest step of each model are less sensitive to them.
    print("seconds per timed step (interleaved order):")
    for r, *_ in rows:
        print(f"  {r.name}: {' '.join(f'{t:.2f}' for t in r.steps)}")
    for label, pick in (("median", np.median), ("fastest", np.min)):
        rate = [row[2] / float(pick(row[0].steps)) for row in rows]
        print(
            f"achieved FLOP/s vs AU-Net-1 from the {label} step: "
            + ", ".join(
                f"{r.name} {x / rate[0]:.2f}x" for (r, *_), x in zip(rows, rate, strict=True)
            )
        )

    if args.profile:
        for r in runners:
            profile(r, batches, 3)


if __name__ == "__main__":
    main()
