"""Labeled-folder discovery: pairing, every problem in one error, the 0/255 trap, --align."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from data_rasters import write_tif
from rasterio.transform import from_origin

from cegate_cli.data.crops import CropSampler
from cegate_cli.data.folder import discover_images, discover_labeled
from cegate_cli.data.stats import BandStats
from cegate_cli.errors import DataError, DataFileNotFoundError


def _pair(root, stem, labels, image=None, **mask_kwargs):
    h, w = labels.shape
    write_tif(root / "images" / f"{stem}.tif", image if image is not None else np.ones((3, h, w), np.uint16))
    write_tif(root / "masks" / f"{stem}.tif", labels, **mask_kwargs)


def _labels(h=16, w=16, values=(0, 1, 2)):
    return np.resize(np.array(values, np.uint8), h * w).reshape(h, w)


def test_good_folder_takes_classes_from_masks(tmp_path) -> None:
    _pair(tmp_path, "a", _labels())
    _pair(tmp_path, "b", _labels(values=(1, 3, 255)))
    folder = discover_labeled(tmp_path)
    assert [p.image.name for p in folder.pairs] == ["a.tif", "b.tif"]
    assert folder.class_table.ids == (0, 1, 2, 3) and folder.class_table.ignore_index == 255
    assert folder.classes_file is None and folder.warnings == []
    assert sum(folder.label_counts.values()) == 2 * 16 * 16


def test_classes_are_inferred_from_every_mask_and_said_with_how_to_name_them(tmp_path) -> None:
    """A class held by one mask of many (water in the last tile) is a class; the note says what was
    inferred, from how many masks, and where a classes.yaml template is."""
    for stem in "abcdefghijk":
        _pair(tmp_path, stem, _labels(4, 4, values=(0, 1, 2, 3, 4)))
    _pair(tmp_path, "l", _labels(4, 4, values=(0, 5)))
    folder = discover_labeled(tmp_path)
    assert folder.class_table.ids == (0, 1, 2, 3, 4, 5)
    assert folder.inferred_classes_note == (
        f"no classes.yaml in {tmp_path}: 6 class(es) inferred from the values of all 12 mask(s) (ids [0, 1, 2, 3, 4, 5], "
        "named class_<id>); a class none of them holds is not learned. To name the classes or add missing ones, "
        "put a classes.yaml next to images/ and masks/ (template: examples/classes.yaml)"
    )
    (tmp_path / "classes.yaml").write_text("classes:\n" + "".join(f"  - {{id: {i}, name: c{i}}}\n" for i in range(6)))
    assert discover_labeled(tmp_path).inferred_classes_note is None


def test_adapt_says_once_how_the_classes_were_inferred(tmp_path) -> None:
    """Through adapt's reporter, before anything loads: one message, not a warning per mask."""
    from cegate_cli.pipelines.adapt import AdaptOptions, adapt

    class Stop(Exception):
        pass

    class Heard:
        def __init__(self) -> None:
            self.messages: list[str] = []

        def message(self, text: str) -> None:
            self.messages.append(text)

        def phase_started(self, name: str) -> None:
            raise Stop(name)  # the backbone would load next: everything said up to here is enough

    for stem in "abc":
        _pair(tmp_path / "src", stem, _labels(32, 32))
    heard = Heard()
    with pytest.raises(Stop):
        adapt(AdaptOptions(source=tmp_path / "src", out=tmp_path / "run", backbone="tiny"), heard)  # type: ignore[arg-type]
    said = [m for m in heard.messages if "inferred" in m]
    assert len(said) == 1 and "from the values of all 3 mask(s)" in said[0] and "examples/classes.yaml" in said[0]


def test_classes_yaml_is_used_and_unknown_values_are_listed(tmp_path) -> None:
    (tmp_path / "classes.yaml").write_text("classes:\n  - {id: 0, name: water}\n  - {id: 1, name: land}\n")
    _pair(tmp_path, "a", _labels(values=(0, 1)))
    assert discover_labeled(tmp_path).class_table.name_of(1) == "land"
    _pair(tmp_path, "b", _labels(values=(0, 1, 5, 7)))
    with pytest.raises(DataError, match=r"masks/b.tif: mask values \[5, 7\]"):
        discover_labeled(tmp_path)


