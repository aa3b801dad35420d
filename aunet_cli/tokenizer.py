"""What a model reads: bytes (AU-Net) or sentencepiece BPE pieces (the token baseline).

A *codec* turns a document's bytes into model ids and back, and says how many bytes of
text each id stands for, so bits per byte are computed the same way for both kinds:
total nats over the text's units / (ln 2 x its bytes). BOS and EOS stand for no bytes.

The BPE tokenizer is lossless on any bytes: it is trained with byte fallback and no
normalization (no dummy prefix, spaces kept), valid UTF-8 goes through sentencepiece,
and every other byte (and U+2581, which sentencepiece uses for a space) is encoded as
its byte piece. So `b"".join(piece_bytes[i] for i in encode(data)) == data` always.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import replacing, write_json_atomic
from .errors import AunetError
from .model import BOS, EOS, VOCAB

TOKENIZER_FORMAT = "aunet-tokenizer/1"
MODEL_FILE = "tokenizer.model"
SPACE_MARK = "\u2581"
# sentencepiece ids of the specials (fixed, so a BPE model's BOS/EOS are known)
BPE_UNK, BPE_BOS, BPE_EOS = 0, 1, 2
# a run of text sentencepiece may see: valid UTF-8 without U+2581 / lone surrogates
_ESCAPED = re.compile("[\udc80-\udcff\u2581]+")


class ByteCodec:
    """AU-Net's input: every byte is its own id; BOS = 256, EOS = 257."""

    kind = "bytes"
    bos, eos, vocab_size = BOS, EOS, VOCAB

    def encode(self, data: bytes) -> list[int]:
        return list(data)

    def encode_many(self, docs: list[bytes]) -> list[list[int]]:
        return [list(d) for d in docs]

    @cached_property
    def piece_bytes(self) -> list[bytes]:
        return [bytes([i]) for i in range(256)] + [b"", b""]

    @cached_property
    def unit_bytes(self) -> np.ndarray:
        """Bytes of text per id (0 for BOS and EOS)."""
        return np.array([len(p) for p in self.piece_bytes], dtype=np.int64)

    def describe(self) -> dict[str, Any] | None:
        return None


class BpeCodec:
    """A sentencepiece BPE model with byte fallback (see the module docstring)."""

    kind = "bpe"
    bos, eos = BPE_BOS, BPE_EOS

    def __init__(self, model_path: Path) -> None:
        import sentencepiece as spm

        self.path = model_path
        try:
            self.blob = model_path.read_bytes()
            self.sp = spm.SentencePieceProcessor(model_proto=self.blob)
        except (OSError, RuntimeError) as exc:
            raise AunetError(f"{model_path}: not a readable sentencepiece model ({exc})") from None
        if self.sp.bos_id() != BPE_BOS or self.sp.eos_id() != BPE_EOS:
            raise AunetError(f"{model_path}: not an aunet tokenizer (BOS/EOS ids differ)")
        self.vocab_size = self.sp.get_piece_size()
        self.byte_id = [self.sp.piece_to_id(f"<0x{b:02X}>") for b in range(256)]
        if any(self.sp.id_to_piece(i) != f"<0x{b:02X}>" for b, i in enumerate(self.byte_id)):
            raise AunetError(f"{model_path}: trained without byte fallback; retrain it")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.blob).hexdigest()

    def encode(self, data: bytes) -> list[int]:
        return self.encode_many([data])[0]

    def encode_many(self, docs: list[bytes]) -> list[list[int]]:
        """Ids of each document; the plain texts go to sentencepiece in one batch."""
        plan: list[list[tuple[bool, Any]]] = []
        texts: list[str] = []
        for data in docs:
            text = data.decode("utf-8", "surrogateescape")
            parts: list[tuple[bool, Any]] = []
            at = 0
            for m in _ESCAPED.finditer(text):
                if m.start() > at:
                    parts.append((True, len(texts)))
                    texts.append(text[at : m.start()])
                raw = m.group().encode("utf-8", "surrogateescape")
                parts.append((False, [self.byte_id[b] for b in raw]))
                at = m.end()
            if at < len(text):
                parts.append((True, len(texts)))
                texts.append(text[at:])
            plan.append(parts)
        encoded = self.sp.encode(texts) if texts else []
        out = []
        for parts in plan:
            ids: list[int] = []
            for plain, value in parts:
                ids.extend(encoded[value] if plain else value)
            out.append(ids)
        return out

    @cached_property
    def piece_bytes(self) -> list[bytes]:
        table = []
        for i in range(self.vocab_size):
            if self.sp.is_byte(i):
                table.append(bytes([int(self.sp.id_to_piece(i)[3:5], 16)]))
            elif self.sp.is_control(i) or self.sp.is_unknown(i):
                table.append(b"")
            else:
                table.append(self.sp.id_to_piece(i).replace(SPACE_MARK, " ").encode())
        return table

    @cached_property
    def unit_bytes(self) -> np.ndarray:
        return np.array([len(p) for p in self.piece_bytes], dtype=np.int64)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "bpe",
            "file": MODEL_FILE,
            "vocab_size": self.vocab_size,
            "sha256": self.sha256,
        }


