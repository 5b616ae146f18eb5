"""The backbones that ship inside the package: where their files lie.

One owner for these paths, importing nothing of cegate's, so that the Hub resolver (which
offers them as sources) and the backbone builders (which read them) need not import each other.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
TINY_WEIGHTS = WEIGHTS_DIR / "tiny.safetensors"
"""The embedded `tiny` ViT, pretrained on the demo's generated scenes (docs/tiny-backbone.md)."""
GALILEO_NANO_WEIGHTS = WEIGHTS_DIR / "galileo-nano.safetensors"
"""The authors' Galileo-nano encoder, converted to safetensors (tools/convert_galileo.py); MIT."""
GALILEO_NANO_CONFIG = WEIGHTS_DIR / "galileo-nano.json"
