"""Bad input gets one line naming the file or flag and what to do, exit code 2, and nothing written.

Each case here once ended in a traceback, a multi-line dump or a message in internal words (issue 13).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from data_rasters import write_tif
from PIL import Image
from predict_rasters import band_stats, class_table, pixel_model, random_scene, write_scene
from rasterio.enums import ColorInterp
from rasterio.errors import NodataShadowWarning, NotGeoreferencedWarning
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.data.classes import load_class_table
from cegate_cli.data.crops import CropSampler, CropWindow
from cegate_cli.data.folder import discover_labeled
from cegate_cli.data.stats import BandStats
from cegate_cli.errors import DataError, DataFileNotFoundError, InputError
from cegate_cli.predict import PredictOptions, VectorOptions, expand_inputs, predict_many

GOOD_CLASSES = "classes:\n  - {id: 0, name: water}\n  - {id: 1, name: land}\n"


def one_error_line(output: str) -> str:
    """The CLI's whole answer must be a single `Error: ...` line (no traceback, no YAML dump)."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("Error: "), output
    return lines[0]


@pytest.fixture(scope="module")
def labeled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny labeled folder: two 16 x 16 scenes with classes 0 and 1."""
    root = tmp_path_factory.mktemp("labeled")
    for stem in ("a", "b"):
        write_tif(root / "images" / f"{stem}.tif", np.random.default_rng(0).integers(1, 500, (3, 16, 16)).astype(np.uint16))
        write_tif(root / "masks" / f"{stem}.tif", np.resize(np.array([0, 1], np.uint8), 256).reshape(16, 16))
    (root / "classes.yaml").write_text(GOOD_CLASSES)
    return root


# -- classes.yaml ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"classes:\n  - {id: 0, name: water, color: '#zzzzzz'}\n", r"class 'water': colour '#zzzzzz' is not \[r, g, b\]"),
        (b"classes:\n  - {id: zero, name: water}\n", r"class 'water': id 'zero' is not a whole number from 0 to 254"),
        (b"classes:\n  - {id: 1.5, name: water}\n", r"id 1.5 is not a whole number"),
        (b"classes:\n  - {id: true, name: water}\n", r"id True is not a whole number"),
        (b"ignore_index: none\n" + GOOD_CLASSES.encode(), r"ignore_index 'none' is not a whole number from 0 to 255"),
        (b"ignore_index: 300\n" + GOOD_CLASSES.encode(), r"ignore_index 300 is not a whole number from 0 to 255"),
        (b"classes:\n  - {id: 0, name: \xff\xfe}\n", r"not UTF-8 text \(byte 0xff at offset 27\); save it as UTF-8"),
        (b"classes:\n  - {id: 0, name: a}\n  - {id: 0, name: b}\n", r"class id\(s\) \[0\] appear more than once"),
        (b"classes:\n  - {id: 0, name: a\n  - [\n", r"not valid YAML at line 3, column 5 \(expected ',' or '}'"),
        (b"classes:\n  - {id: 3, name: ''}\n", r"class entry 1 has an empty name"),
    ],
)
def test_bad_class_tables_are_one_line_naming_the_file(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "classes.yaml"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected) as err:
        load_class_table(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_cli_bad_class_table_is_one_error_line_and_writes_nothing(labeled: Path, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    shutil.copytree(labeled, folder)
    for content in (b"classes:\n  - {id: 0, name: a\n  - [\n", b"classes:\n  - {id: 0, name: water, color: '#zzzzzz'}\n"):
        (folder / "classes.yaml").write_bytes(content)
        result = CliRunner().invoke(app, ["adapt", str(folder), "-o", str(tmp_path / "run"), "--backbone", "tiny"])
        assert result.exit_code == 2, result.output
        assert str(folder / "classes.yaml") in one_error_line(result.output)
        assert not (tmp_path / "run").exists()


# -- adapt flags: checked by the config dataclasses before anything is written ---------------------


@pytest.mark.parametrize(
    "flags,expected",
    [
        (["--lora-rank", "0"], "--lora-rank 0: the LoRA rank must be at least 1"),
        (["--lora-rank", "-3"], "--lora-rank -3: the LoRA rank must be at least 1"),
        (["--lr", "-1"], "--lr -1.0: the learning rate must be a positive number"),
        (["--lr", "nan"], "--lr nan: the learning rate must be a positive number"),
        (["--fisher-samples", "0"], "--fisher-samples 0: must be at least 1"),
        (["--val-fraction", "1.5"], "--val-fraction 1.5: the share of images held out for validation lies in [0, 1)"),
        (["--ignore-index", "300"], "--ignore-index 300: must be between 0 and 255"),
        (["--select", "5.0"], "--select '5.0': a count must be a whole number written without a decimal point"),
        (["--seed", "-1"], "--seed -1: must be 0 or more"),
        (["--reselect-every", "-2"], "--reselect-every -2: must be 0 or more"),
        (["--decoder", "foo"], "--decoder 'foo': choose one of unet, linear, linear-pixel"),
        (["--steps", "0"], "--steps 0: must be at least 1"),
        (["--class-weight-power", "-0.5"], "--class-weight-power -0.5: must lie in [0, 2]"),
        # Sizes past what a machine holds (issue 32): each once hung, ate the memory or ended in a traceback.
        (["--batch-size", "100000"], "--batch-size 100000: at most 1024 crops per pass (4 to 64 is usual; this machine"),
        (["--lora-rank", "10000000"], "--lora-rank 10000000: at most 4096; a rank above the backbone's embedding width"),
        (["--crop", "65536"], "--crop 65536: at most 2048 pixels a side; one crop of 65536 px is 16.0 GiB per band"),
        (["--crop", "2048", "--batch-size", "64"], "--batch-size 64 with --crop 2048: 268 million pixels per pass, more than the 67"),
        (["--fisher-samples", "5000"], "--fisher-samples 5000: at most 1024 crops per pass"),
        (["--seed", str(2**70)], f"--seed {2**70}: must be 0 to 4294967295"),
        (["--normalize", "foo"], "--normalize 'foo': choose auto, pretrained, data"),  # with --backbone tiny too
        (["--month", "13"], "--month 13: give a month from 1 (January) to 12 (December)"),
        (["--resume", "--overwrite"], "--resume and --overwrite together: --resume continues the interrupted run in"),
    ],
)
def test_cli_bad_adapt_values_are_refused_before_anything_is_written(labeled: Path, tmp_path: Path, flags: list[str], expected: str) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["adapt", str(labeled), "-o", str(out), "--backbone", "tiny", "--steps", "2", *flags])
    assert result.exit_code == 2, result.output
    assert expected in one_error_line(result.output)
    assert not out.exists()  # no run.json left in status "training", not even an empty folder


@pytest.mark.parametrize(
    "command",
    [
        ["adapt", "{labeled}", "-o", "{out}", "--steps", "-3"],
        ["adapt", "{labeled}", "-o", "{out}", "--normalize", "foo"],
        ["adapt", "{labeled}", "-o", "{out}", "--select", "5.0"],
        ["adapt", "{labeled}", "-o", "{out}", "--decoder", "foo"],
        ["adapt", "{labeled}", "-o", "{out}", "--resume", "--overwrite"],
        ["predict", "{out}", "{labeled}", "-o", "{out}", "--tile", "7"],
        ["predict", "{out}", "{labeled}", "-o", "{out}", "--min-area", "nan"],
        ["evaluate", "{out}", "{labeled}", "--batch-size", "0"],
    ],
)
def test_a_mistyped_value_is_answered_before_torch_loads(labeled: Path, tmp_path: Path, command: list[str]) -> None:
    """A typo is answered in a fraction of a second: the checks are the torch-free option classes'."""
    code = "import sys\nfrom cegate_cli.cli import main\ntry:\n    main()\nexcept SystemExit as exc:\n    print('exit', exc.code, 'torch' in sys.modules)\n"
    args = [part.format(labeled=labeled, out=tmp_path / "run") for part in command]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "exit 2 False", result.stdout + result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--steps", "6o"], "'6o' is not a valid integer"),
        (["--steps=6o"], "'6o' is not a valid integer"),
        (["--lr", "1e-3x"], "'1e-3x' is not a valid number"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_in_the_message(labeled: Path, tmp_path: Path, flags: list[str], expected: str) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["adapt", str(labeled), "-o", str(out), *flags])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split()), result.output
    assert not out.exists()


