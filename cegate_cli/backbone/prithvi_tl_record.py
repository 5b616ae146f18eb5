"""How a run feeds a Prithvi-EO-2.0 TL model's time and location encoders, and its section of
run.json (backbone.prithvi), without loading torch (`inspect` reads it without the model stack).

A TL model (tiny-TL, 100M-TL, 300M-TL, 600M-TL) adds a scene's date, as (year, day of year), and
its centre, as (latitude, longitude), to its patch tokens (backbone/prithvi_tl.py). `adapt`
settles one date and one centre for the whole run from its training images' metadata (the median
of what their date tags and georeferencing give: one value per run, the limit of the family
interface today), and `predict` feeds each scene its own. A pair no training image gave is not
used at all: the run neither trains nor maps with it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from cegate_cli.errors import InputError
from cegate_cli.infra.record_fields import FieldTypeError, record_fields

COORDINATES_FROM = ("imagery", "none")
"""Where a run's pair came from: the training images' metadata, or nowhere (not used)."""


@dataclass(frozen=True)
class PrithviTLInputs:
    """The time and location a run trains with, and where they came from; `predict` then feeds
    each scene its own date and centre for the pairs the run uses."""

    coords_encoding: tuple[str, ...] = ()
    """The encoders the model carries: "time", "location" (its config.json's coords_encoding)."""
    year: int | None = None
    day_of_year: int | None = None
    """1 = 1 January, as in HLS file names."""
    time_from: str = "none"
    """'imagery': the median of the training images' date tags; 'none': the run uses no date."""
    latitude: float | None = None
    longitude: float | None = None
    """WGS 84 degrees of the training images' median centre."""
    location_from: str = "none"
    """'imagery': the median of the georeferenced training images' centres; 'none': no location."""
    images: int = 0
    """Training images whose metadata were read."""
    dated_images: int = 0
    located_images: int = 0

    @property
    def own_statistics(self) -> bool:
        """Prithvi runs normalise with their own band statistics, so a target's may take their place."""
        return True

    @property
    def uses_time(self) -> bool:
        return self.time_from == "imagery"

    @property
    def uses_location(self) -> bool:
        return self.location_from == "imagery"

    def check(self) -> None:
        """Refuse a record whose values disagree (edited by hand, or damaged)."""
        for kind in self.coords_encoding:
            if kind not in ("time", "location"):
                raise InputError(f"backbone.prithvi.coords_encoding names {kind!r}; expected time and/or location")
        for name in ("time_from", "location_from"):
            if getattr(self, name) not in COORDINATES_FROM:
                raise InputError(f"backbone.prithvi.{name} is {getattr(self, name)!r}; expected one of {', '.join(COORDINATES_FROM)}")
        if self.uses_time != (self.year is not None and self.day_of_year is not None) or (self.year is None) != (self.day_of_year is None):
            raise InputError("backbone.prithvi: time_from 'imagery' needs a year and a day of year, 'none' neither")
        if self.uses_location != (self.latitude is not None and self.longitude is not None) or (self.latitude is None) != (self.longitude is None):
            raise InputError("backbone.prithvi: location_from 'imagery' needs a latitude and a longitude, 'none' neither")
        if self.uses_time and "time" not in self.coords_encoding or self.uses_location and "location" not in self.coords_encoding:
            raise InputError("backbone.prithvi: a pair is used that the model has no encoder for")
        if self.day_of_year is not None and not 1 <= self.day_of_year <= 366:
            raise InputError(f"backbone.prithvi.day_of_year {self.day_of_year} is outside 1..366")
        if self.latitude is not None and not (math.isfinite(self.latitude) and -90 <= self.latitude <= 90):
            raise InputError(f"backbone.prithvi.latitude {self.latitude} is outside -90..90")
        if self.longitude is not None and not (math.isfinite(self.longitude) and -180 <= self.longitude <= 180):
            raise InputError(f"backbone.prithvi.longitude {self.longitude} is outside -180..180")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["coords_encoding"] = list(self.coords_encoding)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> PrithviTLInputs:
        """From run.json; a value of the wrong type is a FieldTypeError naming it."""
        inputs = cls(**record_fields(cls, data, section="backbone.prithvi", unknown="drop"))
        try:
            inputs.check()
        except InputError as exc:
            raise FieldTypeError(str(exc)) from None
        return inputs


@dataclass(frozen=True)
class PrithviTLRecord:
    """The Prithvi family's section of run.json's backbone record (TL models only): the inputs."""

    inputs: PrithviTLInputs

    def to_dict(self) -> dict[str, Any]:
        return self.inputs.to_dict()

    @classmethod
    def from_dict(cls, data: Any) -> PrithviTLRecord:
        if not isinstance(data, dict):
            raise FieldTypeError("backbone.prithvi is not an object of fields")
        return cls(PrithviTLInputs.from_dict(data))

    def describe(self) -> list[str]:
        """`inspect`'s lines: what the run trained with, and what predict feeds."""
        inputs = self.inputs
        if inputs.uses_time:
            time = f"{inputs.year} day {inputs.day_of_year} (median date tag of {inputs.dated_images} of {inputs.images} training images)"
        elif "time" in inputs.coords_encoding:
            time = "not used (no training image has a date tag)"
        else:
            time = "not in the model"
        if inputs.uses_location:
            place = f"{inputs.latitude:.4f}, {inputs.longitude:.4f} (lat, lon; median centre of {inputs.located_images} of {inputs.images} training images)"
        elif "location" in inputs.coords_encoding:
            place = "not used (no training image is georeferenced)"
        else:
            place = "not in the model"
        used = [kind for kind, on in (("date", inputs.uses_time), ("centre", inputs.uses_location)) if on]
        fed = f"predict feeds each scene its own {' and '.join(used)}; a scene without one gets no such term" if used else "predict feeds no time or location"
        return [f"time       {time}", f"location   {place}", f"           {fed}"]
