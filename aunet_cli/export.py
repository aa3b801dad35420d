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
        raise AunetError(f"{weights}: cannot load ({_first_line(exc)})") from None
    return model.to(device).eval(), config


def readable_checkpoint(ckpt_dir: Path, skipped: list[str] | None = None) -> Path | None:
    """The newest checkpoint in `ckpt_dir` that opens (weights_only, memory-mapped, so a
    large one is not read); None if there is none. A damaged one (cut short by a kill
    from an aunet before checkpoints were written atomically, or by a full disk) is
    passed over, with its reason appended to `skipped`."""
    for path in sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # any damage: not a zip, cut short, foreign pickle
            if skipped is not None:
                skipped.append(f"{path}: cannot be read ({_first_line(exc)})")
            continue
        return path
    return None


def _first_line(exc: BaseException) -> str:
    """What went wrong, in one line: a heading that ends with ':' (load_state_dict's
    "Error(s) in loading state_dict for AUNet:") takes its first detail along."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def _from_checkpoint(run_dir: Path, device: str | torch.device) -> tuple[AUNet, dict[str, Any]]:
    """The newest readable checkpoint of an unfinished run (loaded with weights_only)."""
    skipped: list[str] = []
    ckpt = readable_checkpoint(run_dir / "checkpoints", skipped)
    if ckpt is None:
        raise AunetError(f"{run_dir}: no readable checkpoint ({skipped[0]})")
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
    except Exception as exc:  # damaged after the check above, or not this model's
        raise AunetError(f"{ckpt}: cannot load ({_first_line(exc)})") from None
    config = {
        "format": MODEL_FORMAT,
        "model": recipe["model"],
        "splitters": manifest["options"]["splitters"],
        "checkpoint": ckpt.name,
    }
    if recipe.get("tokenizer"):
        config["tokenizer"] = {"kind": "bpe", "file": "tokenizer.model"}
    return model.to(device).eval(), config
