"""Training recipes: YAML files validated strictly into dataclasses.

Unknown keys, wrong types and impossible combinations are rejected with the file,
line and key path, and what was expected. `--set a.b=value` overrides apply before
validation (values parsed as YAML, so numbers and booleans work).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import AunetError
from .model import VOCAB, ModelConfig


class RecipeError(AunetError):
    pass


@dataclass
class DataConfig:
    """Where the bytes come from: prepared shards, or raw inputs prepared on first use."""

    prepared: str | None = None  # an `aunet prep` output directory
    inputs: list[str] = field(default_factory=list)  # raw inputs (then splitters are needed)
    splitters: list[str] = field(default_factory=list)
    doc_per: str = "paragraph"
    val_fraction: float = 0.01  # documents held out by `prep` (hash of id)
    val_tail: float = 0.0  # or: the last fraction of the training stream (nanoGPT-style)
    batch_size: int = 8
    val_windows: int = 64  # validation windows each time, evenly spaced (all if fewer)


@dataclass
class TokenizerConfig:
    """A BPE token baseline instead of bytes: sentencepiece, trained on the train split."""

    vocab_size: int
    character_coverage: float = 1.0  # 0.9995 suits Chinese (rare characters -> bytes)
    path: str | None = None  # an existing `aunet tokenizer train` directory instead


@dataclass
class OptimConfig:
    lr: float = 3e-3
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1


@dataclass
class TrainerConfig:
    max_steps: int | None = None
    max_time: float | None = None  # seconds
    flops_budget: float | None = None  # training FLOPs; sets max_steps
    val_every: int = 100
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    precision: str = "32"
    accumulate: int = 1
    grad_clip: float = 1.0
    compile: bool = False
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1
    seed: int = 1


@dataclass
class SampleConfig:
    """What to generate once training ends (shown to the user)."""

    prompt: str = ""
    max_bytes: int = 0
    temperature: float = 0.8


@dataclass
class Recipe:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    tokenizer: TokenizerConfig | None = None
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DOC_PER = ("file", "paragraph", "line")
MAX_SEED = 2**32 - 1  # Lightning's seed_everything refuses larger seeds (after data prep)
PRECISIONS = ("32", "32-true", "bf16-mixed", "bf16-true", "16-mixed")
STRATEGIES = ("auto", "ddp", "fsdp", "ddp_spawn", "ddp_find_unused_parameters_true")


def read_yaml(path: Path, what: str) -> tuple[Any, dict[str, int]]:
    """(parsed YAML, line number of every key path) of a file; clear errors."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RecipeError(
            f"{path}:{line}: not valid UTF-8 (byte {exc.start}: {data[exc.start : exc.end]!r}); "
            "save the recipe as UTF-8"
        ) from None
    lines: dict[str, int] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _refuse_duplicate_keys(node, "", str(path), set())
        _line_numbers(node, "", lines)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(_yaml_problem(exc, path, text)) from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: {what}")
    return raw, lines


def _refuse_duplicate_keys(node: Any, prefix: str, source: str, seen: set[int]) -> None:
    """A key given twice in one mapping of the file (YAML keeps the last one silently,
    so `lr: 0.003` then `lr: 5.0` would train at 5.0). Checked on the composed tree,
    before merge keys (<<) are flattened in: overriding a merged key stays allowed."""
    if id(node) in seen:  # an alias of a node checked already
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[Any, int] = {}
        for key_node, value in node.value:
            if isinstance(key_node, yaml.ScalarNode) and not key_node.tag.endswith(":merge"):
                key, line = key_node.value, key_node.start_mark.line + 1
                path = f"{prefix}.{key}" if prefix else str(key)
                if key in lines:
                    raise RecipeError(
                        f"{source}:{line}: {path}: given twice (lines {lines[key]} and {line}); "
                        "keep one"
                    )
                lines[key] = line
                _refuse_duplicate_keys(value, path, source, seen)
            else:
                _refuse_duplicate_keys(value, prefix, source, seen)
    elif isinstance(node, yaml.SequenceNode):
        for k, item in enumerate(node.value):
            _refuse_duplicate_keys(item, f"{prefix}[{k}]", source, seen)


