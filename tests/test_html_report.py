"""`cegate report`: one self-contained HTML page of a run, checked as data and in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.data.synthetic import DEMO_CLASSES, make_demo_dataset
from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.reporting.png import png_bytes
from cegate_cli.reporting.svg_chart import Series, line_chart, nice_ticks

Image = pytest.importorskip("PIL.Image")  # decodes what the page embeds (Pillow comes with torchvision)

TRAIN = TrainConfig(
    steps=6, batch_size=2, crop=32, warmup_steps=1, val_every=2, val_crops=2, save_every=6, fisher_samples=2, select="3", reselect_every=3, seed=1, device="cpu"
)
MAP = ["--device", "cpu"]
IMG = re.compile(r"<img src='data:image/png;base64,([A-Za-z0-9+/=]+)' alt='([^']*)'")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A tiny run rescored during training, its labeled test folder and `evaluate --json` output."""
    root = tmp_path_factory.mktemp("report")
    data = make_demo_dataset(root / "data", n_source=3, n_target=1, size=72, seed=5, n_target_eval=2)
    run = adapt(AdaptOptions(source=data.source_dir, out=root / "run", backbone="tiny", train=TRAIN)).run_dir
    result = CliRunner().invoke(app, ["evaluate", str(run), str(data.target_labels_dir), "--json", *MAP])
    assert result.exit_code == 0, result.output
    evaluation = root / "evaluation.json"
    evaluation.write_text(result.stdout)
    return data, run, evaluation


