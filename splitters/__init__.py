"""Splitter plugins: map raw bytes to nested pooling points."""

from .base import Option, Splitter, SplitterError, StageStreamer
from .pipeline import Pipeline, PipelineStreamer, levels_string
from .registry import load, names, parse_spec
from .text import TextBatch

__all__ = [
    "Option",
    "Pipeline",
    "PipelineStreamer",
    "Splitter",
    "SplitterError",
    "StageStreamer",
    "TextBatch",
    "levels_string",
    "load",
    "names",
    "parse_spec",
]