def _yaml_problem(exc: yaml.YAMLError, path: Path, text: str) -> str:
    """One line naming the file and line (PyYAML's own message names "<unicode string>")."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        message = f"{path}:{exc.problem_mark.line + 1}: not valid YAML: {exc.problem}"
        if exc.context and exc.context_mark is not None:
            message += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        elif exc.context:
            message += f" ({exc.context})"
        return message
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return f"{path}:{line}: not valid YAML: unacceptable character #x{exc.character:04x}"
    return f"{path}: not valid YAML ({exc})".replace("\n", " ")


def build_config(cls: type, raw: dict[str, Any], source: str, lines: dict[str, int]) -> Any:
    """A dataclass from a mapping: unknown keys and wrong types rejected with file:line."""
    return _build(cls, raw, "", source, lines)


def load_recipe(path: Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file."""
    raw, lines = read_yaml(path, "a recipe is a mapping with model, data, optim, trainer")
    for item in overrides or []:
        key = re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", _apply_override(raw, item))
        for stale in [k for k in lines if k.startswith((f"{key}.", f"{key}["))]:
            del lines[stale]  # a value set whole: its old keys are gone
        lines[key] = f"--set {item}"
    return validate(raw, str(path), lines)


def validate(raw: dict[str, Any], source: str = "<recipe>", lines=None) -> Recipe:
    recipe = _build(Recipe, raw, "", source, lines or {})
    _check_combinations(recipe, source, lines or {})
    return recipe


def _where(source: str, lines: dict[str, int | str], path: str) -> str:
    """`file:line` of a key path (or of its nearest parent), or the --set that gave it."""
    key = path
    while key and key not in lines:
        parent = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", key)
        key = parent if parent != key else ""
    if key not in lines:
        return source
    where = lines[key]
    return where if isinstance(where, str) else f"{source}:{where}"


