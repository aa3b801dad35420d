"""FLOPs-per-byte accounting checked against torch's own FLOP counter and brute force.

`flops_per_byte` is an analytic formula; here it is compared with what
`torch.utils.flop_counter.FlopCounterMode` measures when the model really runs on one
window whose stage lengths equal the numbers given to the formula.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from aunet_cli.flops import flops_per_byte, layer_attention_flops, mean_context
from aunet_cli.model import AUNet, ModelConfig, StageConfig, plan_stage, window_mask

torch.set_num_threads(min(torch.get_num_threads(), 2))

SEQ = 64
aten = torch.ops.aten

# The CPU fused attention kernel is not in torch's FLOP registry; count it like the
# CUDA kernels are counted (2 matmuls over the full n x n score matrix, mask ignored).
_SDPA_CPU = aten._scaled_dot_product_flash_attention_for_cpu


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _is_attention(op) -> bool:
    return "scaled_dot_product" in str(op) or op is aten.bmm


def count(model: AUNet, tokens: torch.Tensor, levels: torch.Tensor) -> tuple[int, int]:
    """(total FLOPs, attention FLOPs) of one forward pass, measured by FlopCounterMode."""
    with (
        torch.no_grad(),
        FlopCounterMode(display=False, custom_mapping={_SDPA_CPU: _sdpa_cpu_flops}) as fc,
    ):
        model(tokens, levels)
    by_op = fc.get_flop_counts()["Global"]
    return fc.get_total_flops(), sum(c for op, c in by_op.items() if _is_attention(op))


def window_and_lengths(n_stages: int, seed: int = 0):
    """One window (batch 1) of tokens and nested levels, and its true stage lengths."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 256, (1, SEQ), generator=gen)
    u = torch.rand(1, SEQ, generator=gen)
    levels = (u < 0.3).long() + (u < 0.12).long() + (u < 0.05).long()
    levels = levels.clamp(max=n_stages - 1)
    lengths, stage_levels = [SEQ], levels
    for s in range(n_stages - 1):
        plan = plan_stage(stage_levels, s, None)
        n = int(plan.lengths[0])
        lengths.append(n)
        stage_levels = plan.levels[:, :n]
    return tokens, levels, lengths


def exact_model(dims, layers, lengths, decoder_layers=1, windows=None) -> AUNet:
    """A model whose capacities equal the real point counts: no padding, no overflow."""
    windows = windows or [None] * len(dims)
    stages = [
        StageConfig(
            dim=d,
            layers=nl,
            heads=2,
            decoder_layers=decoder_layers if s < len(dims) - 1 else 0,
            window=w,
            max_seqlen=lengths[s] if s else None,
        )
        for s, (d, nl, w) in enumerate(zip(dims, layers, windows, strict=True))
    ]
    torch.manual_seed(0)
    return AUNet(ModelConfig(stages=stages, seq_len=SEQ)).eval()


