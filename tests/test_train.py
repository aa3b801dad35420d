"""`aunet train` end to end: real subprocesses on a small generated corpus.

Each run prepares the corpus with regex-words, trains a tiny 2-stage AU-Net on 64-byte
windows for a handful of steps on CPU, and leaves a run directory that is inspected
here. Kill-and-resume and DDP runs are marked slow.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aunet_cli.atomic import temporary_name
from aunet_cli.export import load_model, model_weights

AUNET = Path(sys.executable).with_name("aunet")

_WORDS = (
    "the of and to in is was that for it with as his on be at by had are but from or have an "
    "they which one you were all we her she there would their will when who him been has more "
    "if no out so said what up its about than into them can only other time new some could "
    "these two may first then do any like my now over such our man me even most made after "
    "also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still see own "
    "men work long here get both between life being under never day same another know while "
    "last might us great old year off come since against go came right used take three river "
    "mountain garden letter window question morning evening history music language number"
)
WORDS = _WORDS.split()


def corpus_text(seed: int = 0, size: int = 60_000) -> str:
    """English-like paragraphs: sentences of common words, numbers and punctuation."""
    rng = random.Random(seed)
    paragraphs, total = [], 0
    while total < size:
        sentences = []
        for _ in range(rng.randint(2, 6)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(4, 16))]
            if rng.random() < 0.3:
                words.insert(rng.randrange(len(words)), str(rng.randint(1, 2025)))
            if rng.random() < 0.2:
                words[rng.randrange(len(words))] += ","
            sentence = " ".join(words)
            sentences.append(sentence[0].upper() + sentence[1:] + rng.choice(".!?."))
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(paragraphs) + "\n"


def recipe_text(corpus: Path, max_steps: int = 12, ckpt_every: int = 4, val_every: int = 4) -> str:
    return f"""\
name: tiny
model:
  seq_len: 64
  stages:
    - {{dim: 32, layers: 1, decoder_layers: 1, heads: 2}}
    - {{dim: 64, layers: 1, heads: 2, max_seqlen: 24}}
data:
  inputs: ["{corpus}"]
  splitters: [regex-words]
  val_fraction: 0.05
  batch_size: 4
  val_windows: 16
optim:
  lr: 0.003
  warmup_steps: 2
trainer:
  max_steps: {max_steps}
  val_every: {val_every}
  ckpt_every: {ckpt_every}
  log_every: 1
  accelerator: cpu
"""


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    e["COLUMNS"] = "10000"
    e["PYTHONUNBUFFERED"] = "1"
    return e


def train_cmd(recipe: Path, run_dir: Path, *extra: str) -> list[str]:
    return [str(AUNET), "train", str(recipe), "--run-dir", str(run_dir), "-q", *extra]


def aunet_train(recipe: Path, run_dir: Path, *extra: str, timeout: float = 240):
    """Run `aunet train` to completion; fail with its stderr if it does not exit 0."""
    proc = subprocess.run(
        train_cmd(recipe, run_dir, *extra),
        capture_output=True, text=True, timeout=timeout, env=env(), cwd=recipe.parent,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def train_losses(run_dir: Path) -> dict[int, float]:
    """Training loss per step (rows deduplicated by step, the last one wins)."""
    out = {}
    for row in metrics(run_dir):
        if row.get("loss"):
            out[int(row["step"])] = float(row["loss"])
    return out


def ckpt_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def step_ckpts(run_dir: Path) -> dict[int, Path]:
    return {int(p.stem.split("-")[1]): p for p in (run_dir / "checkpoints").glob("step-*.ckpt")}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory with corpus.txt (~60 KB) and recipe.yaml (12 steps)."""
    d = tmp_path_factory.mktemp("train")
    (d / "corpus.txt").write_text(corpus_text())
    (d / "recipe.yaml").write_text(recipe_text(d / "corpus.txt"))
    return d


