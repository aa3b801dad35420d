"""The BPE baseline: a lossless tokenizer, its FLOPs and bits per byte, generation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from aunet_cli.errors import AunetError
from aunet_cli.evaluate import evaluate
from aunet_cli.flops import flops_per_byte
from aunet_cli.generate import SampleOptions, Session, generate
from aunet_cli.model import AUNet, ModelConfig, StageConfig
from aunet_cli.tokenizer import BYTES, BpeCodec, TokenizerSpec, bytes_per_token, train_bpe
from aunet_cli.train import bits_per_byte_sums
from splitters import Pipeline

from .test_train import corpus_text

torch.set_num_threads(min(torch.get_num_threads(), 2))

TRICKY = [
    b"",
    b"Hello  world\n\n  x\ty",
    "中文，混合 English ▁ text\r\n".encode(),
    b"\x00\xff\xfe abc \xc3",
    b"\xed\xa0\x80 lone surrogate bytes",
    b"   ",
    b"\n",
    "caf\u00e9 \u2581\u2581 na\u00efve".encode(),
]


@pytest.fixture(scope="module")
def codec(tmp_path_factory) -> BpeCodec:
    d = tmp_path_factory.mktemp("tok")
    docs = [p.encode() for p in corpus_text(seed=3, size=40_000).split("\n\n")]
    return train_bpe(docs, TokenizerSpec(vocab_size=700), d, {"test": True})


@pytest.mark.parametrize("data", TRICKY)
def test_encoding_is_lossless_on_tricky_bytes(codec, data):
    ids = codec.encode(data)
    assert b"".join(codec.piece_bytes[i] for i in ids) == data
    assert int(codec.unit_bytes[ids].sum()) == len(data)
    assert codec.bos not in ids and codec.eos not in ids


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_encoding_is_lossless_on_arbitrary_bytes(codec, data):
    ids = codec.encode(data)
    assert b"".join(codec.piece_bytes[i] for i in ids) == data


def test_bpe_merges_common_words(codec):
    """A real BPE: common words are single pieces, so bytes per token is well above 1."""
    docs = [p.encode() for p in corpus_text(seed=4, size=20_000).split("\n\n")]
    assert bytes_per_token(codec, docs) > 2.0
    assert len(codec.encode(b" the")) == 1  # pieces carry their leading space


def test_too_small_a_vocabulary_is_refused(tmp_path):
    with pytest.raises(AunetError, match="at least 300"):
        train_bpe([b"abc"], TokenizerSpec(vocab_size=100), tmp_path, {})


def test_a_model_file_that_is_not_sentencepiece_is_refused(tmp_path):
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(AunetError, match="not a readable sentencepiece model"):
        BpeCodec(bad)


def bpe_model(codec: BpeCodec, seq_len: int = 48) -> AUNet:
    torch.manual_seed(0)
    cfg = ModelConfig(stages=[StageConfig(32, 2, 2)], seq_len=seq_len, vocab_size=codec.vocab_size)
    return AUNet(cfg).eval()


def test_flops_per_byte_of_a_bpe_model_matches_a_direct_count(codec):
    """Counted FLOPs of one window of tokens / the bytes those tokens stand for, vs the
    accounting (FLOPs per token / measured bytes per token). Linear parts only, as the
    counter sees the attention kernel over the full square (checked in test_flops)."""
    model = bpe_model(codec, seq_len=64)
    text = corpus_text(seed=5, size=4000).encode()
    ids = codec.encode(text)[:64]
    window_bytes = int(codec.unit_bytes[ids].sum())
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.tensor([ids]), torch.zeros(1, 64, dtype=torch.long))
    by_op = fc.get_flop_counts()["Global"]
    linear = sum(c for op, c in by_op.items() if "mm" in str(op) and "bmm" not in str(op))
    report = flops_per_byte(model.cfg, [64.0], bytes_per_unit=window_bytes / 64)
    assert abs(report.per_byte_linear * window_bytes - linear) <= 0.01 * linear
    # and the per-token head is what makes a large vocabulary expensive per byte
    assert report.per_byte_linear > 2 * 32 * codec.vocab_size / (window_bytes / 64)


def test_bpb_of_a_bpe_model_equals_a_direct_computation(codec):
    """evaluate() and the training metric both give nats over tokens / (ln 2 x bytes)."""
    model = bpe_model(codec, seq_len=256)
    docs = [b"The river and the mountain, 1871.", b"Naive \xff bytes \x00 here"]
    total_nats, total_bytes = 0.0, 0
    for data in docs:
        ids = codec.encode(data)
        tokens = torch.tensor([[codec.bos, *ids]])
        with torch.no_grad():
            logits, _ = model(tokens, torch.zeros_like(tokens))
        nats = F.cross_entropy(logits[0, :-1], tokens[0, 1:], reduction="sum")
        total_nats += float(nats)
        total_bytes += len(data)
        # the training metric over the same targets (plus an EOS, never scored)
        targets = torch.tensor([[*ids, codec.eos]])
        n, b = bits_per_byte_sums(logits, targets, torch.from_numpy(codec.unit_bytes))
        assert math.isclose(float(n), float(nats), rel_tol=1e-5)
        assert int(b) == len(data)
    res = evaluate(model, [(d, np.zeros(len(d), np.uint8)) for d in docs], codec=codec)
    assert res.bytes == total_bytes
    assert math.isclose(res.nats, total_nats, rel_tol=1e-5)


def test_long_documents_are_scored_once_in_overlapping_token_windows(codec):
    model = bpe_model(codec, seq_len=32)
    data = corpus_text(seed=6, size=3000).encode()
    n_tokens = len(codec.encode(data))
    assert n_tokens > 3 * 32
    res = evaluate(model, [(data, np.zeros(len(data), np.uint8))], stride=16, codec=codec)
    assert res.bytes == len(data)
    assert res.windows == 1 + math.ceil((n_tokens - 32) / 16)


def test_byte_codec_metric_is_the_old_byte_count():
    targets = torch.tensor([[65, 66, 257, 256, 67]])
    logits = torch.zeros(1, 5, 258)
    n, b = bits_per_byte_sums(logits, targets, torch.from_numpy(BYTES.unit_bytes))
    assert int(b) == 3
    assert math.isclose(float(n), 3 * math.log(258), rel_tol=1e-6)


def test_generation_with_a_bpe_model_cached_equals_full(codec):
    model = bpe_model(codec, seq_len=40)
    pipe = Pipeline.from_specs([])
    opts = SampleOptions(max_bytes=150, temperature=0, ignore_eos=True)
    a = generate(model, pipe, [b"The river", b"1 2"], opts, cache=True, codec=codec)
    b = generate(model, pipe, [b"The river", b"1 2"], opts, cache=False, codec=codec)
    assert [bytes(x.completion) for x in a] == [bytes(y.completion) for y in b]
    assert all(len(x.completion) == 150 for x in a)  # past the 40-token context
    rng = random.Random(0)
    sampled = generate(model, pipe, [b""], SampleOptions(64, 1.0, seed=rng.randint(0, 9)),
                       codec=codec)[0]  # fmt: skip
    assert sampled.reason in ("length", "eos")


def test_a_prompt_longer_than_the_token_context_is_refused(codec):
    model = bpe_model(codec, seq_len=16)
    with pytest.raises(AunetError, match="tokens"):
        Session(model, Pipeline.from_specs([]), [b"the " * 40], codec=codec)


def test_lines_longer_than_sentencepiece_accepts_still_train(tmp_path):
    """One long line per document (unwrapped text): cut into pieces, not dropped."""
    docs = [corpus_text(seed=i, size=20_000).replace("\n", " ").encode() for i in range(3)]
    codec = train_bpe(docs, TokenizerSpec(vocab_size=500), tmp_path, {})
    assert bytes_per_token(codec, docs) > 1.8


def test_an_empty_training_split_is_a_clear_error(tmp_path):
    with pytest.raises(AunetError, match="no text to train the tokenizer on"):
        train_bpe([b"", b"\n\n"], TokenizerSpec(vocab_size=400), tmp_path, {})
