"""Recipe validation: strict YAML -> dataclasses, with file:line:key in every message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aunet_cli.errors import EXIT_USAGE
from aunet_cli.recipe import Recipe, RecipeError, load_recipe

REPO = Path(__file__).resolve().parents[1]
AUNET = Path(sys.executable).with_name("aunet")

GOOD = """\
name: tiny
model:
  seq_len: 64
  stages:
    - {dim: 32, layers: 1, decoder_layers: 1, heads: 2}
    - dim: 64
      layers: 1
      heads: 2
      max_seqlen: 24
data:
  inputs: ["corpus.txt"]
  splitters: [regex-words]
  batch_size: 4
optim:
  lr: 3e-4
trainer:
  max_steps: 12
  val_every: 4
"""


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def line_of(text: str, needle: str) -> int:
    """1-based line number of the first line containing needle."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def error_of(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


# --- valid recipes ------------------------------------------------------------------------


def test_quickstart_recipe_loads():
    """The shipped quickstart recipe validates into a 2-stage AU-Net recipe."""
    recipe = load_recipe(REPO / "recipes" / "quickstart-cpu.yaml")
    assert isinstance(recipe, Recipe)
    assert recipe.name == "quickstart-cpu"
    assert recipe.model.n_stages == 2
    assert len(recipe.data.splitters) == recipe.model.n_stages - 1
    assert recipe.trainer.max_steps and recipe.trainer.max_steps > 0
    assert recipe.model.stages[1].max_seqlen  # a capacity, so static shapes


def test_good_recipe_values_and_defaults(tmp_path):
    """Values are typed (3e-4 is a float even though YAML 1.1 reads it as a string)."""
    recipe = load_recipe(write(tmp_path, GOOD))
    assert recipe.optim.lr == pytest.approx(3e-4)
    assert isinstance(recipe.optim.lr, float)
    assert recipe.model.stages[1].max_seqlen == 24
    assert recipe.trainer.ckpt_every == 100  # default
    assert recipe.data.inputs == ["corpus.txt"]


# --- unknown keys and wrong types ---------------------------------------------------------


def test_unknown_nested_key_names_file_line_and_path(tmp_path):
    """A typo'd nested key is rejected with file, line number and dotted path."""
    text = GOOD.replace("  val_every: 4", "  val_every: 4\n  max_stpes: 5")
    path = write(tmp_path, text)
    message = error_of(path)
    assert f"{path}:{line_of(text, 'max_stpes')}:" in message
    assert "trainer.max_stpes" in message
    assert "unknown key" in message
    assert "max_steps" in message  # lists what is allowed


def test_unknown_key_inside_a_stage(tmp_path):
    """An unknown key inside a list item names the stage index and its line."""
    text = GOOD.replace("      max_seqlen: 24", "      max_seqlen: 24\n      widow: 4")
    path = write(tmp_path, text)
    message = error_of(path)
    assert f"{path}:{line_of(text, 'widow')}:" in message
    assert "model.stages[1].widow" in message


def test_wrong_type_names_path_and_expected_type(tmp_path):
    """data.batch_size: "eight" -> the file:line, the key path and 'expected int'."""
    text = GOOD.replace("batch_size: 4", 'batch_size: "eight"')
    path = write(tmp_path, text)
    message = error_of(path)
    assert f"{path}:{line_of(text, 'batch_size')}:" in message
    assert "data.batch_size" in message
    assert "expected int" in message
    assert "'eight'" in message


@pytest.mark.parametrize(
    ("old", "new", "key", "expected"),
    [
        ("max_steps: 12", "max_steps: true", "trainer.max_steps", "int or null"),
        ('inputs: ["corpus.txt"]', "inputs: corpus.txt", "data.inputs", "a list of str"),
        ("lr: 3e-4", "lr: fast", "optim.lr", "float"),
        ("dim: 64", "dim: 64.5", "model.stages[1].dim", "int"),
    ],
)
def test_other_wrong_types(tmp_path, old, new, key, expected):
    """Booleans are not ints, a bare string is not a list, words are not floats."""
    path = write(tmp_path, GOOD.replace(old, new))
    message = error_of(path)
    assert key in message and f"expected {expected}" in message


def test_not_a_mapping_and_bad_yaml(tmp_path):
    """A YAML list, invalid YAML or a missing file: one-line RecipeError naming the file."""
    assert "mapping" in error_of(write(tmp_path, "- a\n- b\n", "list.yaml"))
    bad = write(tmp_path, "model: {stages: [\n", "broken.yaml")
    assert "not valid YAML" in error_of(bad)
    missing = tmp_path / "nope.yaml"
    assert str(missing) in error_of(missing)
    assert "model: required key is missing" in error_of(write(tmp_path, "name: x\n", "m.yaml"))


