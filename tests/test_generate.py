"""Cached generation against the full forward pass, sampling, stop strings, eval.

Models are tiny float32 AU-Nets with random weights: what is checked is that the
cached path computes the same function as `AUNet.forward`, not what it says.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aunet_cli.evaluate import evaluate, windows_of
from aunet_cli.generate import SampleOptions, Session, StopScanner, generate, pick
from aunet_cli.incremental import IncrementalState
from aunet_cli.model import BOS, EOS, AUNet, ModelConfig
from splitters import Pipeline

torch.set_num_threads(1)  # tiny models: threads only add overhead

# Crosses words, digit groups, punctuation, newlines, CR/LF, Chinese and other non-ASCII.
TEXT = (
    "我们今天在北京讨论了人工智能的发展，大家都认为它很重要。\n"
    "The quick brown fox, 12345 jumps over the lazy dog!\r\n"
    "A second line; with (parentheses) and 3.14159 numbers...\n\n"
    "Une phrase en français, 中文也可以。 Ωmega -- done?  Yes: it is, "
    "x = f(a, b) + 42 # and so on\n"
).encode() * 2
SPLITTERS = {
    1: [[]],
    2: [
        ["regex-words"],
        ["regex-word-pairs"],
        ["regex-4words"],
        ["utf8-chars"],
        ["learned-zh"],
        ["learned-zh:placement=end"],
    ],
    3: [
        ["regex-words", "regex-word-pairs"],
        ["utf8-chars", "regex-words"],
        ["learned-zh", "learned-zh:every=2"],
    ],
    4: [["regex-words", "regex-word-pairs", "regex-4words"]],
}


def tiny(n_stages: int, window: int | None = None, seq_len: int = 512, seed: int = 0) -> AUNet:
    torch.manual_seed(seed)
    stages = [
        dict(dim=32 + 16 * s, layers=1, decoder_layers=1, heads=2, window=window)
        for s in range(n_stages)
    ]
    # random weights with a live trunk path (zero-initialised upsampling would hide it)
    return AUNet(ModelConfig(stages=stages, seq_len=seq_len, upsample_init="normal")).eval()


CASES = [(n, specs, None) for n, all_specs in SPLITTERS.items() for specs in all_specs]
CASES += [(2, ["regex-words"], 16), (4, SPLITTERS[4][0], 16)]  # sliding windows


@pytest.mark.parametrize(("n_stages", "specs", "window"), CASES, ids=lambda c: str(c))
def test_cached_steps_match_full_forward(n_stages, specs, window):
    """At every step of a 300-byte text: log-probs of cache == full pass (<= 1e-4)."""
    model, pipe = tiny(n_stages, window), Pipeline.from_specs(specs)
    data = TEXT[:300]
    assert len(data) == 300
    cached = Session(model, pipe, [b"Q:"], cache=True)
    full = Session(model, pipe, [b"Q:"], cache=False)
    a, b = cached.prefill(), full.prefill()
    worst = 0.0
    for byte in data:
        worst = max(worst, float((a.log_softmax(-1) - b.log_softmax(-1)).abs().max()))
        a, b = cached.push([byte]), full.push([byte])
    worst = max(worst, float((a.log_softmax(-1) - b.log_softmax(-1)).abs().max()))
    assert worst <= 1e-4
    levels = np.array(cached.levels[0])
    for s in range(1, n_stages):  # the text crossed many points of every stage
        assert (levels[1:] >= s).sum() >= 10


@pytest.mark.parametrize("window", [None, 12])
def test_context_refill_matches_full_forward(window):
    """Past seq_len a new window starts; both paths start it the same way."""
    model, pipe = tiny(3, window, seq_len=48), Pipeline.from_specs(["regex-words"] * 2)
    cached = Session(model, pipe, [b""], cache=True)
    full = Session(model, pipe, [b""], cache=False)
    a, b = cached.prefill(), full.prefill()
    for byte in TEXT[:200]:
        assert float((a.log_softmax(-1) - b.log_softmax(-1)).abs().max()) <= 1e-4
        a, b = cached.push([byte]), full.push([byte])
    if window is None:
        assert cached.start[0] > 0  # the context really was refilled


def test_ragged_batch_matches_rows_alone():
    """Rows with different prompts and pooling points share one batched state."""
    model = tiny(3, None)
    pipe = Pipeline.from_specs(["regex-words", "regex-word-pairs"])
    prompts = [b"Hello there, world", b"x", b"12 34 56 78 then words go on"]
    batch = Session(model, pipe, prompts, cache=True)
    alone = [Session(model, pipe, [p], cache=False) for p in prompts]
    got, want = batch.prefill(), torch.cat([s.prefill() for s in alone])
    for step in range(40):
        assert float((got.log_softmax(-1) - want.log_softmax(-1)).abs().max()) <= 1e-4
        new = [TEXT[(7 * r + step) % len(TEXT)] for r in range(len(prompts))]
        if step % 5 == 0:
            new[1] = None  # a finished row stays put
        got = batch.push(new)
        want = torch.cat(
            [
                s.push([b]) if b is not None else torch.zeros_like(got[:1])
                for s, b in zip(alone, new, strict=True)
            ]
        )
        for r, b in enumerate(new):
            if b is None:
                got[r] = 0


def test_extend_in_one_call_equals_byte_by_byte():
    model = tiny(4, None)
    pipe = Pipeline.from_specs(["regex-words", "regex-word-pairs", "regex-4words"])
    tokens = torch.tensor([[BOS, *TEXT[:280]]])
    levels = torch.tensor([[3, *pipe.levels_of(TEXT[:280]).tolist()]])
    whole = IncrementalState(model, 1).extend(tokens, levels)  # crosses the 256 chunk
    state = IncrementalState(model, 1)
    steps = torch.cat(
        [state.extend(tokens[:, t : t + 1], levels[:, t : t + 1]) for t in range(281)], 1
    )
    ref, _ = model(tokens, levels, capped=False)
    assert torch.allclose(whole, ref, atol=1e-4)
    assert torch.allclose(steps, ref, atol=1e-4)


@pytest.mark.parametrize("n_stages", [1, 2, 4])
def test_greedy_identical_with_and_without_cache(n_stages):
    model = tiny(n_stages, None, seq_len=64, seed=n_stages)
    pipe = Pipeline.from_specs(SPLITTERS[n_stages][0])
    opts = SampleOptions(max_bytes=150, temperature=0, ignore_eos=True)
    a = generate(model, pipe, [b"The ", b"1 2 3"], opts, cache=True)
    b = generate(model, pipe, [b"The ", b"1 2 3"], opts, cache=False)
    assert [bytes(x.completion) for x in a] == [bytes(x.completion) for x in b]
    assert all(len(x.completion) == 150 for x in a)


def test_seeded_sampling_is_reproducible():
    model, pipe = tiny(2, 16), Pipeline.from_specs(["regex-words"])
    run = lambda seed: [  # noqa: E731
        bytes(c.completion)
        for c in generate(model, pipe, [b"a b", b"c"], SampleOptions(64, 1.0, seed=seed))
    ]
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_pick_filters():
    gen = torch.Generator().manual_seed(0)
    logits = torch.zeros(1, 258)
    logits[0, 65], logits[0, 66], logits[0, BOS] = 10.0, 4.0, 100.0
    assert int(pick(logits, SampleOptions(temperature=0), gen)) == 65  # BOS never sampled
    for _ in range(20):
        assert int(pick(logits, SampleOptions(top_k=2), gen)) in (65, 66)
        assert int(pick(logits, SampleOptions(top_p=0.5, temperature=1.0), gen)) == 65
    eos = torch.zeros(1, 258)
    eos[0, EOS] = 50.0
    assert int(pick(eos, SampleOptions(ignore_eos=True), gen)) != EOS


def test_stop_scanner_holds_back_partial_matches():
    scan = StopScanner([b"END", b"\n\n"])
    out, stopped = b"", False
    for byte in b"abc EN! xyEND tail":
        safe, stopped = scan.feed(byte)
        out += safe
        if stopped:
            break
    assert stopped and out == b"abc EN! xy"
    scan = StopScanner([b"END"])
    assert [scan.feed(b)[0] for b in b"aEN"] == [b"a", b"", b""]
    assert scan.flush() == b"EN"


def test_stop_string_ends_sample():
    model, pipe = tiny(2, None), Pipeline.from_specs(["regex-words"])
    free = generate(model, pipe, [b"x"], SampleOptions(80, 0, ignore_eos=True))[0]
    stop = bytes(free.completion[10:12])
    cut = generate(model, pipe, [b"x"], SampleOptions(80, 0, stop=(stop,), ignore_eos=True))[0]
    assert cut.reason == "stop"
    assert bytes(cut.completion) == bytes(free.completion[: free.completion.find(stop)])


# --- eval ------------------------------------------------------------------------------------


def direct_bpb(model: AUNet, pipe: Pipeline, text: bytes) -> float:
    depth = model.cfg.n_stages - 1
    tokens = torch.tensor([[BOS, *text]])
    levels = torch.tensor([[depth, *pipe.levels_of(text).tolist()]]).clamp(max=depth)
    logits, _ = model(tokens[:, :-1], levels[:, :-1], capped=False)
    return F.cross_entropy(logits[0], tokens[0, 1:]).item() / math.log(2)


def test_eval_equals_mean_per_byte_loss():
    model, pipe = tiny(3, None, seq_len=512), Pipeline.from_specs(["regex-words"] * 2)
    docs = [TEXT, TEXT[:77], b"z"]
    res = evaluate(model, [(d, pipe.levels_of(d)) for d in docs], batch_size=2)
    nats = sum(direct_bpb(model, pipe, d) * math.log(2) * len(d) for d in docs)
    assert res.bytes == sum(map(len, docs))
    assert res.nats == pytest.approx(nats, rel=1e-5)
    assert res.summary(512, 256)["bpb"] == pytest.approx(nats / res.bytes / math.log(2), rel=1e-5)


@pytest.mark.parametrize(
    ("n", "seq_len", "stride"), [(1, 8, 4), (8, 8, 4), (9, 8, 4), (100, 16, 5), (100, 16, 16)]
)
def test_windows_score_every_byte_once_with_context(n, seq_len, stride):
    data = bytes(range(97, 97 + 26)) * 4
    data = data[:n]
    scored = []
    for w in windows_of(0, data, np.zeros(n, np.uint8), seq_len, stride, 1):
        assert len(w.tokens) <= seq_len and w.levels[0] == 1
        first = len(scored)
        scored += w.targets[w.score_from :]
        if first:  # a later window: at least seq_len - stride bytes of context
            assert w.score_from >= seq_len - stride
    assert scored == list(data)


def test_a_tiny_temperature_samples_the_top_byte_not_nan():
    """--temperature 1e-40 divides the logits into -inf, not inf - inf (NaN, which made
    torch.multinomial raise): the sample is the most likely byte."""
    logits = torch.randn(4, 258)
    logits[:, 200] = 50.0
    opts = SampleOptions(max_bytes=1, temperature=1e-40)
    got = pick(logits, opts, torch.Generator().manual_seed(0))
    assert got.tolist() == [200] * 4
