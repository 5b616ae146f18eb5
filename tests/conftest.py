"""Fixtures shared by several test files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hubserver import HubStandIn, point_hub_client_at


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    """A running stand-in of the Hub's HTTP API on 127.0.0.1, with huggingface_hub pointed at it
    (HF_ENDPOINT) and its cache under this test's folder (HF_HOME)."""
    stand_in = HubStandIn().start()
    point_hub_client_at(monkeypatch, stand_in.endpoint, str(tmp_path / "hf-home"))
    try:
        yield stand_in
    finally:
        stand_in.stop()
