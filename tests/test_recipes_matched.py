"""The shipped recipes validate, and the Shakespeare ones are compute-matched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aunet_cli.flops import flops_per_byte
from aunet_cli.recipe import load_recipe
from splitters import Pipeline, TextBatch

from .conftest import shared_path

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize("path", sorted(RECIPES.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path):
    from aunet_cli.compare import budgeted, is_compare_file, load_compare

    if is_compare_file(path):  # a comparison: its models validate with its budget
        cfg, paths = load_compare(path)
        assert len(budgeted(paths, cfg.budget)) == len(cfg.models)
    else:
        load_recipe(path)


def test_shakespeare_recipes_have_equal_flops_per_byte_and_budget():
    """Measured on the text itself, as `aunet train` measures it (mean positions per
    window, the window start included); within 2% of each other, same training FLOPs."""
    data = shared_path("corpora/en/shakespeare.txt").read_bytes()
    levels = Pipeline.from_specs(["regex-words", "regex-word-pairs"]).levels_of(data)
    recipes = [load_recipe(RECIPES / f"shakespeare-aunet{n}.yaml") for n in (1, 2, 3)]
    seq = recipes[0].model.seq_len
    windows = levels[: len(levels) // seq * seq].reshape(-1, seq)
    lengths = [float(seq)] + [float(((windows[:, 1:] >= k).sum(1) + 1).mean()) for k in (1, 2)]
    flops = [flops_per_byte(r.model, lengths[: r.model.n_stages]).per_byte for r in recipes]
    assert max(flops) / min(flops) < 1.02, flops
    assert len({r.trainer.flops_budget for r in recipes}) == 1
    assert len({(r.model.seq_len, r.data.batch_size) for r in recipes}) == 1
    # capacity: no window of this text overflows the word stage
    assert ((windows[:, 1:] >= 1).sum(1) + 1).max() <= recipes[1].model.stages[1].max_seqlen
    assert np.isfinite(flops).all()


ZH = ["zh-aunet1", "zh-aunet2-chars", "zh-aunet2-learned", "zh-aunet2-learned-end",
      "zh-aunet3-learned", "zh-aunet3-chars-learned", "zh-aunet3-chars-pairs"]  # fmt: skip


def test_chinese_recipes_have_equal_flops_per_byte_and_budget():
    """On a sample of the lines the recipes train on (BOS pools everywhere; EOS too)."""
    recipes = [load_recipe(RECIPES / f"{name}.yaml") for name in ZH]
    docs = [
        line
        for path in recipes[0].data.inputs
        for line in shared_path(path.removeprefix("../shared/")).read_bytes().split(b"\n")
        if line
    ][::7]
    seq = recipes[0].model.seq_len
    total = sum(len(d) + 2 for d in docs)  # BOS doc EOS
    flops = []
    for r in recipes:
        lengths = [float(seq)]
        if r.data.splitters:
            levels = Pipeline.from_specs(r.data.splitters).levels(TextBatch.from_docs(docs))
            for k in range(1, len(r.data.splitters) + 1):
                lengths.append(seq * (int((levels >= k).sum()) + len(docs)) / total + 1)
        flops.append(flops_per_byte(r.model, lengths).per_byte)
    assert max(flops) / min(flops) < 1.03, dict(zip(ZH, flops, strict=True))
    assert len({r.trainer.flops_budget for r in recipes}) == 1
    assert len({(r.model.seq_len, r.data.batch_size) for r in recipes}) == 1


@pytest.mark.parametrize("name", ["en-shakespeare", "en-pydocs"])
def test_english_comparisons_are_compute_matched(name, tmp_path):
    """Measured as `aunet train` measures it (the BPE model's bytes per token on its own
    trained tokenizer): FLOPs per byte within 3% of each other, one budget."""
    from aunet_cli.compare import budgeted, check_same_data, load_compare
    from aunet_cli.train import measure

    cfg, paths = load_compare(RECIPES / "compare" / f"{name}.yaml")
    recipes = budgeted(paths, cfg.budget)
    check_same_data(recipes, paths)
    for r in recipes:
        r.data.inputs = [str(shared_path(p.removeprefix("../shared/"))) for p in r.data.inputs]
    flops = {}
    for r in recipes:
        *_, report, bytes_per_token = measure(r, tmp_path / r.name)
        flops[r.name] = report.per_byte
        if r.tokenizer:
            assert 3.0 < bytes_per_token < 3.7, bytes_per_token
    assert max(flops.values()) / min(flops.values()) < 1.03, flops
    assert {r.model.n_stages for r in recipes if not r.tokenizer} == {1, 2, 3, 4}
