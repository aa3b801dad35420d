"""Sampling bytes from a trained model, one byte at a time, with per-stage KV caches.

The run's splitters are applied online to the growing text in their streaming form
(constant work per byte; they are causal, so earlier levels never change), and
`IncrementalState` steps only the stages a new byte reaches. `cache=False` runs the
whole model over the text at every byte instead: the reference the cache is tested
against, and the yardstick of bench/generate.py.

Context: a model whose stages all use sliding windows attends over a bounded past,
so its text can grow without limit (and its memory stays flat). Otherwise a text
attends over at most `seq_len` positions (BOS included): when it is full, the last
`seq_len // 2` bytes start a new window, whose first byte pools at every stage,
like a training window that starts mid-document.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from splitters import Pipeline

from .errors import AunetError
from .incremental import IncrementalState, context_limit
from .model import AUNet
from .tokenizer import BYTES, ByteCodec, Codec

MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 0..2**64-1 (negatives wrap)


@dataclass
class SampleOptions:
    max_bytes: int = 256
    temperature: float = 0.8  # 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    stop: tuple[bytes, ...] = ()
    ignore_eos: bool = False  # never end a sample early (benchmarks: fixed lengths)

    def check(self) -> None:
        if self.max_bytes < 1:
            raise AunetError(f"--max-bytes must be at least 1, got {self.max_bytes}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise AunetError(f"--temperature must be a finite number >= 0, got {self.temperature}")
        if not 0 <= self.seed <= MAX_SEED:
            raise AunetError(f"--seed must be in [0, 2**64 - 1], got {self.seed}")
        if self.top_k is not None and self.top_k < 1:
            raise AunetError(f"--top-k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise AunetError(f"--top-p must be in (0, 1], got {self.top_p}")
        if any(not s for s in self.stop):
            raise AunetError("--stop: a stop string cannot be empty")


@dataclass
class Completion:
    prompt: bytes
    completion: bytearray = field(default_factory=bytearray)
    seconds: float = 0.0
    reason: str = "length"  # length | eos | stop | interrupted


class Session:
    """Several growing texts: their tokens, levels (streaming splitters) and model state."""

    def __init__(
        self, model: AUNet, pipeline: Pipeline, prompts: Sequence[bytes], cache: bool = True,
        codec: Codec = BYTES,
    ) -> None:  # fmt: skip
        self.model, self.cache, self.codec = model, cache, codec
        self.bytes_in = isinstance(codec, ByteCodec)
        unit = "bytes" if self.bytes_in else "tokens"
        self.depth = model.cfg.n_stages - 1
        self.limit = context_limit(model)
        self.device = next(model.parameters()).device
        self.streamers = [pipeline.streamer() for _ in prompts]
        self.tokens = [[codec.bos, *codec.encode(p)] for p in prompts]
        if self.bytes_in:
            self.levels = [
                [self.depth, *(min(lv, self.depth) for lv in st.feed(p))]
                for st, p in zip(self.streamers, prompts, strict=True)
            ]
        else:  # a token model has one stage: no pooling levels
            self.levels = [[0] * len(t) for t in self.tokens]
        if self.limit is not None:
            for t in self.tokens:
                if len(t) > self.limit:
                    raise AunetError(
                        f"the prompt is {len(t) - 1} {unit}; this model's context is "
                        f"{self.limit - 1} {unit} (seq_len {self.limit}, BOS included): "
                        "shorten the prompt"
                    )
        self.start = [0] * len(prompts)  # first token of each row's current window
        self.state = IncrementalState(model, len(prompts)) if cache else None

    def prefill(self) -> torch.Tensor:
        """Next-byte logits (B, vocab) after each prompt."""
        return self._advance({r: len(t) for r, t in enumerate(self.tokens)})

    def push(self, new: Sequence[int | None]) -> torch.Tensor:
        """Append one id to each row (None: the row is finished); logits (B, vocab)."""
        todo: dict[int, int] = {}
        for r, unit in enumerate(new):
            if unit is None:
                continue
            self.tokens[r].append(unit)
            level = self.streamers[r].push(unit) if self.bytes_in else 0
            self.levels[r].append(min(level, self.depth))
            todo[r] = 1
            if self.limit is not None and len(self.tokens[r]) - self.start[r] > self.limit:
                self.start[r] = len(self.tokens[r]) - self.limit // 2
                todo[r] = self.limit // 2  # a new window: feed it whole
                if self.state is not None:
                    self.state.reset(torch.tensor([r], device=self.device))
        return self._advance(todo)

    @torch.no_grad()
    def _advance(self, todo: dict[int, int]) -> torch.Tensor:
        """Feed the last `todo[r]` tokens of each listed row; logits after each row's last."""
        b = len(self.tokens)
        logits = torch.zeros(b, self.model.cfg.vocab_size, device=self.device)
        if not todo:
            return logits
        if self.state is None:
            for r in todo:
                a = self.start[r]
                tok = torch.tensor([self.tokens[r][a:]], device=self.device)
                lv = torch.tensor([self.levels[r][a:]], device=self.device)
                lv[0, 0] = self.depth
                logits[r] = self.model(tok, lv, capped=False)[0][0, -1]
            return logits
        n = max(todo.values())
        tok = torch.zeros(b, n, dtype=torch.long)
        lv = torch.zeros(b, n, dtype=torch.long)
        valid = torch.zeros(b, n, dtype=torch.bool)
        for r, k in todo.items():
            tok[r, :k] = torch.tensor(self.tokens[r][-k:])
            lv[r, :k] = torch.tensor(self.levels[r][-k:])
            valid[r, :k] = True
        out = self.state.extend(tok.to(self.device), lv.to(self.device), valid.to(self.device))
        last = (valid.sum(1) - 1).clamp(min=0).to(self.device)
        return out[torch.arange(b, device=self.device), last]


