"""The end-of-training export on every rank: the weights are gathered through the
strategy (a collective under FSDP, which every rank must join) and only rank 0
writes. FSDP needs GPUs, so the ranks here are stand-ins with a strategy that
records what each rank was asked; real 2-process DDP runs in test_train.py (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import load_file

from aunet_cli.export import MODEL_FORMAT, model_weights
from aunet_cli.model import AUNet, ModelConfig, StageConfig
from aunet_cli.train import ExportAtEnd


class RecordingStrategy:
    """A rank's strategy: the module state dict as FSDP's rank0_only gather hands it
    out (full on rank 0, empty elsewhere), and rank 0's answer to every broadcast."""

    def __init__(self, module_state: dict[str, torch.Tensor], rank: int, rank0_says=None):
        self.module_state, self.rank, self.rank0_says = module_state, rank, rank0_says
        self.gathers = 0

    def lightning_module_state_dict(self) -> dict[str, torch.Tensor]:
        self.gathers += 1
        return dict(self.module_state) if self.rank == 0 else {}

    def broadcast(self, obj, src: int = 0):
        return obj if self.rank == 0 else self.rank0_says


def module_state() -> tuple[AUNet, dict[str, torch.Tensor]]:
    """A training module's state dict: the model's entries, a compiled forward_fn's
    copies of them, and nothing else."""
    model = AUNet(ModelConfig(stages=[StageConfig(dim=32, layers=1, heads=2)], seq_len=16))
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state |= {f"forward_fn._orig_mod.{k}": v for k, v in model.state_dict().items()}
    return model, state


def trainer(strategy: RecordingStrategy, step: int = 12, max_steps: int = 12):
    return SimpleNamespace(
        strategy=strategy,
        is_global_zero=strategy.rank == 0,
        global_step=step,
        max_steps=max_steps,
    )


def config(model: AUNet) -> dict:
    return {"format": MODEL_FORMAT, "model": model.cfg.to_dict()}


def test_every_rank_joins_the_gather_and_rank_0_alone_writes(tmp_path: Path):
    model, state = module_state()
    for rank in (1, 0):  # the other rank first: it must not write
        run = tmp_path / "run"
        run.mkdir(exist_ok=True)
        strategy = RecordingStrategy(state, rank)
        ExportAtEnd(run, config(model)).on_train_end(trainer(strategy), None)
        assert strategy.gathers == 1
        assert (run / "model.safetensors").exists() == (rank == 0)
    exported = load_file(str(run / "model.safetensors"))
    assert exported.keys() == model.state_dict().keys()
    assert all(torch.equal(exported[k], v) for k, v in model.state_dict().items())
    assert json.loads((run / "config.json").read_text())["format"] == MODEL_FORMAT


def test_the_rerun_export_follows_rank_0s_disk(tmp_path: Path):
    """on_fit_end of a rerun: rank 0 finds the model missing, so every rank joins the
    gather, whatever its own disk shows; where rank 0 finds it in place, none does."""
    model, state = module_state()
    for rank0_missing in (True, False):
        for rank in (1, 0):
            run = tmp_path / f"{rank0_missing}-{rank}"
            run.mkdir()
            if rank == 0 and not rank0_missing:
                (run / "model.safetensors").write_bytes(b"in place")
            strategy = RecordingStrategy(state, rank, rank0_says=rank0_missing)
            ExportAtEnd(run, config(model)).on_fit_end(trainer(strategy), None)
            assert strategy.gathers == int(rank0_missing)
    stopped_early = RecordingStrategy(state, 0)
    ExportAtEnd(tmp_path, config(model)).on_fit_end(trainer(stopped_early, 8, 12), None)
    assert stopped_early.gathers == 0 and not (tmp_path / "model.safetensors").exists()


def test_model_weights_keeps_the_model_entries_once():
    model, state = module_state()
    weights = model_weights(state)
    assert weights.keys() == model.state_dict().keys()
