"""`--backbone prithvi-eo-2-tiny`: the alias, `cegate pull` from the authors' repo layout (the Hub
stand-in serving ibm-nasa-geospatial/Prithvi-EO-2.0-tiny-TL's files: config.json and
Prithvi_EO_V2_tiny_TL.pt with the real checkpoint's keys, random weights, fewer blocks), and
`adapt`, `inspect`, `predict`, `evaluate` on a small HLS folder whose scenes carry date tags and
georeferencing: the run trains with the median date and centre of its images, `predict` feeds
each scene its own, and a scene without a date or place gets no such term.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from data_rasters import write_tif
from hub_repos import TINY_TL_REPO, TINY_TL_WEIGHTS, tiny_tl_checkpoint, tiny_tl_config, tiny_tl_repo
from hubserver import HubStandIn
from rasterio.transform import from_origin
from typer.testing import CliRunner

from cegate_cli.backbone.hub import resolve_backbone
from cegate_cli.backbone.prithvi import HLS_BANDS, prithvi_vit
from cegate_cli.backbone.prithvi_family import WEIGHT_FILES
from cegate_cli.backbone.prithvi_tl import PrithviTLViT, SceneCoordinates
from cegate_cli.backbone.prithvi_tl_backbone import PretrainedPrithviTL, PrithviTLBackbone, fit_coordinates
from cegate_cli.backbone.prithvi_tl_record import PrithviTLInputs, PrithviTLRecord
from cegate_cli.backbone.registry import find_alias, load_pretrained
from cegate_cli.backbone.vit import Backbone
from cegate_cli.cli import app
from cegate_cli.data.bands import match_bands
from cegate_cli.data.scene_info import SceneInfo, read_scene_info
from cegate_cli.infra.record_fields import FieldTypeError
from cegate_cli.pipelines.inference import MapOptions, load_for_inference
from cegate_cli.predict.batch import PredictOptions, predict_many

HLS_S30 = ("B02", "B03", "B04", "B8A", "B11", "B12")
"""How HLS S30 names the six bands Prithvi takes (blue, green, red, narrow NIR, SWIR 1, SWIR 2)."""
DEPTH = 2
SIZE = 64
UTM = "EPSG:32633"


def hls_scene(path: Path, seed: int, when: date | None, origin: tuple[float, float] | None, mask: Path | None = None) -> Path:
    """A 6-band HLS-like scene (reflectance x 10,000, int16) with water on the left, vegetation on
    the right; dated by an HLS-style SENSING_TIME tag and georeferenced in UTM 33N when asked."""
    rng = np.random.default_rng(seed)
    water = np.zeros((SIZE, SIZE), bool)
    water[:, : SIZE // 2 - 6 + seed % 5] = True
    base = np.array([1100, 1350, 1450, 2700, 1950, 1350], np.float32)[:, None, None]
    pixels = base + rng.normal(0, 120, (6, SIZE, SIZE)).astype(np.float32)
    pixels[3:, water] *= 0.2  # water absorbs near and short-wave infrared
    transform = from_origin(*origin, 30.0, 30.0) if origin is not None else from_origin(0, 0, 1, -1)
    write_tif(path, pixels.astype(np.int16), crs=UTM if origin else None, transform=transform, descriptions=HLS_S30)
    if when is not None:
        with rasterio.open(path, "r+") as dataset:
            dataset.update_tags(SENSING_TIME=f"{when.isoformat()}T10:24:31.123Z")
    if mask is not None:
        write_tif(mask, np.where(water, 0, 1).astype(np.uint8), crs=UTM, transform=transform)
    return path


def labeled_folder(root: Path) -> Path:
    """Three dated, georeferenced training scenes and a classes.yaml."""
    for index, when in enumerate((date(2020, 3, 1), date(2020, 6, 15), date(2020, 9, 30))):
        name = f"HLS.S30.T33TUM.{when.year}{when.timetuple().tm_yday:03d}.tif"
        hls_scene(root / "images" / name, index, when, (400000.0 + 3000.0 * index, 5000000.0), root / "masks" / name)
    (root / "classes.yaml").write_text("classes:\n  - {id: 0, name: water}\n  - {id: 1, name: vegetation}\n")
    return root


# -- the alias and the repo layout ---------------------------------------------------------------


def test_the_alias_names_the_tiny_tl_repo_and_its_checkpoint() -> None:
    found = find_alias("prithvi-eo-2-tiny")
    assert found is not None and found[0].name == "prithvi" and found[1].repo_id == TINY_TL_REPO
    assert WEIGHT_FILES[TINY_TL_REPO] == TINY_TL_WEIGHTS


def test_pull_then_load_offline_from_the_authors_repo_layout(hub: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    files, checkpoint = tiny_tl_repo(depth=DEPTH, seed=4)
    commit = hub.add_commit(TINY_TL_REPO, files)
    pulled = CliRunner().invoke(app, ["pull", "prithvi-eo-2-tiny", "--json"])
    assert pulled.exit_code == 0, pulled.output
    record = json.loads(pulled.stdout)
    assert (record["kind"], record["repo_id"], record["revision"]) == ("prithvi", TINY_TL_REPO, commit)
    assert Path(record["weights_path"]).name == TINY_TL_WEIGHTS

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = resolve_backbone("prithvi-eo-2-tiny")
    assert source.revision == commit and source.weights_sha256 == record["weights_sha256"]
    pretrained = load_pretrained(source)
    assert isinstance(pretrained, PretrainedPrithviTL) and isinstance(pretrained.vit, PrithviTLViT)
    assert pretrained.architecture == "prithvi_eo_v2_tiny_tl" and pretrained.band_names == HLS_BANDS
    vit = pretrained.vit
    assert len(vit.blocks) == DEPTH and vit.embed_dim == 192 and vit.coords_encoding == ("time", "location")
    assert torch.equal(vit.patch_embed.proj.weight, checkpoint["encoder.patch_embed.proj.weight"][:, :, 0])
    assert torch.equal(vit.blocks[1].mlp.fc2.weight, checkpoint["encoder.blocks.1.mlp.fc2.weight"])
    assert torch.equal(vit.pos_embed, checkpoint["encoder.pos_embed"][:, :197])  # frame 0 of four
    assert torch.equal(vit.temporal_embed_enc.scale, checkpoint["encoder.temporal_embed_enc.scale"])


def test_the_full_depth_checkpoint_of_the_stand_in_is_the_real_layout() -> None:
    """The stand-in's file at depth 12 has exactly the key set tools/prithvi_reference.py took from
    the authors' PrithviMAE, so the reduced-depth tests read the real layout."""
    checkpoint = tiny_tl_checkpoint(depth=12)
    assert len(checkpoint) == 258
    vit = prithvi_vit(tiny_tl_config(12), checkpoint, "config.json", TINY_TL_WEIGHTS).vit
    assert len(vit.blocks) == 12 and isinstance(vit, PrithviTLViT)


