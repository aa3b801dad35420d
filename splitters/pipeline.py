"""Stages composed into per-byte levels: the output of every splitter run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .base import Splitter, SplitterError
from .registry import load, parse_spec
from .text import TextBatch


class Pipeline:
    """Pooling stages in order; stage s+1 keeps only points stage s also has."""

    def __init__(self, stages: Sequence[Splitter]) -> None:
        # no stages is allowed: a one-stage (byte-level) model pools nowhere
        if len(stages) > 9:
            raise SplitterError("at most 9 pooling stages are supported")
        self.stages = list(stages)

    @classmethod
    def from_specs(cls, specs: Iterable[str]) -> Pipeline:
        return cls([parse_spec(s) for s in specs])

    @classmethod
    def from_descriptions(cls, stages: Iterable[dict[str, Any]]) -> Pipeline:
        """Rebuild the stages recorded with shards or a model (see `describe`)."""
        built = []
        for d in stages:
            stage = load(d["name"])(**d.get("options", {}))
            if stage.version != d.get("version", stage.version):
                raise SplitterError(
                    f"{d['name']}: recorded version {d['version']}, installed {stage.version}; "
                    "the pooling points may differ from the ones the model was trained on"
                )
            recorded, installed = d.get("artifact_sha256"), stage.describe().get("artifact_sha256")
            if recorded is not None and recorded != installed:
                raise SplitterError(
                    f"{d['name']}: recorded with weights sha256 {recorded[:12]}..., the "
                    f"installed ones are {str(installed)[:12]}...; pass the artifact that "
                    "made these points with path=..."
                )
            built.append(stage)
        return cls(built)

    @property
    def depth(self) -> int:
        return len(self.stages)

    @property
    def causal(self) -> bool:
        return all(s.causal for s in self.stages)

    def describe(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self.stages]

    def stage_masks(self, batch: TextBatch) -> list[np.ndarray]:
        """Nested boolean masks, one per stage."""
        masks: list[np.ndarray] = []
        prev = None
        for stage in self.stages:
            mask = stage.points(batch, prev)
            if prev is not None:
                mask &= prev
            masks.append(mask)
            prev = mask
        return masks

    def levels(self, batch: TextBatch) -> np.ndarray:
        """uint8 per byte: 0 = no pooling point, L = point for the first L stages."""
        levels = np.zeros(batch.n_bytes, dtype=np.uint8)
        for mask in self.stage_masks(batch):
            levels += mask
        return levels

    def levels_of(self, data: bytes) -> np.ndarray:
        return self.levels(TextBatch.from_docs([data]))

    def streamer(self) -> PipelineStreamer:
        return PipelineStreamer(self)


class PipelineStreamer:
    """Levels one byte at a time (for generation): constant work per byte."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.stages = [s.streamer() for s in pipeline.stages]

    def push(self, byte: int) -> int:
        level = 0
        prev = True
        for stage in self.stages:
            prev = stage.push(byte, prev) and prev  # every stage sees every byte
            level += prev
        return level

    def feed(self, data: bytes) -> list[int]:
        return [self.push(b) for b in data]


def levels_string(levels: np.ndarray) -> str:
    """The jsonl / conformance form: one digit per byte."""
    return (levels + ord("0")).astype(np.uint8).tobytes().decode("ascii")
