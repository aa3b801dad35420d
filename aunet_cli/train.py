"""`aunet train RECIPE`: the LightningModule and the run directory around it.

RUN/ holds recipe.json (the validated recipe), compute.json (parameters, FLOPs per
byte, measured stage lengths), metrics.csv (with val_bpb), tb/ (TensorBoard),
checkpoints/ (every ckpt_every steps, keep K), and at the end model.safetensors +
config.json, which load without Lightning and without unpickling.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from . import __version__
from .atomic import (
    make_folders,
    remove_stale_temporaries,
    replacing,
    replacing_path,
    write_json_atomic,
)
from .data import AUNetData, stream_meta
from .errors import AunetError, OutputConflictError, OutputWriteError
from .export import export_weights, model_weights, readable_checkpoint
from .flops import FlopsReport, flops_per_byte
from .model import AUNet, ModelConfig
from .recipe import Recipe
from .tokenizer import BYTES, MODEL_FILE, BpeCodec, Codec, read_tokenizer_info

LN2 = math.log(2.0)


def _quiet_lightning() -> None:
    """Keep the terminal for what matters: Lightning's banners and tips are noise here."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*Experiment logs directory.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*IterableDataset.*__len__.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")


class StepProgressBar(RichProgressBar):
    """Rich progress over optimizer steps (the training stream has no epochs)."""

    def __init__(self, total_steps: int) -> None:
        super().__init__(leave=True)
        self.total_steps = total_steps

    def _get_train_description(self, current_epoch: int) -> str:
        return "train"

    @property
    def total_train_batches(self) -> int | float:
        return (
            self.total_steps * self.trainer.accumulate_grad_batches
            if self.total_steps < 10**9
            else float("inf")
        )


