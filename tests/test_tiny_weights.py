"""The shipped pretrained `tiny` weights and the script that makes them."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer

from cegate_cli.backbone.embedded import TINY_WEIGHTS
from cegate_cli.backbone.hub import file_sha256
from cegate_cli.backbone.tiny import TINY_INIT_SEED, build_tiny_vit, tiny_vit_args

RECORD = TINY_WEIGHTS.with_suffix(".json")


def _load_script():  # tools/ is outside the package: the script that made the weights, not runtime code
    spec = importlib.util.spec_from_file_location("pretrain_tiny", Path(__file__).resolve().parents[1] / "tools" / "pretrain_tiny.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


pretrain_main = _load_script().main

# A run small enough for a test: two domains of one 64 px scene, 32 and 64 px crops, two steps.
SMALL = [
    "--steps",
    "2",
    "--batch-size",
    "4",
    "--crop-sizes",
    "32,64",
    "--domains",
    "2",
    "--scenes-per-domain",
    "1",
    "--scene-size",
    "64",
    "--heldout-domains",
    "1",
    "--log-every",
    "1",
]


def test_shipped_weights_load_strictly_into_the_architecture() -> None:
    state = load_file(str(TINY_WEIGHTS))
    vit = VisionTransformer(**tiny_vit_args())  # type: ignore[arg-type]
    vit.load_state_dict(state, strict=True)  # raises on any missing, unexpected or misshapen key
    built = build_tiny_vit().vit.state_dict()
    assert all(torch.equal(built[name], tensor) for name, tensor in state.items())


def test_shipped_weights_match_their_record_and_are_small() -> None:
    record = json.loads(RECORD.read_text())
    assert record["sha256"] == file_sha256(TINY_WEIGHTS)
    assert record["bytes"] == TINY_WEIGHTS.stat().st_size < 5 * 2**20
    assert record["weights_file"] == TINY_WEIGHTS.name
    assert record["vit_args"] == json.loads(json.dumps(tiny_vit_args()))
    assert "synthetic" in record["what"] and "NOT a foundation model" in record["what"]
    assert record["steps"] >= 100 and isinstance(record["seed"], int)


def test_shipped_weights_are_not_the_random_init() -> None:
    shipped = build_tiny_vit().vit
    torch.manual_seed(TINY_INIT_SEED)  # what build_tiny_vit gives when no weights file ships
    random_init = VisionTransformer(**tiny_vit_args())  # type: ignore[arg-type]
    assert not torch.allclose(shipped.blocks[3].attn.qkv.weight, random_init.blocks[3].attn.qkv.weight)


@pytest.mark.slow
def test_pretraining_runs_end_to_end_and_is_deterministic(tmp_path, capsys) -> None:  # noqa: ANN001
    threads = torch.get_num_threads()
    first, second, other = tmp_path / "a" / "tiny.safetensors", tmp_path / "b" / "tiny.safetensors", tmp_path / "c" / "tiny.safetensors"
    assert pretrain_main(["--out", str(first), "--seed", "3", *SMALL]) == 0
    assert pretrain_main(["--out", str(second), "--seed", "3", *SMALL]) == 0
    assert pretrain_main(["--out", str(other), "--seed", "4", *SMALL]) == 0
    assert torch.get_num_threads() == threads  # the caller's thread setting is left as it was

    assert first.read_bytes() == second.read_bytes()  # same seed, same bytes: the sha256 in the record can be checked
    a, b, c = (load_file(str(path)) for path in (first, second, other))
    assert any(not torch.equal(a[k], c[k]) for k in a)
    loaded = build_tiny_vit(first).vit  # strict load of what the script wrote
    assert torch.equal(loaded.pos_embed, a["pos_embed"])

    record = json.loads(first.with_suffix(".json").read_text())
    assert record["sha256"] == file_sha256(first)
    assert record["seed"] == 3 and record["steps"] == 2
    assert set(record["final_losses"]) >= {"train_mae", "train_seg_ce", "heldout_mae", "heldout_linear_miou"}
    assert all(torch.isfinite(torch.tensor(v)) for v in record["final_losses"].values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "w.bin"], "must end in .safetensors"),
        (["--out", "w.safetensors", "--mask-ratio", "1.0"], "--mask-ratio"),
        (["--out", "w.safetensors", "--crop-sizes", "60"], "multiples of the patch size"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, message) -> None:  # noqa: ANN001
    args = [str(tmp_path / a) if a.startswith("w.") else a for a in args]
    assert pretrain_main(args) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
