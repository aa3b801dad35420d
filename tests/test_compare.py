"""`aunet compare` end to end (real training, real tokenizer), and the spelling probe."""

from __future__ import annotations

import json
import random
import subprocess

import numpy as np
import pytest
import torch

from aunet_cli.model import AUNet, ModelConfig, StageConfig
from aunet_cli.spelling import KINDS, make_probes, misspell, score_texts, spelling_probe
from splitters import Pipeline

from .test_train import AUNET, corpus_text, env

MODEL_2 = """\
    - {dim: 32, layers: 1, decoder_layers: 1, heads: 2}
    - {dim: 64, layers: 1, heads: 2, max_seqlen: 24}"""
MODEL_BPE = """\
    - {dim: 48, layers: 1, heads: 2}"""


def recipe(name: str, stages: str, splitters: str, extra: str = "") -> str:
    return f"""\
name: {name}
{extra}model:
  seq_len: 64
  stages:
{stages}
data:
  inputs: ["corpus.txt"]
  splitters: {splitters}
  val_fraction: 0.1
  batch_size: 4
  val_windows: 8
optim:
  warmup_steps: 1
trainer:
  max_steps: 100
  val_every: 2
  ckpt_every: 2
  accelerator: cpu
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    (d / "corpus.txt").write_text(corpus_text(seed=7, size=40_000))
    (d / "au2.yaml").write_text(recipe("tiny-au2", MODEL_2, "[regex-words]"))
    (d / "bpe.yaml").write_text(
        recipe("tiny-bpe", MODEL_BPE, "[]", "tokenizer:\n  vocab_size: 600\n")
    )
    (d / "cmp.yaml").write_text(
        "name: tiny\nbudget: 3.0e9\nmodels: [au2.yaml, bpe.yaml]\neval:\n  spelling_probes: 40\n"
    )
    return d


def compare(workdir, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(AUNET), "compare", *args], cwd=workdir, capture_output=True, text=True,
        timeout=timeout, env=env(),
    )  # fmt: skip


@pytest.fixture(scope="module")
def first(workdir):
    proc = compare(workdir, "cmp.yaml", "--out", "out", "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow  # real training of two models (~1 min): .ci/run runs it
def test_compare_trains_every_model_for_the_same_flops(workdir, first):
    report = json.loads((workdir / "out" / "compare.json").read_text())
    models = {m["name"]: m for m in report["models"]}
    assert set(models) == {"tiny-au2", "tiny-bpe"}
    assert {m["kind"] for m in models.values()} == {"AU-Net-2", "BPE"}
    for m in models.values():
        assert m["status"] == "trained"
        # steps = budget / (train FLOPs per byte x bytes per step), rounded down
        assert 0.8 * 3.0e9 <= m["train_flops"] <= 3.0e9
        assert m["steps"] >= 2
        assert 0 < m["val_bpb"] < 9
        assert 0 <= m["spelling"]["accuracy"] <= 1 and m["spelling"]["pairs"] > 40
        assert m["wall_seconds"] > 0
    assert models["tiny-bpe"]["bytes_per_token"] > 1.5
    assert report["validation"]["bytes"] > 1000
    md = (workdir / "out" / "compare.md").read_text()
    assert "| tiny-au2 | AU-Net-2 |" in md and "| tiny-bpe | BPE |" in md
    assert (workdir / "out" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (workdir / "out" / "tiny-bpe" / "tokenizer.model").is_file()


@pytest.mark.slow  # real training of two models (~1 min): .ci/run runs it
def test_compare_evaluates_the_same_bytes_as_aunet_eval(workdir, first):
    """The table's val bpb is `aunet eval` on the run's own val split."""
    report = json.loads((workdir / "out" / "compare.json").read_text())
    for m in report["models"]:
        run = workdir / "out" / m["name"]
        proc = subprocess.run(
            [str(AUNET), "eval", str(run), "--data", str(run / "data"), "--format", "json",
             "--batch-size", "16"],
            capture_output=True, text=True, env=env(), timeout=200,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert abs(json.loads(proc.stdout)["bpb"] - m["val_bpb"]) < 1e-6


@pytest.mark.slow  # real training of two models (~1 min): .ci/run runs it
def test_a_second_compare_reuses_finished_runs(workdir, first):
    weights = {p: p.stat().st_mtime_ns for p in (workdir / "out").glob("*/model.safetensors")}
    ckpts = sorted(str(p) for p in (workdir / "out").glob("*/checkpoints/*.ckpt"))
    proc = compare(workdir, "cmp.yaml", "--out", "out", "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("reused") == 2
    assert {p: p.stat().st_mtime_ns for p in weights} == weights
    assert sorted(str(p) for p in (workdir / "out").glob("*/checkpoints/*.ckpt")) == ckpts
    report = json.loads((workdir / "out" / "compare.json").read_text())
    assert {m["status"] for m in report["models"]} == {"reused"}


@pytest.mark.slow  # real training of two models (~1 min): .ci/run runs it
def test_another_budget_in_the_same_directory_is_refused(workdir, first):
    proc = compare(workdir, "cmp.yaml", "--out", "out", "--budget", "6e9", "-q")
    assert proc.returncode == 2
    assert "trained for another budget" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_recipes_on_different_data_are_refused(workdir):
    other = (workdir / "au2.yaml").read_text().replace("val_fraction: 0.1", "val_fraction: 0.2")
    (workdir / "other.yaml").write_text(other.replace("tiny-au2", "tiny-other"))
    proc = compare(workdir, "au2.yaml", "other.yaml", "--budget", "1e9", "--out", "x", "-q")
    assert proc.returncode == 2
    assert "other.yaml" in proc.stderr and "same validation documents" in proc.stderr


def test_training_recipes_need_a_budget(workdir):
    proc = compare(workdir, "au2.yaml", "bpe.yaml", "--out", "x")
    assert proc.returncode == 2 and "--budget" in proc.stderr


# --- the spelling probe -------------------------------------------------------------------


def test_misspellings_are_the_three_kinds_and_never_the_word():
    rng = random.Random(0)
    for word in (b"mountain", b"letter", b"river", b"aaaaa"):
        for kind in KINDS:
            bad = misspell(word, kind, rng)
            if bad is None:
                continue
            assert bad != word
            assert len(bad) == len(word) + {"swap": 0, "drop": -1, "double": 1}[kind]
            assert bad[0] == word[0]
    assert misspell(b"aaaaa", "swap", rng) is None  # swapping equal letters changes nothing


def test_probes_are_whole_words_with_context_and_deterministic():
    docs = [p.encode() for p in corpus_text(seed=8, size=20_000).split("\n\n")]
    a = make_probes(docs, 50, seed=1)
    b = make_probes(docs, 50, seed=1)
    assert [(p.prefix, p.word) for p in a] == [(p.prefix, p.word) for p in b]
    assert len(a) == 50
    for p in a:
        assert len(p.word) >= 5 and p.word.isalpha()
        assert not p.suffix.isalpha() and len(p.prefix) <= 64
        assert p.variants and all(v != p.word for v in p.variants.values())
        assert any(p.prefix + p.word + p.suffix in d for d in docs)


def test_snippet_scores_are_the_direct_forward_nats():
    torch.manual_seed(0)
    model = AUNet(
        ModelConfig(
            stages=[StageConfig(32, 1, 2, 1), StageConfig(32, 1, 2)],
            seq_len=64,
            upsample_init="normal",
        )
    ).eval()
    pipe = Pipeline.from_specs(["regex-words"])
    texts = [b"the river runs", b"", b"a mountain letter"]
    got = score_texts(model, pipe, texts)
    for text, nats in zip(texts, got, strict=True):
        if not text:
            assert nats == 0.0
            continue
        lv = np.concatenate([[1], np.minimum(pipe.levels_of(text), 1)])
        tokens = torch.tensor([[256, *text]])
        with torch.no_grad():
            logits, _ = model(tokens, torch.from_numpy(lv[None].astype(np.int64)))
        direct = torch.nn.functional.cross_entropy(logits[0, :-1], tokens[0, 1:], reduction="sum")
        assert abs(float(direct) - nats) < 1e-3


def test_a_model_that_knows_the_words_wins_the_probe():
    """A byte model trained briefly on the words beats chance clearly; an untrained one
    does not (so the probe measures something the model learned)."""
    docs = [p.encode() for p in corpus_text(seed=9, size=30_000).split("\n\n")]
    probes = make_probes(docs[-20:], 60, seed=0)
    torch.manual_seed(0)
    cfg = ModelConfig(stages=[StageConfig(64, 2, 2)], seq_len=64)
    model = AUNet(cfg)
    pipe = Pipeline.from_specs([])
    before = spelling_probe(model.eval(), pipe, probes)["accuracy"]
    stream = torch.tensor([b for d in docs[:-20] for b in (256, *d, 257)])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(150):
        starts = torch.randint(0, len(stream) - 65, (16,), generator=gen)
        batch = torch.stack([stream[s : s + 65] for s in starts])
        logits, _ = model(batch[:, :-1], torch.zeros(16, 64, dtype=torch.long))
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = spelling_probe(model.eval(), pipe, probes)["accuracy"]
    assert after > 0.8 and after > before + 0.15, (before, after)


def test_tokenizer_train_writes_the_model_and_its_record(workdir):
    proc = subprocess.run(
        [str(AUNET), "tokenizer", "train", "bpe.yaml", "--run-dir", "tk", "-q"],
        cwd=workdir, capture_output=True, text=True, env=env(), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    info = json.loads((workdir / "tk" / "tokenizer" / "tokenizer.json").read_text())
    assert info["vocab_size"] == 600 and info["kind"] == "bpe" and info["split"] == "train"
    assert len(info["data_manifest_sha256"]) == 64
    assert (workdir / "tk" / "tokenizer" / "tokenizer.model").stat().st_size > 1000
    assert "bytes per token on the val split" in proc.stderr
    bad = subprocess.run(
        [str(AUNET), "tokenizer", "train", "au2.yaml", "--run-dir", "tk2"],
        cwd=workdir, capture_output=True, text=True, env=env(), timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "no tokenizer section" in bad.stderr


@pytest.mark.slow  # real training of two models (~1 min): .ci/run runs it
def test_a_different_recipe_in_the_output_directory_is_refused(workdir, first):
    """Never report an old model as this recipe's: a changed recipe needs another --out."""
    changed = (workdir / "au2.yaml").read_text().replace("warmup_steps: 1", "warmup_steps: 2")
    (workdir / "au2-changed.yaml").write_text(changed)
    proc = compare(workdir, "au2-changed.yaml", "--budget", "3.0e9", "--out", "out", "-q")
    assert proc.returncode == 2
    assert "holds a run of a different recipe (optim differ)" in proc.stderr


@pytest.mark.slow  # real training of two models (~1 min): .ci/run runs it
def test_resuming_a_bpe_run_with_another_tokenizer_is_refused(workdir, first):
    proc = subprocess.run(
        [str(AUNET), "train", "bpe.yaml", "--run-dir", "out/tiny-bpe", "-q",
         "--set", "tokenizer.character_coverage=0.99"],
        cwd=workdir, capture_output=True, text=True, env=env(), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    assert "different tokenizer section" in proc.stderr


def test_probe_words_are_never_pieces_of_longer_non_ascii_words():
    docs = ["Schrödinger wrote about quantum theory. Caf\u00e9s and m\u00fcnchen rivers.".encode()]
    words = {p.word for p in make_probes(docs, 100)}
    assert words == {b"wrote", b"about", b"quantum", b"theory", b"rivers"}