@pytest.fixture(scope="module")
def finished_run(workdir) -> Path:
    """One finished 12-step run, shared (read-only) by the tests below."""
    run = workdir / "finished"
    aunet_train(workdir / "recipe.yaml", run)
    return run


# --- (a) a short run ----------------------------------------------------------------------


def test_short_run_writes_metrics_compute_model_and_checkpoints(finished_run):
    """A 12-step run leaves metrics.csv (finite loss and val_bpb), compute.json, the
    exported model (loadable without Lightning) and step checkpoints."""
    rows = metrics(finished_run)
    assert "val_bpb" in rows[0]
    val = [float(r["val_bpb"]) for r in rows if r["val_bpb"]]
    assert len(val) == 3  # after steps 4, 8 and 12
    assert all(math.isfinite(v) and 0 < v < 12 for v in val)
    losses = train_losses(finished_run)
    assert sorted(losses) == list(range(12))
    assert all(math.isfinite(v) for v in losses.values())
    assert losses[11] < losses[0]  # it learns something in 12 steps
    assert val[-1] < val[0]

    compute = json.loads((finished_run / "compute.json").read_text())
    assert compute["flops_per_byte"] > 0
    assert compute["train_flops_per_byte"] == pytest.approx(3 * compute["flops_per_byte"])
    assert compute["params"]["total"] == compute["params"]["stage1"] + compute["params"]["stage2"]
    assert compute["params"]["total"] > 0
    assert compute["stage_lengths_per_window"][0] == 64
    assert 1 <= compute["stage_lengths_per_window"][1] <= 24
    assert compute["planned_steps"] == 12
    assert compute["bytes_per_step"] == 64 * 4

    assert (finished_run / "model.safetensors").is_file()
    config = json.loads((finished_run / "config.json").read_text())
    assert config["format"] == "aunet-model/1"
    model, _ = load_model(finished_run)
    assert model.num_params()["total"] == compute["params"]["total"]

    assert (finished_run / "checkpoints" / "last.ckpt").is_file()
    assert ckpt_step(finished_run / "checkpoints" / "last.ckpt") == 12
    assert sorted(step_ckpts(finished_run)) == [8, 12]  # keep_checkpoints: 2
    # the exported weights are the final checkpoint's weights
    state = torch.load(finished_run / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=True)["state_dict"]  # fmt: skip
    exported = load_file(str(finished_run / "model.safetensors"))
    assert all(torch.equal(state[f"model.{k}"], v) for k, v in exported.items())


# --- (d) rerun and --fresh ----------------------------------------------------------------


@pytest.fixture(scope="module")
def rerun(finished_run, workdir) -> tuple[Path, subprocess.CompletedProcess]:
    """A copy of the finished run, run again with the same command; its model file
    removed first, as an export the disk refused (exit 5) leaves the run."""
    run = workdir / "rerun"
    shutil.copytree(finished_run, run)
    (run / "model.safetensors").unlink()
    proc = subprocess.Popen(["true"])
    proc.wait()  # a process that has ended, whose half-written files are left over:
    for name in ("model.safetensors", "config.json"):
        tmp = temporary_name(run / name)
        tmp.with_name(tmp.name.replace(f"-{os.getpid()}", f"-{proc.pid}")).write_bytes(b"half")
    proc = aunet_train(workdir / "recipe.yaml", run)
    return run, proc


def test_rerun_of_a_finished_run_does_no_extra_steps(rerun, finished_run):
    """Rerunning a finished run resumes at max_steps, trains nothing more, and exports
    the final model again."""
    run, _proc = rerun
    assert sorted(run.glob(".*.tmp-*")) == []  # the left-over temporaries are gone
    assert ckpt_step(run / "checkpoints" / "last.ckpt") == 12
    assert sorted(step_ckpts(run)) == [8, 12]
    a = load_file(str(finished_run / "model.safetensors"))
    b = load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if (run / "metrics.csv").exists():  # no new training rows (see the next test)
        assert train_losses(run) == train_losses(finished_run)


