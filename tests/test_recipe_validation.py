"""Recipe values that used to pass validation and fail (or silently misbehave) later:
each is now one RecipeError at load time naming the key path and where it came from."""

from __future__ import annotations

import json

import pytest

from aunet_cli.recipe import load_recipe, read_yaml
from splitters import Pipeline

from .test_recipe import GOOD, error_of, line_of, write

SAMPLE = 'sample:\n  prompt: "The"\n  max_bytes: 20\n'


# --- values in the file: file:line and key path ---------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("batch_size: 4", "batch_size: 4\n  doc_per: bogus", "data.doc_per"),
        ("val_every: 4", "val_every: 4\n  log_every: 0", "trainer.log_every"),
        ("val_every: 4", "val_every: 4\n  grad_clip: -1", "trainer.grad_clip"),
        ("val_every: 4", "val_every: 4\n  grad_clip: .nan", "trainer.grad_clip"),
        ("val_every: 4", "val_every: 4\n  seed: 99999999999", "trainer.seed"),
        ("seq_len: 64", "seq_len: 64\n  rope_theta: 0", "model.rope_theta"),
        ("seq_len: 64", "seq_len: 64\n  rope_theta: -10000", "model.rope_theta"),
        ("seq_len: 64", "seq_len: 64\n  rope_theta: .inf", "model.rope_theta"),
        ("seq_len: 64", "seq_len: 64\n  norm_eps: -1", "model.norm_eps"),
        ("seq_len: 64", "seq_len: 64\n  norm_eps: 0", "model.norm_eps"),
        ("lr: 3e-4", "lr: .nan", "optim.lr"),
        ("lr: 3e-4", "lr: .inf", "optim.lr"),
        ("lr: 3e-4", "lr: 0", "optim.lr"),
        ("lr: 3e-4", "lr: 3e-4\n  weight_decay: -0.1", "optim.weight_decay"),
        ("lr: 3e-4", "lr: 3e-4\n  weight_decay: .nan", "optim.weight_decay"),
        ("lr: 3e-4", "lr: 3e-4\n  betas: [0.9, 1.0]", "optim.betas[1]"),
        ("lr: 3e-4", "lr: 3e-4\n  betas: [-0.1, 0.9]", "optim.betas[0]"),
        ("lr: 3e-4", "lr: 3e-4\n  betas: [.nan, 0.9]", "optim.betas[0]"),
        ("lr: 3e-4", "lr: 3e-4\n  min_lr_ratio: .nan", "optim.min_lr_ratio"),
        ("val_every: 4", "val_every: 4\nsample: {temperature: -1}", "sample.temperature"),
        ("val_every: 4", "val_every: 4\nsample: {temperature: .nan}", "sample.temperature"),
        ("val_every: 4", "val_every: 4\nsample: {temperature: .inf}", "sample.temperature"),
        ("val_every: 4", "val_every: 4\nsample: {max_bytes: -5}", "sample.max_bytes"),
        ("name: tiny", "name: ../../elsewhere", "name"),
    ],
)
def test_nonsense_values_name_file_line_and_key(tmp_path, old, new, key):
    """Values of the right type that cannot work (NaN training, nothing logged, a sample
    that fails after training) are rejected at load time with the line they are on."""
    assert old in GOOD
    text = GOOD.replace(old, new)
    path = write(tmp_path, text)
    message = error_of(path)
    line = line_of(text, key.rpartition(".")[2].partition("[")[0] + ":")
    assert message.startswith(f"{path}:{line}: {key}:"), message


@pytest.mark.parametrize(
    "override",
    [
        "optim.betas=[0.0, 0.99]",
        "optim.weight_decay=0",
        "trainer.grad_clip=0",
        "model.rope_theta=500000",
        "model.norm_eps=1e-6",
        "sample.temperature=0",
        "data.doc_per=line",
        "trainer.seed=0",
    ],
)
def test_legitimate_edge_values_still_load(tmp_path, override):
    """0 means off (grad_clip, temperature = greedy), beta1 0 and no weight decay are fine."""
    load_recipe(write(tmp_path, GOOD), [override])


# --- YAML itself ----------------------------------------------------------------------------


def test_duplicate_key_names_the_key_and_both_lines(tmp_path):
    """YAML keeps the last of two equal keys silently: `lr` twice trained at the second."""
    text = GOOD.replace("lr: 3e-4", "lr: 0.003\n  lr: 5.0")
    path = write(tmp_path, text)
    first = line_of(text, "lr: 0.003")
    message = error_of(path)
    assert message.startswith(f"{path}:{first + 1}: optim.lr: given twice")
    assert f"lines {first} and {first + 1}" in message


