"""Say in one line how saved weights and the model rebuilt from run.json disagree.

torch's `load_state_dict` lists every mismatched tensor on a line of its own (a head with one
class more gives four "size mismatch" lines). The user needs the first difference, how many
more there are and what to do; this compares names and shapes before loading.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _shape(tensor: Any) -> str:
    return " x ".join(str(int(n)) for n in tensor.shape) or "a scalar"


def describe_misfit(part: str, needed: Mapping[str, Any], given: Mapping[str, Any]) -> str | None:
    """The first way `given` (the saved tensors) does not fit `needed` (the model's own), with a
    count of the rest; None when names and shapes all agree."""
    problems: list[str] = []
    for name in sorted(set(needed) & set(given)):
        if tuple(needed[name].shape) != tuple(given[name].shape):
            problems.append(f"{part} {name} is {_shape(given[name])} in the weights, run.json's model needs {_shape(needed[name])}")
    extra = sorted(set(given) - set(needed))
    if extra:
        problems.append(f"{part}: {len(extra)} saved weight(s) have no place in run.json's model ({', '.join(extra[:3])})")
    missing = sorted(set(needed) - set(given))
    if missing:
        problems.append(f"{part}: run.json's model needs {len(missing)} weight(s) the file lacks ({', '.join(missing[:3])})")
    if not problems:
        return None
    more = len(problems) - 1
    return problems[0] + (f", and {more} more difference(s)" if more else "")
