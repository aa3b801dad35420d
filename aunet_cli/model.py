"""The Autoregressive U-Net (AU-Net) in one file.

Stage 1 reads bytes. A splitter marks pooling points (per-byte levels: byte t pools
into stages 2..level[t]+1). Each stage s runs a causal transformer encoder; the
vectors at the next stage's points are pooled (RMSNorm + Linear) into stage s+1.
The deepest stage is the trunk. Going back up, every position t of stage s takes the
deeper output at the latest point p <= t, maps it with a linear layer chosen by the
offset (t - p) mod 16 plus a shared one (multi-linear upsampling), adds the skip
connection and runs the stage-s decoder. A final RMSNorm + Linear predicts the next
byte. With one stage this is exactly a plain causal byte-level transformer.

Causality: the vector pooled at p has seen bytes <= p and is used only at positions
>= p, which predict bytes > p, so deeper stages must predict further ahead.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

BOS, EOS = 256, 257
VOCAB = 258  # 256 byte values + BOS + EOS
UPSAMPLE_OFFSETS = 16


@dataclass
class StageConfig:
    """One stage: its width, encoder depth, decoder depth and attention shape."""

    dim: int
    layers: int  # encoder layers (for the deepest stage: the trunk)
    heads: int
    decoder_layers: int = 0  # unused by the deepest stage
    window: int | None = None  # sliding-window attention (in this stage's positions)
    max_seqlen: int | None = None  # capacity per window (stages >= 2); None = no limit
    mlp_hidden: int | None = None  # SwiGLU hidden size; default ~8/3 dim, multiple of 64

    @property
    def hidden(self) -> int:
        if self.mlp_hidden:
            return self.mlp_hidden
        return 64 * math.ceil(8 * self.dim / 3 / 64)


@dataclass
class ModelConfig:
    stages: list[StageConfig] = field(default_factory=list)
    seq_len: int = 1024  # bytes per training window
    vocab_size: int = VOCAB
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    # "zero": the upsampling maps start at 0, so an untrained trunk adds nothing and the
    # model starts as a byte transformer (measured: hierarchies otherwise sit on a ~4 bpb
    # plateau for hundreds of steps); "normal": N(0, 0.02) like every other matrix.
    upsample_init: str = "zero"

    def __post_init__(self) -> None:
        self.stages = [s if isinstance(s, StageConfig) else StageConfig(**s) for s in self.stages]

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rope(seq_len: int, head_dim: int, theta: float, device=None) -> tuple[torch.Tensor, ...]:
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    ang = torch.outer(torch.arange(seq_len, device=device).float(), inv)
    return ang.cos(), ang.sin()


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2).type_as(x)


def window_mask(n: int, window: int, device=None) -> torch.Tensor:
    """Boolean mask (True = attend): causal and at most `window` positions back."""
    i = torch.arange(n, device=device)
    d = i[:, None] - i[None, :]
    return (d >= 0) & (d < window)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int | None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim, self.window = heads, dim // heads, window
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (b, heads, n, head_dim)
        q, k = _apply_rope(q, cos[:n], sin[:n]), _apply_rope(k, cos[:n], sin[:n])
        if self.window is None or self.window >= n:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            mask = window_mask(n, self.window, x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, st: StageConfig, eps: float) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(st.dim, eps=eps)
        self.attn = Attention(st.dim, st.heads, st.window)
        self.mlp_norm = nn.RMSNorm(st.dim, eps=eps)
        self.mlp = SwiGLU(st.dim, st.hidden)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nn.Module):
    """A stack of causal blocks over one stage's sequence (RoPE positions 0..n-1)."""

    def __init__(self, st: StageConfig, n_layers: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(st, cfg.norm_eps) for _ in range(n_layers))
        self.head_dim = st.dim // st.heads
        self.theta = cfg.rope_theta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.blocks:
            return x
        cos, sin = _rope(x.shape[1], self.head_dim, self.theta, x.device)
        for block in self.blocks:
            x = block(x, cos, sin)
        return x


