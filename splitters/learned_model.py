"""The tiny boundary model behind `learned-zh`, and its artifact (safetensors + JSON).

The model is a hashed linear classifier over character n-grams (a fastText-like
embedding bag of width 1): for a decision at character i it looks at the code
points c[i-3..i] only (causal), hashes ten n-gram templates into a table of
2**bits weights each, and sums them. A width-1 bag is a logistic regression over
conjunction features: one gather per template and character, so inference is a
handful of numpy passes and streaming keeps a ring of the last three characters.

Two heads share the templates and differ in what they are trained to predict:

* ``end``: "a word ends after character i" (decided before character i+1 is seen);
* ``next-start``: "a word starts at character i" (the boundary before i, decided
  once character i is seen).

Artifact: ``<name>.json`` (architecture, teacher, training data hashes, metrics,
version, the sha256 of the weights file) next to ``<name>.safetensors``. Never
pickle: safetensors holds plain float16 tensors, and the hash is checked at load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from .base import SplitterError
from .unicode_classes import DIGIT, LETTER, NEWLINE, OTHER, SPACE, class_table

FORMAT = "aunet-learned-splitter"
FORMAT_VERSION = 1
PLACEMENTS = ("end", "next-start")
CONTEXT = 3  # characters of left context besides the current one

# n-gram templates: offsets back from the current character (0 = current).
TEMPLATES: tuple[tuple[int, ...], ...] = (
    (0,),
    (1,),
    (2,),
    (3,),
    (1, 0),
    (2, 1),
    (3, 2),
    (2, 1, 0),
    (3, 2, 1),
    (3, 2, 1, 0),
)
CLASS_TEMPLATE = len(TEMPLATES)  # one more feature: the classes of c[i-3..i]
N_FEATURES = len(TEMPLATES) + 1

PAD = 0x110000  # code point before the start of a document (no real char has it)
HAN_RANGES = (
    (0x3400, 0x4DBF),  # CJK Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0x20000, 0x323AF),  # Extensions B-H
)
# Character classes the model sees (the regex classes, with Han split from letters).
C_PAD, C_HAN, C_LETTER, C_DIGIT, C_SPACE, C_OTHER = range(6)


@cache
def class_lut() -> np.ndarray:
    """uint8 model class (C_*) for every code point, and C_PAD at index PAD."""
    lut = np.empty(5, dtype=np.uint8)
    lut[[OTHER, LETTER, DIGIT, SPACE, NEWLINE]] = [C_OTHER, C_LETTER, C_DIGIT, C_SPACE, C_SPACE]
    table = np.append(lut[class_table()], np.uint8(C_PAD))
    for lo, hi in HAN_RANGES:
        table[lo : hi + 1] = C_HAN
    table.setflags(write=False)
    return table


def model_classes(cp: np.ndarray) -> np.ndarray:
    """Model class (C_*) of each code point; PAD maps to C_PAD."""
    return class_lut()[cp]


def model_class(cp: int) -> int:
    return int(class_lut()[cp])


# Hashing (32-bit, cheap in numpy): an n-gram (c[i-a], ..., c[i-b]) hashes as
# mix(...mix(mix(c[i-a], SEED), ...), c[i-b]) with mix(h, x) = (h ^ x) * M mod 2**32;
# template k takes the top `bits` bits of mix(ngram_hash, KEY[k]). Shorter n-grams are
# prefixes of longer ones, so the ten templates cost ten mixes plus one per template.
_M = 0x9E3779B1  # golden-ratio multiplier (Fibonacci hashing)
_MASK = 0xFFFFFFFF
_SEED = 0x2545F491
_KEYS = [((k + 1) * 0x51ED270B) & _MASK for k in range(N_FEATURES)]


def hash_features(ctx: np.ndarray, bits: int) -> np.ndarray:
    """Bucket ids, uint32 (N_FEATURES, n), from ctx: uint32 (CONTEXT+1, n) code points,
    ctx[o] = c[i-o] (PAD before the document start)."""
    m, seed = np.uint32(_M), np.uint32(_SEED)

    def mix(h: np.ndarray, x: np.ndarray | np.uint32) -> np.ndarray:
        h = h ^ x
        h *= m
        return h

    with np.errstate(over="ignore"):
        u = [mix(ctx[o], seed) for o in range(CONTEXT + 1)]  # unigrams c[i-o]
        b10, b21, b32 = mix(u[1], ctx[0]), mix(u[2], ctx[1]), mix(u[3], ctx[2])
        t210, t321 = mix(b21, ctx[0]), mix(b32, ctx[1])
        q = mix(t321, ctx[0])
        cls = model_classes(ctx).astype(np.uint32)
        code = (cls[3] << 9) | (cls[2] << 6) | (cls[1] << 3) | cls[0]
        grams = [u[0], u[1], u[2], u[3], b10, b21, b32, t210, t321, q, mix(code, seed)]
        out = np.empty((N_FEATURES, ctx.shape[1]), dtype=np.uint32)
        for k, g in enumerate(grams):
            np.bitwise_xor(g, np.uint32(_KEYS[k]), out=out[k])
            out[k] *= m
        out >>= np.uint32(32 - bits)
    return out


def hash_one(ctx: tuple[int, int, int, int], bits: int) -> list[int]:
    """The same buckets for one character (streaming): ctx = (c[i], c[i-1], c[i-2], c[i-3])."""

    def mix(h: int, x: int) -> int:
        return ((h ^ x) * _M) & _MASK

    u = [mix(c, _SEED) for c in ctx]
    b21, b32 = mix(u[2], ctx[1]), mix(u[3], ctx[2])
    t321 = mix(b32, ctx[1])
    c = [model_class(x) for x in ctx]
    code = (c[3] << 9) | (c[2] << 6) | (c[1] << 3) | c[0]
    grams = [*u, mix(u[1], ctx[0]), b21, b32, mix(b21, ctx[0]), t321, mix(t321, ctx[0])]
    grams.append(mix(code, _SEED))
    shift = 32 - bits
    return [mix(g, key) >> shift for g, key in zip(grams, _KEYS, strict=True)]


def context(cp: np.ndarray, pos: np.ndarray, sites: np.ndarray) -> np.ndarray:
    """(CONTEXT+1, len(sites)) uint32: c[i-o] for each site i, PAD before the document
    start (`pos`: index of each site within its document)."""
    ctx = np.empty((CONTEXT + 1, len(sites)), dtype=np.uint32)
    for o in range(CONTEXT + 1):
        ctx[o] = cp[np.maximum(sites - o, 0)] if o else cp[sites]  # patched below
        ctx[o, np.flatnonzero(pos < o)] = PAD
    return ctx


def end_sites(cls: np.ndarray, prev_cls: np.ndarray) -> np.ndarray:
    """Where the end head decides (boundary after i): Han chars, and punctuation
    right after a Han char."""
    return (cls == C_HAN) | ((cls == C_OTHER) & (prev_cls == C_HAN))


def next_start_sites(cls: np.ndarray, prev_cls: np.ndarray) -> np.ndarray:
    """Where the next-start head decides (boundary before i): a boundary that touches
    a Han char, with no whitespace on either side (the regex rules cut there)."""
    touches = (cls == C_HAN) | (prev_cls == C_HAN)
    return touches & (cls != C_SPACE) & (prev_cls != C_SPACE) & (prev_cls != C_PAD)


SITES = {"end": end_sites, "next-start": next_start_sites}
# the same rules for one character (streaming): (class of c[i], class of c[i-1])
SITE_ONE = {
    "end": lambda c, p: c == C_HAN or (c == C_OTHER and p == C_HAN),
    "next-start": lambda c, p: (
        (c == C_HAN or p == C_HAN) and c != C_SPACE and p not in (C_SPACE, C_PAD)
    ),
}


@dataclass
class BoundaryModel:
    """Weights of both heads (float32 for inference) and the artifact's metadata."""

    bits: int
    weights: dict[str, np.ndarray]  # placement -> (2**bits * N_FEATURES,) float32
    bias: dict[str, float]
    meta: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""

    def logits(self, placement: str, buckets: np.ndarray) -> np.ndarray:
        """float32 logits; features are added one template at a time, in order, so the
        streaming path (`logit_one`) rounds exactly the same way."""
        w = self.weights[placement].reshape(N_FEATURES, -1)
        acc = np.full(buckets.shape[1], self.bias[placement], dtype=np.float32)
        for k in range(N_FEATURES):
            acc += w[k][buckets[k]]
        return acc

    def logit_one(self, placement: str, buckets: list[int]) -> np.float32:
        w = self.weights[placement]
        acc = np.float32(self.bias[placement])
        for k, b in enumerate(buckets):
            acc = np.float32(acc + w[(k << self.bits) + b])
        return acc


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_artifact(
    path: Path, weights: dict[str, np.ndarray], bias: dict[str, float], meta: dict[str, Any]
) -> Path:
    """Write PATH.safetensors + PATH.json (PATH without suffix); returns the JSON path."""
    from safetensors.numpy import save_file

    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    base.parent.mkdir(parents=True, exist_ok=True)
    st_path = base.with_name(base.name + ".safetensors")
    tensors = {f"{p}.weight": np.ascontiguousarray(w, dtype=np.float16) for p, w in weights.items()}
    save_file(tensors, str(st_path), metadata={"format": FORMAT})
    st_path.chmod(0o644)  # safetensors writes 0600; the artifact ships with the package
    doc = dict(meta)
    doc.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        weights_file=st_path.name,
        weights_sha256=_sha256(st_path),
        bias={p: float(b) for p, b in bias.items()},
    )
    json_path = base.with_name(base.name + ".json")
    json_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return json_path