def test_duplicate_key_inside_a_list_item_and_top_level(tmp_path):
    text = GOOD.replace("{dim: 32, layers: 1,", "{dim: 32, dim: 16, layers: 1,")
    assert "model.stages[0].dim: given twice" in error_of(write(tmp_path, text))
    text = GOOD + "optim:\n  lr: 1.0\n"
    assert "optim: given twice" in error_of(write(tmp_path, text, "top.yaml"))


def test_merge_keys_may_be_overridden(tmp_path):
    """`<<: *anchor` then a key of its own is YAML's way to override, not a duplicate."""
    text = GOOD.replace(
        "    - {dim: 32, layers: 1, decoder_layers: 1, heads: 2}\n"
        "    - dim: 64\n      layers: 1\n      heads: 2\n",
        "    - &s {dim: 32, layers: 1, decoder_layers: 1, heads: 2}\n"
        "    - <<: *s\n      dim: 64\n      decoder_layers: 0\n",
    )
    recipe = load_recipe(write(tmp_path, text))
    assert recipe.model.stages[1].dim == 64 and recipe.model.stages[1].decoder_layers == 0


def test_a_chain_of_merges_is_not_a_duplicate(tmp_path):
    """A merge of a mapping that itself merges and overrides (flattened in place by
    PyYAML before the outer one is checked) is valid YAML, not a key given twice."""
    path = tmp_path / "chain.yaml"
    path.write_text("base: &A {x: 1, y: 2}\nmid: {deep: &B {<<: *A, x: 3}}\ntop: {<<: *B}\n")
    raw, _ = read_yaml(path, "a mapping")
    assert raw["mid"]["deep"] == {"x": 3, "y": 2}


def test_invalid_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(GOOD.replace("name: tiny", "name: caf\xe9").encode("latin-1"))
    message = error_of(path)
    assert message.startswith(f"{path}:1: not valid UTF-8")


@pytest.mark.parametrize(
    ("text", "line"),
    [("model: {stages: [\n", 2), ("name: x\nmodel: a: b\n", 2), ("name: x\nmodel: \x00\n", 2)],
)
def test_yaml_syntax_error_names_the_file_and_line(tmp_path, text, line):
    path = write(tmp_path, text, "broken.yaml")
    message = error_of(path)
    assert message.startswith(f"{path}:{line}: not valid YAML")
    assert "<unicode string>" not in message


# --- the sample after training --------------------------------------------------------------


@pytest.mark.parametrize("spec", ["regex-words:mode=official", "jieba"])
def test_sampling_with_a_splitter_that_looks_ahead_is_refused(tmp_path, spec):
    """The end-of-run sample splits text as it is generated: it needs causal splitters."""
    text = GOOD.replace("splitters: [regex-words]", f'splitters: ["{spec}"]') + SAMPLE
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}:{line_of(text, 'splitters')}: data.splitters[0]:")
    assert "causal" in message and "sample.max_bytes: 0" in message
    load_recipe(path, ["sample.max_bytes=0"])  # no sample: a splitter that looks ahead is fine


def test_sampling_checks_the_splitters_of_prepared_shards(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    described = Pipeline.from_specs(["regex-words:mode=official"]).describe()
    (shards / "manifest.json").write_text(json.dumps({"options": {"splitters": described}}))
    text = GOOD.replace('inputs: ["corpus.txt"]', f"prepared: {shards}") + SAMPLE
    message = error_of(write(tmp_path, text))
    assert "data.prepared: the end-of-run sample" in message
    assert "a splitter of these shards is not: regex-words:mode=official" in message


def test_sampling_with_an_unknown_splitter_names_it(tmp_path):
    text = GOOD.replace("splitters: [regex-words]", "splitters: [regex-wrods]") + SAMPLE
    assert "data.splitters[0]: unknown splitter 'regex-wrods'" in error_of(write(tmp_path, text))


# --- --set overrides ------------------------------------------------------------------------


def test_set_values_are_blamed_on_the_set_not_the_file(tmp_path):
    path = write(tmp_path, GOOD)
    message = error_of(path, ["model.stages.0.dim=0"])
    assert message.startswith("--set model.stages.0.dim=0: model.stages[0].dim: must be >= 1")
    assert str(path) not in message
    message = error_of(path, ["model.stages.1={dim: 64, layers: 1, heads: 0}"])
    assert message.startswith("--set model.stages.1=") and "model.stages[1].heads" in message


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        (
            "model.stages.5.dim=1",
            "--set model.stages.5.dim: model.stages has 2 entries; no index 5",
        ),
        ("model.stages.2=1", "model.stages has 2 entries; no index 2"),
        ("model.stages.x.dim=1", "model.stages is a list; 'x' is not an index"),
    ],
)
def test_set_list_index_errors(tmp_path, override, fragment):
    assert fragment in error_of(write(tmp_path, GOOD), [override])
