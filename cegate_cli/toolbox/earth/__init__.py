"""The frequency kind: the Earth-Adapter on each block's output tokens (layer.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cegate_cli.errors import InputError
from cegate_cli.toolbox.kinds import MAX_WIDTH, KindOptions, KindSpec, register_kind

EARTH_INITS = ("identity", "kaiming")


@dataclass(frozen=True)
class EarthOptions(KindOptions):
    hidden: int = field(default=16, metadata={"help": "Width of each of the three experts' bottlenecks."})
    low_freq_ratio: float = field(default=0.25, metadata={"help": "Share of each frequency axis (a centred box) that counts as low frequency."})
    init: str = field(
        default="identity",
        metadata={"help": '"identity" (zero up projections, so the toolbox starts as an exact identity) or "kaiming" (the Earth-Adapter authors\' init).'},
    )

    def check(self) -> None:
        if not 1 <= self.hidden <= MAX_WIDTH:
            raise InputError(f"Earth-Adapter hidden size {self.hidden}: must be from 1 to {MAX_WIDTH}")
        if self.init not in EARTH_INITS:
            raise InputError(f"Earth-Adapter init {self.init!r}: choose {' or '.join(EARTH_INITS)}")
        if not 0 < self.low_freq_ratio < 1:
            raise InputError(f"Earth-Adapter low-frequency ratio {self.low_freq_ratio}: must lie strictly between 0 and 1")


register_kind(
    KindSpec(
        name="earth",
        position=30,
        label="frequency (Earth-Adapter on the block output)",
        title="Earth-Adapter (frequency)",
        color="#2ca02c",
        options=EarthOptions,
        attach=f"{__name__}.layer:attach",
        aliases=("frequency", "earth-adapter"),
    )
)
