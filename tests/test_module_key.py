"""A module's identity: one order (block, then kind) and one JSON form everywhere, without torch."""

from __future__ import annotations

import json
import subprocess
import sys

from cegate_cli.toolbox.module_key import KINDS, ModuleKey, in_order, keys_from_json, keys_to_json


def test_order_is_by_block_then_kind_and_a_key_is_still_a_tuple() -> None:
    keys = [("earth", 1), ("lora", 2), ("adapter", 1), ("lora", 1), ("adapter", 0)]
    assert [str(k) for k in in_order(keys)] == ["adapter@0", "lora@1", "adapter@1", "earth@1", "lora@2"]
    key = ModuleKey("lora", 3)
    kind, layer = key
    assert (kind, layer) == key and {("lora", 3): 1.0}[key] == 1.0 and KINDS[0] == "lora"


def test_json_form_round_trips_in_the_order_given() -> None:
    keys = [ModuleKey("earth", 4), ModuleKey("lora", 0)]
    text = json.dumps(keys_to_json(keys))
    assert text == '[{"kind": "earth", "layer": 4}, {"kind": "lora", "layer": 0}]'
    assert keys_from_json(json.loads(text)) == keys


def test_the_written_name_parses_back_to_the_key() -> None:
    """ "earth@11", as run.json's selection history and the benchmarks' JSON write a module, is the key again."""
    for key in (ModuleKey("lora", 0), ModuleKey("earth", 11)):
        assert ModuleKey.parse(str(key)) == key and isinstance(ModuleKey.parse(str(key)).layer, int)


def test_reading_keys_needs_no_torch() -> None:
    code = "import sys, cegate_cli.toolbox.module_key; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
