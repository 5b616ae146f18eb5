"""cegate: adapt geospatial foundation models to your imagery with Fisher-gated PEFT modules."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cegate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