def bits_per_byte_sums(
    logits: torch.Tensor, targets: torch.Tensor, unit_bytes: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """(sum of nats over targets that stand for text, bytes of text they stand for).

    `unit_bytes[id]` is the bytes of text of an id: 1 for a byte, a BPE piece's length,
    0 for BOS and EOS (never scored), so nats / (ln 2 x bytes) is bits per byte for both."""
    nats = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    size = unit_bytes[targets.flatten()]
    return (nats * (size > 0)).sum(), size.sum()


class AUNetModule(L.LightningModule):
    def __init__(self, recipe: dict[str, Any], total_steps: int, codec: Codec = BYTES) -> None:
        super().__init__()
        self.recipe = recipe
        self.total_steps = total_steps
        self.bos = codec.bos
        self.register_buffer("unit_bytes", torch.from_numpy(codec.unit_bytes), persistent=False)
        self.model = AUNet(ModelConfig(**recipe["model"]))
        self.forward_fn = self.model
        if recipe["trainer"]["compile"]:
            self.forward_fn = torch.compile(self.model)
        self.val_nats = self.val_bytes = None
        self.t_last = time.perf_counter()

    def training_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
        logits, plans = self.forward_fn(batch["tokens"], batch["levels"])
        targets = batch["targets"]
        # train on every next token but BOS (which always follows EOS)
        loss = F.cross_entropy(
            logits.float().flatten(0, 1), targets.flatten(), ignore_index=self.bos
        )
        nats, n = bits_per_byte_sums(logits.detach(), targets, self.unit_bytes)
        now = time.perf_counter()
        bytes_per_s = n.float() * self.trainer.world_size / max(now - self.t_last, 1e-9)
        self.t_last = now
        self.log("loss", loss, prog_bar=False)
        self.log("train_bpb", nats / n.clamp(min=1) / LN2, prog_bar=True)
        self.log("bytes_per_s", bytes_per_s, prog_bar=True)
        for s, plan in enumerate(plans, 2):
            self.log(f"overflow_stage{s}", plan.overflow.float(), reduce_fx="sum")
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_nats = torch.zeros((), device=self.device, dtype=torch.float64)
        self.val_bytes = torch.zeros((), device=self.device, dtype=torch.float64)

    def validation_step(self, batch: dict[str, torch.Tensor], _: int) -> None:
        logits, _plans = self.forward_fn(batch["tokens"], batch["levels"])
        nats, n = bits_per_byte_sums(logits, batch["targets"], self.unit_bytes)
        self.val_nats += nats.double()
        self.val_bytes += n.double()

    def on_validation_epoch_end(self) -> None:
        nats = self.trainer.strategy.reduce(self.val_nats, reduce_op="sum")
        count = self.trainer.strategy.reduce(self.val_bytes, reduce_op="sum")
        if count > 0:
            self.log("val_bpb", (nats / count / LN2).float(), prog_bar=True, sync_dist=False)
        self.t_last = time.perf_counter()

    def configure_optimizers(self):
        o = self.recipe["optim"]
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": o["weight_decay"]},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=o["lr"],
            betas=tuple(o["betas"]),
        )
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, WarmupCosine(o["warmup_steps"], self.total_steps, o["min_lr_ratio"])
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class WarmupCosine:
    """Linear warmup, then cosine decay to min_ratio at total steps (a picklable callable)."""

    def __init__(self, warmup: int, total: int, min_ratio: float) -> None:
        self.warmup, self.total, self.min_ratio = warmup, max(total, 1), min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; a resumed run appends."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class AppendingCSVLogger(CSVLogger):
    """RUN/metrics.csv that keeps the history across resumes (a step may repeat after a
    kill: readers keep its last row)."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class ExportAtEnd(Callback):
    """model.safetensors + config.json when training ends (written by rank 0).

    The weights come from the strategy, as a checkpoint's do: under FSDP each rank
    holds a shard, and gathering them is a collective that every rank joins (rank 0
    receives the full tensors). Rank 0 reading its own module alone would hang or
    export its shard."""

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        self.run_dir, self.config = run_dir, config

    def on_train_end(self, trainer: L.Trainer, pl_module: AUNetModule) -> None:
        self._export(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: AUNetModule) -> None:
        """A run resumed at its last step (e.g. after the disk refused the export):
        Lightning restores the checkpoint but runs no training loop, so no
        on_train_end. Export if the model is missing and the checkpoint is the
        planned end (not a stop before a lowered trainer.max_steps). After
        on_train_end the model is there: nothing is exported twice. Rank 0's view
        of the disk decides for all ranks (nodes need not share a file system)."""
        finished = trainer.max_steps > 0 and trainer.global_step == trainer.max_steps
        missing = not (self.run_dir / "model.safetensors").is_file()
        if finished and trainer.strategy.broadcast(missing, src=0):
            self._export(trainer)

    def _export(self, trainer: L.Trainer) -> None:
        weights = model_weights(trainer.strategy.lightning_module_state_dict())
        if trainer.is_global_zero:
            export_weights(weights, self.run_dir, self.config)


class Interrupted(AunetError):
    """Training stopped by Ctrl-C or SIGTERM, its last step checkpointed."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(
            f"interrupted at step {step}, which is checkpointed; rerun the same command to resume",
            exit_code=128 + signum,
        )


class StopRequested(Exception):
    """Raised by GracefulStop once the step is checkpointed: it ends `fit` at once (no
    validation pass, no export), the way Lightning ends it for an error."""


