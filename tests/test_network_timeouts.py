"""A STAC item whose asset server accepts the connection and never answers: `predict` gives up within
a bounded time with one line (the item, the asset, what happened, what to do), under GDAL's own
timeout and retry variables, which cegate sets only where the user has not."""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.data.gdal import NETWORK_DEFAULTS, network_defaults
from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt

TRAIN = TrainConfig(steps=2, batch_size=2, crop=32, warmup_steps=1, val_every=2, val_crops=2, save_every=2, fisher_samples=2, select="3", seed=0, device="cpu")


@contextmanager
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A server on 127.0.0.1 that accepts every connection and never sends a byte."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", held
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


def _item(path: Path, base: str) -> Path:
    assets = {
        name: {"href": f"{base}/{name}.tif", "type": "image/tiff; application=geotiff", "roles": ["data"], "eo:bands": [{"name": name, "common_name": name}]}
        for name in ("blue", "green", "red", "nir")
    }
    path.write_text(
        json.dumps(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": "silent-scene",
                "geometry": None,
                "properties": {"datetime": "2023-01-02T00:00:00Z"},
                "links": [],
                "assets": assets,
            }
        )
    )
    return path


def test_the_shipped_network_defaults_are_finite_and_yield_to_the_users(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(NETWORK_DEFAULTS) == {"GDAL_HTTP_CONNECTTIMEOUT", "GDAL_HTTP_TIMEOUT", "GDAL_HTTP_MAX_RETRY", "GDAL_HTTP_RETRY_DELAY"}
    values = {name: float(value) for name, value in NETWORK_DEFAULTS.items()}
    assert all(math.isfinite(v) and v >= 0 for v in values.values())
    assert values["GDAL_HTTP_TIMEOUT"] > 0 and values["GDAL_HTTP_CONNECTTIMEOUT"] > 0
    tries = values["GDAL_HTTP_MAX_RETRY"] + 1
    longest = tries * values["GDAL_HTTP_TIMEOUT"] + values["GDAL_HTTP_RETRY_DELAY"] * (2 ** values["GDAL_HTTP_MAX_RETRY"] - 1)
    assert longest <= 300  # a dead server costs a scene minutes at most, not forever
    for name in NETWORK_DEFAULTS:
        monkeypatch.setenv(name, "0")  # recorded, so the test leaves the environment as it found it
        monkeypatch.delenv(name)
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "600")
    network_defaults()
    assert os.environ["GDAL_HTTP_TIMEOUT"] == "600"
    assert all(os.environ[name] == NETWORK_DEFAULTS[name] for name in NETWORK_DEFAULTS if name != "GDAL_HTTP_TIMEOUT")


def test_predict_on_an_item_at_a_silent_server_fails_in_bounded_time(demo_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = demo_dataset(n_source=2, n_target=1, size=64, seed=2)
    run = adapt(AdaptOptions(source=demo.source_dir, out=tmp_path / "run", backbone="tiny", train=TRAIN)).run_dir
    # The user's own settings win over cegate's defaults: short ones keep the test fast.
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "1")
    monkeypatch.setenv("GDAL_HTTP_CONNECTTIMEOUT", "1")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "1")
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.1")
    with silent_server() as (base, connections):
        item = _item(tmp_path / "silent.json", base)
        started = time.monotonic()
        result = CliRunner().invoke(app, ["predict", str(run), str(item), "-o", str(tmp_path / "maps"), "--vector", "none", "--device", "cpu"])
        elapsed = time.monotonic() - started
    assert elapsed < 30, elapsed
    assert result.exit_code == 1, result.output  # the scene failed; others of a batch would go on
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    line = errors[0]
    assert str(item) in line and "asset 'blue'" in line and "did not answer within 1 s (2 tries)" in line, line
    assert "check the network" in line and "GDAL_HTTP_TIMEOUT" in line, line
    assert len(connections) == 2  # one try and one retry, once: a second open of the item does not wait again
    assert "Traceback" not in result.output