def test_all_problems_are_reported_together(tmp_path) -> None:
    _pair(tmp_path, "ok", _labels())
    write_tif(tmp_path / "images" / "lonely.tif", np.ones((3, 16, 16), np.uint16))
    write_tif(tmp_path / "masks" / "orphan.tif", _labels())
    _pair(tmp_path, "shifted", _labels(), transform=from_origin(500005.0, 5000000.0, 10.0, 10.0))
    _pair(tmp_path, "otherzone", _labels(), crs="EPSG:32634")
    _pair(tmp_path, "floaty", _labels().astype(np.float32))
    write_tif(tmp_path / "images" / "multi.tif", np.ones((3, 16, 16), np.uint16))
    write_tif(tmp_path / "masks" / "multi.tif", np.zeros((2, 16, 16), np.uint8))
    write_tif(tmp_path / "images" / "broken.tif", np.ones((3, 16, 16), np.uint16))
    (tmp_path / "masks" / "broken.tif").write_bytes(b"not a tiff")
    with pytest.raises(DataError) as err:
        discover_labeled(tmp_path)
    lines = str(err.value).splitlines()
    assert lines[0].startswith("7 problem(s)")
    text = str(err.value)
    for expected in (
        "images/lonely.tif: no mask",
        "masks/orphan.tif: no image",
        "masks/shifted.tif: grid differs",
        "masks/otherzone.tif: grid differs",
        "masks/floaty.tif: data type float32",
        "masks/multi.tif: has 2 bands",
        "masks/broken.tif: cannot read",
        "--align",
    ):
        assert expected in text, expected
    assert not any("ok.tif" in line for line in lines)


def test_binary_0_255_masks_warn(tmp_path) -> None:
    _pair(tmp_path, "a", _labels(values=(0, 255)))
    folder = discover_labeled(tmp_path)
    assert folder.class_table.ids == (0,)
    assert len(folder.warnings) == 1
    warning = folder.warnings[0]
    assert "255" in warning and "remap" in warning and "ignore_index" in warning


def test_ignore_index_override_makes_255_invalid_and_no_labels_is_an_error(tmp_path) -> None:
    _pair(tmp_path, "a", _labels(values=(0, 255)))
    with pytest.raises(DataError, match=r"mask values \[255\]"):
        discover_labeled(tmp_path, ignore_index=254)
    _pair(tmp_path, "a", np.full((16, 16), 255, np.uint8))
    with pytest.raises(DataError, match="no labels"):
        discover_labeled(tmp_path)


def test_mask_nodata_is_read_as_unlabeled_with_a_warning(tmp_path) -> None:
    _pair(tmp_path, "a", _labels(values=(0, 1, 2)), nodata=0)
    folder = discover_labeled(tmp_path)
    assert folder.class_table.ids == (1, 2)
    assert any("nodata=0" in w for w in folder.warnings)
    assert folder.pairs[0].mask_nodata == 0


def test_align_warps_mask_onto_image_grid(tmp_path) -> None:
    image = np.arange(32 * 32, dtype=np.uint16).reshape(1, 32, 32) + 1
    write_tif(tmp_path / "images" / "a.tif", image)  # 10 m pixels at (500000, 5000000)
    coarse = np.zeros((8, 8), np.uint8)
    coarse[:, 4:] = 1  # right half of the coarse mask is class 1
    # 20 m mask pixels, shifted 40 m east: covers image columns 4..19
    write_tif(tmp_path / "masks" / "a.tif", coarse, transform=from_origin(500040.0, 5000000.0, 20.0, 20.0))
    with pytest.raises(DataError, match="--align"):
        discover_labeled(tmp_path)
    folder = discover_labeled(tmp_path, align=True)
    assert folder.pairs[0].warp_mask and any("warped" in w for w in folder.warnings)
    stats = BandStats(("band_1",), (0.0,), (1.0,))
    with CropSampler(folder.pairs, [(1,)], stats, crop=32, ignore_index=255, augment=False) as sampler:
        batch = sampler.read(sampler.fixed_windows(1, seed=0))
    labels = batch.masks[0].numpy()
    # the mask covers image rows 0-15 and columns 4-19; elsewhere the image is unlabeled
    assert (labels[:, :4] == 255).all() and (labels[:, 20:] == 255).all() and (labels[16:] == 255).all()
    assert (labels[:16, 4:12] == 0).all() and (labels[:16, 12:20] == 1).all()


