"""The CrossEarth-Gate toolbox: spatial (LoRA), semantic (Adapter), frequency (Earth-Adapter)."""

from cegate_cli.toolbox.adapter import MLPAdapter
from cegate_cli.toolbox.attach import Toolbox, attach_toolbox
from cegate_cli.toolbox.base import KIND_LABELS, KINDS, ModuleKey, ToolboxModule, parse_kinds
from cegate_cli.toolbox_config import ToolboxConfig
from cegate_cli.toolbox.frequency import EarthAdapter, split_frequencies
from cegate_cli.toolbox.lora import LoRA, LoRAQKV, LoRAQV

__all__ = [
    "KINDS", "KIND_LABELS", "EarthAdapter", "LoRA", "LoRAQKV", "LoRAQV", "MLPAdapter", "ModuleKey", "Toolbox",
    "ToolboxConfig", "ToolboxModule", "attach_toolbox", "parse_kinds", "split_frequencies",
]
