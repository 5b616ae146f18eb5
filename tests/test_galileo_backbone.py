"""Galileo as a cegate backbone: bands into channel groups, the toolbox on separate q/k/v, the run
folder end to end, and a pull from a stand-in of the Hub laid out as the authors' repo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from data_rasters import write_tif
from hubserver import HubStandIn
from rasterio.transform import from_origin
from typer.testing import CliRunner

from cegate_cli.backbone import load_pretrained
from cegate_cli.backbone.embedded import GALILEO_NANO_WEIGHTS
from cegate_cli.backbone.galileo import SPACE_TIME_BANDS
from cegate_cli.backbone.galileo_backbone import (
    GalileoBackbone,
    GalileoInputs,
    GalileoOptions,
    plan_groups,
    resolve_galileo_inputs,
)
from cegate_cli.backbone.hub import resolve_backbone
from cegate_cli.cli import app
from cegate_cli.data.stats import BandStats
from cegate_cli.errors import InputError
from cegate_cli.model.segmentation import build_model
from cegate_cli.toolbox import LoRAQV, ToolboxConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "backbones" / "galileo-nano"
RGBN = ("red", "green", "blue", "nir")
STATS = BandStats(RGBN, (90.0, 100.0, 80.0, 120.0), (30.0, 30.0, 25.0, 40.0))


def galileo(inputs: GalileoInputs = GalileoInputs(patch_size=4, gsd_m=0.6), bands=RGBN, stats=STATS, kinds=("lora", "adapter", "earth")):
    pretrained = load_pretrained(resolve_backbone("galileo-nano"))
    return build_model(pretrained, bands, 3, ToolboxConfig(kinds=kinds, lora_rank=4), "linear", 0, normalization=stats, inputs=inputs)


def images(batch: int = 2, size: tuple[int, int] = (32, 48)) -> torch.Tensor:
    return torch.randn(batch, 4, *size, generator=torch.Generator().manual_seed(2))


def perturb(toolbox) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in toolbox:
            for parameter in module.own_parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)


# -- bands into groups ------------------------------------------------------------------------------


def test_aerial_rgbn_fills_rgb_nir_and_ndvi_and_sentinel2_fills_every_optical_group() -> None:
    aerial = plan_groups(RGBN)
    assert aerial.groups == ("S2_RGB", "S2_NIR_10m", "NDVI")
    assert aerial.channel_of == {"B4": 0, "B3": 1, "B2": 2, "B8": 3} and aerial.ndvi == (0, 3)
    s2 = plan_groups(("blue", "green", "red", "red_edge_1", "red_edge_2", "red_edge_3", "nir", "nir_narrow", "swir_1", "swir_2"))
    assert s2.groups == ("S2_RGB", "S2_Red_Edge", "S2_NIR_10m", "S2_NIR_20m", "S2_SWIR", "NDVI")
    sar_and_partial = plan_groups(("vv", "vh", "red_edge_1", "swir_1", "green"))  # red edge and SWIR incomplete
    assert sar_and_partial.groups == ("S1",) and set(sar_and_partial.channel_of) == {"VV", "VH"}


def test_bands_that_fill_no_group_are_one_error_listing_what_each_group_needs() -> None:
    with pytest.raises(InputError, match=r"fill none of Galileo's channel groups.*S2_RGB: blue, green, red.*NDVI: red and nir"):
        plan_groups(("red", "green", "band_3"))


def test_input_scaling_and_ndvi_from_raw_values() -> None:
    backbone = galileo().model.backbone
    assert isinstance(backbone, GalileoBackbone)
    raw = torch.tensor([60.0, 130.0, 80.0, 200.0]).reshape(1, 4, 1, 1).expand(1, 4, 4, 4)
    z = (raw - torch.tensor(STATS.mean).reshape(1, 4, 1, 1)) / torch.tensor(STATS.std).reshape(1, 4, 1, 1)
    s_t_x = backbone.galileo_input(z)
    pixel = s_t_x[0, 0, 0, 0]
    for band, name in zip(RGBN, ("B4", "B3", "B2", "B8")):
        i = RGBN.index(band)
        assert pixel[SPACE_TIME_BANDS.index(name)].item() == pytest.approx(z[0, i, 0, 0].item() / 4 + 0.5, abs=1e-6)
    assert pixel[SPACE_TIME_BANDS.index("NDVI")].item() == pytest.approx((200 - 60) / (200 + 60), abs=1e-6)
    assert pixel[SPACE_TIME_BANDS.index("B11")].item() == 0.0  # a band no group of this run uses stays empty


def test_gsd_month_and_normalisation_come_from_the_imagery(tmp_path: Path) -> None:
    path = tmp_path / "scene.tif"
    write_tif(path, np.full((4, 8, 8), 1500, np.uint16), descriptions=("B2", "B3", "B4", "B8"))
    with rasterio.open(path, "r+") as ds:
        ds.transform = from_origin(500000, 4000000, 20.0, 20.0)
        ds.update_tags(TIFFTAG_DATETIME="2021:03:14 10:00:00")
    s2 = BandStats(("blue", "green", "red", "nir"), (1400.0, 1500.0, 1450.0, 2600.0), (500.0, 500.0, 600.0, 900.0))
    pretrained = load_pretrained(resolve_backbone("galileo-nano"))
    inputs, stats, warnings, notes = resolve_galileo_inputs(GalileoOptions(), [path], s2, pretrained.normalization)
    assert (inputs.gsd_m, inputs.month, inputs.normalize, inputs.patch_size) == (20.0, 2, "pretrained", 8) and not warnings and not notes
    assert inputs.month_from == "imagery"
    norm = pretrained.normalization
    assert stats.mean == tuple(norm.mean[norm.bands.index(b)] for b in ("B2", "B3", "B4", "B8"))
    aerial = BandStats(("blue", "green", "red", "nir"), (90.0, 100.0, 80.0, 120.0), (30.0, 30.0, 25.0, 40.0))
    inputs, stats, _, _ = resolve_galileo_inputs(GalileoOptions(month=10), [path], aerial, norm)
    assert (inputs.month, inputs.month_from, inputs.normalize, stats) == (10, "option", "data", aerial)
    with rasterio.open(path, "r+") as ds:
        ds.transform = from_origin(500000, 4000000, 0.6, 0.6)
    _, _, warnings, notes = resolve_galileo_inputs(GalileoOptions(), [path], aerial, norm)
    assert not warnings  # aerial imagery is no problem: advice, a note, says what did better
    assert len(notes) == 1 and "0.6 m pixels" in notes[0] and "--backbone tiny" in notes[0]
    with pytest.raises(InputError, match="--normalize pretrained: band\\(s\\) band_5"):
        resolve_galileo_inputs(GalileoOptions(normalize="pretrained"), [path], BandStats(("red", "band_5"), (1.0, 1.0), (1.0, 1.0)), norm)


def test_predict_feeds_each_scene_its_own_pixel_size_and_month(tmp_path: Path) -> None:
    from cegate_cli.pipelines.inference import scene_conditions

    scene = tmp_path / "march_20m.tif"
    write_tif(scene, np.full((4, 8, 8), 100, np.uint8), descriptions=RGBN)
    with rasterio.open(scene, "r+") as ds:
        ds.transform = from_origin(500000, 4000000, 20.0, 20.0)
        ds.update_tags(TIFFTAG_DATETIME="2021:03:14 10:00:00")
    bare = tmp_path / "no_georeferencing.tif"
    write_tif(bare, np.full((4, 8, 8), 100, np.uint8), descriptions=RGBN, crs=None, transform=None)
    encoder = load_pretrained(resolve_backbone("galileo-nano")).encoder

    def output(inputs: GalileoInputs, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return GalileoBackbone(encoder, RGBN, STATS.mean, STATS.std, inputs).eval()(x)[-1]

    run_inputs = GalileoInputs(4, 0.6, 6, "data", "imagery")
    backbone = GalileoBackbone(encoder, RGBN, STATS.mean, STATS.std, run_inputs).eval()
    x = images()
    with torch.no_grad():
        before = backbone(x)[-1]
        with scene_conditions(backbone)(scene) as fed:
            as_scene = backbone(x)[-1]
        with scene_conditions(backbone)(bare) as fed_bare:
            as_bare = backbone(x)[-1]
        after = backbone(x)[-1]
    assert fed == (20.0, 2) and fed_bare == (0.6, 6)
    assert torch.equal(as_scene, output(GalileoInputs(4, 20.0, 2), x)) and not torch.allclose(as_scene, before, atol=1e-3)
    assert torch.equal(as_bare, before) and torch.equal(after, before)  # the run's own values come back
    forced = GalileoBackbone(encoder, RGBN, STATS.mean, STATS.std, GalileoInputs(4, 0.6, 6, "data", "option")).eval()
    with scene_conditions(forced)(scene) as fed_forced:
        pass
    assert fed_forced == (20.0, 6)  # --month at adapt holds for every scene
    assert scene_conditions(object()) is None  # other backbones take nothing per scene


# -- the toolbox on Galileo -------------------------------------------------------------------------


def test_toolbox_on_galileo_is_an_identity_until_trained_and_lora_merges_exactly() -> None:
    plain = GalileoBackbone(load_pretrained(resolve_backbone("galileo-nano")).encoder, RGBN, STATS.mean, STATS.std, GalileoInputs(4, 0.6)).eval()
    built = galileo()
    backbone = built.model.backbone.eval()
    x = images()
    with torch.no_grad():
        reference, inserted = plain(x), backbone(x)
    assert len(built.toolbox.keys()) == 12 and built.toolbox.active_keys == built.toolbox.keys()
    assert [f.shape for f in inserted] == [(2, 128, 8, 12)] * 4  # 4 levels, patch 4, groups pooled per patch
    for a, b in zip(reference, inserted):
        assert (a - b).abs().max().item() <= 1e-6
    assert isinstance(backbone.blocks[0].attn.q, LoRAQV)
    perturb(built.toolbox)
    with torch.no_grad():
        assert (backbone(x)[-1] - reference[-1]).abs().max().item() > 1e-3  # trained modules act
        # Merged and unmerged differ only by rounding order; in float64 that is ~1e-13 (float32
        # carries it through four blocks of attention to ~1e-5 relative, which would hide a bug).
        backbone.double()
        unmerged = backbone(x.double())
        built.toolbox.merge_lora()
        merged = backbone(x.double())
        built.toolbox.unmerge_lora()
        restored = backbone(x.double())
    for a, b, c in zip(unmerged, merged, restored):
        assert (a - b).abs().max().item() <= 1e-10 and (a - c).abs().max().item() <= 1e-10


def test_compute_follows_the_selection_on_galileo() -> None:
    built = galileo()
    backbone = built.model.backbone
    built.toolbox.set_active([("adapter", 2)])
    backbone.grad_from_layer = 2
    seen: dict[int, bool] = {}
    hooks = [block.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, out.requires_grad)) for i, block in enumerate(backbone.blocks)]
    backbone(images())
    for hook in hooks:
        hook.remove()
    assert seen == {0: False, 1: False, 2: True, 3: True}


# -- end to end ---------------------------------------------------------------------------------


def _labeled(root: Path, count: int = 3, size: int = 48) -> Path:
    rng = np.random.default_rng(5)
    for i in range(count):
        image = rng.integers(20, 220, (4, size, size)).astype(np.uint8)
        image[3, : size // 2] = 200  # bright NIR in the top half: vegetation
        mask = np.zeros((size, size), np.uint8)
        mask[: size // 2] = 1
        mask[:, :8] = 2
        write_tif(root / "images" / f"tile_{i}.tif", image, descriptions=RGBN)
        write_tif(root / "masks" / f"tile_{i}.tif", mask)
    return root


@pytest.mark.slow
def test_adapt_inspect_predict_evaluate_with_galileo_nano(tmp_path: Path) -> None:
    data = _labeled(tmp_path / "data")
    run = tmp_path / "run"
    runner = CliRunner()
    flags = [
        "--backbone",
        "galileo-nano",
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--crop",
        "32",
        "--fisher-samples",
        "2",
        "--select",
        "3",
        "--val-every",
        "2",
        "--decoder",
        "linear",
        "--patch-size",
        "4",
        "--month",
        "5",
        "--device",
        "cpu",
    ]
    result = runner.invoke(app, ["adapt", str(data), "-o", str(run), *flags])
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "run.json").read_text())
    record = manifest["backbone"]
    assert record["source"]["kind"] == "galileo" and record["architecture"] == "galileo-nano"
    assert record["galileo"]["patch_size"] == 4 and record["galileo"]["month"] == 4 and record["galileo"]["normalize"] == "data"
    assert [g["group"] for g in record["galileo"]["groups"]] == ["S2_RGB", "S2_NIR_10m", "NDVI"]
    assert record["source"]["weights_sha256"] and record["patch_size"] == 4
    shown = runner.invoke(app, ["inspect", str(run)])
    assert shown.exit_code == 0 and "S2_RGB <- blue, green, red" in shown.output and "month 5" in shown.output
    maps = tmp_path / "maps"
    predicted = runner.invoke(app, ["predict", str(run), str(data / "images"), "-o", str(maps), "--tile", "32", "--overlap", "8", "--device", "cpu"])
    assert predicted.exit_code == 0, predicted.output
    with rasterio.open(maps / "tile_0.mask.tif") as mask, rasterio.open(data / "images" / "tile_0.tif") as image:
        assert mask.transform == image.transform and mask.crs == image.crs and mask.shape == image.shape
    evaluated = runner.invoke(app, ["evaluate", str(run), str(data), "--json", "--tile", "32", "--overlap", "8", "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["pixels"] == 3 * 48 * 48


# -- from the Hub, laid out as the authors' repo ---------------------------------------------------


@pytest.mark.skipif(not (SHARED / "encoder.pt").is_file(), reason="the authors' encoder.pt is not beside the repository")
def test_pull_galileo_from_the_authors_repo_layout_then_offline(hub: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {
        "models/nano/config.json": (SHARED / "config.json").read_bytes(),
        "models/nano/encoder.pt": (SHARED / "encoder.pt").read_bytes(),
        "README.md": b"Galileo",
    }
    commit = hub.add_commit("nasaharvest/galileo", files)
    result = CliRunner().invoke(app, ["pull", "hf-hub:nasaharvest/galileo/models/nano", "--json"])
    assert result.exit_code == 0, result.output
    pulled = json.loads(result.stdout)
    assert pulled["revision"] == commit
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = resolve_backbone("hf-hub:nasaharvest/galileo/models/nano")
    assert source.kind == "galileo" and source.revision == commit and source.weights_path.name == "encoder.pt"
    from_hub = load_pretrained(source)
    shipped = load_pretrained(resolve_backbone("galileo-nano"))
    assert from_hub.architecture == "galileo-nano"
    hub_state, shipped_state = from_hub.encoder.state_dict(), shipped.encoder.state_dict()
    assert hub_state.keys() == shipped_state.keys() and all(torch.equal(hub_state[k], shipped_state[k]) for k in hub_state)
    assert source.weights_sha256 != resolve_backbone("galileo-nano").weights_sha256  # a run records which file it used
    assert GALILEO_NANO_WEIGHTS.is_file()