def pick(
    logits: torch.Tensor, opts: SampleOptions, gen: torch.Generator, codec: Codec = BYTES
) -> torch.Tensor:
    """Next id per row from logits (B, vocab): greedy, temperature, top-k, top-p."""
    logits = logits.float().cpu().clone()
    # BOS only ever starts a text; ids that stand for no text (BOS, UNK) are never sampled
    silent = torch.from_numpy(codec.unit_bytes == 0)
    silent[codec.eos] = bool(opts.ignore_eos)
    logits[:, silent] = float("-inf")
    if opts.temperature == 0:
        return logits.argmax(-1)
    # from the row's largest logit down: a tiny temperature (1e-40) makes the others
    # -inf, not inf - inf = NaN; softmax is unchanged by the shift
    logits = (logits - logits.max(-1, keepdim=True).values) / opts.temperature
    if opts.top_k is not None and opts.top_k < logits.shape[-1]:
        kth = logits.topk(opts.top_k, dim=-1).values[:, -1:]
        logits[logits < kth] = float("-inf")
    if opts.top_p is not None and opts.top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= opts.top_p  # keep the smallest nucleus
        logits.scatter_(1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=gen)[:, 0]


class StopScanner:
    """Holds back bytes that may begin a stop string; constant work per byte."""

    def __init__(self, stops: Sequence[bytes]) -> None:
        self.stops = list(stops)
        self.longest = max((len(s) for s in self.stops), default=0)
        self.pending = bytearray()

    def feed(self, byte: int) -> tuple[bytes, bool]:
        """(bytes safe to emit now, whether a stop string just completed)."""
        if not self.stops:
            return bytes([byte]), False
        self.pending.append(byte)
        for s in self.stops:
            if self.pending.endswith(s):
                out = bytes(self.pending[: len(self.pending) - len(s)])
                self.pending.clear()
                return out, True
        hold = 0
        for k in range(1, min(len(self.pending), self.longest - 1) + 1):
            tail = self.pending[-k:]
            if any(s.startswith(tail) for s in self.stops):
                hold = k
        out = bytes(self.pending[: len(self.pending) - hold])
        del self.pending[: len(self.pending) - hold]
        return out, False

    def flush(self) -> bytes:
        out = bytes(self.pending)
        self.pending.clear()
        return out


Emit = Callable[[int, bytes], None]


def generate(
    model: AUNet, pipeline: Pipeline, prompts: Sequence[bytes], opts: SampleOptions,
    cache: bool = True, emit: Emit | None = None, codec: Codec = BYTES,
) -> list[Completion]:  # fmt: skip
    """Sample a completion for every prompt (batched); `emit(row, bytes)` streams them.

    Ctrl-C stops early: the completions so far come back marked "interrupted".
    """
    opts.check()
    gen = torch.Generator().manual_seed(opts.seed)
    results = [Completion(p) for p in prompts]
    scanners = [StopScanner(opts.stop) for _ in prompts]
    active = [True] * len(prompts)
    t0 = time.perf_counter()

    def finish(r: int, reason: str) -> None:
        active[r] = False
        results[r].reason = reason
        results[r].seconds = time.perf_counter() - t0
        rest = scanners[r].flush() if reason != "stop" else b""
        results[r].completion += rest
        if emit and rest:
            emit(r, rest)

    try:
        session = Session(model, pipeline, prompts, cache=cache, codec=codec)
        logits = session.prefill()
        for _ in range(opts.max_bytes):
            chosen = pick(logits, opts, gen, codec).tolist()
            new: list[int | None] = [None] * len(prompts)
            for r, unit in enumerate(chosen):
                if not active[r]:
                    continue
                if unit == codec.eos:
                    finish(r, "eos")
                    continue
                for byte in codec.piece_bytes[unit]:  # one byte, or a BPE piece's bytes
                    safe, stopped = scanners[r].feed(byte)
                    results[r].completion += safe
                    if emit and safe:
                        emit(r, safe)
                    if stopped:
                        finish(r, "stop")
                        break
                    if len(results[r].completion) + len(scanners[r].pending) >= opts.max_bytes:
                        finish(r, "length")
                        break
                else:
                    new[r] = unit
            if not any(active):
                break
            logits = session.push(new)
    except KeyboardInterrupt:
        for r in range(len(prompts)):
            if active[r]:
                finish(r, "interrupted")
    for r in range(len(prompts)):
        if active[r]:
            finish(r, "length")
    return results


def sample_text(run, prompt: str, max_bytes: int, temperature: float = 0.8, seed: int = 0) -> str:
    """Prompt + a sampled continuation, decoded for display (used after training)."""
    from pathlib import Path

    from .export import load_model
    from .tokenizer import codec_for

    model, config = load_model(run)
    pipeline = Pipeline.from_descriptions(config["splitters"])
    codec = codec_for(config, Path(run) if Path(run).is_dir() else Path(run).parent)
    opts = SampleOptions(max_bytes=max_bytes, temperature=temperature, seed=seed)
    done = generate(model, pipeline, [prompt.encode()], opts, codec=codec)[0]
    return prompt + done.completion.decode("utf-8", "replace")