def test_rerun_with_the_model_in_place_leaves_it_alone(finished_run, workdir):
    """The export on a rerun is only for a missing model.safetensors."""
    run = workdir / "rerun-with-model"
    shutil.copytree(finished_run, run)
    before = (run / "model.safetensors").stat().st_mtime_ns
    proc = aunet_train(workdir / "recipe.yaml", run)
    assert proc.returncode == 0, proc.stderr
    assert (run / "model.safetensors").stat().st_mtime_ns == before


def test_rerun_keeps_the_metrics_history(rerun, finished_run):
    """metrics.csv of a finished run survives running the same command again."""
    run, _ = rerun
    assert (run / "metrics.csv").exists()
    assert train_losses(run) == train_losses(finished_run)


def test_fresh_starts_over(finished_run, workdir):
    """--fresh discards the checkpoints and trains from step 0 (here to 8 steps, not 12)."""
    run = workdir / "fresh"
    shutil.copytree(finished_run, run)
    aunet_train(workdir / "recipe.yaml", run, "--fresh", "--set", "trainer.max_steps=8")
    assert ckpt_step(run / "checkpoints" / "last.ckpt") == 8
    assert sorted(step_ckpts(run)) == [4, 8]  # step 12 of the old run is gone
    losses = train_losses(run)
    assert sorted(losses) == list(range(8))
    # same seed and data, so it retraces the original from its initial weights until the
    # cosine schedule (stretched over 8 steps instead of 12) changes the step-3 update
    original = train_losses(finished_run)
    assert all(abs(losses[s] - original[s]) < 1e-5 for s in range(4))
    assert abs(losses[7] - original[7]) > 1e-6


def test_fresh_with_a_changed_data_section(finished_run, workdir):
    """--fresh after a change of the data section (the conflict message without --fresh
    says to use --fresh) retrains on the newly prepared data."""
    run = workdir / "fresh-data"
    shutil.copytree(finished_run, run)
    changed = ("--set", "data.doc_per=line", "--set", "trainer.max_steps=2")
    aunet_train(workdir / "recipe.yaml", run, "--fresh", *changed)
    assert ckpt_step(run / "checkpoints" / "last.ckpt") == 2


# --- (b) kill and resume ------------------------------------------------------------------


