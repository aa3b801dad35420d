"""Incremental decoding of an AU-Net: one KV cache per stage and layer.

`IncrementalState.extend` feeds new bytes (with their pooling levels) and returns
the next-byte logits at each of them, exactly as `AUNet.forward` would over the
whole text, without recomputing the past:

* every new byte steps the stage-1 encoder and decoder;
* a byte that is a stage-(s+1) point also steps the stage-(s+1) encoder, and going
  back up, the stage-(s+1) decoder (or the trunk) output at that point becomes the
  "coarse vector" that stage s upsamples from until the next point; the 16
  offset-specific maps of `Upsample` are applied to it once, when it is made;
* a byte that is not a point leaves the deeper stages untouched.

Rows of a batch advance independently: each input carries a `valid` mask (left
aligned), and every deeper stage gets the same kind of mask for its new points, so
rows with different prompt lengths and different pooling points share one call.

Caches are rings of slots holding RoPE-rotated keys and values with their absolute
position (-1 = empty). A sliding-window stage keeps `window + CHUNK` slots, so its
memory is flat however long the text grows; a full-attention stage keeps one slot
per position of the model's context (`seq_len`) and the caller starts over (see
`generate.Session`) when the context is full.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model import UPSAMPLE_OFFSETS, AUNet, Transformer, _apply_rope

CHUNK = 256  # most stage-1 positions per internal step; ring slots beyond the window


def context_limit(model: AUNet) -> int | None:
    """Longest text (BOS included) the model attends over; None when every stage slides."""
    if all(st.window for st in model.cfg.stages):
        return None
    return model.cfg.seq_len


class StackCache:
    """Keys and values of every layer of one transformer stack, in rings of `cap` slots.

    The layers of a stack see the same positions, so they share one slot map (`pos`),
    one attention mask and one set of RoPE angles per call.
    """

    def __init__(self, batch: int, tr: Transformer, cap: int, device, dtype) -> None:
        self.cap = cap
        self.window = tr.blocks[0].attn.window if len(tr.blocks) else None
        self.k, self.v = [], []
        for block in tr.blocks:
            shape = (batch, block.attn.heads, cap, block.attn.head_dim)
            self.k.append(torch.zeros(shape, device=device, dtype=dtype))
            self.v.append(torch.zeros(shape, device=device, dtype=dtype))
        self.pos = torch.full((batch, cap), -1, dtype=torch.long, device=device)

    def reset(self, rows: torch.Tensor) -> None:
        self.pos[rows] = -1


def _rope_at(pos: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, ...]:
    """cos/sin (b, 1, m, head_dim/2) at arbitrary integer positions (b, m)."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=pos.device).float() / head_dim)
    ang = pos[..., None].float() * inv
    return ang.cos()[:, None], ang.sin()[:, None]


def _run(
    tr: Transformer, cache: StackCache, x: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """The stack over new positions (b, m) that attend to the cache; stores them first.

    Writing before attending is safe: a ring slot is reused only by a position more
    than `window` (or, without a window, `cap` = the whole context) ahead of it.
    """
    if not len(tr.blocks):
        return x
    b, m, d = x.shape
    slots = pos % cache.cap
    single = m == 1 and bool(valid.all()) and bool((slots == slots[0, 0]).all())
    if single:  # the common decoding step: one slot, the same in every row
        slot = int(slots[0, 0])
        cache.pos[:, slot] = pos[:, 0]
    else:
        r, j = valid.nonzero(as_tuple=True)
        slot_rj = slots[r, j]
        cache.pos[r, slot_rj] = pos[r, j]
    qp, kp = pos[:, :, None], cache.pos[:, None, :]
    mask = (kp >= 0) & (kp <= qp)
    if cache.window is not None:
        mask &= qp - kp < cache.window
    mask = (mask | ~valid[:, :, None])[:, None]  # padding queries: anything (discarded)
    head_dim = d // tr.blocks[0].attn.heads
    cos, sin = _rope_at(pos, head_dim, tr.theta)
    for block, keys, values in zip(tr.blocks, cache.k, cache.v, strict=True):
        attn = block.attn
        q, k, v = attn.qkv(block.attn_norm(x)).view(b, m, 3, attn.heads, head_dim).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (b, heads, m, head_dim)
        q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)
        if single:
            keys[:, :, slot] = k[:, :, 0]
            values[:, :, slot] = v[:, :, 0]
        else:
            keys[r, :, slot_rj] = k[r, :, j]
            values[r, :, slot_rj] = v[r, :, j]
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        x = x + attn.out(y.transpose(1, 2).reshape(b, m, d))
        x = x + block.mlp(block.mlp_norm(x))
    return x


@dataclass
class StageState:
    enc: StackCache
    dec: StackCache | None
    length: torch.Tensor  # (B,) positions this stage has seen
    table: torch.Tensor  # (B, 16, d_s) upsampled latest coarse vector, one row per offset
    offset: torch.Tensor  # (B,) offset of the last position from its point

    def reset(self, rows: torch.Tensor) -> None:
        self.enc.reset(rows)
        if self.dec is not None:
            self.dec.reset(rows)
        self.length[rows] = 0
        self.table[rows] = 0
        self.offset[rows] = 0