def _pictures(page: str) -> list[tuple[str, np.ndarray]]:
    """(caption, RGBA pixels) of every image embedded in the page."""
    return [(alt, np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGBA"))) for data, alt in IMG.findall(page)]


def _colored(mask: np.ndarray, transparent: np.ndarray) -> np.ndarray:
    table = np.zeros((256, 4), np.uint8)
    table[:, :3], table[:, 3] = 64, 255
    for c in DEMO_CLASSES.classes:
        table[c.id, :3] = c.color
    rgba = table[mask]
    rgba[transparent, 3] = 0
    return rgba


def test_png_writer_round_trips_through_pillow() -> None:
    rng = np.random.default_rng(0)
    for channels in (3, 4):
        pixels = rng.integers(0, 256, (7, 13, channels), dtype=np.uint8)
        decoded = np.asarray(Image.open(io.BytesIO(png_bytes(pixels))))
        assert decoded.shape == pixels.shape and np.array_equal(decoded, pixels)
    with pytest.raises(ValueError):
        png_bytes(np.zeros((4, 4), np.uint8))


def test_charts_have_round_ticks_and_escape_labels() -> None:
    assert nice_ticks(0.0, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(3.0, 97.0) == [0.0, 25.0, 50.0, 75.0, 100.0]
    assert nice_ticks(0.31, 2.2) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    one = nice_ticks(60.0, 60.0)  # a run validated once: its point in the middle, not on an edge
    assert one[0] < 60.0 < one[-1] and 60.0 - one[0] == one[-1] - 60.0
    svg = line_chart([Series("loss <ce>", [(1, 2.0), (2, float("nan")), (3, 1.0)], "#444")], title="a & b", x_label="step", y_label="loss")
    assert "loss &lt;ce&gt;" in svg and "a &amp; b" in svg and "nan" not in svg.lower()
    assert svg.count("<path") == 1
    assert "nothing recorded" in line_chart([Series("x", [], "#000")], title="t", x_label="x", y_label="y")


@pytest.mark.parametrize("step", [0, 50, 97, 100])
def test_marker_labels_stay_inside_the_chart(step: int) -> None:
    """The "best" label of a run whose best step is the last used to run off the right edge."""
    from cegate_cli.reporting.svg_chart import ChartStyle, Marker, text_width

    style = ChartStyle(markers=(Marker(step, "best", "#d62728"),))
    svg = line_chart([Series("mIoU", [(0, 0.2), (100, 0.6)], "#1f77b4")], title="t", x_label="step", y_label="mIoU", style=style)
    (found,) = re.findall(r"<text x='([\d.]+)'( text-anchor='end')? y='[\d.]+' font-size='10' fill='#d62728'>best</text>", svg)
    x, anchored_at_end = float(found[0]), bool(found[1])
    start = x - text_width("best", 10) if anchored_at_end else x
    assert 0 <= start and start + text_width("best", 10) <= style.width
    assert anchored_at_end == (step == 100)


def test_report_of_a_run_is_one_self_contained_page(trained) -> None:
    data, run, evaluation = trained
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(run), "--evaluation", str(evaluation)])
    assert result.exit_code == 0, result.output
    page_path = run / "report.html"
    assert result.stdout.strip() == str(page_path)
    page = page_path.read_text(encoding="utf-8")
    for heading in ("Run", "Classes", "Training", "Selection", "Evaluation"):
        assert f"<h2>{heading}</h2>" in page
    # Nothing is fetched: no script, no external stylesheet, no src/href other than inline data.
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert all(ref.startswith("data:") for ref in re.findall(r"(?:src|href)=['\"]([^'\"]*)", page))
    # What run.json records is what the page shows: the rescoring steps, the selection, the per-class IoU.
    manifest = json.loads((run / "run.json").read_text())
    steps = [event["step"] for event in manifest["selection"]["history"]]
    assert steps == [0, 3]
    assert page.count(">rescored<") == 2  # one marker on each curve
    assert page.count(" ●</td>") == len(manifest["selection"]["final"])
    scores = json.loads(evaluation.read_text())
    for row in scores["classes"]:
        assert f"<th>{row['name']}</th>" in page
    assert f"<b>{scores['miou']:.3f}</b>" in page
    for c in DEMO_CLASSES.classes:
        assert f"#{c.color[0]:02x}{c.color[1]:02x}{c.color[2]:02x}" in page
    # The page is a view of the run: writing it again replaces it without --overwrite.
    again = runner.invoke(app, ["report", str(run)])
    assert again.exit_code == 0, again.output
    assert "<h2>Evaluation</h2>" not in page_path.read_text(encoding="utf-8")  # the new page, without --evaluation
    assert runner.invoke(app, ["report", str(run), "--overwrite"]).exit_code == 0


def test_report_replaces_its_own_page_but_not_a_file_of_the_users(trained, tmp_path: Path) -> None:
    _, run, _ = trained
    runner = CliRunner()
    page = tmp_path / "page.html"
    assert runner.invoke(app, ["report", str(run), "-o", str(page)]).exit_code == 0
    page.write_text(page.read_text(encoding="utf-8").replace("</footer>", "old</footer>"), encoding="utf-8")
    assert runner.invoke(app, ["report", str(run), "-o", str(page)]).exit_code == 0
    assert "old</footer>" not in page.read_text(encoding="utf-8")
    # A page from before the generator tag is still known by its title.
    page.write_text("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>cegate report: run</title>", encoding="utf-8")
    assert runner.invoke(app, ["report", str(run), "-o", str(page)]).exit_code == 0
    # Anything else at -o may be the user's: kept unless --overwrite.
    mine = tmp_path / "notes.html"
    mine.write_text("<html><body>my notes</body></html>", encoding="utf-8")
    refused = runner.invoke(app, ["report", str(run), "-o", str(mine)])
    assert refused.exit_code == 2
    assert refused.output.strip() == f"Error: {mine} already exists and is not a report cegate wrote; add --overwrite to replace it, or choose another -o"
    assert mine.read_text(encoding="utf-8") == "<html><body>my notes</body></html>"
    assert runner.invoke(app, ["report", str(run), "-o", str(mine), "--overwrite"]).exit_code == 0
    assert "my notes" not in mine.read_text(encoding="utf-8")


def test_a_run_of_one_step_reads_1_step(trained, tmp_path: Path) -> None:
    _, run, _ = trained
    single = tmp_path / "single"
    shutil.copytree(run, single)
    record = json.loads((single / "run.json").read_text())
    record["training"].update(steps=1, batch_size=1)
    (single / "run.json").write_text(json.dumps(record))
    result = CliRunner().invoke(app, ["report", str(single)])
    assert result.exit_code == 0, result.output
    page = (single / "report.html").read_text()
    assert "1 step of 1 crop of 32 px" in page and "1 step; dashed lines" in page and "1 steps" not in page


def test_scene_previews_show_the_prediction_and_the_label_pixel_for_pixel(trained, tmp_path: Path) -> None:
    data, run, _ = trained
    runner = CliRunner()
    masks = tmp_path / "maps"
    predicted = runner.invoke(app, ["predict", str(run), str(data.target_labels_dir / "images"), "-o", str(masks), "--vector", "none", *MAP])
    assert predicted.exit_code == 0, predicted.output
    given = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "given.html"), "--scenes", str(data.target_labels_dir), "--masks", str(masks)])
    assert given.exit_code == 0, given.output
    pictures = _pictures((tmp_path / "given.html").read_text(encoding="utf-8"))
    scenes = sorted((data.target_labels_dir / "images").glob("*.tif"))
    assert [caption.split(" (")[0] for caption, _ in pictures] == ["input", "prediction", "label"] * len(scenes)
    for scene, (image, prediction, label) in zip(scenes, zip(*[iter(pictures)] * 3)):
        with (
            rasterio.open(scene) as src,
            rasterio.open(masks / f"{scene.stem}.mask.tif") as mask,
            rasterio.open(data.target_labels_dir / "masks" / scene.name) as truth,
        ):
            nodata = src.dataset_mask() == 0
            assert image[1].shape == (src.height, src.width, 4)  # small scenes are shown whole, not resampled
            assert np.array_equal(image[1][..., 3] == 0, nodata)
            ids = mask.read(1)
            assert np.array_equal(prediction[1], _colored(ids, ids == 255))
            labels = truth.read(1)
            assert np.array_equal(label[1], _colored(labels, labels == 255))
    # Without --masks the scenes are predicted with the run: the same pictures.
    own = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "own.html"), "--scenes", str(data.target_labels_dir), *MAP])
    assert own.exit_code == 0, own.output
    assert [p.tobytes() for _, p in _pictures((tmp_path / "own.html").read_text(encoding="utf-8"))] == [p.tobytes() for _, p in pictures]
    assert not list(data.target_labels_dir.rglob("*.mask.tif"))  # nothing written beside the user's data


