"""The paper-scale recipes (recipes/paper/) against the numbers the paper states.

Videau et al. 2025, "From Bytes to Ideas: Language Modeling with Autoregressive U-Nets"
(arXiv 2506.14761), appendix H and Table 2, 1B scale, 60B LLaMA-3-token setting:

* parameters (Table 2 "Params"): Transformer Byte 1.3B, AU-Net 2 1.3B, AU-Net 3 2.5B,
  AU-Net 4 4.2B;
* training FLOPs per input unit (Table 10 "FLOPs/Token"; the unit is a byte for byte
  models): AU-Net 2 1.8e9, AU-Net 3 2.3e9, AU-Net 4 2.8e9 (left blank for the byte
  Transformer);
* total training FLOPs (Table 10): AU-Net 2 5.1e20, AU-Net 3 6.7e20, AU-Net 4 8.0e20;
* data budget (section 3.1): 60B LLaMA-3 tokens x 4.56 bytes/token ~ 273B bytes.

The paper counts the FLOPs of the real pooling points (mean stage lengths). With a
capacity (`max_seqlen`) the model computes every capacity position and aunet_cli.flops
counts those, so the paper's numbers are compared with the "useful" count (capacities
removed) and the capacity overhead is checked separately.

Models are built on the `meta` device: shapes only, no memory, so this is fast.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from aunet_cli.flops import flops_per_byte
from aunet_cli.model import AUNet
from aunet_cli.recipe import Recipe, load_recipe

PAPER_DIR = Path(__file__).resolve().parents[1] / "recipes" / "paper"

# Bytes per pooling point at stages 2, 3, 4 (words, pairs, groups of four words). Measured
# with this project's regex-words / regex-word-pairs / regex-4words pipeline on English
# text: wikitext-2 valid 4.30 / 7.29 / 11.17, Shakespeare 4.40 / 7.20 / 10.56, Python docs
# 4.72 / 6.73 / 8.52. Deeper stages are not 2x and 4x the word stage because digits,
# punctuation and line ends pool at every stage. The paper does not state its per-stage
# contraction on DCLM; its Table 10 FLOPs/byte are reproduced within ~4% with 5 / 8 / 12
# and within ~11% with the values below, which we take as the stated assumption.
BYTES_PER_POINT = (4.5, 7.2, 10.8)

# Tolerances: the paper rounds to 2 significant digits, counts the matmuls of the
# transformer layers only (6 x non-embedding parameters + attention) while flops.py also
# counts pooling, the 17 upsampling maps and the byte head, and the contraction above is
# an assumption, not DCLM's measured value.
PARAMS_TOL = 0.15
FLOPS_TOL = 0.15
RUN_FLOPS_TOL = 0.20
CAPACITY_OVERHEAD_MAX = 1.6  # computed / useful FLOPs per byte (2560/1664/1280 capacities)
BYTE_BUDGET = 60e9 * 4.56  # section 3.1: 60B tokens <-> ~273B bytes
BUDGET_TOL = 0.10


@dataclass(frozen=True)
class Paper:
    stages: int
    params: float  # Table 2
    train_flops_per_byte: float | None  # Table 10 FLOPs/Token (byte models: per byte)
    run_flops: float | None  # Table 10 Total FLOPs


PAPER = {
    "aunet1-1b": Paper(1, 1.3e9, None, None),  # "Transformer Byte" / "Transformer bytes 1B"
    "aunet2-1b": Paper(2, 1.3e9, 1.8e9, 5.1e20),
    "aunet3-1b": Paper(3, 2.5e9, 2.3e9, 6.7e20),
    "aunet4-1b": Paper(4, 4.2e9, 2.8e9, 8.0e20),
}


def recipe(name: str) -> Recipe:
    return load_recipe(PAPER_DIR / f"{name}.yaml")


def stage_lengths(r: Recipe) -> list[float]:
    n = r.model.seq_len
    return [float(n)] + [n / b for b in BYTES_PER_POINT[: r.model.n_stages - 1]]


def train_flops_per_byte(r: Recipe, computed: bool = False) -> float:
    """Training FLOPs per byte: of the real points (default) or of the computed positions."""
    cfg = r.model
    if not computed:
        cfg = copy.deepcopy(cfg)
        for st in cfg.stages:
            st.max_seqlen = None  # no capacity: flops.py counts the mean lengths
    return flops_per_byte(cfg, stage_lengths(r)).train_per_byte


def bytes_per_run(r: Recipe) -> int:
    t = r.trainer
    assert isinstance(t.devices, int) and t.max_steps
    per_step = r.model.seq_len * r.data.batch_size * t.accumulate * t.devices * t.num_nodes
    return per_step * t.max_steps


def test_every_paper_recipe_is_listed() -> None:
    assert sorted(p.stem for p in PAPER_DIR.glob("*.yaml")) == sorted(PAPER)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_recipe_is_a_multi_gpu_paper_run(name: str) -> None:
    r = recipe(name)
    assert r.name == name
    assert r.model.n_stages == PAPER[name].stages
    assert r.trainer.precision == "bf16-mixed"
    assert r.trainer.strategy == "fsdp"
    assert r.trainer.devices == 8
    assert r.trainer.max_steps and r.trainer.flops_budget is None
    assert r.data.prepared == "/path/to/dclm-shards"
    text = (PAPER_DIR / f"{name}.yaml").read_text()
    assert text.startswith("# ") and "2506.14761" in text and "aunet prep" in text


@pytest.mark.parametrize("name", sorted(PAPER))
def test_parameter_count_matches_the_paper(name: str) -> None:
    with torch.device("meta"):
        model = AUNet(recipe(name).model)
    total = model.num_params()["total"]
    expected = PAPER[name].params
    assert abs(total / expected - 1) <= PARAMS_TOL, f"{name}: {total:,} vs {expected:.2g}"


@pytest.mark.parametrize("name", [n for n, p in PAPER.items() if p.train_flops_per_byte])
def test_flops_per_byte_match_the_paper(name: str) -> None:
    ours = train_flops_per_byte(recipe(name))
    expected = PAPER[name].train_flops_per_byte
    assert abs(ours / expected - 1) <= FLOPS_TOL, f"{name}: {ours:.3g} vs {expected:.2g}"


def test_flops_per_byte_are_ordered_as_in_the_paper() -> None:
    """AU-Net 2 < 3 < 4 per byte (1.8e9 < 2.3e9 < 2.8e9), all far below the byte Transformer.

    The paper leaves the byte Transformer's FLOPs blank; its measured throughput (47k vs
    225k bytes/s per GPU for AU-Net 2, Table 2) says it costs several times more per byte.
    """
    f = {name: train_flops_per_byte(recipe(name)) for name in PAPER}
    assert all(v > 0 and v == v and v != float("inf") for v in f.values())
    assert f["aunet2-1b"] < f["aunet3-1b"] < f["aunet4-1b"] < f["aunet1-1b"]
    assert f["aunet1-1b"] > 3 * f["aunet2-1b"]


@pytest.mark.parametrize("name", sorted(PAPER))
def test_run_reads_the_papers_byte_budget(name: str) -> None:
    total = bytes_per_run(recipe(name))
    assert abs(total / BYTE_BUDGET - 1) <= BUDGET_TOL, f"{name}: {total:.3g} bytes"


@pytest.mark.parametrize("name", [n for n, p in PAPER.items() if p.run_flops])
def test_run_flops_match_the_paper(name: str) -> None:
    r = recipe(name)
    ours = train_flops_per_byte(r) * bytes_per_run(r)
    expected = PAPER[name].run_flops
    assert abs(ours / expected - 1) <= RUN_FLOPS_TOL, f"{name}: {ours:.3g} vs {expected:.2g}"


@pytest.mark.parametrize("name", [n for n, p in PAPER.items() if p.stages > 1])
def test_capacities_leave_headroom_over_the_mean_stage_length(name: str) -> None:
    """Overflow is dropped, so capacity must clear the mean length by a margin (20%)."""
    r = recipe(name)
    for st, mean in zip(r.model.stages[1:], stage_lengths(r)[1:], strict=True):
        assert st.max_seqlen is not None and st.max_seqlen >= 1.2 * mean


@pytest.mark.parametrize("name", [n for n, p in PAPER.items() if p.stages > 1])
def test_capacity_overhead_is_bounded(name: str) -> None:
    """Static capacities cost compute on padding: at most CAPACITY_OVERHEAD_MAX x useful."""
    r = recipe(name)
    overhead = train_flops_per_byte(r, computed=True) / train_flops_per_byte(r)
    assert 1.0 < overhead <= CAPACITY_OVERHEAD_MAX, f"{name}: {overhead:.2f}x"