def resolve(path: Path) -> Path:
    """The JSON file of an artifact given its JSON, its weights, or a folder with one."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.json"))
        if len(found) != 1:
            raise SplitterError(
                f"{path}: expected one artifact .json in the folder, found {len(found)}"
            )
        return found[0]
    if path.suffix == ".safetensors":
        return path.with_suffix(".json")
    if path.suffix != ".json" and path.with_name(path.name + ".json").exists():
        return path.with_name(path.name + ".json")
    return path


def load_artifact(path: Path) -> BoundaryModel:
    """Load and verify an artifact; any problem is a SplitterError naming the file."""
    json_path = resolve(path)
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SplitterError(f"{json_path}: learned splitter artifact not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SplitterError(f"{json_path}: not a readable artifact JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SplitterError(f"{json_path}: not a learned splitter artifact (format != {FORMAT!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise SplitterError(
            f"{json_path}: artifact format version {doc.get('format_version')!r}, "
            f"this aunet reads version {FORMAT_VERSION}"
        )
    st_path = json_path.with_name(str(doc.get("weights_file", "")))
    if not st_path.is_file():
        raise SplitterError(f"{json_path}: weights file {st_path.name!r} is missing")
    sha = _sha256(st_path)
    if sha != doc.get("weights_sha256"):
        raise SplitterError(
            f"{st_path}: sha256 {sha[:16]}... does not match {json_path.name} "
            f"({str(doc.get('weights_sha256'))[:16]}...): the weights were modified or "
            "belong to another artifact; retrain or restore the file"
        )
    arch = doc.get("architecture", {})
    bits = arch.get("bits")
    if arch.get("type") != "hashed-ngram-linear" or not isinstance(bits, int):
        raise SplitterError(f"{json_path}: unknown architecture {arch!r}")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(st_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SplitterError(f"{st_path}: unreadable safetensors file ({exc})") from None
    weights, bias = {}, {}
    for p in PLACEMENTS:
        w = tensors.get(f"{p}.weight")
        if w is None:
            continue
        if w.shape != (N_FEATURES << bits,):
            raise SplitterError(
                f"{st_path}: {p}.weight has shape {w.shape}, expected ({N_FEATURES << bits},)"
            )
        weights[p] = w.astype(np.float32)
        bias[p] = float(doc.get("bias", {}).get(p, 0.0))
    if not weights:
        raise SplitterError(f"{st_path}: no head for any placement ({', '.join(PLACEMENTS)})")
    return BoundaryModel(bits, weights, bias, doc, sha)
