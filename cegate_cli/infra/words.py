"""Counts in words: "1 step", "2 steps". One rule for every message that prints a count, so no
message reads "1 steps" when a user trains, or maps, a single one."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and `noun`, the noun plural unless `n` is 1 (`plural` where adding an s is wrong)."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
