"""Compute accounting: FLOPs per byte, the paper's unit of comparison.

FLOPs/byte = sum over stages of (FLOPs per stage position) x (stage positions per
byte), attention included with its causal window, plus pooling, upsampling and the
output head. Counts are multiply-adds x 2 of the matmuls (norms, RoPE and softmax
are ignored: they are not matmuls). Training FLOPs = 3 x forward (backward ~ 2x).
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import UPSAMPLE_OFFSETS, ModelConfig, StageConfig


def mean_context(n: int, window: int | None) -> float:
    """Mean number of keys a query attends to in a causal sequence of n positions."""
    if n <= 0:
        return 0.0
    w = n if window is None else min(window, n)
    # positions 0..w-1 see i+1 keys, the rest see w
    return (w * (w + 1) / 2 + (n - w) * w) / n


def layer_linear_flops(st: StageConfig) -> int:
    """Per position per layer: qkv + output projections, SwiGLU."""
    d, h = st.dim, st.hidden
    return 2 * (4 * d * d) + 2 * (3 * d * h)


def layer_attention_flops(st: StageConfig, n: float) -> float:
    """Per position per layer: scores and weighted sum over the attended keys."""
    return 2 * 2 * st.dim * mean_context(round(n), st.window)


@dataclass
class FlopsReport:
    per_byte: float  # forward FLOPs per byte
    per_byte_linear: float  # the matmul part without attention scores
    stage_lengths: list[float]  # positions per window, per stage
    params: dict[str, int] | None = None

    @property
    def train_per_byte(self) -> float:
        return 3 * self.per_byte


def flops_per_byte(
    cfg: ModelConfig, stage_lengths: list[float], bytes_per_unit: float = 1.0
) -> FlopsReport:
    """Forward FLOPs per byte for windows whose stages have the given mean lengths.

    A token model (BPE) reads `bytes_per_unit` bytes per position on average (measured on
    its data, BOS and EOS counted as one byte each, as a byte model's positions are):
    FLOPs per token / that.

    `stage_lengths[s]` is the mean number of stage-(s+1) positions in a window of
    `cfg.seq_len` bytes (the first is seq_len itself). A stage with a capacity
    (`max_seqlen`) always computes that many positions (static shapes), so that is
    what is counted; without one, the stage runs on the batch's real points (padding
    to the longest row of a batch is not counted).
    """
    if len(stage_lengths) != cfg.n_stages:
        raise ValueError("one mean length per stage is needed")
    n_bytes = cfg.seq_len
    lengths = [
        (float(st.max_seqlen) if st.max_seqlen else n) if s else float(n_bytes)
        for s, (st, n) in enumerate(zip(cfg.stages, stage_lengths, strict=True))
    ]
    linear = attention = 0.0
    for s, (st, n) in enumerate(zip(cfg.stages, lengths, strict=True)):
        layers = st.layers + (st.decoder_layers if s < cfg.n_stages - 1 else 0)
        linear += n * layers * layer_linear_flops(st)
        attention += n * layers * layer_attention_flops(st, n)
        if s:
            prev = cfg.stages[s - 1]
            linear += n * 2 * prev.dim * st.dim  # pooling projection
            linear += n * 2 * st.dim * prev.dim * (UPSAMPLE_OFFSETS + 1)  # upsampling
    linear += n_bytes * 2 * cfg.stages[0].dim * cfg.vocab_size  # output head
    return FlopsReport(
        per_byte=(linear + attention) / n_bytes / bytes_per_unit,
        per_byte_linear=linear / n_bytes / bytes_per_unit,
        stage_lengths=lengths,
    )