class IncrementalState:
    """The per-stage caches of `batch` independent texts being extended byte by byte."""

    def __init__(self, model: AUNet, batch: int) -> None:
        self.model = model
        p = next(model.parameters())
        device, dtype = p.device, p.dtype
        limit = context_limit(model) or 0
        self.stages: list[StageState] = []
        for s, st in enumerate(model.cfg.stages):
            cap = st.window + CHUNK if st.window else limit

            dec = None
            if s < model.cfg.n_stages - 1:
                dec = StackCache(batch, model.decoders[s], cap, device, dtype)
            self.stages.append(
                StageState(
                    enc=StackCache(batch, model.encoders[s], cap, device, dtype),
                    dec=dec,
                    length=torch.zeros(batch, dtype=torch.long, device=device),
                    table=torch.zeros(batch, UPSAMPLE_OFFSETS, st.dim, device=device, dtype=dtype),
                    offset=torch.zeros(batch, dtype=torch.long, device=device),
                )
            )

    @property
    def lengths(self) -> torch.Tensor:
        """Bytes (BOS included) each row has been fed since it started."""
        return self.stages[0].length

    def reset(self, rows: torch.Tensor) -> None:
        """Forget the given rows: their next byte starts a new text (pools everywhere)."""
        for st in self.stages:
            st.reset(rows)

    @torch.no_grad()
    def extend(
        self, tokens: torch.Tensor, levels: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Feed (B, n) tokens and levels (valid: left-aligned mask); logits (B, n, vocab)."""
        outs = []
        for a in range(0, tokens.shape[1], CHUNK):
            v = None if valid is None else valid[:, a : a + CHUNK]
            outs.append(self._extend(tokens[:, a : a + CHUNK], levels[:, a : a + CHUNK], v))
        return torch.cat(outs, 1)

    def _extend(
        self, tokens: torch.Tensor, levels: torch.Tensor, valid: torch.Tensor | None
    ) -> torch.Tensor:
        model, n_stages = self.model, self.model.cfg.n_stages
        b, n = tokens.shape
        dev = tokens.device
        valid = torch.ones(b, n, dtype=torch.bool, device=dev) if valid is None else valid
        levels = levels.clamp(max=n_stages - 1).clone()
        fresh = self.lengths == 0  # a text's first position pools at every stage
        levels[:, 0] = torch.where(fresh, n_stages - 1, levels[:, 0])
        ar = torch.arange(n, device=dev)

        # Down: encoders, pooling only the new points.
        x, pos = model.embed(tokens), self.stages[0].length[:, None] + ar
        skips, valids, points, positions = [], [], [], []
        deepest = n_stages - 1
        for s in range(n_stages):
            h = _run(model.encoders[s], self.stages[s].enc, x, pos, valid)
            skips.append(h)
            valids.append(valid)
            positions.append(pos)
            if s == n_stages - 1:
                break
            is_point = (levels > s) & valid
            points.append(is_point)
            count = is_point.sum(1)
            m = int(count.max())
            if m == 0:  # no row reaches stage s+1 this time
                deepest = s
                break
            order = torch.argsort((~is_point).to(torch.uint8), dim=1, stable=True)[:, :m]
            x = model.pools[s](h, order)
            levels = torch.gather(levels, 1, order)
            valid = torch.arange(m, device=dev)[None, :] < count[:, None]
            pos = self.stages[s + 1].length[:, None] + torch.arange(m, device=dev)
        for s in range(deepest + 1):
            self.stages[s].length += valids[s].sum(1)

        # Up: the deepest stage reached is the trunk's output or a decoder's input.
        y = skips[-1]
        rows = torch.arange(b, device=dev)
        for s in reversed(range(min(deepest + 1, n_stages - 1))):
            st = self.stages[s]
            tables = st.table[:, None]
            if s < deepest:  # new coarse vectors from stage s+1
                up = model.ups[s]
                fresh_tables = up.per_offset(y).view(*y.shape[:2], UPSAMPLE_OFFSETS, up.d_out)
                tables = torch.cat([tables, fresh_tables + up.shared(y)[:, :, None]], 1)
            is_point = points[s]
            width = is_point.shape[1]
            idx = torch.arange(width, device=dev).expand(b, width)
            which = is_point.cumsum(1)  # 0 = the coarse vector from before this call
            last_point = torch.where(is_point, idx, -1).cummax(1).values
            offset = torch.where(which > 0, idx - last_point, st.offset[:, None] + idx + 1)
            upsampled = tables[rows[:, None], which, offset % UPSAMPLE_OFFSETS]
            y = _run(model.decoders[s], st.dec, upsampled + skips[s], positions[s], valids[s])
            count = valids[s].sum(1)
            last = (count - 1).clamp(min=0)
            moved = count > 0
            st.table = torch.where(moved[:, None, None], tables[rows, which[rows, last]], st.table)
            st.offset = torch.where(moved, offset[rows, last], st.offset)
        return model.head(model.norm(y))
