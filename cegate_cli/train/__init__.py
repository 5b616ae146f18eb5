"""Training: gated supervised training on a labeled source (and, later, self-training on a target)."""
