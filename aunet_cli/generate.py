"""Sampling bytes from a trained model (full recomputation per byte).

The run's splitters are applied online to the growing text with their streaming
form (constant work per byte; they are causal, so the levels of earlier bytes
never change). Each step runs the model over the last `seq_len` tokens, whose
first position pools at every stage, exactly like a training window.
"""

from __future__ import annotations

from pathlib import Path

import torch

from splitters import Pipeline

from .export import load_model
from .model import BOS, EOS


@torch.no_grad()
def sample_text(
    run: Path, prompt: str, max_bytes: int, temperature: float = 0.8, seed: int = 0
) -> str:
    """Prompt + up to `max_bytes` sampled bytes, decoded for display."""
    model, config = load_model(run)
    pipe = Pipeline.from_descriptions(config["splitters"])
    streamer = pipe.streamer()
    depth = model.cfg.n_stages - 1
    data = prompt.encode("utf-8")
    tokens = [BOS, *data]
    levels = [depth, *(min(lv, depth) for lv in streamer.feed(data))]
    gen = torch.Generator().manual_seed(seed)
    out = bytearray()
    for _ in range(max_bytes):
        window_t = torch.tensor([tokens[-model.cfg.seq_len :]])
        window_l = torch.tensor([levels[-model.cfg.seq_len :]])
        window_l[0, 0] = depth
        logits, _ = model(window_t, window_l)
        logits = logits[0, -1].float()
        logits[BOS] = float("-inf")
        probs = torch.softmax(logits / max(temperature, 1e-6), dim=-1)
        nxt = int(torch.multinomial(probs, 1, generator=gen))
        if nxt == EOS:
            break
        out.append(nxt)
        tokens.append(nxt)
        levels.append(min(streamer.push(nxt), depth))
    return prompt + out.decode("utf-8", "replace")
