"""`--backbone clay-v1` end to end: pulled from a Hub stand-in that serves the authors' file layout
(made-with-clay/Clay: no config.json, `v1.5/clay-v1.5.ckpt`, a Lightning checkpoint), adapted
with every toolbox kind in Clay's blocks, then `inspect`, `predict` and `evaluate` through the CLI. Also
the run's inputs (platform, wavelengths, pixel size, date, place, normalisation) and their record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from clay_repo import CLAY_CHECKPOINT, CLAY_REPO, tiny_clay_checkpoint, tiny_clay_repo
from data_rasters import write_tif
from hubserver import HubStandIn
from rasterio.transform import from_origin
from typer.testing import CliRunner

from cegate_cli.backbone.clay import AUTHORS_SIZES, ClayEncoder, Conditions, encode_location, encode_time
from cegate_cli.backbone.clay_backbone import ClayBackbone, PretrainedClay, load_pretrained_clay, run_conditions
from cegate_cli.backbone.clay_inputs import ClayBandUse, ClayInputs, ClayRecord, ClayShape, settle_clay_inputs
from cegate_cli.backbone.hub import resolve_backbone
from cegate_cli.backbone.registry import find_alias, load_pretrained
from cegate_cli.cli import app
from cegate_cli.data.scene_info import SceneInfo
from cegate_cli.data.stats import BandStats
from cegate_cli.errors import BackboneNotFoundError, InputError
from cegate_cli.infra.record_fields import FieldTypeError
from cegate_cli.pipelines.inference import MapOptions, load_for_inference, scene_conditions

RGBN = ("blue", "green", "red", "nir")
S2_WAVES = (0.493, 0.56, 0.665, 0.842)


@pytest.fixture(scope="module")
def repo_files() -> dict[str, bytes]:
    return tiny_clay_repo(seed=4)


def tag_date(path: Path, date: str) -> None:
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(ACQUISITION_DATE=date)


# -- the Hub layout ------------------------------------------------------------------------------------


def test_pull_clay_v1_from_the_authors_layout_then_offline(hub: HubStandIn, repo_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    found = find_alias("clay-v1")
    assert found is not None and found[0].name == "clay" and found[1].repo_id == CLAY_REPO
    commit = hub.add_commit(CLAY_REPO, repo_files)
    result = CliRunner().invoke(app, ["pull", "clay-v1", "--json"])
    assert result.exit_code == 0, result.output
    pulled = json.loads(result.stdout)
    assert pulled["kind"] == "clay" and pulled["repo_id"] == CLAY_REPO and pulled["revision"] == commit
    assert pulled["config_path"] is None and pulled["weights_path"].endswith(f"/snapshots/{commit}/{CLAY_CHECKPOINT}")
    assert pulled["weights_sha256"] == hashlib.sha256(repo_files[CLAY_CHECKPOINT]).hexdigest()
    assert hub.count("HEAD", "config.json") == 0  # the alias names a layout without one: nothing asked for it

    plain = resolve_backbone(f"hf-hub:{CLAY_REPO}")  # no alias: config.json is missing, the checkpoint's name says Clay
    assert plain.kind == "clay" and plain.revision == commit and plain.weights_path == Path(pulled["weights_path"])

    hub.add_commit("someorg/card-only", {"README.md": b"# nothing else"})
    with pytest.raises(BackboneNotFoundError, match=r"has no file 'config.json' at revision main, nor a checkpoint cegate knows by name \(v1\.5/clay"):
        resolve_backbone("hf-hub:someorg/card-only")

    newer = hub.add_commit(CLAY_REPO, tiny_clay_repo(seed=5))
    assert resolve_backbone("clay-v1").revision == newer
    assert resolve_backbone("clay-v1", revision=commit).weights_sha256 == pulled["weights_sha256"]

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.stop()
    for spec in ("clay-v1", f"hf-hub:{CLAY_REPO}"):
        cached = resolve_backbone(spec, revision=commit)
        assert cached.kind == "clay" and cached.revision == commit and cached.weights_sha256 == pulled["weights_sha256"]
    pretrained = load_pretrained(resolve_backbone("clay-v1", revision=commit))
    assert isinstance(pretrained, PretrainedClay) and pretrained.architecture == "clay-tiny"
    assert (pretrained.embed_dim, pretrained.patch_size(None), pretrained.encoder.depth) == (192, 8, 6)
    expected = tiny_clay_checkpoint(seed=4)["state_dict"]["model.encoder.transformer.layers.2.0.to_qkv.weight"]
    assert torch.equal(pretrained.encoder.blocks[2].attn.qkv.weight, expected)  # the checkpoint's values, by the authors' names


def test_a_folder_holding_the_checkpoint_alone_is_clay(tmp_path: Path, repo_files: dict[str, bytes]) -> None:
    folder = tmp_path / "clay"
    folder.mkdir()
    (folder / "clay-v1.5.ckpt").write_bytes(repo_files[CLAY_CHECKPOINT])
    source = resolve_backbone(str(folder))
    assert source.kind == "clay" and source.config_path is None and source.weights_path == folder.resolve() / "clay-v1.5.ckpt"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BackboneNotFoundError, match=r"has no config.json; it needs config.json and the weights, or a checkpoint .*clay-v1\.5\.ckpt"):
        resolve_backbone(str(empty))


def test_a_checkpoint_with_pickled_objects_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "clay-v1.5.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": dt.date(2024, 1, 1)}, path)  # an object beyond tensors
    with pytest.raises(InputError) as refused:
        load_pretrained_clay(path)
    message = str(refused.value)
    assert "\n" not in message and "could not be read as tensors" in message and "clay-v1.5.safetensors" in message


# -- adapt, inspect, predict, evaluate -----------------------------------------------------------------


def test_adapt_inspect_predict_evaluate_through_the_cli(hub: HubStandIn, repo_files: dict[str, bytes], demo_dataset, tmp_path: Path) -> None:
    commit = hub.add_commit(CLAY_REPO, repo_files)
    demo = demo_dataset(n_source=3, n_target=2, size=64, seed=2)
    source = tmp_path / "source"
    shutil.copytree(demo.source_dir, source)
    dates = {image.name: f"2021-06-{10 + index:02d}" for index, image in enumerate(sorted((source / "images").glob("*.tif")))}
    for name, date in dates.items():
        tag_date(source / "images" / name, date)
    runner = CliRunner()
    run = tmp_path / "run"
    flags = [
        "--backbone",
        "clay-v1",
        "--modules",
        "lora,adapter,earth,prompt",
        "--steps",
        "3",
        "--crop",
        "32",
        "--batch-size",
        "2",
        "--fisher-samples",
        "2",
        "--select",
        "3",
        "--val-every",
        "3",
        "--device",
        "cpu",
    ]
    result = runner.invoke(app, ["adapt", str(source), "-o", str(run), *flags])
    assert result.exit_code == 0, result.output

    record = json.loads((run / "run.json").read_text())
    backbone = record["backbone"]
    assert backbone["source"]["kind"] == "clay" and backbone["source"]["revision"] == commit
    assert backbone["architecture"] == "clay-tiny" and backbone["patch_size"] == 8 and backbone["depth"] == 6
    assert [(m["band"], m["copied_from"]) for m in backbone["band_mapping"]] == [(b, b) for b in RGBN]
    clay = backbone["clay"]
    assert clay["platform"] == "sentinel-2-l2a"  # four 10 m bands: Sentinel-2's wavelengths
    assert [(b["band"], b["wavelength_um"]) for b in clay["bands"]] == list(zip(RGBN, S2_WAVES))
    assert clay["encoder"] == {"dim": 192, "depth": 6, "heads": 4, "dim_head": 48, "mlp_ratio": 2.0, "patch_size": 8}
    assert (clay["gsd_m"], clay["gsd_from"]) == (10.0, "imagery")
    trained_on = sorted(dates[Path(image).name] for image in record["data"]["train_images"])
    assert (clay["date"], clay["date_from"]) == (trained_on[(len(trained_on) - 1) // 2], "imagery")  # their (lower) median
    assert clay["place_from"] == "imagery" and 10 < clay["lon"] < 16 and 45 < clay["lat"] < 48  # UTM 33N, near 5200 km north
    assert clay["normalize"] == "pretrained"  # reflectance x 10,000: the platform's statistics
    assert record["normalization"]["mean"] == [1105.0, 1355.0, 1552.0, 2743.0]
    report = json.loads(runner.invoke(app, ["inspect", str(run), "--json"]).stdout)
    scored = {(s["kind"], s["layer"]) for s in report["scores"]}
    assert scored == {(kind, layer) for kind in ("lora", "adapter", "earth", "prompt") for layer in range(6)}  # in every Clay block

    shown = runner.invoke(app, ["inspect", str(run)])
    assert shown.exit_code == 0, shown.output
    assert "platform   sentinel-2-l2a: blue 0.493 um, green 0.56 um, red 0.665 um, nir 0.842 um" in shown.output
    assert f"date {clay['date']} (imagery)" in shown.output and "heads 4 x 48" in shown.output

    hub.stop()  # predict and evaluate find the backbone in the cache at the recorded revision
    scenes = demo.target_dir / "images"
    maps = tmp_path / "maps"
    predicted = runner.invoke(
        app, ["predict", str(run), str(scenes), "-o", str(maps), "--tile", "32", "--overlap", "8", "--device", "cpu", "--offline", "--vector", "none"]
    )
    assert predicted.exit_code == 0, predicted.output
    for scene in sorted(scenes.glob("*.tif")):
        with rasterio.open(maps / f"{scene.stem}.mask.tif") as mask, rasterio.open(scene) as image:
            assert mask.shape == image.shape and mask.crs == image.crs
    evaluated = runner.invoke(
        app, ["evaluate", str(run), str(demo.target_labels_dir), "--json", "--tile", "32", "--overlap", "8", "--device", "cpu", "--offline"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert 0.0 <= json.loads(evaluated.stdout)["miou"] <= 1.0

    loaded = load_for_inference(run, MapOptions(device="cpu", offline=True))
    model = loaded.model.backbone
    assert isinstance(model, ClayBackbone) and model.conditions == run_conditions(loaded.manifest.backbone.inputs)
    assert model.conditions.time == encode_time(dt.datetime.fromisoformat(clay["date"]))
    target = tmp_path / "dated.tif"
    shutil.copy(sorted(scenes.glob("*.tif"))[0], target)
    tag_date(target, "2022-01-05")
    trained = model.conditions
    with scene_conditions(model)(target) as fed:
        assert model.conditions == fed and fed.gsd_m == 15.0 and fed.time == encode_time(dt.datetime(2022, 1, 5))  # the scene's own
        assert fed.location not in (trained.location, (0.0, 0.0, 0.0, 0.0))  # UTM 34N, not the training scenes' 33N
    assert model.conditions == trained


def test_bands_clay_has_no_wavelength_for_are_one_line_exit_2(tmp_path: Path, repo_files: dict[str, bytes]) -> None:
    folder = tmp_path / "clay"
    folder.mkdir()
    (folder / "clay-v1.5.ckpt").write_bytes(repo_files[CLAY_CHECKPOINT])
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for i in range(2):
        write_tif(data / "images" / f"t{i}.tif", rng.integers(0, 3000, (3, 32, 32)).astype(np.uint16), descriptions=("coastal", "blue", "green"))
        write_tif(data / "masks" / f"t{i}.tif", (np.arange(32 * 32).reshape(32, 32) % 2).astype(np.uint8))
    result = CliRunner().invoke(app, ["adapt", str(data), "-o", str(tmp_path / "run"), "--backbone", str(folder), "--crop", "32"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and "band(s) coastal: Clay has no wavelength for them; it knows blue, green, red" in lines[0]
    assert not (tmp_path / "run" / "run.json").exists()


# -- the run's inputs --------------------------------------------------------------------------------


def write_scene(path: Path, data: np.ndarray, pixel: float, date: str | None, bands: tuple[str, ...] = RGBN, crs: str = "EPSG:32618") -> Path:
    write_tif(path, data, crs=crs, transform=from_origin(500000, 4500000, pixel, pixel), descriptions=bands)
    if date:
        tag_date(path, date)
    return path


def stats_of(paths: list[Path], bands: tuple[str, ...] = RGBN) -> BandStats:
    values = np.concatenate([rasterio.open(p).read().reshape(len(bands), -1) for p in paths], axis=1).astype(np.float64)
    return BandStats(bands, tuple(values.mean(1)), tuple(values.std(1)))


def test_aerial_8_bit_imagery_is_naip_with_its_statistics(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    paths = [
        write_scene(tmp_path / f"n{i}.tif", rng.integers(60, 160, (4, 16, 16)).astype(np.uint8), 0.6, date)
        for i, date in enumerate(("2020-07-01", None, "2020-07-03"))
    ]
    inputs, stats, warnings = settle_clay_inputs(RGBN, paths, stats_of(paths))
    assert inputs.platform == "naip" and inputs.wavelengths_um == (0.48, 0.56, 0.65, 0.842)  # NAIP's, not Sentinel-2's
    assert (inputs.gsd_m, inputs.date, inputs.normalize) == (0.6, "2020-07-01", "pretrained")  # the lower median of two dates
    assert stats.mean == (98.15, 115.41, 110.16, 139.04) and not warnings
    assert abs(inputs.lon - (-75.0)) < 0.1 and abs(inputs.lat - 40.65) < 0.1  # UTM 18N, 500 km east, 4500 km north


def test_reflectance_in_other_units_keeps_the_runs_statistics_and_unknowns_are_said(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    paths = [write_tif(tmp_path / "r.tif", rng.random((4, 16, 16)).astype(np.float32) * 0.3, crs=None, transform=None, descriptions=RGBN)]
    own = stats_of(paths)
    inputs, stats, warnings = settle_clay_inputs(RGBN, paths, own)
    assert inputs.normalize == "data" and stats == own and inputs.own_statistics
    assert (inputs.gsd_from, inputs.date_from, inputs.place_from) == ("platform", "unknown", "unknown")
    assert inputs.gsd_m == 10.0 and inputs.date is None and inputs.lon is None  # the platform's pixel size; time, place zeros
    assert run_conditions(inputs) == Conditions(10.0)
    assert any("no georeferencing" in w for w in warnings) and any("no acquisition date" in w for w in warnings)


def test_scene_conditions_feed_a_scenes_own_facts_and_zeros_for_unknowns() -> None:
    torch.manual_seed(0)
    encoder = ClayEncoder(AUTHORS_SIZES["tiny"]).eval()
    pretrained = PretrainedClay(encoder, "clay-tiny")
    inputs = ClayInputs(
        "naip",
        tuple(ClayBandUse(b, b, w) for b, w in zip(RGBN, (0.48, 0.56, 0.65, 0.842))),
        0.6,
        date="2020-07-01",
        date_from="imagery",
        lon=-75.0,
        lat=40.0,
        place_from="imagery",
        normalize="pretrained",
    )
    backbone, mapping = pretrained.build(RGBN, None, inputs)
    assert mapping.source_channel == tuple(pretrained.band_names.index(b) for b in RGBN)
    assert backbone.conditions == Conditions(0.6, encode_time(dt.datetime(2020, 7, 1)), encode_location(40.0, -75.0))
    images = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = backbone(images)[-1]
        with backbone.scene_conditions(SceneInfo(gsd_m=None, date=dt.date(2021, 3, 1), centre_lonlat=(10.0, 50.0))) as fed:
            assert fed == Conditions(0.6, encode_time(dt.datetime(2021, 3, 1)), encode_location(50.0, 10.0))  # unknown size: the run's
            inside = backbone(images)[-1]
        with backbone.scene_conditions(SceneInfo(gsd_m=1.0)) as fed:
            assert fed == Conditions(1.0)  # no date, no place: zeros
        after = backbone(images)[-1]
    assert torch.equal(before, after) and not torch.allclose(before, inside)
    with pytest.raises(InputError, match="settled for the bands blue, green, red, nir, not red, green"):
        pretrained.build(("red", "green"), None, inputs)


def test_the_record_reads_back_and_names_a_damaged_field() -> None:
    inputs = ClayInputs(
        "sentinel-2-l2a",
        tuple(ClayBandUse(b, b, w) for b, w in zip(RGBN, S2_WAVES)),
        10.0,
        date="2021-06-11",
        date_from="imagery",
        lon=13.5,
        lat=46.9,
        place_from="imagery",
        normalize="pretrained",
    )
    record = ClayRecord(inputs, ClayShape(192, 6, 4, 48, 2.0, 8))
    written = json.loads(json.dumps(record.to_dict()))
    assert ClayRecord.from_dict(written) == record
    for field, value, message in (
        ("gsd_m", "ten", r"backbone\.clay\.gsd_m is 'ten', not a number"),
        ("date", "2021-13-01", r"backbone\.clay\.date '2021-13-01': not a date"),
        ("platform", "planet", r"Clay platform 'planet'"),
        ("bands", [{"band": "red"}], r"backbone\.clay is damaged \(.*missing 2 required"),
    ):
        damaged = {**written, field: value}
        with pytest.raises(FieldTypeError, match=message):
            ClayRecord.from_dict(damaged)
    with pytest.raises(FieldTypeError, match=r"backbone\.clay\.encoder is missing"):
        ClayRecord.from_dict({k: v for k, v in written.items() if k != "encoder"})