class GracefulStop(Callback):
    """Ctrl-C (SIGINT) or SIGTERM (`timeout`, Slurm, `docker stop`): the optimizer step
    in progress finishes, a checkpoint of it is saved where ModelCheckpoint saves its
    own (so the rerun resumes on exactly the next batch), and training ends with exit
    130 / 143. Before, Ctrl-C exited 1 and SIGTERM 0, both without a checkpoint, so
    every step since the last one was lost. A second signal stops at once.

    The signals are noted here, not acted on: the stop waits for the end of an
    optimizer step (with accumulate > 1, a micro-batch's end would lose the gradients
    gathered so far), and all ranks decide together, so one rank's signal stops them
    all at the same step. This replaces Lightning's SIGTERM handling, which stops
    after any micro-batch and per rank."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, ckpt_dir: Path) -> None:
        self.ckpt_dir = ckpt_dir
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        if (batch_idx + 1) % trainer.accumulate_grad_batches:  # within an optimizer step
            return
        asked = self.signal is not None
        if trainer.world_size > 1:
            asked = trainer.strategy.reduce_boolean_decision(asked, all=False)
        if asked:
            self.signal = self.signal or signal.SIGTERM  # another rank's
            trainer.save_checkpoint(self.ckpt_dir / "last.ckpt")
            raise StopRequested

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written whole or not at all (temporary name, fsync, rename, see
    atomic.py): Lightning writes them in place, so a kill during a save left a
    truncated newest checkpoint, and the rerun failed to resume from it."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        with replacing_path(Path(path)) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def _resume_point(ckpt_dir: Path) -> Path | None:
    """The newest readable checkpoint; damaged ones are named and passed over."""
    skipped: list[str] = []
    found = readable_checkpoint(ckpt_dir, skipped)
    if skipped:
        from .consoles import err

        for line in skipped:
            err().print(f"warning: {line}; resuming from an older one", highlight=False)
        if found is None:
            raise AunetError(
                f"{ckpt_dir}: no checkpoint can be read ({skipped[0]}); use --fresh to start over"
            )
    return found


def _trainer(**kwargs: Any) -> L.Trainer:
    """L.Trainer, with the settings this machine cannot honour (trainer.accelerator,
    devices, strategy) reported in one line rather than a Lightning traceback."""
    try:
        return L.Trainer(**kwargs)
    except (MisconfigurationException, ValueError, RuntimeError) as exc:
        raise AunetError(
            f"trainer: accelerator={kwargs.get('accelerator')!r}, devices="
            f"{kwargs.get('devices')!r}, strategy={kwargs.get('strategy')!r} cannot run "
            f"here ({str(exc).strip().splitlines()[0]})"
        ) from None


def prepared_dir(recipe: Recipe, run_dir: Path) -> Path:
    """The recipe's shards: given, or prepared from raw inputs (cached by options)."""
    d = recipe.data
    if d.prepared:
        path = Path(d.prepared)
        if not (path / "manifest.json").exists():
            raise AunetError(f"data.prepared: {path} is not a finished `aunet prep` directory")
        # shards of more stages serve smaller models too (the paper recipes share them)
        stages = json.loads((path / "manifest.json").read_text())["options"]["splitters"]
        if len(stages) < len(recipe.model.stages) - 1:
            raise AunetError(
                f"data.prepared: {path} has {len(stages)} pooling stage(s), but a model of "
                f"{len(recipe.model.stages)} stages needs {len(recipe.model.stages) - 1}"
            )
        return path
    from .prep import PrepOptions, default_workers, prep
    from .prep_output import ResumeConflict
    from .readers import ReadOptions, discover

    out = run_dir / "data"
    opts = PrepOptions(
        splitters=tuple(d.splitters),
        read=ReadOptions(doc_per=d.doc_per),
        val_fraction=0.0 if d.val_tail else d.val_fraction,
        workers=min(default_workers(), 4),
    )
    try:
        prep(discover(d.inputs, [], [], "auto", out), out, opts, None)
    except ResumeConflict as exc:  # its advice is prep's (--out, --overwrite)
        raise OutputConflictError(
            f"{exc.reason}; the run's prepared data no longer fits data.inputs: use --fresh "
            "to prepare it again, or another --run-dir"
        ) from None
    return out


