"""AU-Net model semantics: causality, the 1-stage reference, upsampling offsets, export.

Everything runs on tiny float32 models on CPU. The reference transformer at the
bottom is written independently of aunet_cli.model (it only borrows the weights).
"""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from aunet_cli.errors import AunetError
from aunet_cli.export import MODEL_FORMAT, export_model, load_model
from aunet_cli.model import (
    BOS,
    UPSAMPLE_OFFSETS,
    VOCAB,
    AUNet,
    ModelConfig,
    StageConfig,
    plan_stage,
)

torch.set_num_threads(min(torch.get_num_threads(), 2))

SEQ = 48  # bytes per test window


# --- helpers ------------------------------------------------------------------------------


def random_levels(
    gen: torch.Generator, b: int, n: int, n_stages: int, p_point: float = 0.35
) -> torch.Tensor:
    """Per-byte levels 0..n_stages-1: a point with probability p_point, deeper ones rarer."""
    levels = torch.zeros(b, n, dtype=torch.long)
    for lv in range(1, n_stages):
        levels += (torch.rand(b, n, generator=gen) < p_point**lv).long() * (levels == lv - 1)
    return levels


def random_config(seed: int, n_stages: int, overflow: bool) -> ModelConfig:
    """A tiny random AU-Net: widths 32/64, 1 layer each, some windows, optional small caps."""
    rng = random.Random(seed)
    stages = []
    for s in range(n_stages):
        dim = rng.choice([32, 64])
        stages.append(
            StageConfig(
                dim=dim,
                layers=1,
                heads=rng.choice([2, 4]),
                decoder_layers=1 if s < n_stages - 1 else 0,
                window=rng.choice([None, 3, 5]),
                # a small capacity makes overflow certain for the levels drawn below
                max_seqlen=(rng.choice([4, 6]) if overflow else None) if s else None,
                mlp_hidden=64,
            )
        )
    return ModelConfig(stages=stages, seq_len=SEQ, upsample_init="normal")


def make_model(cfg: ModelConfig, seed: int = 0) -> AUNet:
    torch.manual_seed(seed)
    return AUNet(cfg).eval()


CASES = [
    (n_stages, overflow, seed)
    for n_stages in (2, 3, 4)
    for overflow in (False, True)
    for seed in (0, 1)
]


# --- causality ----------------------------------------------------------------------------


@pytest.mark.parametrize(("n_stages", "overflow", "seed"), CASES)
def test_future_tokens_and_levels_never_change_past_logits(n_stages, overflow, seed):
    """Changing tokens and levels after position t leaves logits at positions <= t unchanged.

    Random 2/3/4-stage models (some stages with sliding windows, some with a capacity
    smaller than the number of points so overflow happens) on random nested pooling
    patterns; several cut points t. Also proves the check is sensitive: the same edit
    does change the logits at some position > t.
    """
    cfg = random_config(seed * 10 + n_stages, n_stages, overflow)
    model = make_model(cfg, seed)
    gen = torch.Generator().manual_seed(1000 + seed)
    b = 3
    tokens = torch.randint(0, VOCAB, (b, SEQ), generator=gen)
    levels = random_levels(gen, b, SEQ, n_stages)
    with torch.no_grad():
        base, plans = model(tokens, levels)
    if overflow:
        assert int(plans[0].overflow) > 0, "the test case should exercise capacity overflow"
    for t in (0, 1, 5, 17, 30, SEQ - 2):
        tok2, lv2 = tokens.clone(), levels.clone()
        tok2[:, t + 1 :] = torch.randint(0, VOCAB, (b, SEQ - t - 1), generator=gen)
        lv2[:, t + 1 :] = random_levels(gen, b, SEQ - t - 1, n_stages, p_point=0.6)
        with torch.no_grad():
            changed, _ = model(tok2, lv2)
        diff = (changed[:, : t + 1] - base[:, : t + 1]).abs().max().item()
        assert diff < 1e-6, f"t={t}: logits at <= t moved by {diff}"
        assert (changed[:, t + 1 :] - base[:, t + 1 :]).abs().max().item() > 1e-4


