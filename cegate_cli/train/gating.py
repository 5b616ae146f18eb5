"""Make compute follow the selection.

Only selected modules run and train; frozen weights carry no gradient; blocks below the lowest
selected module run without autograd (they hold no activations for backward).
"""

from __future__ import annotations

from collections.abc import Iterable

from cegate_cli.toolbox.attach import Toolbox
from cegate_cli.toolbox.module_key import ModuleKey


def apply_selection(toolbox: Toolbox, selected: Iterable[ModuleKey]) -> None:
    toolbox.set_active(selected)
    lowest = toolbox.lowest_active_layer()
    toolbox.backbone.grad_from_layer = toolbox.backbone.depth if lowest is None else lowest