def run_training(recipe: Recipe, run_dir: Path, fresh: bool = False, quiet: bool = False) -> dict:
    """Train (or resume) a run; returns the final metrics summary."""
    _quiet_lightning()
    if run_dir.exists() and not run_dir.is_dir():
        raise AunetError(f"--run-dir {run_dir}: is a file, not a folder; choose another")
    try:
        make_folders(run_dir)
    except OSError as exc:
        raise OutputWriteError(f"cannot make the run directory {run_dir}: {exc.strerror}") from None
    remove_stale_temporaries(run_dir)  # a killed run's half-written files (the model's)
    recipe_path = run_dir / "recipe.json"
    ckpt_dir = run_dir / "checkpoints"
    resume = None
    if recipe_path.exists() and not fresh:
        old = json.loads(recipe_path.read_text())
        for section in ("model", "data", "optim", "tokenizer"):
            if old.get(section) != recipe.to_dict().get(section):
                raise OutputConflictError(
                    f"{run_dir}: holds a run with a different {section} section; "
                    "use another --run-dir, or --fresh to start over"
                )
        resume = _resume_point(ckpt_dir)
    elif fresh:
        for name in ("checkpoints", "data", "cache", "tb", "tokenizer"):
            shutil.rmtree(run_dir / name, ignore_errors=True)
        for name in ("metrics.csv", "compute.json", "model.safetensors", "config.json",
                     "timing.json", MODEL_FILE):  # fmt: skip
            (run_dir / name).unlink(missing_ok=True)
    write_json_atomic(recipe_path, recipe.to_dict())

    L.seed_everything(recipe.trainer.seed, workers=True, verbose=False)
    prep_dir, codec, data, report, bytes_per_unit = measure(recipe, run_dir, quiet)
    m, t = recipe.model, recipe.trainer
    world = _devices_count(t.devices, t.accelerator) * t.num_nodes
    bytes_per_step = m.seq_len * recipe.data.batch_size * t.accumulate * world * bytes_per_unit
    total_steps = t.max_steps or 0
    if t.flops_budget:
        total_steps = max(1, int(t.flops_budget / (report.train_per_byte * bytes_per_step)))
    if not total_steps and t.max_time:  # time budget only: estimate the schedule length
        total_steps = 10**9
    compute = _compute_summary(recipe, report, prep_dir, bytes_per_step, total_steps)
    compute["bytes_per_token"] = bytes_per_unit
    write_json_atomic(run_dir / "compute.json", compute)
    if not quiet:
        _print_compute(compute)

    module = AUNetModule(recipe.to_dict(), total_steps, codec)
    ckpt = ModelCheckpoint(
        dirpath=ckpt_dir, filename="step-{step:07d}", every_n_train_steps=t.ckpt_every,
        save_top_k=t.keep_checkpoints, monitor="step", mode="max", save_last=True,
        auto_insert_metric_name=False, enable_version_counter=False,  # last.ckpt, always
    )  # fmt: skip
    stop = GracefulStop(ckpt_dir)
    callbacks: list[Callback] = [
        ckpt,
        ExportAtEnd(run_dir, export_config(recipe, prep_dir, codec)),
        stop,
    ]
    if not quiet:
        callbacks.append(StepProgressBar(total_steps))
    trainer = _trainer(
        plugins=[AtomicCheckpointIO()],
        default_root_dir=run_dir,
        max_steps=total_steps if t.max_steps or t.flops_budget else -1,
        max_time=timedelta(seconds=t.max_time) if t.max_time else None,
        val_check_interval=t.val_every * t.accumulate,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=t.log_every,
        gradient_clip_val=t.grad_clip or None,
        accumulate_grad_batches=t.accumulate,
        precision=t.precision,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        use_distributed_sampler=False,
        logger=[
            AppendingCSVLogger(save_dir=run_dir, name="", version=""),
            TensorBoardLogger(save_dir=run_dir, name="tb", version=""),
        ],
        callbacks=callbacks,
        enable_progress_bar=not quiet,
        enable_model_summary=False,
    )
    started = time.time()
    try:
        trainer.fit(module, datamodule=data, ckpt_path=resume, weights_only=True)
    except StopRequested:
        raise Interrupted(stop.signal or signal.SIGTERM, trainer.global_step) from None
    finally:
        if trainer.is_global_zero:
            _add_wall_time(run_dir, time.time() - started, trainer.global_step)
    return {
        "steps": trainer.global_step,
        **{k: float(v) for k, v in trainer.callback_metrics.items()},
    }