@pytest.mark.parametrize("n_stages", [2, 3, 4])
def test_only_levels_change_in_the_future(n_stages):
    """Moving only the pooling points after t (same bytes) never changes logits at <= t.

    This isolates the pooling/upsampling index logic from the token path, with and
    without capacity overflow.
    """
    for overflow in (False, True):
        cfg = random_config(77 + n_stages, n_stages, overflow)
        model = make_model(cfg, 3)
        gen = torch.Generator().manual_seed(5)
        tokens = torch.randint(0, 256, (2, SEQ), generator=gen)
        levels = random_levels(gen, 2, SEQ, n_stages)
        with torch.no_grad():
            base, _ = model(tokens, levels)
            for t in (2, 11, 25, 40):
                lv2 = levels.clone()
                lv2[:, t + 1 :] = (n_stages - 1) - lv2[:, t + 1 :]  # invert the pattern
                changed, _ = model(tokens, lv2)
                diff = (changed[:, : t + 1] - base[:, : t + 1]).abs().max().item()
                assert diff < 1e-6, f"overflow={overflow} t={t}: moved by {diff}"


def test_position_zero_is_always_a_point():
    """Position 0 pools at every stage whatever its level: its level value is irrelevant."""
    levels = torch.tensor([[0, 0, 1, 0, 2, 0, 0, 1]])
    for stage in range(3):
        plan = plan_stage(levels, stage, None)
        assert plan.index[0, 0].item() == 0
        assert plan.offset[0, 0].item() == 0
        assert plan.which[0, 0].item() == 0
    cfg = random_config(3, 3, overflow=False)
    model = make_model(cfg)
    tokens = torch.randint(0, 256, (1, SEQ), generator=torch.Generator().manual_seed(0))
    lv = random_levels(torch.Generator().manual_seed(1), 1, SEQ, 3)
    lv_max, lv_zero = lv.clone(), lv.clone()
    lv_max[:, 0], lv_zero[:, 0] = 2, 0
    with torch.no_grad():
        a, plans = model(tokens, lv_max)
        b, _ = model(tokens, lv_zero)
    assert torch.equal(a, b)
    assert plans[0].index[0, 0].item() == 0 and plans[1].index[0, 0].item() == 0


# --- the stage plan -----------------------------------------------------------------------


def test_plan_stage_exact_indices_and_offsets():
    """plan_stage on a known pattern: points, latest point per position, offsets, lengths.

    Offsets are 0 at every pooling point and count up after it; with a capacity of 3
    the 4th point is dropped (overflow 1) and later positions keep the last kept point.
    """
    levels = torch.tensor([[0, 0, 1, 0, 0, 2, 0, 1, 0, 0]])
    plan = plan_stage(levels, 0, None)
    assert plan.index[0, :4].tolist() == [0, 2, 5, 7]
    assert plan.which.tolist() == [[0, 0, 1, 1, 1, 2, 2, 3, 3, 3]]
    assert plan.offset.tolist() == [[0, 1, 0, 1, 2, 0, 1, 0, 1, 2]]
    assert plan.lengths.tolist() == [4]
    assert int(plan.overflow) == 0
    # levels carried into stage 2: padding pools nowhere
    # no capacity: the stage is as long as its points (no padding)
    assert plan.levels.tolist() == [[0, 1, 2, 1]]

    # stage 2 -> 3 on the carried levels: stage-2 position 2 (byte 5) is the only deeper point
    plan2 = plan_stage(plan.levels, 1, 2)
    assert plan2.index.tolist() == [[0, 2]]
    assert plan2.which[0, :4].tolist() == [0, 0, 1, 1]
    assert plan2.offset[0, :4].tolist() == [0, 1, 0, 1]
    assert plan2.lengths.tolist() == [2]
    assert int(plan2.overflow) == 0

    capped = plan_stage(levels, 0, 3)
    assert capped.index.tolist() == [[0, 2, 5]]
    assert capped.which.tolist() == [[0, 0, 1, 1, 1, 2, 2, 2, 2, 2]]
    assert capped.offset.tolist() == [[0, 1, 0, 1, 2, 0, 1, 2, 3, 4]]
    assert capped.lengths.tolist() == [3]
    assert int(capped.overflow) == 1


