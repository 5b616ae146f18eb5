"""Backbones: the families cegate adapts (timm ViTs, Prithvi, Galileo, Clay, the embedded tiny),
each in its own `*_family.py` module, registered by name; multi-level features through one block
loop.

    from cegate_cli.backbone import list_families, get_family, register_family
"""

from cegate_cli.backbone.family import BackboneFamily, HubAlias
from cegate_cli.backbone.registry import get_family, list_families, load_pretrained, register_family, unregister_family

__all__ = ["BackboneFamily", "HubAlias", "get_family", "list_families", "load_pretrained", "register_family", "unregister_family"]