def _add_wall_time(run_dir: Path, seconds: float, step: int) -> None:
    """RUN/timing.json: training wall time summed over every (resumed) session."""
    path = run_dir / "timing.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    write_json_atomic(
        path,
        {
            "wall_seconds": float(old.get("wall_seconds", 0.0)) + seconds,
            "sessions": int(old.get("sessions", 0)) + 1,
            "last_step": step,
        },
    )


def measure(recipe: Recipe, run_dir: Path, quiet: bool = True):
    """Prepare the data (and tokenizer) of a recipe and measure its FLOPs per byte there:
    (prep_dir, codec, data module, FlopsReport with params, bytes per token)."""
    prep_dir = prepared_dir(recipe, run_dir)
    codec = ensure_tokenizer(recipe, run_dir, prep_dir, quiet)
    m, t = recipe.model, recipe.trainer
    data = AUNetData(
        prep_dir, run_dir / "cache", m.seq_len, m.n_stages - 1, recipe.data.batch_size,
        recipe.data.val_windows, recipe.data.val_tail, t.seed, codec,
    )  # fmt: skip
    data.setup()
    bytes_per_unit = 1.0
    if isinstance(codec, BpeCodec):
        meta = stream_meta(prep_dir, "train", run_dir / "cache", codec)
        # BOS and EOS count as one byte each, as they do for a byte model (whose FLOPs
        # per byte are FLOPs per stream position), so both are measured alike
        specials = meta["tokens"] - meta["units"]
        bytes_per_unit = (meta["bytes"] + specials) / max(meta["tokens"], 1)
    report = flops_per_byte(m, data.train.stage_lengths(m.n_stages), bytes_per_unit)
    with torch.device("meta"):  # parameter counts without allocating a second model
        report.params = AUNet(m).num_params()
    return prep_dir, codec, data, report, bytes_per_unit


def ensure_tokenizer(recipe: Recipe, run_dir: Path, prep_dir: Path, quiet: bool) -> Codec:
    """Bytes, or the recipe's BPE tokenizer: trained on the train split on first use (in
    RUN/tokenizer/) or read from tokenizer.path; copied to RUN/tokenizer.model so the
    exported model carries its tokenizer."""
    tk = recipe.tokenizer
    if tk is None:
        return BYTES
    where = Path(tk.path) if tk.path else run_dir / "tokenizer"
    if not (where / MODEL_FILE).is_file():
        if tk.path:
            raise AunetError(f"tokenizer.path: {where} has no {MODEL_FILE}")
        train_tokenizer(recipe, prep_dir, where, quiet)
    elif not tk.path:  # ours: it must be the one this recipe and data would train
        info = read_tokenizer_info(where)
        manifest = hashlib.sha256((prep_dir / "manifest.json").read_bytes()).hexdigest()
        trained = (info.get("character_coverage"), info.get("data_manifest_sha256"))
        if trained != (tk.character_coverage, manifest):
            raise AunetError(
                f"{where}: trained with other settings or data than this recipe's; "
                "use --fresh (or another --run-dir) to train a new one"
            )
    codec = BpeCodec(where / MODEL_FILE)
    if codec.vocab_size != tk.vocab_size:
        raise AunetError(
            f"{where / MODEL_FILE}: {codec.vocab_size} pieces, but tokenizer.vocab_size is "
            f"{tk.vocab_size}"
        )
    target = run_dir / MODEL_FILE
    if not target.is_file() or target.read_bytes() != codec.blob:
        with replacing(target) as f:
            f.write(codec.blob)
    return codec