MODELS = {
    "1-stage": ([48], [2]),
    "2-stage": ([32, 64], [1, 2]),
    "3-stage": ([32, 48, 64], [1, 1, 2]),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("windowed", [False, True])
def test_linear_flops_match_flop_counter(name, windowed):
    """report.per_byte_linear x seq_len equals the counted matmul FLOPs minus attention (1%).

    The model's capacities are set to the real number of points per stage, so every
    stage position the formula counts is one the model computes.
    """
    dims, layers = MODELS[name]
    tokens, levels, lengths = window_and_lengths(len(dims))
    windows = [5] * len(dims) if windowed else None
    model = exact_model(dims, layers, lengths, windows=windows)
    total, attention = count(model, tokens, levels)
    plans = model(tokens, levels)[1]
    assert all(int(p.overflow) == 0 for p in plans)
    assert attention > 0, "the counter must see the attention kernels"
    report = flops_per_byte(model.cfg, [float(n) for n in lengths])
    assert report.stage_lengths == [float(n) for n in lengths]
    linear = report.per_byte_linear * SEQ
    assert abs(linear - (total - attention)) <= 0.01 * (total - attention), (linear, total)


@pytest.mark.parametrize("name", list(MODELS))
def test_attention_flops_are_the_counted_kernels_scaled_by_the_causal_context(name):
    """Formula attention = counter's SDPA FLOPs (full n x n) x mean causal context / n.

    FlopCounterMode counts SDPA as if every query saw all n keys; the accounting counts
    only the keys a causal query sees, so per stage the two differ by mean_context(n)/n.
    """
    dims, layers = MODELS[name]
    tokens, levels, lengths = window_and_lengths(len(dims))
    model = exact_model(dims, layers, lengths)
    _, counted = count(model, tokens, levels)
    report = flops_per_byte(model.cfg, [float(n) for n in lengths])
    formula = (report.per_byte - report.per_byte_linear) * SEQ
    full = 0.0
    for s, (st, n) in enumerate(zip(model.cfg.stages, lengths, strict=True)):
        n_layers = st.layers + (st.decoder_layers if s < len(dims) - 1 else 0)
        full += n * n_layers * layer_attention_flops(st, n) * n / mean_context(n, None)
    assert abs(full - counted) <= 1e-6 * counted
    assert formula < counted  # causal attention is cheaper than the full square


def _brute_context(n: int, window: int | None) -> float:
    if window is None:
        mask = torch.ones(n, n).tril().bool()
    else:
        mask = window_mask(n, window)
        assert torch.equal(
            mask, torch.ones(n, n).tril().bool() & ~torch.ones(n, n).tril(-window).bool()
        )
    return mask.sum().item() / n


@pytest.mark.parametrize("n", [1, 2, 7, 16, 33, 100])
@pytest.mark.parametrize("window", [None, 1, 3, 16, 50, 200])
def test_mean_context_matches_mask_count(n, window):
    """mean_context(n, window) is the number of True mask entries per query, exactly."""
    assert mean_context(n, window) == pytest.approx(_brute_context(n, window), rel=1e-12)


def test_mean_context_of_nothing_is_zero():
    """An empty stage attends to nothing (no division by zero)."""
    assert mean_context(0, None) == 0.0
    assert mean_context(0, 4) == 0.0


def test_window_reduces_attention_flops_only():
    """A sliding window lowers the attention FLOPs, never the linear ones."""
    tokens, levels, lengths = window_and_lengths(2)

    def report(window):
        st = [
            StageConfig(dim=64, layers=2, heads=2, decoder_layers=1, window=window),
            StageConfig(dim=64, layers=2, heads=2, max_seqlen=lengths[1], window=window),
        ]
        return flops_per_byte(ModelConfig(stages=st, seq_len=SEQ), [float(n) for n in lengths])

    full, windowed, wide = report(None), report(4), report(10_000)
    attn = lambda r: r.per_byte - r.per_byte_linear  # noqa: E731
    assert windowed.per_byte_linear == full.per_byte_linear
    assert 0 < attn(windowed) < attn(full)
    assert attn(wide) == attn(full)  # a window wider than the sequence changes nothing
    assert windowed.per_byte < full.per_byte
    assert full.train_per_byte == 3 * full.per_byte


def test_stage_lengths_are_capped_by_capacity():
    """A stage with a capacity always computes max_seqlen positions (static shapes), so
    that is what is counted, whatever the mean number of real points."""
    st = [
        StageConfig(dim=32, layers=1, heads=2, decoder_layers=1),
        StageConfig(dim=32, layers=1, heads=2, max_seqlen=8),
    ]
    cfg = ModelConfig(stages=st, seq_len=SEQ)
    assert flops_per_byte(cfg, [SEQ, 20.0]).stage_lengths == [SEQ, 8]
    assert flops_per_byte(cfg, [SEQ, 5.0]).stage_lengths == [SEQ, 8]
    with pytest.raises(ValueError):
        flops_per_byte(cfg, [SEQ])
