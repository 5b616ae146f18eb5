"""A backbone family is one module that registers itself: this file defines a family of its own (a
small timm ViT that takes each scene's pixel size), registers it, and runs `adapt`, `inspect` and
`predict` through it without any other file knowing it exists. Also: the built-in families,
their aliases and config.json layouts, and the registry's refusals."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer
from typer.testing import CliRunner

from cegate_cli.backbone import BackboneFamily, HubAlias, get_family, list_families, register_family, unregister_family
from cegate_cli.backbone.band_adapt import BandMapping, adapt_vit_bands
from cegate_cli.backbone.family import NO_MATCH, SPECIFIC_MATCH, FittedInputs, RepoFiles
from cegate_cli.backbone.hub import resolve_backbone
from cegate_cli.backbone.registry import family_for_config, find_alias
from cegate_cli.backbone.source import BackboneSource
from cegate_cli.backbone.vit import Backbone
from cegate_cli.cli import app
from cegate_cli.data.raster import open_raster
from cegate_cli.data.scene_info import SceneInfo, read_scene_info
from cegate_cli.data.stats import BandStats
from cegate_cli.data.synthetic import make_demo_dataset
from cegate_cli.errors import InputError
from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.pipelines.inference import MapOptions, load_for_inference, predict_run, scene_conditions

PICO_ARGS = dict(img_size=32, patch_size=8, in_chans=3, embed_dim=24, depth=2, num_heads=2, num_classes=0, global_pool="", dynamic_img_size=True)
PICO_BANDS = ("red", "green", "blue")


# -- the family, as its own module would define it ------------------------------------------------


@dataclass(frozen=True)
class PicoInputs:
    """The run's pixel size: the family's condition, settled from the training images."""

    gsd_m: float

    @property
    def own_statistics(self) -> bool:
        return True


@dataclass(frozen=True)
class PicoRecord:
    inputs: PicoInputs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self.inputs)


class PicoBackbone(Backbone):
    """A timm ViT whose tokens are shifted by log(pixel size): the scene's own while it is mapped."""

    takes_scene_info = True

    def __init__(self, vit: VisionTransformer, gsd_m: float) -> None:
        super().__init__(vit)
        self.gsd_m = gsd_m
        self.seen: list[SceneInfo] = []

    @contextmanager
    def scene_conditions(self, scene: SceneInfo) -> Iterator[float]:
        self.seen.append(scene)
        previous, self.gsd_m = self.gsd_m, scene.gsd_m or self.gsd_m
        try:
            yield self.gsd_m
        finally:
            self.gsd_m = previous

    def embed(self, images: torch.Tensor):
        tokens, layout = super().embed(images)
        return tokens + 0.01 * math.log(self.gsd_m), layout