def split_texts(prep_dir: Path, split: str) -> Iterator[bytes]:
    """The documents (bytes) of a prepared split, streamed shard by shard."""
    import pyarrow.dataset as pads

    files = sorted(str(p) for p in (prep_dir / split).glob("*.arrow"))
    if files:
        for batch in pads.dataset(files, format="arrow").to_batches(columns=["text"]):
            yield from batch.column("text").to_pylist()


def train_tokenizer(recipe: Recipe, prep_dir: Path, out: Path, quiet: bool) -> BpeCodec:
    """Train the recipe's BPE on the documents of the train split of `prep_dir`."""
    from .tokenizer import TokenizerSpec, train_bpe

    assert recipe.tokenizer is not None
    if not any((prep_dir / "train").glob("*.arrow")):
        raise AunetError(f"{prep_dir}: no train shards to train a tokenizer on")

    manifest = hashlib.sha256((prep_dir / "manifest.json").read_bytes()).hexdigest()
    if not quiet:
        from rich.console import Console

        Console(stderr=True).print(
            f"training a BPE tokenizer ({recipe.tokenizer.vocab_size} pieces) on {prep_dir}/train"
        )
    spec = TokenizerSpec(recipe.tokenizer.vocab_size, recipe.tokenizer.character_coverage)
    return train_bpe(
        split_texts(prep_dir, "train"),
        spec,
        out,
        {"data_manifest_sha256": manifest, "split": "train"},
    )


def _devices_count(devices: int | str, accelerator: str) -> int:
    """How many processes Lightning will start per node for `devices`."""
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, str) and devices.strip() not in ("auto", "-1"):
        return len([d for d in devices.split(",") if d.strip()])
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 1


def export_config(recipe: Recipe, prep_dir: Path, codec: Codec = BYTES) -> dict[str, Any]:
    manifest = json.loads((prep_dir / "manifest.json").read_text())
    extra = {"tokenizer": codec.describe()} if isinstance(codec, BpeCodec) else {}
    return {
        **extra,
        "format": "aunet-model/1",
        "aunet_version": __version__,
        "model": asdict(recipe.model),
        "splitters": manifest["options"]["splitters"],
        "data_manifest_sha256": hashlib.sha256(
            (prep_dir / "manifest.json").read_bytes()
        ).hexdigest(),
    }


def _compute_summary(recipe, report: FlopsReport, prep_dir, bytes_per_step, steps) -> dict:
    return {
        "params": report.params,
        "flops_per_byte": report.per_byte,
        "train_flops_per_byte": report.train_per_byte,
        "stage_lengths_per_window": report.stage_lengths,
        "bytes_per_stage_position": [recipe.model.seq_len / n for n in report.stage_lengths],
        "bytes_per_step": bytes_per_step,
        "planned_steps": steps,
        "planned_train_flops": report.train_per_byte * bytes_per_step * steps,
        "data": str(prep_dir),
    }


def _print_compute(c: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Compute accounting")
    table.add_column("stage")
    table.add_column("params", justify="right")
    table.add_column("positions/window", justify="right")
    table.add_column("bytes/position", justify="right")
    for i, (n, bpp) in enumerate(
        zip(c["stage_lengths_per_window"], c["bytes_per_stage_position"], strict=True)
    ):
        table.add_row(str(i + 1), f"{c['params'][f'stage{i + 1}']:,}", f"{n:.1f}", f"{bpp:.2f}")
    console = Console(stderr=True)
    console.print(table)
    console.print(
        f"params {c['params']['total']:,}; forward FLOPs/byte {c['flops_per_byte']:.4g}; "
        f"planned training FLOPs {c['planned_train_flops']:.4g} "
        f"({c['planned_steps']} steps x {c['bytes_per_step']:,.0f} bytes)"
    )