class Pool(nn.Module):
    """Vectors at the next stage's points -> RMSNorm -> Linear into the next width."""

    def __init__(self, d_in: int, d_out: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(d_in, eps=eps)
        self.proj = nn.Linear(d_in, d_out, bias=False)

    def forward(self, h: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        picked = torch.gather(h, 1, index[..., None].expand(-1, -1, h.shape[-1]))
        return self.proj(self.norm(picked))


class Upsample(nn.Module):
    """Multi-linear upsampling: one linear map per offset from the latest point + a shared one."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.d_out = d_out
        self.shared = nn.Linear(d_in, d_out, bias=False)
        self.per_offset = nn.Linear(d_in, UPSAMPLE_OFFSETS * d_out, bias=False)

    def forward(self, coarse: torch.Tensor, which: torch.Tensor, offset: torch.Tensor):
        b, n_coarse, _ = coarse.shape
        table = self.per_offset(coarse).view(b, n_coarse * UPSAMPLE_OFFSETS, self.d_out)
        flat = which * UPSAMPLE_OFFSETS + offset % UPSAMPLE_OFFSETS
        per = torch.gather(table, 1, flat[..., None].expand(-1, -1, self.d_out))
        shared = torch.gather(self.shared(coarse), 1, which[..., None].expand(-1, -1, self.d_out))
        return per + shared


@dataclass
class StagePlan:
    """Where stage s+1 comes from in stage s, and how to come back (per batch)."""

    index: torch.Tensor  # (b, capacity) stage-s positions of the stage-(s+1) points
    which: torch.Tensor  # (b, n_s) for each stage-s position: latest point's stage-(s+1) index
    offset: torch.Tensor  # (b, n_s) distance to that point, in stage-s positions
    levels: torch.Tensor  # (b, capacity) levels of the stage-(s+1) positions
    lengths: torch.Tensor  # (b,) real (not padded) stage-(s+1) length
    overflow: torch.Tensor  # () points dropped because capacity was exceeded


def plan_stage(levels: torch.Tensor, stage: int, capacity: int | None) -> StagePlan:
    """Stage-(stage+1) points among a stage's positions (level > stage).

    Position 0 of every window pools at every stage, so each position has a point at
    or before it. Points beyond `capacity` are dropped (and counted): positions after
    them keep using the last kept point, which is still in their past.
    """
    b, n = levels.shape
    is_point = levels > stage
    is_point[:, 0] = True
    count = is_point.sum(1)
    cap = int(capacity) if capacity else int(count.max())  # no capacity: no padding waste
    pos = torch.arange(n, device=levels.device).expand(b, n)
    # stable order: points first (by position), then the rest
    key = torch.where(is_point, pos, pos + n)
    order = torch.argsort(key, dim=1, stable=True)
    if cap > n:
        order = torch.cat([order, order[:, -1:].expand(b, cap - n)], dim=1)
    index = order[:, :cap]
    which = (is_point.cumsum(1) - 1).clamp(max=cap - 1)
    point_pos = torch.gather(index, 1, which)
    real = torch.arange(cap, device=levels.device)[None, :] < count[:, None]
    return StagePlan(
        index=index,
        which=which,
        offset=pos - point_pos,
        levels=torch.gather(levels, 1, index) * real,  # padding pools nowhere
        lengths=count.clamp(max=cap),
        overflow=(count - cap).clamp(min=0).sum(),
    )


class AUNet(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if not 1 <= cfg.n_stages <= 4:
            raise ValueError(f"AU-Net has 1 to 4 stages, got {cfg.n_stages}")
        self.cfg = cfg
        st = cfg.stages
        self.embed = nn.Embedding(cfg.vocab_size, st[0].dim)
        self.encoders = nn.ModuleList(Transformer(s, s.layers, cfg) for s in st)
        self.decoders = nn.ModuleList(Transformer(s, s.decoder_layers, cfg) for s in st[:-1])
        pairs = list(pairwise(st))
        self.pools = nn.ModuleList(Pool(a.dim, b.dim, cfg.norm_eps) for a, b in pairs)
        self.ups = nn.ModuleList(Upsample(b.dim, a.dim) for a, b in pairs)
        self.norm = nn.RMSNorm(st[0].dim, eps=cfg.norm_eps)
        self.head = nn.Linear(st[0].dim, cfg.vocab_size, bias=False)
        self.apply(self._init)
        if cfg.upsample_init == "zero":
            for up in self.ups:
                nn.init.zeros_(up.shared.weight)
                nn.init.zeros_(up.per_offset.weight)
        elif cfg.upsample_init != "normal":
            raise ValueError(f"upsample_init must be zero or normal, got {cfg.upsample_init!r}")

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(
        self, tokens: torch.Tensor, levels: torch.Tensor, capped: bool = True
    ) -> tuple[torch.Tensor, list[StagePlan]]:
        """Logits (b, n, vocab) for the next token at every position, and the stage plans.

        `capped=False` ignores the stages' `max_seqlen` (inference: nothing is dropped).
        """
        x = self.embed(tokens)
        skips, plans = [], []
        stage_levels = levels
        for s in range(self.cfg.n_stages - 1):
            h = self.encoders[s](x)
            capacity = self.cfg.stages[s + 1].max_seqlen if capped else None
            plan = plan_stage(stage_levels, s, capacity)
            skips.append(h)
            plans.append(plan)
            x = self.pools[s](h, plan.index)
            stage_levels = plan.levels
        y = self.encoders[-1](x)
        for s in reversed(range(self.cfg.n_stages - 1)):
            y = self.ups[s](y, plans[s].which, plans[s].offset) + skips[s]
            y = self.decoders[s](y)
        return self.head(self.norm(y)), plans

    def num_params(self) -> dict[str, int]:
        """Parameters per stage (embedding and head counted with stage 1)."""
        counts = {}
        for s in range(self.cfg.n_stages):
            mods = [self.encoders[s]]
            if s < self.cfg.n_stages - 1:
                mods += [self.decoders[s]]
            if s > 0:
                mods += [self.pools[s - 1], self.ups[s - 1]]
            else:
                mods += [self.embed, self.norm, self.head]
            counts[f"stage{s + 1}"] = sum(p.numel() for m in mods for p in m.parameters())
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts
