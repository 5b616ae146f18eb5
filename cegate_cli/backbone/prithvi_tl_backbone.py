"""Prithvi-EO-2.0 TL models as cegate backbones: the run's date and place in training, each scene's
own in `predict`.

The encoder (`prithvi_tl.PrithviTLViT`) adds a (year, day of year) and a (latitude, longitude)
term to its patch tokens when it is given them. This module feeds it:
- `fit_coordinates`: at `adapt`, one date (the median of the training images' date tags) and one
  centre (the median of their centres, WGS 84) for the whole run; a pair no training image gives
  is not used by the run. One value per run is what the family interface offers today: the crops
  of a batch come from several images, and the trainer does not hand a backbone their metadata;
- `PrithviTLBackbone.scene_conditions`: while `predict` (and `evaluate`) maps a scene, that
  scene's own date and centre (`SceneInfo`, data/scene_info.py), for the pairs the run uses; a
  scene without a date, or without georeferencing, gets no such term (the encoder then adds
  nothing, as for an image the authors' model is given no coordinates);
- a run without a "prithvi" section in run.json (made before TL models took coordinates) is built
  without any, as it was trained.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cegate_cli.backbone.band_adapt import BandMapping, adapt_vit_bands
from cegate_cli.backbone.base import TokenLayout
from cegate_cli.backbone.family import FittedInputs
from cegate_cli.backbone.prithvi_tl import PrithviTLViT, SceneCoordinates, coordinate_tensors
from cegate_cli.backbone.prithvi_tl_record import PrithviTLInputs
from cegate_cli.backbone.vit import Backbone, PretrainedViT

if TYPE_CHECKING:
    from cegate_cli.data.scene_info import SceneInfo
    from cegate_cli.data.stats import BandStats

DATE_TAGS_HINT = "ACQUISITION_DATE, SENSING_TIME, DATE_ACQUIRED or TIFFTAG_DATETIME"


class PrithviTLBackbone(Backbone):
    """A TL model in cegate's block loop, its coordinates set for the run or for the scene mapped."""

    def __init__(self, vit: PrithviTLViT, inputs: PrithviTLInputs | None, feature_layers: tuple[int, ...] | None = None) -> None:
        super().__init__(vit, feature_layers)
        self.inputs = inputs
        self.coordinates = run_coordinates(inputs)

    @property
    def takes_scene_info(self) -> bool:  # type: ignore[override]
        """Only a run that uses a pair reads each scene's metadata."""
        return self.inputs is not None and (self.inputs.uses_time or self.inputs.uses_location)

    @contextlib.contextmanager
    def scene_conditions(self, scene: SceneInfo) -> Iterator[SceneCoordinates]:
        """Feed one scene its own date and centre (for the pairs the run uses) while the block
        runs; yields the coordinates in effect."""
        previous = self.coordinates
        self.coordinates = scene_coordinates(scene, self.inputs)
        try:
            yield self.coordinates
        finally:
            self.coordinates = previous

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, TokenLayout]:
        temporal, location = coordinate_tensors([self.coordinates])  # one row: every image of the batch
        with self.vit.coordinates(temporal, location):
            return super().embed(images)


def run_coordinates(inputs: PrithviTLInputs | None) -> SceneCoordinates:
    """The run's date and centre as the encoder takes them (none for a run without)."""
    if inputs is None:
        return SceneCoordinates()
    return SceneCoordinates(
        inputs.year if inputs.uses_time else None,
        inputs.day_of_year if inputs.uses_time else None,
        inputs.latitude if inputs.uses_location else None,
        inputs.longitude if inputs.uses_location else None,
    )


def scene_coordinates(scene: SceneInfo, inputs: PrithviTLInputs | None) -> SceneCoordinates:
    """A scene's own date and centre, for the pairs the run uses; what the scene lacks stays absent."""
    if inputs is None:
        return SceneCoordinates()
    when = scene.date if inputs.uses_time else None
    centre = wgs84_centre(scene.centre_lonlat) if inputs.uses_location else None
    return SceneCoordinates.from_date(when, *(centre if centre is not None else (None, None)))