def test_align_refuses_masks_that_do_not_overlap(tmp_path) -> None:
    write_tif(tmp_path / "images" / "a.tif", np.ones((1, 16, 16), np.uint16))
    write_tif(tmp_path / "masks" / "a.tif", _labels(), transform=from_origin(900000.0, 5000000.0, 10.0, 10.0))
    with pytest.raises(DataError, match="do not overlap"):
        discover_labeled(tmp_path, align=True)


def test_missing_layout_and_discover_images(tmp_path) -> None:
    with pytest.raises(DataFileNotFoundError, match="masks/"):
        (tmp_path / "images").mkdir()
        discover_labeled(tmp_path)
    with pytest.raises(DataFileNotFoundError):
        discover_images(tmp_path / "nothing")
    with pytest.raises(DataFileNotFoundError, match="no .tif"):
        discover_images(tmp_path)
    flat = write_tif(tmp_path / "flat" / "x.TIF", np.ones((1, 4, 4), np.uint8))
    (tmp_path / "flat" / ".x.tif.tmp-123.tif").write_bytes(b"")
    assert discover_images(tmp_path / "flat") == (flat,)
    nested = write_tif(tmp_path / "nested" / "images" / "y.tiff", np.ones((1, 4, 4), np.uint8))
    assert discover_images(tmp_path / "nested") == (nested,)
    assert discover_images(nested) == (nested,)


def test_mask_scan_reads_in_windows(tmp_path, monkeypatch) -> None:
    import cegate_cli.data.folder as folder_module

    monkeypatch.setattr(folder_module, "SCAN_WINDOW", 8)
    labels = np.zeros((20, 20), np.uint16)
    labels[15:, 15:] = 300  # beyond the class id range, only in the last window
    _pair(tmp_path, "a", labels)
    seen = []
    original = rasterio.io.DatasetReader.read

    def spy(self, *args, **kwargs):
        if "window" in kwargs:
            seen.append(kwargs["window"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    with pytest.raises(DataError, match=r"mask values \[300\]"):
        discover_labeled(tmp_path)
    assert len(seen) == 9 and max(w.width for w in seen) == 8


def test_a_near_miss_of_a_labeled_folder_names_the_one_meant(tmp_path) -> None:
    """The folders a newcomer gives by mistake: its images/ (or masks/), the folder above the
    labeled ones, or a typo of its name. Each error ends with the labeled folder to give."""
    for name in ("train", "test"):
        _pair(tmp_path / name, "a", _labels())
    for given in (tmp_path / "train" / "images", tmp_path / "train" / "masks"):
        with pytest.raises(DataFileNotFoundError, match=rf"; did you mean {tmp_path / 'train'}, which holds images/ and masks/\?$"):
            discover_labeled(given)
    with pytest.raises(DataFileNotFoundError, match=rf"; did you mean {tmp_path / 'test'} or {tmp_path / 'train'}, labeled folders inside it\?$"):
        discover_labeled(tmp_path)
    with pytest.raises(DataFileNotFoundError, match=rf"no such folder .*; did you mean {tmp_path / 'train'}\?$"):
        discover_labeled(tmp_path / "traim")
    (tmp_path / "other").mkdir()
    for plain in (tmp_path / "other", tmp_path / "elsewhere"):  # nothing near: the message as before
        with pytest.raises(DataFileNotFoundError) as caught:
            discover_labeled(plain)
        assert "did you mean" not in str(caught.value)
