"""Fixtures shared by several test files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hubserver import HubStandIn, point_hub_client_at

from cegate_cli.data.synthetic import DemoDataset, make_demo_dataset
from cegate_cli.infra.threads import prefer_passive_waiting

prefer_passive_waiting()  # as the CLI does before torch loads: idle threads sleep, not spin, beside other work
import torch  # noqa: E402

SESSION_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    """Each test runs with the session's torch thread count: a command run in-process (its
    `--threads`, or cegate's choice on a busy machine), in a test or a module's fixture, must not
    change a later test's float summation order, which the reference-equality tests compare to 1e-5."""
    torch.set_num_threads(SESSION_THREADS)
    yield
    torch.set_num_threads(SESSION_THREADS)


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


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., DemoDataset]:
    """Generated demo scenes, made once per set of arguments for the whole session.

    Test files that train on the demo scenes ask for their sizes here instead of each generating its
    own copy; files that ask for the same sizes share one (the tests only read it)."""
    made: dict[tuple[tuple[str, Any], ...], DemoDataset] = {}

    def make(**kwargs: Any) -> DemoDataset:
        key = tuple(sorted(kwargs.items()))
        if key not in made:
            made[key] = make_demo_dataset(tmp_path_factory.mktemp("demo"), **kwargs)
        return made[key]

    return make