def test_plan_stage_batch_and_level_zero_at_start():
    """Per-row plans in a batch; position 0 counts as a point even with level 0."""
    levels = torch.tensor([[0, 1, 1, 0, 0, 0], [3, 0, 0, 0, 0, 1]])
    plan = plan_stage(levels, 0, 4)
    assert plan.index.tolist() == [[0, 1, 2, 3], [0, 5, 1, 2]]  # row 2 padded after its points
    assert plan.which.tolist() == [[0, 1, 2, 2, 2, 2], [0, 0, 0, 0, 0, 1]]
    assert plan.offset.tolist() == [[0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 4, 0]]
    assert plan.lengths.tolist() == [3, 2]
    assert int(plan.overflow) == 0
    assert plan.levels.tolist() == [[0, 1, 1, 0], [3, 1, 0, 0]]

    over = plan_stage(torch.ones(2, 8, dtype=torch.long), 0, 5)
    assert int(over.overflow) == 2 * 3
    assert over.offset.tolist() == [[0, 0, 0, 0, 0, 1, 2, 3]] * 2


def _only_offset(model: AUNet, keep: int | None) -> None:
    """Zero the upsampler's shared map and every per-offset map except `keep`."""
    up = model.ups[0]
    d_out = up.d_out
    with torch.no_grad():
        up.shared.weight.zero_()
        w = up.per_offset.weight.view(UPSAMPLE_OFFSETS, d_out, -1)
        for k in range(UPSAMPLE_OFFSETS):
            if k != keep:
                w[k].zero_()


def test_forward_uses_offset_zero_at_pooling_points():
    """At a pooling point the coarse vector goes through the offset-0 map; at offset k, map k.

    With no stage-1 decoder layers, the upsampled vector reaches the head position by
    position; keeping only map k, the logits differ from the all-zero upsampler exactly
    at the positions whose offset from their latest point is k (mod 16).
    """
    cfg = ModelConfig(
        stages=[
            StageConfig(dim=32, layers=1, heads=2, decoder_layers=0),
            StageConfig(dim=64, layers=1, heads=2),
        ],
        seq_len=40,
        upsample_init="normal",
    )
    levels = torch.zeros(1, 40, dtype=torch.long)
    points = [0, 3, 4, 9, 30]  # the last gap (21) wraps around the 16 offsets
    levels[0, points[1:]] = 1
    tokens = torch.randint(0, 256, (1, 40), generator=torch.Generator().manual_seed(0))
    offsets = plan_stage(levels, 0, None).offset[0]

    silent = make_model(cfg)
    _only_offset(silent, None)
    with torch.no_grad():
        ref, _ = silent(tokens, levels)
    for k in (0, 1, 5):
        model = make_model(cfg)
        _only_offset(model, k)
        with torch.no_grad():
            logits, _ = model(tokens, levels)
        moved = ((logits - ref).abs().amax(-1)[0] > 1e-7).nonzero().flatten().tolist()
        expected = [t for t in range(40) if int(offsets[t]) % UPSAMPLE_OFFSETS == k]
        assert moved == expected, f"offset {k}"
        if k == 0:  # the pooling points, and position 25 (offset 16 after 9 wraps to 0)
            assert moved == sorted(points + [25])
        if k == 5:
            assert moved == [14, 35]