# -- the run's coordinates and each scene's -------------------------------------------------------


def test_the_run_takes_the_median_date_and_centre_of_its_images(tmp_path: Path) -> None:
    images = sorted((labeled_folder(tmp_path / "data") / "images").glob("*.tif"))
    inputs, warnings = fit_coordinates(("time", "location"), images)
    assert warnings == []
    assert (inputs.year, inputs.day_of_year, inputs.time_from) == (2020, 167, "imagery")  # 15 June of a leap year
    assert inputs.location_from == "imagery" and (inputs.images, inputs.dated_images, inputs.located_images) == (3, 3, 3)
    assert 45.0 < inputs.latitude < 45.2 and 13.7 < inputs.longitude < 13.8  # UTM 33N, 400 km east, 5000 km north
    assert PrithviTLRecord.from_dict(json.loads(json.dumps(PrithviTLRecord(inputs).to_dict()))).inputs == inputs

    undated = hls_scene(tmp_path / "undated.tif", 7, None, (400000.0, 5000000.0))
    bare = hls_scene(tmp_path / "bare.tif", 8, None, None)
    some, warnings = fit_coordinates(("time", "location"), [images[0], undated, bare])
    assert (some.year, some.day_of_year) == (2020, 61) and some.located_images == 2
    assert any("2 of 3 training images have no date tag" in w for w in warnings)
    assert any("1 of 3 training images are not georeferenced" in w for w in warnings)
    none, warnings = fit_coordinates(("time", "location"), [bare])
    assert not none.uses_time and not none.uses_location and len(warnings) == 2
    lines = PrithviTLRecord(none).describe()
    assert "not used (no training image has a date tag)" in lines[0] and "predict feeds no time or location" in lines[2]


