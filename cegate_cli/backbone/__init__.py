"""Backbones: a timm Vision Transformer from Hub files, its bands adapted, giving multi-level features."""
