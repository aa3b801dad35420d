"""Finished models as safetensors + JSON: loadable without Lightning or pickle."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import replacing_path, write_json_atomic
from .errors import AunetError, OutputWriteError
from .model import AUNet, ModelConfig

MODEL_FORMAT = "aunet-model/1"


def export_model(model: AUNet, run_dir: Path, config: dict[str, Any]) -> None:
    """Write model.safetensors and config.json atomically."""
    export_weights(model.state_dict(), run_dir, config)


def export_weights(
    weights: Mapping[str, torch.Tensor], run_dir: Path, config: dict[str, Any]
) -> None:
    """export_model for a state dict of AUNet (e.g. gathered from sharded ranks)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
    target = run_dir / "model.safetensors"
    with replacing_path(target) as tmp:
        try:
            save_file(tensors, str(tmp), metadata={"format": MODEL_FORMAT})
        except SafetensorError as exc:  # its writes fail in Rust: no OSError to name
            if "I/O error" not in str(exc):
                raise
            raise OutputWriteError(
                f"cannot write {target}: {exc}; free some space or fix the cause, then run "
                "the same command again"
            ) from None
    write_json_atomic(run_dir / "config.json", config)


def model_weights(module_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """AUNet's weights in a training module's state dict (a checkpoint's): its
    `model.` entries (a compiled forward_fn repeats them under its own name)."""
    return {k.removeprefix("model."): v for k, v in module_state.items() if k.startswith("model.")}


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[AUNet, dict[str, Any]]:
    """A run directory (or its model.safetensors) -> (model in eval mode, config).

    A run still training (no model.safetensors yet) loads its newest checkpoint;
    the config then names it under "checkpoint".
    """
    run_dir = path if path.is_dir() else path.parent
    weights, cfg_path = run_dir / "model.safetensors", run_dir / "config.json"
    if path.is_dir() and not weights.exists() and list(run_dir.glob("checkpoints/*.ckpt")):
        return _from_checkpoint(run_dir, device)
    for p in (weights, cfg_path):
        if not p.exists():
            raise AunetError(f"{run_dir}: no {p.name} (is this a finished `aunet train` run?)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise AunetError(f"{cfg_path}: corrupt ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        if not isinstance(config, dict):
            raise AunetError(f"{cfg_path}: not a valid aunet model config (not a JSON object)")
        raise AunetError(
            f"{cfg_path}: format {config.get('format')!r}, this aunet reads {MODEL_FORMAT!r} "
            f"(written by aunet {config.get('aunet_version', '?')})"
        )
    try:
        model = AUNet(ModelConfig(**config["model"]))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise AunetError(f"{cfg_path}: not a valid aunet model config ({exc!r})") from None
    try:
        state = load_file(str(weights), device=str(device))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise AunetError(f"{weights}: cannot load ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), config


def _from_checkpoint(run_dir: Path, device: str | torch.device) -> tuple[AUNet, dict[str, Any]]:
    """The newest checkpoint of an unfinished run (loaded with weights_only=True)."""
    ckpt = max(run_dir.glob("checkpoints/*.ckpt"), key=lambda p: p.stat().st_mtime)
    try:
        recipe = json.loads((run_dir / "recipe.json").read_text())
        prepared = recipe["data"].get("prepared") or run_dir / "data"
        manifest = json.loads((Path(prepared) / "manifest.json").read_text())
        model = AUNet(ModelConfig(**recipe["model"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AunetError(
            f"{run_dir}: a checkpoint but no readable recipe or data ({exc})"
        ) from None
    try:
        state = torch.load(ckpt, map_location=device, weights_only=True)["state_dict"]
        model.load_state_dict(model_weights(state))
    except (RuntimeError, OSError, KeyError, EOFError) as exc:
        raise AunetError(f"{ckpt}: cannot load ({str(exc).splitlines()[0]})") from None
    config = {
        "format": MODEL_FORMAT,
        "model": recipe["model"],
        "splitters": manifest["options"]["splitters"],
        "checkpoint": ckpt.name,
    }
    if recipe.get("tokenizer"):
        config["tokenizer"] = {"kind": "bpe", "file": "tokenizer.model"}
    return model.to(device).eval(), config
