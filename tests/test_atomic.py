"""Writers outside `aunet prep` (the exported model, a plot) under a write the system
refuses: one OutputWriteError naming the file, no temporary left, and the file a
previous run wrote still whole."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aunet_cli import atomic
from aunet_cli.atomic import replacing, temporary_name
from aunet_cli.errors import OutputWriteError
from aunet_cli.export import export_model, load_model
from aunet_cli.plot import plot_runs
from aunet_cli.train import AtomicCheckpointIO

from .test_data_stream import file_size_limit
from .test_generate_cli import make_run
from .test_plot import fake_run


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp-*"))


def test_an_export_the_disk_refuses_keeps_the_previous_model(tmp_path):
    """make_run exports a ~550 KB model; exporting another over it under a 200 KB file
    size limit (as a full disk would) fails in one error and keeps the first."""
    run = make_run(tmp_path / "run")
    before = (run / "model.safetensors").read_bytes()
    model, config = load_model(run)
    torch.nn.init.zeros_(next(model.parameters()))
    with file_size_limit(200_000), pytest.raises(OutputWriteError, match=r"model\.safetensors"):
        export_model(model, run, config)
    assert (run / "model.safetensors").read_bytes() == before
    assert leftovers(run) == []
    export_model(model, run, config)  # the same call, with room: the new model
    assert (run / "model.safetensors").read_bytes() != before


def test_a_checkpoint_save_cut_short_keeps_the_previous_checkpoint(tmp_path):
    """Lightning's checkpoint writes go through AtomicCheckpointIO: a save the disk
    refuses (or a kill mid-save) leaves the previous checkpoint whole, never a
    truncated one for the next run to resume from."""
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "w": torch.zeros(10)}, path)
    before = path.read_bytes()
    with file_size_limit(20_000), pytest.raises(OutputWriteError, match=r"last\.ckpt"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(100_000)}, path)
    assert path.read_bytes() == before
    assert leftovers(path.parent) == []
    assert torch.load(path, weights_only=True)["global_step"] == 1


def test_a_plot_the_disk_refuses_keeps_the_previous_plot(tmp_path):
    runs = [fake_run(tmp_path, "a", 1.0), fake_run(tmp_path, "b", 0.8)]
    out = plot_runs(runs, tmp_path / "curves.png")
    before = out.read_bytes()
    refused = pytest.raises(OutputWriteError, match=r"curves\.png: File too large")
    with file_size_limit(4096), refused:
        plot_runs(runs[:1], out)
    assert out.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_a_long_file_name_is_written_and_one_too_long_is_one_error(tmp_path):
    """The temporary's name adds the writer (host, pid, boot) to the file's: a name of
    250 bytes, near the 255-byte limit, must still be writable; one of 300 is a
    refused write naming it, not a traceback."""
    fine = tmp_path / ("x" * 250)
    with replacing(fine) as f:
        f.write(b"ok")
    assert fine.read_bytes() == b"ok"
    assert len(temporary_name(fine).name.encode()) <= 255
    with (
        pytest.raises(OutputWriteError, match="File name too long"),
        replacing(tmp_path / ("y" * 300)) as f,
    ):
        f.write(b"no")
    assert sorted(p.name for p in tmp_path.iterdir()) == [fine.name]


def test_new_folders_are_fsynced_into_their_parents(tmp_path, monkeypatch):
    """mkdir -p of out/a/b for a file: each new folder's name is made durable in its
    parent (fsync of tmp_path, out, out/a), then the file's in out/a/b."""
    synced: list[Path] = []
    real = atomic.fsync_directory
    monkeypatch.setattr(atomic, "fsync_directory", lambda d: (synced.append(Path(d)), real(d)))
    out = tmp_path / "out"
    with replacing(out / "a" / "b" / "f.json") as f:
        f.write(b"{}")
    assert synced == [tmp_path, out, out / "a", out / "a" / "b"]