def test_a_damaged_section_is_refused_naming_the_field() -> None:
    good = PrithviTLInputs(("time", "location"), 2020, 167, "imagery", 45.0, 13.7, "imagery", 3, 3, 3).to_dict()
    for change in ({"day_of_year": 400}, {"time_from": "guess"}, {"year": None}, {"latitude": "north"}):
        with pytest.raises(FieldTypeError, match="backbone.prithvi"):
            PrithviTLRecord.from_dict({**good, **change})


def tl_backbone(time_scale: float, inputs: PrithviTLInputs | None) -> PrithviTLBackbone:
    pretrained = prithvi_vit(tiny_tl_config(DEPTH), tiny_tl_checkpoint(DEPTH, seed=2, time_scale=time_scale), "c", "w")
    assert isinstance(pretrained, PretrainedPrithviTL)
    return pretrained.build(list(HLS_BANDS), None, inputs)[0].eval()


RUN_INPUTS = PrithviTLInputs(("time", "location"), 2020, 167, "imagery", 45.1, 13.7, "imagery", 3, 3, 3)


@pytest.mark.parametrize("time_scale", [0.5, 0.0])
def test_scene_conditions_feed_each_scene_its_own_date_and_place(time_scale: float) -> None:
    backbone = tl_backbone(time_scale, RUN_INPUTS)
    plain = Backbone(backbone.vit).eval()  # the same encoder in the loop, given coordinates only by hand
    images = torch.randn(2, 6, 32, 48)
    centre = (13.9, 45.3)  # (lon, lat), as SceneInfo holds it

    def features(scene: SceneInfo) -> list[torch.Tensor]:
        with torch.no_grad(), backbone.scene_conditions(scene) as fed:
            assert backbone.coordinates == fed
            return backbone(images)

    def by_hand(temporal: torch.Tensor | None, location: torch.Tensor | None) -> list[torch.Tensor]:
        with torch.no_grad(), backbone.vit.coordinates(temporal, location):
            return plain(images)

    spring = features(SceneInfo(date=date(2020, 3, 1), centre_lonlat=centre))
    autumn = features(SceneInfo(date=date(2021, 10, 1), centre_lonlat=centre))
    assert_same(spring, by_hand(torch.tensor([[[2020.0, 61.0]]]), torch.tensor([[45.3, 13.9]])))
    if time_scale:
        assert (spring[-1] - autumn[-1]).abs().max() > 1e-3  # another date, other features
    else:
        assert_same(spring, autumn)  # a time encoder scaled to zero adds nothing
    assert backbone.coordinates == SceneCoordinates(2020, 167, 45.1, 13.7)  # the run's again after the scene
    assert_same(features(SceneInfo(centre_lonlat=centre)), by_hand(None, torch.tensor([[45.3, 13.9]])))  # no date: no time term
    assert_same(features(SceneInfo()), by_hand(None, None))  # neither: the encoder given no coordinates
    with torch.no_grad():
        trained_with = backbone(images)
    assert_same(trained_with, by_hand(torch.tensor([[[2020.0, 167.0]]]), torch.tensor([[45.1, 13.7]])))


