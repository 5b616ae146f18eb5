"""`cegate pull` against the Hub stand-in: in-process, and as a fresh process configured only by env vars."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_repos import tiny_timm_repo
from hubserver import HubStandIn
from typer.testing import CliRunner

from cegate_cli.cli import app, main

REPO = "someorg/tiny-vit"


def parse_rows(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        rows[key.strip()] = value.strip()
    return rows


def test_pull_prints_location_revision_and_checksum(hub: HubStandIn, tmp_path: Path) -> None:
    files, _ = tiny_timm_repo(seed=1)
    commit = hub.add_commit(REPO, files)
    result = CliRunner().invoke(app, ["pull", f"hf-hub:{REPO}"])
    assert result.exit_code == 0, result.output
    rows = parse_rows(result.stdout)
    assert rows["revision"] == commit
    assert rows["sha256"] == hashlib.sha256(files["model.safetensors"]).hexdigest()
    assert Path(rows["weights"]).read_bytes() == files["model.safetensors"]
    assert rows["folder"].startswith(str(tmp_path / "hf-home" / "hub" / "models--someorg--tiny-vit" / "snapshots"))

    as_json = CliRunner().invoke(app, ["pull", f"hf-hub:{REPO}", "--json"])
    assert json.loads(as_json.stdout)["revision"] == commit
    assert hub.count("GET", "/blobs/") == 1  # the second pull found it in the cache


def test_pull_revision_and_token_options(hub: HubStandIn) -> None:
    old_files, _ = tiny_timm_repo(seed=1)
    old = hub.add_commit(REPO, old_files)
    hub.add_commit(REPO, tiny_timm_repo(seed=2)[0])
    hub.set_gated(REPO, allowed_tokens=("hf_ok",))
    result = CliRunner().invoke(app, ["pull", f"hf-hub:{REPO}", "--revision", old, "--token", "hf_ok"])
    assert result.exit_code == 0, result.output
    assert parse_rows(result.stdout)["sha256"] == hashlib.sha256(old_files["model.safetensors"]).hexdigest()


def test_pull_errors_are_one_line_with_exit_code_2(hub: HubStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["pull", "hf-hub:someorg/missing"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == ("Error: backbone 'hf-hub:someorg/missing' not found on the Hub (check the name; private repos need HF_TOKEN)")


def test_pull_tiny_needs_nothing() -> None:
    result = CliRunner().invoke(app, ["pull", "tiny"])
    assert result.exit_code == 0, result.output
    assert parse_rows(result.stdout)["kind"] == "embedded"


def test_pull_in_a_fresh_process_uses_hf_endpoint_and_hf_home(tmp_path: Path) -> None:
    """No patching: HF_ENDPOINT and HF_HOME set in the environment are all a new process needs.
    (One subprocess only: importing the whole CLI takes seconds.)"""
    files, _ = tiny_timm_repo(seed=3)
    with HubStandIn() as stand_in:
        commit = stand_in.add_commit(REPO, files)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        env.update(HF_ENDPOINT=stand_in.endpoint, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
        done = subprocess.run(
            [sys.executable, "-m", "cegate_cli", "pull", f"hf-hub:{REPO}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert parse_rows(done.stdout)["revision"] == commit
        assert stand_in.count("GET", "/blobs/") == 1