def wgs84_centre(lonlat: tuple[float, float] | None) -> tuple[float, float] | None:
    """(latitude, longitude) from a scene's (lon, lat) centre, longitude wrapped into -180..180;
    None when there is none or it is not a place on Earth."""
    if lonlat is None:
        return None
    lon, lat = float(lonlat[0]), float(lonlat[1])
    if not (math.isfinite(lon) and math.isfinite(lat) and -90.0 <= lat <= 90.0):
        return None
    if not -180.0 <= lon <= 180.0:
        lon = (lon + 180.0) % 360.0 - 180.0
    return lat, lon


def fit_coordinates(coords_encoding: Sequence[str], images: Sequence[Path]) -> tuple[PrithviTLInputs, list[str]]:
    """The run's date and centre from its training images' metadata, and warnings for the user.

    Date: the median (the lower one of an even count, so a date one of the images has) of the
    dates their tags give. Centre: the median latitude and the median longitude of their centres.
    """
    from cegate_cli.data.raster import open_raster
    from cegate_cli.data.scene_info import read_scene_info

    dates: list[date] = []
    centres: list[tuple[float, float]] = []
    for path in images:
        with open_raster(path) as dataset:  # a STAC item opens as its bands (data/stac.py)
            info = read_scene_info(dataset)
        if info.date is not None:
            dates.append(info.date)
        centre = wgs84_centre(info.centre_lonlat)
        if centre is not None:
            centres.append(centre)
    count = len(images)
    warnings: list[str] = []
    values: dict[str, Any] = {"coords_encoding": tuple(coords_encoding), "images": count, "dated_images": len(dates), "located_images": len(centres)}
    if "time" in coords_encoding:
        if dates:
            when = sorted(dates)[(len(dates) - 1) // 2]
            values.update(year=when.year, day_of_year=when.timetuple().tm_yday, time_from="imagery")
            if len(dates) < count:
                warnings.append(
                    f"{count - len(dates)} of {count} training images have no date tag ({DATE_TAGS_HINT}); the run trains "
                    f"with the others' median date, {when.isoformat()}"
                )
        else:
            warnings.append(f"no training image has a date tag ({DATE_TAGS_HINT}): the run trains and maps without Prithvi's time input")
    if "location" in coords_encoding:
        if centres:
            values.update(
                latitude=float(statistics.median_low(c[0] for c in centres)),
                longitude=float(statistics.median_low(c[1] for c in centres)),
                location_from="imagery",
            )
            if len(centres) < count:
                warnings.append(f"{count - len(centres)} of {count} training images are not georeferenced; the run trains with the others' median centre")
        else:
            warnings.append("no training image is georeferenced: the run trains and maps without Prithvi's location input")
    inputs = PrithviTLInputs(**values)
    inputs.check()
    return inputs, warnings


@dataclass
class PretrainedPrithviTL(PretrainedViT):
    """A TL checkpoint's encoder (`PrithviTLViT`): builds a backbone that takes the run's and each
    scene's date and centre."""

    vit: PrithviTLViT

    def fit_inputs(self, options: Any, images: Sequence[Path], stats: BandStats) -> FittedInputs:
        """The run's date and centre from its images; bands normalised with the run's own statistics."""
        inputs, warnings = fit_coordinates(self.vit.coords_encoding, images)
        return FittedInputs(inputs, stats, tuple(warnings))

    def build(self, bands: Sequence[str], stats: BandStats | None = None, inputs: PrithviTLInputs | None = None) -> tuple[PrithviTLBackbone, BandMapping]:
        mapping = adapt_vit_bands(self.vit, self.band_names, bands)
        return PrithviTLBackbone(self.vit, inputs), mapping

    def pretrained_backbone(self) -> PrithviTLBackbone:
        return PrithviTLBackbone(self.vit, None)
