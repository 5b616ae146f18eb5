"""How `--select` is written: a count of modules or a fraction of the candidates.

Torch-free, so the command line checks the value before the model stack loads; fisher.py turns it
into a count once the candidates are known.
"""

from __future__ import annotations

import math

from cegate_cli.errors import InputError


def parse_select_spec(text: str | int | float) -> tuple[str, float]:
    """`--select` without the candidate count: ("count", n) or ("fraction", f), or an InputError.

    The rule is in how the number is written, so it never depends on where the value lands: a
    count is a whole number written without a decimal point ("6"); a fraction is written with
    one (or an exponent) and lies in (0, 1] ("0.25", "1.0" = all). "5.0" is refused rather than
    read as 5 modules: the decimal point says "fraction" and the value says "count", and guessing
    either way would train a different number of modules than the user may think.
    """
    if isinstance(text, bool) or text is None:
        raise InputError(f"--select {text!r}: give a count (e.g. 6) or a fraction (e.g. 0.25)")
    if isinstance(text, int):
        value, written_whole = float(text), True
    else:
        if isinstance(text, float):
            written = repr(text)
        else:
            written = str(text).strip()
        try:
            value = float(written)
        except (TypeError, ValueError):
            raise InputError(f"--select {text!r}: give a count (e.g. 6) or a fraction (e.g. 0.25)") from None
        written_whole = written.lstrip("+-").isdigit()
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"--select {text!r} must be a positive finite number: a count (e.g. 6) or a fraction (e.g. 0.25)")
    if written_whole:
        return "count", value
    if value <= 1:
        return "fraction", value
    whole = f"; for {int(value)} modules write {int(value)}" if value == int(value) else ""
    raise InputError(
        f"--select {text!r}: a count must be a whole number written without a decimal point (e.g. 6) and a fraction must be at most 1 (e.g. 0.25){whole}"
    )