@pytest.mark.slow
def test_kill_and_resume_matches_an_uninterrupted_run(workdir):
    """SIGKILL mid-run, rerun the same command: the steps after the resume point have
    the same training losses (1e-5) as a run that was never interrupted, and the final
    weights agree."""
    recipe = workdir / "recipe40.yaml"
    recipe.write_text(recipe_text(workdir / "corpus.txt", max_steps=40, ckpt_every=5,
                                  val_every=10))  # fmt: skip
    straight = workdir / "straight"
    aunet_train(recipe, straight)

    run = workdir / "killed"
    proc = subprocess.Popen(
        train_cmd(recipe, run), env=env(), cwd=workdir, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not any(s >= 10 for s in step_ckpts(run) if (run / "checkpoints").exists()):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint at step >= 10 in time"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # last.ckpt is written just after step-N.ckpt, so the kill may land between the two:
    # `aunet train` resumes from the newest checkpoint file, whichever it is
    newest = max((run / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    resumed_at = ckpt_step(newest)
    assert 5 <= resumed_at < 40 and resumed_at % 5 == 0

    aunet_train(recipe, run)
    assert ckpt_step(run / "checkpoints" / "last.ckpt") == 40
    want, got = train_losses(straight), train_losses(run)
    assert sorted(want) == list(range(40))
    after = [s for s in got if s >= resumed_at]
    assert after == list(range(resumed_at, 40))
    worst = max(abs(got[s] - want[s]) for s in after)
    assert worst < 1e-5, f"losses after the resume at step {resumed_at} differ by {worst}"
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(run / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


@pytest.fixture(scope="module")
def long_recipe(workdir):
    """accumulate -> (a 400-step recipe without periodic checkpoints, its uninterrupted
    run), made on first use."""
    made: dict[int, tuple[Path, Path]] = {}

    def get(accumulate: int) -> tuple[Path, Path]:
        if accumulate not in made:
            recipe = workdir / f"recipe400-acc{accumulate}.yaml"
            text = recipe_text(workdir / "corpus.txt", max_steps=400, ckpt_every=1000,
                               val_every=1000)  # fmt: skip
            recipe.write_text(text + f"  accumulate: {accumulate}\n")
            straight = workdir / f"straight400-acc{accumulate}"
            aunet_train(recipe, straight)
            made[accumulate] = recipe, straight
        return made[accumulate]

    return get


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "accumulate"), [(signal.SIGINT, 1), (signal.SIGTERM, 3)])
def test_an_interrupted_run_checkpoints_its_step_and_resumes(long_recipe, workdir, sig, accumulate):
    """Ctrl-C (SIGINT) or SIGTERM mid-run: exit 130 / 143 with one line naming the step,
    a checkpoint of that step (there is no periodic one yet), no exported model; the
    rerun resumes there and ends with the uninterrupted run's weights (1e-5). With
    gradient accumulation the stop waits for the end of the optimizer step (a stop
    between micro-batches lost their gradients: weights off by 0.07)."""
    recipe, straight = long_recipe(accumulate)
    run = workdir / f"interrupted-{sig.name}"
    proc = subprocess.Popen(
        train_cmd(recipe, run), env=env(), cwd=workdir, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not (run / "metrics.csv").exists():  # training has begun
        assert proc.poll() is None, proc.stderr.read()[-4000:] if proc.stderr else ""
        assert time.monotonic() < deadline, "no training metrics in time"
        time.sleep(0.02)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be interrupted")
    assert proc.returncode == 128 + sig, stderr[-4000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: interrupted at step ") and "rerun the same command" in last
    step = int(last.split("step ")[1].split(",")[0])
    assert 1 <= step < 400
    assert ckpt_step(run / "checkpoints" / "last.ckpt") == step
    assert not (run / "model.safetensors").exists()

    aunet_train(recipe, run)
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(run / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_a_damaged_newest_checkpoint_is_passed_over(finished_run, workdir):
    """The newest checkpoint cut short (as a kill mid-save left it before checkpoints
    were written atomically): the rerun warns, naming it, and resumes from the one
    before; `generate` on the unfinished run does the same. With every checkpoint
    damaged: one line, exit 2, saying --fresh starts over."""
    run = workdir / "damaged"
    shutil.copytree(finished_run, run)
    (run / "model.safetensors").unlink()
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:5000])
    os.utime(last)  # the newest
    model, config = load_model(run)
    assert config["checkpoint"] == "step-0000012.ckpt"
    proc = aunet_train(workdir / "recipe.yaml", run)
    assert f"warning: {last}: cannot be read" in proc.stderr
    assert (run / "model.safetensors").exists()
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        ckpt.write_bytes(b"")
    (run / "model.safetensors").unlink()
    proc = subprocess.run(train_cmd(workdir / "recipe.yaml", run), capture_output=True,
                          text=True, env=env(), timeout=240)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert "no checkpoint can be read" in proc.stderr and "--fresh" in proc.stderr


def test_an_input_changed_after_preparation_says_fresh(workdir):
    """data.inputs edited after the run prepared them: exit 4 with train's advice
    (--fresh or another --run-dir), not prep's (--out, --overwrite)."""
    corpus = workdir / "corpus-edited.txt"
    corpus.write_text(corpus_text(seed=5, size=20_000))
    recipe = workdir / "edited.yaml"
    recipe.write_text(recipe_text(corpus, max_steps=2))
    aunet_train(recipe, workdir / "edited")
    with corpus.open("a") as f:
        f.write("\nOne more paragraph.\n")
    proc = subprocess.run(train_cmd(recipe, workdir / "edited"), capture_output=True,
                          text=True, env=env(), timeout=240)  # fmt: skip
    assert proc.returncode == 4 and "Traceback" not in proc.stderr, proc.stderr[-4000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "corpus-edited.txt changed" in line and "--fresh" in line
    assert "--overwrite" not in line and "--out" not in line


def test_settings_this_machine_cannot_run_are_one_line(workdir):
    """A GPU accelerator on a machine without one, or a --run-dir that is a file: exit 2,
    one line, no traceback (before: Lightning's or Python's traceback)."""
    (workdir / "a-file").write_text("x")
    recipe = workdir / "recipe.yaml"
    cases = [(train_cmd(recipe, workdir / "a-file"), "is a file, not a folder")]
    if not torch.cuda.is_available():
        gpu = train_cmd(recipe, workdir / "gpu-run", "--set", "trainer.accelerator=gpu")
        cases.append((gpu, "cannot run here"))
    for cmd, needle in cases:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=240)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-4000:]
        assert needle in proc.stderr.strip().splitlines()[-1]


def test_prepared_data_must_have_the_models_stages(finished_run, workdir):
    """data.prepared with one pooling stage, a model of three stages: one line, before
    any training (before: it trained, then generate refused the model)."""
    recipe = workdir / "prepared3.yaml"
    recipe.write_text(f"""\
name: tiny3
model:
  seq_len: 64
  stages:
    - {{dim: 32, layers: 1, decoder_layers: 1, heads: 2}}
    - {{dim: 32, layers: 1, decoder_layers: 1, heads: 2, max_seqlen: 24}}
    - {{dim: 64, layers: 1, heads: 2, max_seqlen: 12}}
data:
  prepared: "{finished_run / "data"}"
trainer:
  max_steps: 2
  accelerator: cpu
""")
    proc = subprocess.run(train_cmd(recipe, workdir / "prepared3"), capture_output=True,
                          text=True, env=env(), timeout=240)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert "has 1 pooling stage(s), but a model of 3 stages needs 2" in proc.stderr
    assert not (workdir / "prepared3" / "checkpoints").exists()
    # shards of more stages than a model pools at serve it (the paper recipes share
    # one 3-stage preparation among AU-Net-1 to 4): a 1-stage model trains on them
    one = workdir / "prepared1.yaml"
    one.write_text(f"""\
name: tiny1
model:
  seq_len: 64
  stages:
    - {{dim: 32, layers: 1, heads: 2}}
data:
  prepared: "{finished_run / "data"}"
trainer:
  max_steps: 2
  accelerator: cpu
""")
    aunet_train(one, workdir / "prepared1")
    assert (workdir / "prepared1" / "model.safetensors").exists()


# --- (c) DDP on CPU -----------------------------------------------------------------------


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(workdir):
    """Two DDP processes (gloo) train a few steps, validate, checkpoint and export."""
    run = workdir / "ddp"
    aunet_train(
        workdir / "recipe.yaml", run,
        "--set", "trainer.devices=2", "--set", "trainer.strategy=ddp",
        "--set", "trainer.accelerator=cpu", "--set", "trainer.max_steps=6",
        "--set", "trainer.val_every=3", "--set", "trainer.ckpt_every=3",
        timeout=400,
    )  # fmt: skip
    losses = train_losses(run)
    assert sorted(losses) == list(range(6))
    assert all(math.isfinite(v) for v in losses.values())
    val = [float(r["val_bpb"]) for r in metrics(run) if r["val_bpb"]]
    assert len(val) == 2 and all(math.isfinite(v) for v in val)
    assert ckpt_step(run / "checkpoints" / "last.ckpt") == 6
    assert json.loads((run / "compute.json").read_text())["bytes_per_step"] == 64 * 4 * 2
    model, _ = load_model(run)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # exported once, by rank 0, from the weights every rank gathered: the checkpoint's
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=True)["state_dict"]  # fmt: skip
    exported = load_file(str(run / "model.safetensors"))
    assert exported.keys() == model_weights(state).keys()
    assert all(torch.equal(state[f"model.{k}"], v) for k, v in exported.items())