def test_lora_rank_above_the_backbones_width_is_refused_naming_it(labeled: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["adapt", str(labeled), "-o", str(out), "--backbone", "tiny", "--steps", "2", "--lora-rank", "97"])
    assert result.exit_code == 2, result.output
    assert "--lora-rank 97: at most the backbone's embedding width, 96" in one_error_line(result.output)
    assert not out.exists()


def test_galileo_patch_size_beyond_its_kernels_names_the_patch_not_the_crop(labeled: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["adapt", str(labeled), "-o", str(out), "--backbone", "galileo-nano", "--patch-size", "9"])
    assert result.exit_code == 2, result.output
    assert "--patch-size 9: Galileo takes patch sizes 1 to 8" in one_error_line(result.output)  # was: "--crop 128 is not a multiple of 9"
    assert not out.exists()


def test_a_folder_named_classes_yaml_is_named_not_passed_over(labeled: Path, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    shutil.copytree(labeled, folder)
    (folder / "classes.yaml").unlink()
    (folder / "classes.yaml").mkdir()
    result = CliRunner().invoke(app, ["adapt", str(folder), "-o", str(tmp_path / "run"), "--backbone", "tiny"])
    assert result.exit_code == 2, result.output
    assert f"{folder / 'classes.yaml'}: is a folder, not a file" in one_error_line(result.output)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "command,flags,expected",
    [
        ("predict", ["--min-area", "nan"], "--min-area nan: give square metres as a finite number, 0 or more"),
        ("predict", ["--min-area", "-1"], "--min-area -1.0: give square metres as a finite number, 0 or more"),
        ("predict", ["--simplify", "inf"], "--simplify inf: give metres as a finite number, 0 or more"),
        ("predict", ["--vector", "shp"], "--vector 'shp': choose geojson, gpkg or none"),
        ("predict", ["--weights", "foo"], "--weights 'foo': choose best or last"),
        ("evaluate", ["--weights", "foo"], "--weights 'foo': choose best or last"),  # scored the last step's weights
        ("evaluate", ["--tile", "65536"], "--tile 65536: at most 2048 pixels a side"),
        ("predict", ["--batch-size", "100000"], "--batch-size 100000: at most 1024 tiles per pass"),
        ("predict", ["--overlap", "512"], "--overlap 512: must be 0 or more and below --tile 512"),
    ],
)
def test_cli_bad_map_values_are_refused_before_the_run_is_read(tmp_path: Path, command: str, flags: list[str], expected: str) -> None:
    inputs = [str(tmp_path)] if command == "evaluate" else [str(tmp_path), "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [command, str(tmp_path / "no-run"), *inputs, *flags])
    assert result.exit_code == 2, result.output
    assert one_error_line(result.output).startswith(f"Error: {expected}")
    assert not (tmp_path / "out").exists()


def test_select_spelling_decides_count_or_fraction() -> None:
    from cegate_cli.errors import InputError
    from cegate_cli.toolbox.fisher import parse_select

    assert parse_select("5", 18) == 5 and parse_select("0.25", 18) == 5 and parse_select("1.0", 18) == 18
    with pytest.raises(InputError, match="for 5 modules write 5"):
        parse_select("5.0", 18)
    with pytest.raises(InputError, match="for 5 modules write 5"):
        parse_select(5.0, 18)


# -- files that are not what their name says ---------------------------------------------------------


def _image_bytes(fmt: str, channels: int) -> bytes:
    buffer = io.BytesIO()
    data = np.random.default_rng(0).integers(0, 255, (16, 16, channels), dtype=np.uint8)
    Image.fromarray(data.squeeze()).save(buffer, format=fmt)
    return buffer.getvalue()


def test_labeled_folder_names_what_each_odd_file_really_is(labeled: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(labeled, root)
    for stem in ("png", "jpeg", "fifo", "loop", "folder"):
        shutil.copy(root / "images" / "a.tif", root / "images" / f"{stem}.tif")
        shutil.copy(root / "masks" / "a.tif", root / "masks" / f"{stem}.tif")
    (root / "images" / "png.tif").write_bytes(_image_bytes("PNG", 3))
    (root / "masks" / "jpeg.tif").write_bytes(_image_bytes("JPEG", 1))
    (root / "images" / "fifo.tif").unlink()
    os.mkfifo(root / "images" / "fifo.tif")
    (root / "images" / "loop.tif").unlink()
    (root / "images" / "loop.tif").symlink_to("loop.tif")
    (root / "images" / "folder.tif").unlink()
    (root / "images" / "folder.tif").mkdir()
    with pytest.raises(DataError) as err:
        discover_labeled(root)
    text = str(err.value)
    for expected in (
        "images/png.tif: is a PNG image with a .tif name, not a GeoTIFF; convert it",
        "masks/jpeg.tif: is a JPEG image with a .tif name, not a GeoTIFF",
        "images/fifo.tif: is a named pipe (FIFO), not a GeoTIFF file",
        "images/loop.tif: is a symbolic link that loops back on itself",
        "images/folder.tif: is a folder, not a GeoTIFF file",
    ):
        assert expected in text, text
    assert "grid differs" not in text and "no image" not in text and "no such file" not in text


def _predict(inputs, out: Path, **kwargs):
    return predict_many(
        pixel_model(),
        inputs,
        out,
        bands=(1, 2, 3),
        stats=band_stats(3),
        class_table=class_table(4),
        options=PredictOptions(tile=32, overlap=8),
        **kwargs,
    )


def test_predict_names_what_each_odd_input_really_is(tmp_path: Path) -> None:
    scenes = tmp_path / "in"
    write_scene(scenes / "good.tif", random_scene(20, 20))
    (scenes / "png.tif").write_bytes(_image_bytes("PNG", 3))
    (scenes / "loop.tif").symlink_to("loop.tif")
    os.mkfifo(scenes / "fifo.tif")
    with pytest.raises(DataError, match=r"fifo.tif: is a named pipe \(FIFO\)"):
        expand_inputs([str(scenes / "fifo.tif")])  # named explicitly: not "no such file or folder"
    summary = _predict(expand_inputs([str(scenes)]), tmp_path / "out", vectors=VectorOptions(fmt=None))
    assert [o.source.name for o in summary.done] == ["good.tif"]
    messages = {o.source.name: o.message for o in summary.failed}
    assert "is a named pipe (FIFO)" in messages["fifo.tif"]
    assert "is a symbolic link that loops back on itself" in messages["loop.tif"]
    assert "is a PNG image with a .tif name" in messages["png.tif"]


def test_predict_given_a_labeled_folder_names_its_images_folder(tmp_path: Path) -> None:
    """`predict RUN ./test` where ./test holds images/ and masks/: the error names ./test/images."""
    write_scene(tmp_path / "test" / "images" / "s.tif", random_scene(20, 20))
    (tmp_path / "test" / "masks").mkdir()
    with pytest.raises(DataFileNotFoundError, match=rf"test: folder holds no .*; did you mean {tmp_path / 'test' / 'images'}\?$"):
        expand_inputs([str(tmp_path / "test")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileNotFoundError, match=r"empty: folder holds no .tif/.tiff scenes or STAC item .json files$"):
        expand_inputs([str(tmp_path / "empty")])


def test_predict_out_pointing_at_a_file_is_refused_up_front(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", random_scene(20, 20))
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(InputError, match=r"-o .*afile.*, not a folder; give a folder for the outputs"):
            _predict([scene], out)


def test_predict_without_crs_lists_only_what_it_wrote_and_a_rerun_skips(tmp_path: Path) -> None:
    plain = write_scene(tmp_path / "plain.tif", random_scene(40, 40), crs=None, transform=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        first = _predict([plain], tmp_path / "out")
        (outcome,) = first.done
        assert outcome.outputs.all() == [tmp_path / "out" / "plain.mask.tif"]  # no plain.geojson: none was written
        again = _predict([plain], tmp_path / "out")
    assert not again.failed and len(again.skipped) == 1
    assert "--overwrite" in again.skipped[0].message
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["plain.mask.qml", "plain.mask.tif", "plain.mask.tif.aux.xml"]


def test_no_raw_rasterio_warnings_when_training_reads_odd_files(tmp_path: Path) -> None:
    """No CRS, and nodata set beside an alpha band: cegate reads both without a Python warning,
    and a pixel the alpha band hides is not valid even though a nodata value is set too."""
    data = np.random.default_rng(1).integers(1, 200, (4, 16, 16)).astype(np.uint8)
    data[3] = 255
    data[3, :4] = 0  # alpha: the first four rows are transparent
    path = tmp_path / "images" / "rgba.tif"
    path.parent.mkdir()
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=4, dtype="uint8", nodata=0) as dst:
        dst.write(data)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    write_tif(tmp_path / "masks" / "rgba.tif", np.zeros((16, 16), np.uint8), crs=None, transform=None)
    stats = BandStats(("r", "g", "b"), (100.0,) * 3, (50.0,) * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        warnings.simplefilter("error", NodataShadowWarning)
        folder = discover_labeled(tmp_path)  # neither file has a CRS: same (pixel) grid, nothing to say
        with CropSampler(list(folder.pairs), [(1, 2, 3)], stats, crop=16, ignore_index=255, augment=False) as sampler:
            batch = sampler.read([CropWindow(0, 0, 0)])
    assert not batch.valid[0, :4].any() and batch.valid[0, 4:].all()


def test_second_demo_into_an_existing_folder_is_refused_before_anything_else(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, ["demo", str(tmp_path), "--steps", "1"])
    assert result.exit_code == 2
    assert one_error_line(result.output) == f"Error: {tmp_path} already exists; choose another folder or add --overwrite"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


# -- degenerate data: a warning naming the file, or an error when nothing can be trained ---------


def _degenerate_folder(root: Path) -> Path:
    """Three good 32 x 32 uint16 scenes, one all nodata, one 8 x 8 and one uint8."""
    rng = np.random.default_rng(2)
    labels = np.resize(np.array([0, 1], np.uint8), 32 * 32).reshape(32, 32)
    for stem in ("good1", "good2", "good3"):
        write_tif(root / "images" / f"{stem}.tif", rng.integers(1, 3000, (3, 32, 32)).astype(np.uint16), nodata=0)
        write_tif(root / "masks" / f"{stem}.tif", labels)
    write_tif(root / "images" / "blank.tif", np.zeros((3, 32, 32), np.uint16), nodata=0)
    write_tif(root / "masks" / "blank.tif", labels)
    write_tif(root / "images" / "tiny.tif", rng.integers(1, 3000, (3, 8, 8)).astype(np.uint16), nodata=0)
    write_tif(root / "masks" / "tiny.tif", labels[:8, :8])
    write_tif(root / "images" / "bytes.tif", rng.integers(1, 255, (3, 32, 32)).astype(np.uint8), nodata=0)
    write_tif(root / "masks" / "bytes.tif", labels)
    return root


def test_degenerate_images_each_get_a_warning_naming_the_file(tmp_path: Path) -> None:
    from cegate_cli.data.folder import check_image_contents

    root = _degenerate_folder(tmp_path)
    folder = discover_labeled(root)
    contents = check_image_contents(folder.images, [(1, 2, 3)] * len(folder.images), 16, root)
    warnings_ = contents.warnings
    text = "\n".join(warnings_)
    assert "images/blank.tif: has no valid pixel" in text
    assert "images/tiny.tif (8 x 8): is smaller than --crop 16" in text
    assert "images/bytes.tif: holds uint8 values while 4 of 5 images hold uint16" in text
    assert not any("good" in w for w in warnings_)
    assert contents.empty == {root / "images" / "blank.tif"}


def test_all_nan_image_among_good_ones_is_named_and_no_valid_pixel_anywhere_is_an_error(tmp_path: Path) -> None:
    from cegate_cli.data.folder import check_image_contents

    good = write_tif(tmp_path / "good.tif", np.ones((2, 16, 16), np.float32))
    nan = write_tif(tmp_path / "nan.tif", np.full((2, 16, 16), np.nan, np.float32))
    half = np.ones((2, 16, 16), np.float32)
    half[1] = np.nan  # band 2 is NaN everywhere: with both bands used, no pixel is valid
    halfnan = write_tif(tmp_path / "halfnan.tif", half)
    assert check_image_contents([good, nan, halfnan], [(1, 2)] * 3, 16, tmp_path).warnings == [
        "nan.tif: has no valid pixel (every pixel is nodata, NaN or masked in a band the run uses); left out of training and validation",
        "halfnan.tif: has no valid pixel (every pixel is nodata, NaN or masked in a band the run uses); left out of training and validation",
    ]
    assert check_image_contents([halfnan], [(1,)], 16, tmp_path).warnings == []  # band 1 alone is fine
    with pytest.raises(DataError, match=r"no valid pixel in any of the 2 image\(s\) \(nan.tif, halfnan.tif\)"):
        check_image_contents([nan, halfnan], [(1, 2)] * 2, 16, tmp_path)


def test_adapt_reports_degenerate_images_and_refuses_data_without_valid_pixels(tmp_path: Path) -> None:
    from dataclasses import replace

    from cegate_cli.options.train import TrainConfig
    from cegate_cli.pipelines.adapt import AdaptOptions, adapt

    root = _degenerate_folder(tmp_path / "data")
    config = TrainConfig(steps=1, batch_size=2, crop=16, warmup_steps=0, val_every=1, val_crops=1, save_every=1, fisher_samples=2, select="2")
    result = adapt(AdaptOptions(source=root, out=tmp_path / "run", backbone="tiny", train=config))
    assert any(w.startswith("images/blank.tif: has no valid pixel") for w in result.warnings)
    assert any(w.startswith("images/tiny.tif (8 x 8): is smaller than --crop 16") for w in result.warnings)
    assert any(w.startswith("images/bytes.tif: holds uint8 values") for w in result.warnings)
    used = result.manifest.data.train_images + result.manifest.data.val_images
    assert len(used) == 5 and not any(name.endswith("blank.tif") for name in used)  # left out, so validation is never NaN

    empty = tmp_path / "empty"
    for stem in ("a", "b"):
        write_tif(empty / "images" / f"{stem}.tif", np.zeros((3, 16, 16), np.uint16), nodata=0)
        write_tif(empty / "masks" / f"{stem}.tif", np.zeros((16, 16), np.uint8))
    with pytest.raises(DataError, match="no valid pixel in any of the 2 image"):
        adapt(AdaptOptions(source=empty, out=tmp_path / "run2", backbone="tiny", train=replace(config)))
    assert not (tmp_path / "run2").exists()