# --- impossible combinations --------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        (
            "splitters: [regex-words]",
            "splitters: [regex-words, regex-word-pairs]",
            "data.splitters: 2 stages need 1 splitter stages, got 2",
        ),
        ("splitters: [regex-words]", "splitters: []", "data.splitters"),
        (
            "{dim: 32, layers: 1, decoder_layers: 1, heads: 2}",
            "{dim: 30, layers: 1, decoder_layers: 1, heads: 4}",
            "model.stages[0].heads: dim 30 must split into 4 heads",
        ),
        ("  max_steps: 12\n", "", "trainer: set max_steps, flops_budget or max_time"),
        (
            '  inputs: ["corpus.txt"]\n',
            '  inputs: ["corpus.txt"]\n  prepared: shards/\n',
            "data: give exactly one of data.prepared",
        ),
        ('  inputs: ["corpus.txt"]\n', "", "data: give exactly one of data.prepared"),
        (
            "  max_steps: 12\n",
            "  max_steps: 12\n  flops_budget: 1e12\n",
            "give max_steps or flops_budget, not both",
        ),
        (
            "{dim: 32, layers: 1, decoder_layers: 1, heads: 2}",
            "{dim: 32, layers: 1, decoder_layers: 0, heads: 2}",
            "needs a decoder",
        ),
        (
            "{dim: 32, layers: 1, decoder_layers: 1, heads: 2}",
            "{dim: 32, layers: 1, decoder_layers: 1, heads: 2, max_seqlen: 9}",
            "model.stages[0].max_seqlen",
        ),
        ("seq_len: 64", "seq_len: 4", "model.seq_len: must be at least 8"),
        ("val_every: 4", "val_every: 4\n  precision: fp8", "trainer.precision"),
        ("val_every: 4", "val_every: 4\n  strategy: magic", "trainer.strategy"),
    ],
)
def test_impossible_combinations(tmp_path, old, new, fragment):
    """Each inconsistent recipe is rejected with the offending key path and the reason."""
    assert old in GOOD
    text = GOOD.replace(old, new)
    path = write(tmp_path, text)
    message = error_of(path)
    assert fragment in message
    assert message.startswith(f"{path}:")


def test_five_stages_are_rejected(tmp_path):
    """AU-Net has 1 to 4 stages."""
    stage = "    - {dim: 32, layers: 1, decoder_layers: 1, heads: 2}\n"
    text = (
        "model:\n  seq_len: 64\n  stages:\n"
        + stage * 5
        + "data: {prepared: shards}\ntrainer: {max_steps: 1}\n"
    )
    assert "1 to 4 stages, got 5" in error_of(write(tmp_path, text))


# Values of the right type that cannot work.
OUT_OF_RANGE = [
    ("model.stages.0.window=0", "window 0 disables attention silently"),
    ("model.stages.0.window=-2", "negative window"),
    ("model.stages.1.max_seqlen=0", "capacity 0 is silently 'no limit'"),
    ("model.stages.1.max_seqlen=-3", "negative capacity crashes in plan_stage"),
    ("trainer.max_steps=0", "max_steps 0 trains forever (treated as no limit)"),
    ("trainer.max_steps=-3", "negative max_steps"),
    ("data.val_fraction=5", "val_fraction outside [0, 1)"),
]


@pytest.mark.parametrize("override", [o for o, _why in OUT_OF_RANGE])
def test_out_of_range_values_are_rejected(tmp_path, override):
    """Window, capacity, max_steps and val_fraction outside their ranges are RecipeErrors."""
    key = override.split("=")[0].rpartition(".")[2]
    assert key in error_of(write(tmp_path, GOOD), [override])


# --- --set overrides ----------------------------------------------------------------------


def test_overrides_apply(tmp_path):
    """--set values are parsed as YAML and land at their dotted path (list indices too)."""
    recipe = load_recipe(
        write(tmp_path, GOOD),
        [
            "trainer.max_steps=5",
            "model.stages.0.dim=64",
            "data.val_tail=0.1",
            "sample.prompt=hello world",
            "trainer.compile=true",
            "model.stages.1.window=8",
        ],
    )
    assert recipe.trainer.max_steps == 5
    assert recipe.model.stages[0].dim == 64
    assert recipe.data.val_tail == pytest.approx(0.1)
    assert recipe.sample.prompt == "hello world"
    assert recipe.trainer.compile is True
    assert recipe.model.stages[1].window == 8


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("trainer.max_steps=five", "trainer.max_steps: expected int or null, got 'five'"),
        ("model.stages.0.dim=30", "model.stages[0].heads: dim 30 must split"),
        ("trainer.max_stpes=5", "trainer.max_stpes: unknown key"),
        ("trainer.max_steps", "expected KEY.PATH=VALUE"),
        ("model.stages.7.dim=64", "model.stages has 2 entries; no index 7"),
        ("data.splitters=[]", "data.splitters"),
    ],
)
def test_overrides_are_validated(tmp_path, override, fragment):
    """An override goes through the same validation as the file."""
    assert fragment in error_of(write(tmp_path, GOOD), [override])


# --- the command line ---------------------------------------------------------------------


def test_cli_bad_recipe_exits_2_with_one_line(tmp_path):
    """`aunet train bad.yaml`: exit code 2, a one-line `error:` message, no traceback."""
    text = GOOD.replace("  val_every: 4", "  val_every: 4\n  max_stpes: 5")
    path = write(tmp_path, text, "bad.yaml")
    env = {"COLUMNS": "10000", "PATH": str(AUNET.parent)}
    proc = subprocess.run(
        [str(AUNET), "train", str(path), "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == EXIT_USAGE == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:")
    assert f"{path}:{line_of(text, 'max_stpes')}: trainer.max_stpes" in lines[0]
    assert not (tmp_path / "run").exists()  # nothing written for an invalid recipe