Codec = ByteCodec | BpeCodec
BYTES = ByteCodec()


def codec_for(config: dict[str, Any], base: Path) -> Codec:
    """The codec a saved model was trained with (its tokenizer file sits beside it)."""
    info = config.get("tokenizer")
    if not info:
        return BYTES
    path = base / info.get("file", MODEL_FILE)
    if not path.is_file():
        raise AunetError(f"{path}: missing (the model was trained on BPE tokens; keep its "
                         "tokenizer.model next to model.safetensors)")  # fmt: skip
    codec = BpeCodec(path)
    if info.get("sha256") and codec.sha256 != info["sha256"]:
        raise AunetError(
            f"{path}: sha256 {codec.sha256[:12]}... differs from the one the model was "
            f"trained with ({info['sha256'][:12]}...): a different tokenizer"
        )
    return codec


@dataclass
class TokenizerSpec:
    vocab_size: int
    character_coverage: float = 1.0


MAX_PIECE_OF_LINE = 8192  # characters; sentencepiece skips longer sentences


def _sentences(docs: Iterable[bytes], limit: int, seen: list[int]) -> Iterator[str]:
    """Training sentences: the documents' lines (sentencepiece trains line by line),
    long lines cut into pieces it accepts. `seen[0]` counts what was yielded."""
    total = 0
    for data in docs:
        for line in data.decode("utf-8", "ignore").split("\n"):
            line = line.replace(SPACE_MARK, " ")
            for a in range(0, len(line), MAX_PIECE_OF_LINE):
                piece = line[a : a + MAX_PIECE_OF_LINE]
                if piece.strip():
                    yield piece
                    seen[0] += 1
                    total += len(piece)
                    if total >= limit:
                        return


def train_bpe(
    docs: Iterable[bytes], spec: TokenizerSpec, out_dir: Path, sources: dict[str, Any],
    max_chars: int = 200_000_000,
) -> BpeCodec:  # fmt: skip
    """Train a BPE model on `docs`; writes out_dir/tokenizer.model + tokenizer.json atomically."""
    import sentencepiece as spm

    if spec.vocab_size < 300:
        raise AunetError(
            f"tokenizer.vocab_size must be at least 300 (256 byte pieces + specials + "
            f"merges), got {spec.vocab_size}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    seen = [0]
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".train-") as tmp:
        prefix = Path(tmp) / "tokenizer"
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=_sentences(docs, max_chars, seen),
                max_sentence_length=4 * MAX_PIECE_OF_LINE,  # bytes
                model_prefix=str(prefix),
                model_type="bpe",
                vocab_size=spec.vocab_size,
                character_coverage=spec.character_coverage,
                byte_fallback=True,
                normalization_rule_name="identity",
                add_dummy_prefix=False,
                remove_extra_whitespaces=False,
                allow_whitespace_only_pieces=True,
                split_digits=True,
                unk_id=BPE_UNK,
                bos_id=BPE_BOS,
                eos_id=BPE_EOS,
                pad_id=-1,
                num_threads=min(os.cpu_count() or 1, 8),
                minloglevel=2,
            )
        except RuntimeError as exc:
            if not seen[0]:
                raise AunetError("no text to train the tokenizer on (the split is empty)") from None
            raise AunetError(f"sentencepiece could not train the tokenizer: {exc}") from None
        trained = Path(f"{prefix}.model").read_bytes()
        with replacing(out_dir / MODEL_FILE) as f:  # the trainer's file, fsynced under our name
            f.write(trained)
    codec = BpeCodec(out_dir / MODEL_FILE)
    info = {
        "format": TOKENIZER_FORMAT,
        **codec.describe(),
        "character_coverage": spec.character_coverage,
        **sources,
    }
    write_json_atomic(out_dir / "tokenizer.json", info)
    return codec


def bytes_per_token(codec: Codec, docs: Iterable[bytes]) -> float:
    """Mean bytes of text per (non-special) unit over `docs`."""
    n_bytes = n_units = 0
    batch: list[bytes] = []

    def flush() -> None:
        nonlocal n_bytes, n_units
        for data, ids in zip(batch, codec.encode_many(batch), strict=True):
            n_bytes += len(data)
            n_units += len(ids)
        batch.clear()

    for data in docs:
        batch.append(data)
        if len(batch) >= 512:
            flush()
    flush()
    return n_bytes / max(n_units, 1)


def read_tokenizer_info(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "tokenizer.json").read_text())
    except (OSError, ValueError) as exc:
        raise AunetError(f"{path}/tokenizer.json: unreadable ({exc})") from None
