"""Band names, --bands resolution and matching other rasters to a run's bands."""

from __future__ import annotations

import numpy as np
import pytest
from data_rasters import write_tif

from cegate_cli.data.band_names import canonical_band_name
from cegate_cli.data.bands import BandChoice, bands_for_images, match_bands, resolve_bands
from cegate_cli.errors import DataError, InputError


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Red", "red"),
        (" R ", "red"),
        ("g", "green"),
        ("B", "blue"),
        ("NIR", "nir"),
        ("B08", "nir"),
        ("b8", "nir"),
        ("B8A", "nir_narrow"),
        ("b08a", "nir_narrow"),
        ("NIR_NARROW", "nir_narrow"),
        ("nir08", "nir_narrow"),
        ("SR_B5", "nir_narrow"),
        ("B5", "red_edge_1"),
        ("B05", "red_edge_1"),
        ("SWIR 1", "swir_1"),
        ("swir-2", "swir_2"),
        ("swir16", "swir_1"),
        ("B11", "swir_1"),
        ("B12", "swir_2"),
        ("Red Edge 2", "red_edge_2"),
        ("B01", "coastal"),
        ("coastal aerosol", "coastal"),
        ("My Band", "my_band"),
        ("Band 1", "band_1"),
    ],
)
def test_canonical_band_names(raw: str, canonical: str) -> None:
    assert canonical_band_name(raw) == canonical


def _four_band(tmp_path, name="img.tif", descriptions=("B02", "B03", "B04", "B08")):
    return write_tif(tmp_path / name, np.zeros((4, 8, 8), np.uint16), descriptions=descriptions)


def test_resolve_by_name_number_and_all(tmp_path) -> None:
    path = _four_band(tmp_path)
    assert resolve_bands("nir, red,green", path) == BandChoice((4, 3, 2), ("nir", "red", "green"))
    assert resolve_bands("1,4", path) == BandChoice((1, 4), ("blue", "nir"))
    assert resolve_bands(None, path).names == ("blue", "green", "red", "nir")
    choice = resolve_bands("r,g,b", path)
    assert BandChoice.from_dict(choice.to_dict()) == choice


def test_resolve_without_descriptions_uses_band_numbers(tmp_path) -> None:
    path = write_tif(tmp_path / "plain.tif", np.zeros((3, 8, 8), np.uint8))
    assert resolve_bands(None, path) == BandChoice((1, 2, 3), ("band_1", "band_2", "band_3"))


def test_missing_band_names_file_and_available_bands(tmp_path) -> None:
    path = _four_band(tmp_path)
    with pytest.raises(DataError) as err:
        resolve_bands("red,swir_1,7", path)
    message = str(err.value)
    assert str(path) in message and "swir_1" in message and "7" in message
    assert "1:blue" in message and "4:nir" in message


@pytest.mark.parametrize("spec", ["1,,2", "0,1", "red,red"])
def test_malformed_spec(tmp_path, spec: str) -> None:
    with pytest.raises(InputError):
        resolve_bands(spec, _four_band(tmp_path))


def test_match_by_name_in_another_order(tmp_path) -> None:
    choice = resolve_bands("red,green,blue", _four_band(tmp_path))
    other = _four_band(tmp_path, "other.tif", ("nir", "blue", "green", "red"))
    assert match_bands(choice, other) == (4, 3, 2)


def test_match_by_index_when_names_are_missing(tmp_path) -> None:
    choice = resolve_bands("red,nir", _four_band(tmp_path))
    plain = write_tif(tmp_path / "plain.tif", np.zeros((5, 8, 8), np.uint16))
    assert match_bands(choice, plain) == (3, 4)
    few = write_tif(tmp_path / "few.tif", np.zeros((3, 8, 8), np.uint16))
    with pytest.raises(DataError, match=r"few.tif has bands .*the run needs \['red', 'nir'\]"):
        match_bands(choice, few)


def test_match_fails_when_a_named_band_is_absent(tmp_path) -> None:
    choice = resolve_bands("red,nir", _four_band(tmp_path))
    rgb = _four_band(tmp_path, "rgb.tif", ("red", "green", "blue", "alpha"))
    with pytest.raises(DataError, match="the run needs"):
        match_bands(choice, rgb)


def test_bands_for_images_reports_every_mismatch(tmp_path) -> None:
    first = _four_band(tmp_path, "a.tif")
    bad1 = write_tif(tmp_path / "b.tif", np.zeros((2, 8, 8), np.uint16))
    bad2 = _four_band(tmp_path, "c.tif", ("x", "y", "z", "w"))
    with pytest.raises(DataError) as err:
        bands_for_images("red,nir", [first, bad1, bad2])
    assert "b.tif" in str(err.value) and "c.tif" in str(err.value)
    choice, per_image = bands_for_images("nir", [first, _four_band(tmp_path, "d.tif", ("nir", "red", "green", "blue"))])
    assert choice.names == ("nir",) and per_image == ((4,), (1,))


def test_name_by_number_names_bands_the_files_leave_unnamed(tmp_path) -> None:
    plain = write_tif(tmp_path / "plain.tif", np.zeros((4, 8, 8), np.uint16))
    choice = resolve_bands("red=1, green=2,blue=3,NIR=4", plain)
    assert choice == BandChoice((1, 2, 3, 4), ("red", "green", "blue", "nir"))
    assert match_bands(choice, write_tif(tmp_path / "other.tif", np.zeros((4, 8, 8), np.uint16))) == (1, 2, 3, 4)
    # Files naming their RGB but not their NIR (a common NAIP layout): the NIR is named by number,
    # and later files of either kind match.
    partial = _four_band(tmp_path, "partial.tif", ("red", "green", "blue", None))
    choice = resolve_bands("red,green,blue,nir=4", partial)
    assert choice == BandChoice((1, 2, 3, 4), ("red", "green", "blue", "nir"))
    assert match_bands(choice, _four_band(tmp_path, "again.tif", ("red", "green", "blue", None))) == (1, 2, 3, 4)
    assert match_bands(choice, _four_band(tmp_path, "named.tif", ("nir", "red", "green", "blue"))) == (2, 3, 4, 1)


def test_name_by_number_never_renames_a_described_band(tmp_path) -> None:
    with pytest.raises(DataError, match=r"band 4 is described as 'nir', not 'red'"):
        resolve_bands("red=4", _four_band(tmp_path))


def test_a_missing_name_on_unnamed_files_says_how_to_name_them(tmp_path) -> None:
    plain = write_tif(tmp_path / "plain.tif", np.zeros((4, 8, 8), np.uint16))
    with pytest.raises(DataError, match=r"no band red, green.*--bands red=1,green=2,blue=3,nir=4"):
        resolve_bands("red,green,blue,nir", plain)


@pytest.mark.parametrize("spec", ["red=x", "=1", "red=0", "red=1,nir=1", "red=1,red=2"])
def test_malformed_name_by_number(tmp_path, spec: str) -> None:
    with pytest.raises(InputError):
        resolve_bands(spec, write_tif(tmp_path / "plain.tif", np.zeros((4, 8, 8), np.uint16)))
