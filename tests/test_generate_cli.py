"""`aunet generate` and `aunet eval` as a user runs them (real executable, tiny models)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from aunet_cli.export import MODEL_FORMAT, export_model
from aunet_cli.model import BOS, AUNet, ModelConfig
from splitters import Pipeline

from .test_prep_bad_input import expect_error
from .test_prep_cli import AUNET, aunet, aunet_env

SPECS = ["regex-words", "regex-word-pairs"]


def make_run(path: Path, seq_len: int = 64, window: int | None = None) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(
        stages=[dict(dim=32, layers=1, decoder_layers=1, heads=2, window=window)] * 3,
        seq_len=seq_len,
        upsample_init="normal",  # random weights with a live trunk path
    )
    path.mkdir(parents=True)
    config = {
        "format": MODEL_FORMAT,
        "aunet_version": "test",
        "model": asdict(cfg),
        "splitters": Pipeline.from_specs(SPECS).describe(),
    }
    export_model(AUNet(cfg), path, config)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("gen") / "run")


def test_generate_text_and_jsonl(run_dir):
    proc = aunet("generate", "--run", run_dir, "Hello", "--max-bytes", "20", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Hello")
    assert "bytes in" in proc.stderr
    proc = aunet(
        "generate", "--model", run_dir / "model.safetensors", "a", "b c", "--num-samples", "2",
        "--max-bytes", "12", "--format", "jsonl", "--ignore-eos",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["a", "a", "b c", "b c"]
    for r in rows:
        assert set(r) >= {"prompt", "completion", "bytes", "seconds", "bytes_per_s"}
        assert r["bytes"] == 12 and r["stop_reason"] == "length"


def test_cache_and_no_cache_give_the_same_greedy_text(run_dir):
    args = ["generate", "--run", run_dir, "The cat", "--max-bytes", "90", "--temperature", "0",
            "--ignore-eos", "--raw"]  # fmt: skip
    a, b = aunet(*args), aunet(*args, "--no-cache")
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout and len(a.stdout.encode("utf-8", "surrogateescape")) > 90


def test_prompt_file_and_stdin(run_dir, tmp_path):
    f = tmp_path / "p.txt"
    f.write_bytes("日本 text".encode())
    proc = aunet("generate", "--run", run_dir, "--prompt-file", f, "--max-bytes", "5")
    assert proc.returncode == 0 and proc.stdout.startswith("日本 text"), proc.stderr
    proc = subprocess.run(
        [str(AUNET), "generate", "--run", str(run_dir), "-", "--max-bytes", "5"],
        input="from stdin", capture_output=True, text=True, env=aunet_env(),
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.startswith("from stdin"), proc.stderr


@pytest.mark.parametrize(
    "case",
    ["missing", "not_a_run", "corrupt_config", "other_version", "corrupt_weights", "both",
     "long_prompt", "bad_utf8", "bad_option"],
)  # fmt: skip
def test_bad_input_is_one_clear_line(run_dir, tmp_path, case):
    run = tmp_path / "run"
    if case in ("corrupt_config", "other_version", "corrupt_weights"):
        make_run(run)
    args: list[object] = ["generate", "--run", run, "hi"]
    needles: tuple[str, ...]
    if case == "missing":
        needles = (str(run), "no such run directory")
    elif case == "not_a_run":
        run.mkdir()
        needles = ("no model.safetensors", "finished `aunet train` run")
    elif case == "corrupt_config":
        (run / "config.json").write_text('{"format": "aunet-model/1", "model": ')
        needles = ("config.json", "corrupt")
    elif case == "other_version":
        cfg = json.loads((run / "config.json").read_text())
        cfg["format"], cfg["aunet_version"] = "aunet-model/0", "0.0.1"
        (run / "config.json").write_text(json.dumps(cfg))
        needles = ("aunet-model/0", "this aunet reads", "0.0.1")
    elif case == "corrupt_weights":
        data = (run / "model.safetensors").read_bytes()
        (run / "model.safetensors").write_bytes(data[: len(data) // 2])
        needles = ("model.safetensors", "cannot load")
    elif case == "both":
        args = ["generate", "--run", run_dir, "--model", run_dir / "model.safetensors", "hi"]
        needles = ("exactly one of --run", "--model")
    elif case == "long_prompt":
        args = ["generate", "--run", run_dir, "x" * 100]
        needles = ("the prompt is 100 bytes", "context is 63 bytes")
    elif case == "bad_utf8":
        f = tmp_path / "bad.txt"
        f.write_bytes(b"caf\xe9 au lait")
        args = ["generate", "--run", run_dir, "--prompt-file", f]
        needles = (str(f), "invalid UTF-8 at byte 3", "--raw")
    else:
        args = ["generate", "--run", run_dir, "hi", "--top-p", "1.5"]
        needles = ("--top-p", "(0, 1]")
    expect_error(aunet(*args), 2, *needles)


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--temperature", "nan", "--temperature must be a finite number >= 0, got nan"),
        ("--temperature", "inf", "--temperature must be a finite number >= 0, got inf"),
        ("--seed", "99999999999999999999999", "--seed must be in [0, 2**64 - 1]"),
        ("--seed", "-1", "--seed must be in [0, 2**64 - 1], got -1"),
    ],
)
def test_numbers_torch_cannot_sample_with_are_one_line(run_dir, option, value, needle):
    """A NaN/inf temperature (NaN probabilities) or a seed torch cannot take: no traceback."""
    expect_error(aunet("generate", "--run", run_dir, "hi", option, value), 2, needle)


def test_largest_seed_is_accepted(run_dir):
    proc = aunet("generate", "--run", run_dir, "hi", "--max-bytes", "3", "--seed", str(2**64 - 1))
    assert proc.returncode == 0, proc.stderr


def test_raw_prompt_bytes_are_accepted(run_dir, tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes(b"caf\xe9")
    proc = subprocess.run(
        [str(AUNET), "generate", "--run", str(run_dir), "--prompt-file", str(f), "--raw",
         "--max-bytes", "4"],
        capture_output=True, env=aunet_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"caf\xe9")


def test_ctrl_c_keeps_what_was_generated(tmp_path):
    run = make_run(tmp_path / "win", window=16)  # unbounded context
    proc = subprocess.Popen(
        [str(AUNET), "generate", "--run", str(run), "start", "--max-bytes", "10000000",
         "--ignore-eos", "--raw"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=aunet_env(),
        # as from a terminal: a background job (CI under nohup / &) inherits SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert proc.stdout is not None
    got = proc.stdout.read(40)  # generation has started
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert (got + rest).startswith(b"start") and len(got + rest) > 40


# --- eval ------------------------------------------------------------------------------------


def test_eval_raw_text_json_equals_direct_loss(run_dir, tmp_path):
    text = b"The quick brown fox jumps over the lazy dog. 123 and 4567, twice?"
    f = tmp_path / "doc.txt"
    f.write_bytes(text)
    proc = aunet("eval", run_dir, "--data", f, "--doc-per", "file", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    model = AUNet(ModelConfig(**json.loads((run_dir / "config.json").read_text())["model"]))
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(run_dir / "model.safetensors")))
    model.eval()
    levels = Pipeline.from_specs(SPECS).levels_of(text).tolist()
    with torch.no_grad():  # 64-byte windows: the second one scores the last byte
        tok = torch.tensor([[BOS, *text]])
        lv = torch.tensor([[2, *levels]])
        first, _ = model(tok[:, :64], lv[:, :64], capped=False)
        nats = F.cross_entropy(first[0], tok[0, 1:65], reduction="sum")
        lv2 = lv[:, 1:65].clone()
        lv2[0, 0] = 2
        second, _ = model(tok[:, 1:65], lv2, capped=False)
        nats += F.cross_entropy(second[0, -1:], tok[0, 65:66], reduction="sum")
    assert got["bytes"] == len(text) == 65
    assert got["bpb"] == pytest.approx(float(nats) / len(text) / math.log(2), rel=1e-5)
    assert got["windows"] == 2 and len(got["bytes_per_unit"]) == 2


def test_eval_prepared_shards_and_splitter_mismatch(run_dir, tmp_path):
    f = tmp_path / "docs.txt"
    f.write_text("First paragraph here.\n\nSecond one, a bit longer than the first.\n")
    same, other = tmp_path / "same", tmp_path / "other"
    for out, specs in ((same, SPECS), (other, ["regex-words"])):
        stages = [a for s in specs for a in ("-s", s)]
        proc = aunet("prep", f, *stages, "--out", out, "--val-fraction", "0", "--quiet")
        assert proc.returncode == 0, proc.stderr
    proc = aunet("eval", run_dir, "--data", same, "--split", "train", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    raw = aunet("eval", run_dir, "--data", f, "--format", "json")
    assert json.loads(proc.stdout)["bpb"] == pytest.approx(json.loads(raw.stdout)["bpb"], rel=1e-6)
    expect_error(aunet("eval", run_dir, "--data", same), 2, "no val shards", "--split train")
    expect_error(
        aunet("eval", run_dir, "--data", other, "--split", "train"),
        2, "prepared with splitters regex-words", "regex-words + regex-word-pairs",
    )  # fmt: skip


def test_unfinished_run_generates_from_its_newest_checkpoint(run_dir, tmp_path):
    """A run still training has checkpoints but no model.safetensors yet."""
    from safetensors.torch import load_file

    run = tmp_path / "training"
    (run / "checkpoints").mkdir(parents=True)
    (run / "data").mkdir()
    config = json.loads((run_dir / "config.json").read_text())
    (run / "recipe.json").write_text(json.dumps({"model": config["model"], "data": {}}))
    manifest = {"options": {"splitters": config["splitters"]}}
    (run / "data" / "manifest.json").write_text(json.dumps(manifest))
    state = {f"model.{k}": v for k, v in load_file(str(run_dir / "model.safetensors")).items()}
    torch.save({"state_dict": state, "global_step": 7}, run / "checkpoints" / "step-0000007.ckpt")
    args = ["--max-bytes", "40", "--temperature", "0", "--ignore-eos", "--raw"]
    from_ckpt = aunet("generate", "--run", run, "Hi there", *args)
    exported = aunet("generate", "--run", run_dir, "Hi there", *args)
    assert from_ckpt.returncode == 0, from_ckpt.stderr
    assert "using step-0000007.ckpt" in from_ckpt.stderr
    assert from_ckpt.stdout == exported.stdout