@dataclass
class PretrainedPico:
    vit: VisionTransformer
    architecture: str = "pico"
    band_names: tuple[str, ...] = PICO_BANDS

    @property
    def embed_dim(self) -> int:
        return int(self.vit.embed_dim)

    def patch_size(self, options: Any) -> int:
        return 8

    def check_run(self, bands: Sequence[str], options: Any) -> None:
        if "red" not in bands:
            raise InputError("pico needs a red band")

    def fit_inputs(self, options: Any, images: Sequence[Path], stats: BandStats) -> FittedInputs:
        sizes = []
        for path in images:
            with open_raster(path) as dataset:
                sizes.append(read_scene_info(dataset).gsd_m)
        return FittedInputs(PicoInputs(sorted(sizes)[len(sizes) // 2]), stats, ("pico saw the pixel sizes",))

    def build(self, bands: Sequence[str], stats: BandStats | None, inputs: PicoInputs | None) -> tuple[PicoBackbone, BandMapping]:
        mapping = adapt_vit_bands(self.vit, self.band_names, bands)
        return PicoBackbone(self.vit, inputs.gsd_m if inputs is not None else 1.0), mapping

    def pretrained_backbone(self) -> PicoBackbone:
        return PicoBackbone(self.vit, 1.0)


class PicoFamily(BackboneFamily):
    name = "test-pico"
    aliases = {"pico-test-alias": HubAlias("cegate-test/pico", "a pico ViT")}
    layout = "pico_vit: true"
    record_key = "pico"
    unmatched_band = "zero"

    def config_match(self, config: dict[str, Any]) -> int:
        return SPECIFIC_MATCH if config.get("pico_vit") is True else NO_MATCH

    def weights_file(self, files: RepoFiles, spec: str) -> Path:
        return files.get("pico.safetensors")

    def load(self, source: BackboneSource) -> PretrainedPico:
        _, weights = source.files()
        vit = VisionTransformer(**PICO_ARGS)
        vit.load_state_dict(load_file(str(weights)), strict=True)
        return PretrainedPico(vit)

    def record(self, backbone: Any, inputs: PicoInputs | None) -> PicoRecord | None:
        return None if inputs is None else PicoRecord(inputs)

    def read_record(self, data: Any) -> PicoRecord:
        return PicoRecord(PicoInputs(float(data["gsd_m"])))

    def describe(self, record: PicoRecord) -> list[str]:
        return [f"pico       trained at {record.inputs.gsd_m:g} m pixels"]


@pytest.fixture
def pico(tmp_path: Path) -> Iterator[Path]:
    """The family registered for one test, and a model folder of its layout."""
    register_family(PicoFamily)
    folder = tmp_path / "pico-backbone"
    folder.mkdir()
    torch.manual_seed(3)
    save_file({k: v.contiguous() for k, v in VisionTransformer(**PICO_ARGS).state_dict().items()}, str(folder / "pico.safetensors"))
    (folder / "config.json").write_text(json.dumps({"pico_vit": True}))
    try:
        yield folder
    finally:
        unregister_family(PicoFamily.name)


def test_a_family_registered_from_its_own_module_runs_adapt_inspect_and_predict(pico: Path, tmp_path: Path) -> None:
    source = resolve_backbone(str(pico))
    assert source.kind == "test-pico" and source.weights_path == pico.resolve() / "pico.safetensors"
    demo = make_demo_dataset(tmp_path / "demo", n_source=3, n_target=2, size=64, seed=2)
    train = TrainConfig(steps=3, batch_size=2, crop=32, warmup_steps=1, val_every=3, val_crops=2, fisher_samples=2, select="2", seed=1)
    result = adapt(AdaptOptions(source=demo.source_dir, out=tmp_path / "run", backbone=str(pico), train=train))
    assert result.outcome.completed and "pico saw the pixel sizes" in result.warnings
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["backbone"]
    assert recorded["source"]["kind"] == "test-pico" and recorded["pico"] == {"gsd_m": 10.0}  # the source scenes' pixels
    assert recorded["architecture"] == "pico" and recorded["pretrained_bands"] == list(PICO_BANDS)

    shown = CliRunner().invoke(app, ["inspect", str(tmp_path / "run")])
    assert shown.exit_code == 0, shown.output
    assert "pico       trained at 10 m pixels" in shown.output

    scenes = sorted((demo.target_dir / "images").glob("*.tif"))
    summary = predict_run(tmp_path / "run", scenes, tmp_path / "maps", options=MapOptions(tile=64, overlap=16, device="cpu"))
    assert [o.status for o in summary.outcomes] == ["done", "done"]
    for outcome in summary.outcomes:
        assert outcome.outputs.mask.is_file()

    loaded = load_for_inference(tmp_path / "run", MapOptions(device="cpu"))
    backbone = loaded.model.backbone
    assert isinstance(backbone, PicoBackbone) and backbone.gsd_m == 10.0  # the run's value, read back by the family
    with scene_conditions(backbone)(scenes[0]) as fed:
        assert fed == backbone.gsd_m == 15.0  # predict feeds the target scene's own pixel size
    assert backbone.gsd_m == 10.0
    scene = backbone.seen[-1]
    assert scene.centre_lonlat is not None and -180 <= scene.centre_lonlat[0] <= 180 and -90 <= scene.centre_lonlat[1] <= 90
    assert scene_conditions(Backbone(VisionTransformer(**PICO_ARGS))) is None  # a plain ViT reads nothing per scene


def test_the_registry_refuses_a_name_or_spec_taken_twice_and_finds_aliases(pico: Path) -> None:
    assert "test-pico" in list_families() and get_family("test-pico").record_key == "pico"
    found = find_alias("PICO-TEST-ALIAS")
    assert found is not None and found[0].name == "test-pico" and found[1].repo_id == "cegate-test/pico"
    with pytest.raises(ValueError, match="already registered"):
        register_family(PicoFamily)

    class Thief(BackboneFamily):
        name = "thief"
        embedded_specs = ("tiny",)

    with pytest.raises(ValueError, match="tiny already name"):
        register_family(Thief)
    assert "thief" not in list_families()
    with pytest.raises(InputError, match="unknown backbone family 'nope'"):
        get_family("nope")


def test_built_in_families_keep_their_aliases_and_config_layouts() -> None:
    assert {"timm", "prithvi", "galileo", "embedded"} <= set(list_families())
    expected = {
        "dinov2-small": ("timm", "timm/vit_small_patch14_dinov2.lvd142m", None),
        "dinov2-base": ("timm", "timm/vit_base_patch14_dinov2.lvd142m", None),
        "dinov2-large": ("timm", "timm/vit_large_patch14_dinov2.lvd142m", None),
        "prithvi-eo-2-300m": ("prithvi", "ibm-nasa-geospatial/Prithvi-EO-2.0-300M", None),
        "prithvi-eo-2-600m": ("prithvi", "ibm-nasa-geospatial/Prithvi-EO-2.0-600M", None),
        "prithvi-eo-2-tiny": ("prithvi", "ibm-nasa-geospatial/Prithvi-EO-2.0-tiny-TL", None),
        "galileo-tiny": ("galileo", "nasaharvest/galileo", "models/tiny"),
        "galileo-base": ("galileo", "nasaharvest/galileo", "models/base"),
    }
    for alias, (family, repo, folder) in expected.items():
        found = find_alias(alias)
        assert found is not None and (found[0].name, found[1].repo_id, found[1].subfolder) == (family, repo, folder)
    assert resolve_backbone("tiny").kind == "embedded" and resolve_backbone("galileo-nano").kind == "galileo"
    configs = {
        "galileo": {"model": {"encoder": {"embedding_size": 128}}},
        "prithvi": {"architecture": "prithvi_eo_v2_300", "pretrained_cfg": {"num_frames": 4}},
        "timm": {"architecture": "vit_small_patch16_224"},
    }
    for family, config in configs.items():
        assert family_for_config(config, "x").name == family
    with pytest.raises(InputError, match=r"describes no backbone cegate knows \(.*timm: an 'architecture'"):
        family_for_config({"model_type": "bert"}, "some-folder")


def test_scene_info_reads_pixel_size_date_and_centre(tmp_path: Path) -> None:
    import numpy as np
    import rasterio
    from data_rasters import write_tif
    from rasterio.transform import from_origin

    scene = write_tif(tmp_path / "utm.tif", np.zeros((1, 10, 20), np.uint8), crs="EPSG:32633", transform=from_origin(500000, 4000000, 20.0, 20.0))
    with rasterio.open(scene, "r+") as ds:
        ds.update_tags(ACQUISITION_DATE="2021-03-14T10:00:00Z")
    with open_raster(scene) as ds:
        info = read_scene_info(ds)
    assert info.gsd_m == 20.0 and info.month == 2 and str(info.date) == "2021-03-14"
    lon, lat = info.centre_lonlat  # UTM 33N, 200 m east and 100 m south of (500000, 4000000): near 15 E, 36.1 N
    assert abs(lon - 15.0022) < 1e-3 and abs(lat - 36.1438) < 1e-3
    with rasterio.open(scene, "r+") as ds:
        ds.update_tags(ACQUISITION_DATE="2021-02-30")  # a month, but no such day
    with open_raster(scene) as ds:
        info = read_scene_info(ds)
    assert info.month == 1 and info.date is None
    bare = write_tif(tmp_path / "bare.tif", np.zeros((1, 8, 8), np.uint8), crs=None, transform=None)
    with open_raster(bare) as ds:
        assert read_scene_info(ds) == SceneInfo()