def assert_same(got: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert torch.equal(a, b), (a - b).abs().max()


def test_a_run_without_the_section_maps_without_coordinates() -> None:
    """Runs made before TL models took coordinates have no "prithvi" section: built as they were trained."""
    backbone = tl_backbone(0.5, None)
    assert not backbone.takes_scene_info and backbone.coordinates == SceneCoordinates()
    assert tl_backbone(0.5, RUN_INPUTS).takes_scene_info
    unused = PrithviTLInputs(("time", "location"), images=2)
    assert not tl_backbone(0.5, unused).takes_scene_info


# -- end to end through the CLI -------------------------------------------------------------------


def probabilities(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


def test_pull_adapt_inspect_predict_evaluate_through_the_cli(hub: HubStandIn, tmp_path: Path) -> None:
    files, _ = tiny_tl_repo(depth=DEPTH, seed=1, time_scale=1.0, location_scale=1.0)
    commit = hub.add_commit(TINY_TL_REPO, files)
    runner = CliRunner()
    pulled = runner.invoke(app, ["pull", "prithvi-eo-2-tiny"])
    assert pulled.exit_code == 0 and commit in pulled.stdout, pulled.output

    data = labeled_folder(tmp_path / "data")
    run = tmp_path / "run"
    flags = [
        "--backbone",
        "prithvi-eo-2-tiny",
        "--modules",
        "lora,adapter,earth,prompt",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--crop",
        "32",
        "--fisher-samples",
        "2",
        "--select",
        "2",
        "--val-every",
        "3",
        "--device",
        "cpu",
    ]
    adapted = runner.invoke(app, ["adapt", str(data), "-o", str(run), *flags])
    assert adapted.exit_code == 0, adapted.output
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["selection"]["kinds"] == ["lora", "adapter", "earth", "prompt"]
    backbone = manifest["backbone"]
    assert backbone["source"]["revision"] == commit and backbone["architecture"] == "prithvi_eo_v2_tiny_tl"
    days = sorted(int(Path(name).stem[-3:]) for name in manifest["data"]["train_images"])  # HLS names: ...2020061
    section = backbone["prithvi"]
    assert (section["year"], section["day_of_year"]) == (2020, days[(len(days) - 1) // 2])
    assert (section["time_from"], section["location_from"]) == ("imagery", "imagery")
    assert section["coords_encoding"] == ["time", "location"] and section["dated_images"] == section["images"] == len(days)
    shown = runner.invoke(app, ["inspect", str(run)])
    assert shown.exit_code == 0, shown.output
    assert f"time       2020 day {section['day_of_year']} (median date tag of {len(days)} of {len(days)} training" in shown.output
    assert "predict feeds each scene its own date and centre" in shown.output

    # The same pixels and place, dated twice; once undated; once neither dated nor georeferenced.
    scenes = tmp_path / "scenes"
    origin = (400000.0, 5000000.0)
    hls_scene(scenes / "spring.tif", 9, date(2020, 3, 1), origin)
    hls_scene(scenes / "autumn.tif", 9, date(2021, 10, 1), origin)
    hls_scene(scenes / "undated.tif", 9, None, origin)
    hls_scene(scenes / "bare.tif", 9, None, None)
    maps = tmp_path / "maps"
    predicted = runner.invoke(
        app, ["predict", str(run), str(scenes), "-o", str(maps), "--tile", "64", "--overlap", "16", "--probabilities", "--vector", "none", "--device", "cpu"]
    )
    assert predicted.exit_code == 0, predicted.output
    shares = {name: probabilities(maps / f"{name}.probabilities.tif").astype(int) for name in ("spring", "autumn", "undated", "bare")}
    assert np.abs(shares["spring"] - shares["autumn"]).max() > 0  # another date, another map
    assert np.abs(shares["spring"] - shares["undated"]).max() > 0

    # References: the spring scene's pixels mapped with coordinates set by hand.
    loaded = load_for_inference(run, MapOptions(device="cpu"))
    model_backbone = loaded.model.backbone
    assert isinstance(model_backbone, PrithviTLBackbone) and model_backbone.takes_scene_info

    def reference(coordinates: SceneCoordinates, out: Path) -> np.ndarray:
        model_backbone.coordinates = coordinates
        summary = predict_many(
            loaded.model,
            [scenes / "spring.tif"],
            out,
            bands=lambda p: match_bands(loaded.manifest.bands, p),
            stats=loaded.manifest.normalization,
            class_table=loaded.manifest.classes,
            options=PredictOptions(tile=64, overlap=16, batch_size=MapOptions().batch_size, multiple_of=16, probabilities=True),
        )
        assert [o.status for o in summary.outcomes] == ["done"]
        return probabilities(out / "spring.probabilities.tif").astype(int)

    with rasterio.open(scenes / "spring.tif") as dataset:
        lon, lat = read_scene_info(dataset).centre_lonlat  # type: ignore[misc]
    assert np.array_equal(shares["bare"], reference(SceneCoordinates(), tmp_path / "ref-none"))  # no date, no place: no term
    assert np.array_equal(shares["undated"], reference(SceneCoordinates(latitude=lat, longitude=lon), tmp_path / "ref-place"))
    assert np.array_equal(shares["spring"], reference(SceneCoordinates(2020, 61, lat, lon), tmp_path / "ref-spring"))

    evaluated = runner.invoke(app, ["evaluate", str(run), str(data), "--json", "--tile", "64", "--overlap", "16", "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["pixels"] == 3 * SIZE * SIZE