# --- 1 stage == plain causal transformer --------------------------------------------------


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def _rotate(x: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE on consecutive pairs (x[2i], x[2i+1]) as complex numbers times e^{i pos f_i}."""
    b, h, n, hd = x.shape
    freqs = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    angles = torch.arange(n, dtype=torch.float64)[:, None] * freqs[None, :]
    rot = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)
    xc = torch.view_as_complex(x.float().reshape(b, h, n, hd // 2, 2).contiguous())
    return torch.view_as_real(xc * rot).reshape(b, h, n, hd)


def reference_transformer(
    sd: dict[str, torch.Tensor],
    tokens: torch.Tensor,
    n_layers: int,
    heads: int,
    window: int | None,
    eps: float,
    theta: float,
) -> torch.Tensor:
    """A plain pre-norm causal transformer (RoPE, softmax attention, SwiGLU), by hand."""
    x = sd["embed.weight"][tokens]
    b, n, d = x.shape
    hd = d // heads
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    allowed = j <= i
    if window is not None:
        allowed &= (i - j) < window
    for layer in range(n_layers):
        p = f"encoders.0.blocks.{layer}."
        h = _rms(x, sd[p + "attn_norm.weight"], eps)
        qkv = h @ sd[p + "attn.qkv.weight"].T
        q, k, v = qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]
        q, k, v = (t.reshape(b, n, heads, hd).transpose(1, 2) for t in (q, k, v))
        q, k = _rotate(q, theta), _rotate(k, theta)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        scores = scores.masked_fill(~allowed, float("-inf"))
        att = torch.softmax(scores, dim=-1) @ v
        x = x + att.transpose(1, 2).reshape(b, n, d) @ sd[p + "attn.out.weight"].T
        h = _rms(x, sd[p + "mlp_norm.weight"], eps)
        gate = h @ sd[p + "mlp.gate.weight"].T
        up = h @ sd[p + "mlp.up.weight"].T
        x = x + (gate * torch.sigmoid(gate) * up) @ sd[p + "mlp.down.weight"].T
    return _rms(x, sd["norm.weight"], eps) @ sd["head.weight"].T


@pytest.mark.parametrize("window", [None, 7])
def test_one_stage_equals_reference_transformer(window):
    """A 1-stage AU-Net is exactly a plain causal byte transformer (to 1e-5 in float32)."""
    cfg = ModelConfig(stages=[StageConfig(dim=64, layers=2, heads=4, window=window)], seq_len=SEQ)
    model = make_model(cfg, 11)
    with torch.no_grad():  # non-trivial norm weights, so the reference must apply them
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, VOCAB, (2, SEQ), generator=gen)
    tokens[:, 0] = BOS
    levels = random_levels(gen, 2, SEQ, 2)  # ignored by a 1-stage model
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    with torch.no_grad():
        got, plans = model(tokens, levels)
        want = reference_transformer(sd, tokens, 2, 4, window, cfg.norm_eps, cfg.rope_theta)
    assert plans == []
    assert (got - want).abs().max().item() < 1e-5


# --- export / reload ----------------------------------------------------------------------


def _exported(tmp_path, n_stages=3):
    cfg = random_config(5, n_stages, overflow=True)
    model = make_model(cfg, 4)
    config = {"format": MODEL_FORMAT, "aunet_version": "test", "model": cfg.to_dict()}
    export_model(model, tmp_path, config)
    return model, config


def test_export_then_load_gives_identical_logits(tmp_path):
    """export_model + load_model round-trips the weights and config bit for bit."""
    model, config = _exported(tmp_path)
    loaded, cfg2 = load_model(tmp_path)
    assert cfg2 == json.loads(json.dumps(config))
    assert not loaded.training
    gen = torch.Generator().manual_seed(9)
    tokens = torch.randint(0, VOCAB, (2, SEQ), generator=gen)
    levels = random_levels(gen, 2, SEQ, 3)
    with torch.no_grad():
        a, _ = model(tokens, levels)
        b, _ = loaded(tokens, levels)
    assert torch.equal(a, b)
    again, _ = load_model(tmp_path / "model.safetensors")  # the file path works too
    assert all(
        torch.equal(x, y)
        for x, y in zip(again.state_dict().values(), model.state_dict().values(), strict=True)
    )


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    """A truncated weights file gives AunetError naming the file, not a raw exception."""
    _exported(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    for cut in (len(data) // 2, 20, 0):
        weights.write_bytes(data[:cut])
        with pytest.raises(AunetError, match=r"model\.safetensors: cannot load"):
            load_model(tmp_path)


def test_tampered_safetensors_header_is_a_clear_error(tmp_path):
    """A corrupted header (garbage JSON) or weights of another shape give AunetError."""
    _exported(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    bad = bytearray(data)
    bad[8:40] = b"}" * 32  # inside the JSON header
    weights.write_bytes(bytes(bad))
    with pytest.raises(AunetError, match=r"model\.safetensors: cannot load"):
        load_model(tmp_path)

    # valid file, but for another architecture: missing/mismatched tensors
    other = make_model(random_config(6, 2, overflow=False))
    export_model(other, tmp_path, json.loads((tmp_path / "config.json").read_text()))
    with pytest.raises(AunetError, match=r"model\.safetensors: cannot load"):
        load_model(tmp_path)


def test_config_of_another_format_is_rejected(tmp_path):
    """config.json with another `format` gives AunetError naming both formats."""
    _exported(tmp_path)
    cfg_path = tmp_path / "config.json"
    config = json.loads(cfg_path.read_text())
    config["format"] = "aunet-model/999"
    cfg_path.write_text(json.dumps(config))
    with pytest.raises(AunetError, match=r"aunet-model/999.*aunet-model/1"):
        load_model(tmp_path)
    cfg_path.write_text("{not json")
    with pytest.raises(AunetError, match=r"config\.json: corrupt"):
        load_model(tmp_path)
    cfg_path.unlink()
    with pytest.raises(AunetError, match=r"no config\.json"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    "config",
    [
        {"format": MODEL_FORMAT},  # no model section
        {"format": MODEL_FORMAT, "model": {"stages": [{"dim": 32}]}},  # incomplete stage
        {"format": MODEL_FORMAT, "model": {"stages": [], "extra": 1}},  # unknown key
        [1, 2],  # not a mapping
    ],
    ids=["no-model", "incomplete-stage", "unknown-key", "list"],
)
def test_malformed_config_is_a_clear_error(tmp_path, config):
    """A config.json of the right format but a broken model section gives AunetError."""
    _exported(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(AunetError, match=r"config\.json"):
        load_model(tmp_path)


def test_upsampling_starts_at_zero_by_default():
    """Default init: the trunk adds nothing until it is trained (the model starts as its
    byte stage); the other matrices are random; "normal" makes the maps random too."""
    stages = [StageConfig(dim=32, layers=1, heads=2, decoder_layers=1),
              StageConfig(dim=64, layers=1, heads=2)]  # fmt: skip
    torch.manual_seed(0)
    model = AUNet(ModelConfig(stages=stages, seq_len=SEQ))
    assert all(float(p.detach().abs().max()) == 0.0 for p in model.ups.parameters())
    assert float(model.pools[0].proj.weight.detach().std()) > 0.01
    tokens = torch.randint(0, 256, (1, SEQ), generator=torch.Generator().manual_seed(1))
    levels = (torch.rand(1, SEQ, generator=torch.Generator().manual_seed(2)) < 0.3).long()
    before = model(tokens, levels)[0]
    with torch.no_grad():
        for p in model.encoders[1].parameters():
            p.add_(1.0)  # a different trunk changes nothing yet
    assert torch.equal(before, model(tokens, levels)[0])
    torch.manual_seed(0)
    live = AUNet(ModelConfig(stages=stages, seq_len=SEQ, upsample_init="normal"))
    assert float(live.ups[0].per_offset.weight.detach().std()) > 0.01
    with pytest.raises(ValueError, match="upsample_init"):
        AUNet(ModelConfig(stages=stages, seq_len=SEQ, upsample_init="xavier"))
