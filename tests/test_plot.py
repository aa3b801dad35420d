"""aunet_cli.plot.plot_runs on run directories written here (no training needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aunet_cli.errors import AunetError
from aunet_cli.plot import plot_runs, read_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fake_run(root: Path, name: str, scale: float, resumed: bool = False) -> Path:
    """A run dir as `aunet train` leaves it: CSVLogger rows with blanks + compute.json."""
    run = root / name
    run.mkdir(parents=True)
    rows = ["epoch,step,bytes_per_s,loss,train_bpb,val_bpb"]
    for step in range(9, 200, 10):
        bpb = 8.0 * scale / (1 + step / 50)
        rows.append(f"0,{step},1000.0,{bpb * 0.69:.4f},{bpb:.4f},")
        if step % 50 == 49:
            rows.append(f"0,{step},,,,{bpb * 1.05:.4f}")
    if resumed:  # a resume repeats steps 149..199: the later rows must win
        for step in range(149, 200, 10):
            rows.append(f"0,{step},1000.0,0.1,1.2345,")
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    compute = {"bytes_per_step": 4096, "train_flops_per_byte": 1e7 * scale, "params": {}}
    (run / "compute.json").write_text(json.dumps(compute))
    return run


def test_two_runs_make_a_png(tmp_path: Path) -> None:
    runs = [fake_run(tmp_path, "small", 1.0), fake_run(tmp_path, "big", 0.8, resumed=True)]
    out = plot_runs(runs, tmp_path / "plots" / "curves.png")
    assert out == tmp_path / "plots" / "curves.png"
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 0
    assert not list(out.parent.glob(".*.tmp*"))  # written atomically, nothing left over


def test_the_file_name_sets_the_format(tmp_path: Path) -> None:
    """-o curves.pdf writes a PDF and .svg an SVG (before: PNG data under any name); a
    format matplotlib cannot write is one error listing the ones it can."""
    runs = [fake_run(tmp_path, "a", 1.0)]
    assert plot_runs(runs, tmp_path / "curves.pdf").read_bytes().startswith(b"%PDF")
    assert b"<svg" in plot_runs(runs, tmp_path / "curves.svg").read_bytes()[:2000]
    with pytest.raises(AunetError, match=r"cannot write \.docx files; name one of .*\.png"):
        plot_runs(runs, tmp_path / "curves.docx")
    assert not (tmp_path / "curves.docx").exists()


def test_last_row_of_a_repeated_step_wins(tmp_path: Path) -> None:
    metrics = read_metrics(fake_run(tmp_path, "r", 1.0, resumed=True))
    train = dict(metrics["train_bpb"])
    assert train[199] == pytest.approx(1.2345) and train[9] != pytest.approx(1.2345)
    assert [s for s, _ in metrics["train_bpb"]] == sorted(train)  # one point per step
    assert [s for s, _ in metrics["val_bpb"]] == [49, 99, 149, 199]


@pytest.mark.parametrize("missing", ["metrics.csv", "compute.json"])
def test_missing_file_names_the_path(tmp_path: Path, missing: str) -> None:
    run = fake_run(tmp_path, "r", 1.0)
    (run / missing).unlink()
    with pytest.raises(AunetError, match=f"{run / missing}.*missing"):
        plot_runs([run], tmp_path / "out.png")


def test_compute_without_flops_is_an_error(tmp_path: Path) -> None:
    run = fake_run(tmp_path, "r", 1.0)
    (run / "compute.json").write_text(json.dumps({"bytes_per_step": 4096}))
    with pytest.raises(AunetError, match="missing train_flops_per_byte"):
        plot_runs([run], tmp_path / "out.png")


def test_metrics_without_bpb_is_an_error(tmp_path: Path) -> None:
    run = fake_run(tmp_path, "r", 1.0)
    (run / "metrics.csv").write_text("epoch,step,loss\n0,9,3.0\n")
    with pytest.raises(AunetError, match="no train_bpb or val_bpb"):
        plot_runs([run], tmp_path / "out.png")


def test_missing_run_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AunetError, match="missing"):
        plot_runs([tmp_path / "nope"], tmp_path / "out.png")
