"""aunet: a command-line toolchain for byte-level hierarchical language models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aunet")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