def test_report_refuses_what_it_cannot_use_in_one_line(trained, tmp_path: Path) -> None:
    data, run, evaluation = trained
    runner = CliRunner()
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.loads(json.dumps(evaluation.read_text())).replace('"water"', '"lake"'))
    cases = [
        (["report", str(tmp_path / "nothing")], "is not a cegate run folder"),
        (["report", str(run), "-o", str(tmp_path / "a.html"), "--evaluation", str(tmp_path / "none.json")], "--evaluation"),
        (["report", str(run), "-o", str(tmp_path / "b.html"), "--evaluation", str(wrong)], "are not this run's"),
        (["report", str(run), "-o", str(tmp_path)], "is a folder"),
        (["report", str(run), "-o", str(tmp_path / "c.html"), "--max-scenes", "0"], "--max-scenes"),
        (["report", str(run), "-o", str(tmp_path / "d.html"), "--masks", str(tmp_path)], "--scenes"),
        (["report", str(run), "-o", str(tmp_path / "e.html"), "--scenes", str(data.target_labels_dir), "--masks", str(tmp_path / "no")], "no such folder"),
    ]
    for args, expected in cases:
        result = runner.invoke(app, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], (args, result.output)
    assert not list(tmp_path.glob("*.html"))
    assert runner.invoke(app, ["report", "--help"]).exit_code == 0


def _chromium() -> str | None:
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_the_page_renders_in_headless_chromium(trained, tmp_path: Path) -> None:
    """The page as a browser draws it, offline: not blank, with the charts, the class colours and the previews."""
    data, run, evaluation = trained
    page = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["report", str(run), "-o", str(page), "--evaluation", str(evaluation), "--scenes", str(data.target_labels_dir), *MAP])
    assert result.exit_code == 0, result.output
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,2600",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    assert pixels.std() > 20  # not one flat colour
    colours = {tuple(p) for p in pixels[::7]}
    assert len(colours) > 200
    for c in DEMO_CLASSES.classes:  # legend swatches, IoU bars and mask previews in the class colours
        assert np.all(pixels == np.array(c.color), axis=1).sum() > 500, c.name
    assert np.all(pixels == (0x1F, 0x77, 0xB4), axis=1).sum() > 0  # the validation curve's colour


def test_a_run_scored_once_reads_1_scoring_chosen_once(trained, tmp_path: Path) -> None:
    _, run, _ = trained
    assert CliRunner().invoke(app, ["report", str(run), "-o", str(tmp_path / "two.html")]).exit_code == 0
    assert "(2 scorings)" in (tmp_path / "two.html").read_text(encoding="utf-8")  # rescored at step 3
    once = tmp_path / "once"
    shutil.copytree(run, once)
    record = json.loads((once / "run.json").read_text())
    record["selection"]["history"] = record["selection"]["history"][:1]
    (once / "run.json").write_text(json.dumps(record))
    result = CliRunner().invoke(app, ["report", str(once)])
    assert result.exit_code == 0, result.output
    page = (once / "report.html").read_text(encoding="utf-8")
    assert "(1 scoring)" in page and "chosen once (--reselect-every N rescores every N steps)" in page
    assert "1 scorings" not in page and "at every rescoring" not in page