def _line_numbers(node, prefix: str, out: dict[str, int]) -> None:
    """The line of every key path, in `out`."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            path = f"{prefix}.{k.value}" if prefix else str(k.value)
            out[path] = k.start_mark.line + 1
            _line_numbers(v, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            path = f"{prefix}[{i}]"
            out[path] = v.start_mark.line + 1
            _line_numbers(v, path, out)


def _apply_override(raw: dict[str, Any], item: str) -> str:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise RecipeError(f"--set {item!r}: expected KEY.PATH=VALUE")
    try:
        parsed = yaml.safe_load(value) if value else ""
    except yaml.YAMLError:
        parsed = value
    node: Any = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, ".".join(parts[:i]), key)]
            continue
        if not isinstance(node, dict):
            raise RecipeError(f"--set {key}: {part!r} is not inside a mapping")
        node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, ".".join(parts[:-1]), key)] = parsed
    elif isinstance(node, dict):
        node[last] = parsed
    else:
        raise RecipeError(f"--set {key}: cannot set {last!r} here")
    return key


def _list_index(items: list[Any], part: str, where: str, key: str) -> int:
    """`part` as an index into the list at `where`, or why it is not one."""
    if not part.isdigit():
        raise RecipeError(f"--set {key}: {where} is a list; {part!r} is not an index")
    if int(part) >= len(items):
        raise RecipeError(f"--set {key}: {where} has {len(items)} entries; no index {part}")
    return int(part)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(tp: Any, value: Any, path: str, source: str, lines: dict[str, int]) -> Any:
    origin = typing.get_origin(tp)
    where = _where(source, lines, path)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _convert(arg, value, path, source, lines)
            except RecipeError:
                continue
        raise RecipeError(f"{where}: {path}: expected {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif origin is list:
        if isinstance(value, list):
            (arg,) = typing.get_args(tp)
            return [_convert(arg, v, f"{path}[{i}]", source, lines) for i, v in enumerate(value)]
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return _build(tp, value, path, source, lines)
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise RecipeError(f"{where}: {path}: expected {_type_name(tp)}, got {value!r}")


def _build(cls: type, raw: dict[str, Any], prefix: str, source: str, lines: dict[str, int]):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        path = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise RecipeError(
            f"{_where(source, lines, path)}: {path}: unknown key (expected one of: "
            f"{', '.join(fields)})"
        )
    kwargs = {}
    for name, f in fields.items():
        path = f"{prefix}.{name}" if prefix else name
        if name in raw:
            kwargs[name] = _convert(hints[name], raw[name], path, source, lines)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{_where(source, lines, prefix)}: {path}: required key is missing")
    return cls(**kwargs)


def _check_combinations(r: Recipe, source: str, lines: dict[str, int]) -> None:
    def fail(path: str, message: str) -> typing.NoReturn:
        raise RecipeError(f"{_where(source, lines, path)}: {path}: {message}")

    def at_least(path: str, value: float, low: float, note: str = "") -> None:
        if not (math.isfinite(value) and value >= low):  # nan compares False: rejected too
            fail(path, f"must be >= {low}{note}, got {value}")

    def positive(path: str, value: float) -> None:
        if not (math.isfinite(value) and value > 0):
            fail(path, f"must be a positive number, got {value}")

    m, d, t, o = r.model, r.data, r.trainer, r.optim
    if r.name and (Path(r.name).name != r.name or r.name in (".", "..")):
        fail("name", f"a run name, not a path, got {r.name!r} (--run-dir takes a path)")
    if not 1 <= len(m.stages) <= 4:
        fail("model.stages", f"AU-Net has 1 to 4 stages, got {len(m.stages)}")
    for i, st in enumerate(m.stages):
        p = f"model.stages[{i}]"
        for name, low in (("dim", 1), ("heads", 1), ("layers", 0), ("decoder_layers", 0)):
            at_least(f"{p}.{name}", getattr(st, name), low)
        if st.window is not None and st.window < 1:
            fail(f"{p}.window", f"a sliding window covers >= 1 position, got {st.window}")
        if st.max_seqlen is not None and st.max_seqlen < 1:
            fail(
                f"{p}.max_seqlen", f"capacity must be >= 1 (or null: no limit), got {st.max_seqlen}"
            )
        if st.mlp_hidden is not None and st.mlp_hidden < 1:
            fail(f"{p}.mlp_hidden", "must be >= 1 (or null for ~8/3 dim)")
        if st.dim % st.heads or (st.dim // st.heads) % 2:
            fail(f"{p}.heads", f"dim {st.dim} must split into {st.heads} heads of even size")
        if i == 0 and st.max_seqlen is not None:
            fail(f"{p}.max_seqlen", "stage 1 always has seq_len positions; capacity is for >= 2")
        if i < len(m.stages) - 1 and st.decoder_layers < 1 and len(m.stages) > 1:
            fail(f"{p}.decoder_layers", "every stage but the deepest needs a decoder (>= 1)")
    if m.upsample_init not in ("zero", "normal"):
        fail("model.upsample_init", f"must be zero or normal, got {m.upsample_init!r}")
    if m.seq_len < 8:
        fail("model.seq_len", "must be at least 8 bytes")
    positive("model.rope_theta", m.rope_theta)
    positive("model.norm_eps", m.norm_eps)
    if bool(d.prepared) == bool(d.inputs):
        fail("data", "give exactly one of data.prepared (shards) or data.inputs (raw files)")
    if d.inputs and len(d.splitters) != len(m.stages) - 1:
        fail(
            "data.splitters",
            f"{len(m.stages)} stages need {len(m.stages) - 1} splitter stages, "
            f"got {len(d.splitters)}",
        )
    if not 0 <= d.val_tail < 1:
        fail("data.val_tail", "must be in [0, 1)")
    if not 0 <= d.val_fraction < 1:
        fail("data.val_fraction", "must be in [0, 1)")
    at_least("data.batch_size", d.batch_size, 1)
    at_least("data.val_windows", d.val_windows, 1)
    if d.doc_per not in DOC_PER:
        fail("data.doc_per", f"must be one of {', '.join(DOC_PER)}, got {d.doc_per!r}")
    for name in ("max_steps", "max_time", "flops_budget"):
        value = getattr(t, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            fail(f"trainer.{name}", f"must be positive (or null), got {value}")
    if t.num_nodes < 1 or (
        isinstance(t.devices, int)
        and t.devices == 0
        or isinstance(t.devices, int)
        and t.devices < -1
    ):
        fail("trainer", "devices must be >= 1, -1 or 'auto'; num_nodes >= 1")
    positive("optim.lr", o.lr)
    at_least("optim.weight_decay", o.weight_decay, 0)
    if t.max_steps is None and t.flops_budget is None and t.max_time is None:
        fail("trainer", "set max_steps, flops_budget or max_time")
    if t.max_steps is not None and t.flops_budget is not None:
        fail("trainer.flops_budget", "give max_steps or flops_budget, not both")
    if t.precision not in PRECISIONS:
        fail("trainer.precision", f"must be one of {', '.join(PRECISIONS)}")
    if t.strategy not in STRATEGIES:
        fail("trainer.strategy", f"must be one of {', '.join(STRATEGIES)}")
    for name in ("accumulate", "val_every", "ckpt_every", "keep_checkpoints", "log_every"):
        at_least(f"trainer.{name}", getattr(t, name), 1)
    at_least("trainer.grad_clip", t.grad_clip, 0, " (0: no clipping)")
    if not 0 <= t.seed <= MAX_SEED:
        fail("trainer.seed", f"must be in [0, {MAX_SEED}], got {t.seed}")
    at_least("optim.warmup_steps", o.warmup_steps, 0)
    if not 0 <= o.min_lr_ratio <= 1:
        fail("optim.min_lr_ratio", f"must be in [0, 1], got {o.min_lr_ratio}")
    if len(o.betas) != 2:
        fail("optim.betas", "two values, e.g. [0.9, 0.95]")
    for i, beta in enumerate(o.betas):
        if not 0 <= beta < 1:
            fail(f"optim.betas[{i}]", f"must be in [0, 1), got {beta}")
    _check_sample(r, fail)
    if r.tokenizer is not None:
        tk = r.tokenizer
        if m.n_stages != 1 or d.splitters:
            fail("tokenizer", "a BPE model is one stage over tokens: no splitters, one stage")
        if not 300 <= tk.vocab_size <= 65536:
            fail("tokenizer.vocab_size", f"must be in [300, 65536], got {tk.vocab_size}")
        if not 0.9 <= tk.character_coverage <= 1.0:
            fail("tokenizer.character_coverage", "must be in [0.9, 1.0]")
        if m.vocab_size not in (VOCAB, tk.vocab_size):
            fail("model.vocab_size", f"is set by tokenizer.vocab_size ({tk.vocab_size})")
        m.vocab_size = tk.vocab_size
    elif m.vocab_size != VOCAB:
        fail("model.vocab_size", f"a byte model has {VOCAB} ids (256 bytes, BOS, EOS)")


def _check_sample(r: Recipe, fail: Callable[[str, str], typing.NoReturn]) -> None:
    """The end-of-run sample, checked now rather than after all the training."""
    sp = r.sample
    if not (math.isfinite(sp.temperature) and sp.temperature >= 0):
        fail("sample.temperature", f"must be >= 0 (0: greedy), got {sp.temperature}")
    if sp.max_bytes < 0:
        fail("sample.max_bytes", f"must be >= 0 (0: no sample), got {sp.max_bytes}")
    if not (sp.max_bytes and sp.prompt):
        return  # main.py samples only with both
    from splitters import Pipeline, SplitterError, parse_spec  # here: only when sampling

    d = r.data
    if d.inputs:
        for i, spec in enumerate(d.splitters):
            try:
                stage = parse_spec(spec)
            except SplitterError as exc:
                fail(f"data.splitters[{i}]", str(exc))
            if not stage.causal:
                fail(f"data.splitters[{i}]", _needs_causal(stage, "this splitter"))
    elif d.prepared:
        try:  # the splitters recorded with the shards; unreadable ones: training says why
            manifest = json.loads((Path(d.prepared) / "manifest.json").read_text())
            stages = Pipeline.from_descriptions(manifest["options"]["splitters"]).stages
        except (OSError, ValueError, KeyError, TypeError):  # SplitterError is a ValueError
            return
        for stage in stages[: len(r.model.stages) - 1]:  # the stages this model pools at
            if not stage.causal:
                fail("data.prepared", _needs_causal(stage, "a splitter of these shards"))


def _needs_causal(stage: Any, which: str) -> str:
    """Why a splitter that looks ahead cannot be used for the sample, and the ways out."""
    from splitters import SplitterError

    try:
        stage.streamer()
        reason = f"{stage.name} looks ahead"
    except SplitterError as exc:  # the splitter's own reason and advice
        reason = str(exc)
    return (
        f"the end-of-run sample (sample.prompt, sample.max_bytes) needs causal splitters and "
        f"{which} is not: {reason}; or set sample.max_bytes: 0 to train without the sample"
    )
