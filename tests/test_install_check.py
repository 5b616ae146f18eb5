"""A torchvision built for another torch: one line naming both versions and the fix, exit 2."""

from __future__ import annotations

import importlib.abc
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.infra import install_check

VERSIONS = {"torch": "2.14.1+cu130", "torchvision": "0.24.0+cu128"}


class MismatchedTorchvision(importlib.abc.MetaPathFinder):
    """Importing the demo's library fails as it does when timm imports a mismatched torchvision."""

    def find_spec(self, name, path=None, target=None):
        if name == "cegate_cli.pipelines.demo":
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


@pytest.fixture
def mismatched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "cegate_cli.pipelines.demo", raising=False)
    monkeypatch.setattr(sys, "meta_path", [MismatchedTorchvision(), *sys.meta_path])
    monkeypatch.setattr(install_check.metadata, "version", VERSIONS.__getitem__)
    monkeypatch.delenv("CEGATE_DEBUG", raising=False)


def test_demo_with_a_mismatched_torchvision_is_one_line_with_the_fix(mismatched, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", str(tmp_path / "demo")])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: torchvision 0.24.0+cu128 does not match torch 2.14.1+cu130 (it was built for another torch, so its "
        "operators are missing); install the torchvision built for torch 2.14.1+cu130, from the index torch came from: "
        'pip install "torch==2.14.1+cu130" "torchvision==0.29.*" --index-url https://download.pytorch.org/whl/cu130'
    ]
    assert not (tmp_path / "demo").exists()


def test_cegate_debug_still_shows_the_traceback(mismatched, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CEGATE_DEBUG", "1")
    result = CliRunner().invoke(app, ["demo", str(tmp_path / "demo")])
    assert isinstance(result.exception, RuntimeError) and "torchvision::nms" in str(result.exception)


def test_other_runtime_errors_are_not_taken_for_a_broken_install() -> None:
    assert install_check.broken_install(RuntimeError("CUDA out of memory")) is None


@pytest.mark.parametrize(
    ("torch_version", "command"),
    [
        ("2.5.1+cpu", 'pip install "torch==2.5.1+cpu" "torchvision==0.20.*" --index-url https://download.pytorch.org/whl/cpu'),
        ("2.7.0", 'pip install "torch==2.7.0" "torchvision==0.22.*"'),
        ("3.0.0", 'pip install "torch==3.0.0" "torchvision"'),
    ],
)
def test_the_fix_keeps_torch_and_names_its_index(torch_version: str, command: str) -> None:
    assert install_check.matching_install(torch_version) == command
