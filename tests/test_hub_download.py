"""Real huggingface_hub downloads against a loopback stand-in of the Hub (tests/hubserver.py)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import torch
from hub_repos import tiny_prithvi_repo, tiny_timm_repo
from hubserver import HubStandIn

from cegate_cli.backbone import load_pretrained
from cegate_cli.backbone.hub import pull_backbone, resolve_backbone
from cegate_cli.errors import BackboneNotFoundError, HubAuthError, HubConnectionError, OfflineNotCachedError

REPO = "someorg/tiny-vit"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_then_cached_then_offline(hub: HubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files, model = tiny_timm_repo(seed=1)
    commit = hub.add_commit(REPO, files)

    first = resolve_backbone(f"hf-hub:{REPO}")
    assert first.revision == commit
    assert first.weights_sha256 == sha256(files["model.safetensors"])
    assert str(first.local_dir).startswith(str(tmp_path / "hf-home" / "hub"))  # the standard cache under HF_HOME
    assert hub.count("GET", "/blobs/") == 1 and hub.count("GET", "/resolve/main/config.json") == 1

    again = resolve_backbone(f"hf-hub:{REPO}")
    assert again == first
    assert hub.count("GET", "/blobs/") == 1 and hub.count("GET", "config.json") == 1  # nothing fetched twice

    hub.stop()  # the Hub goes away: the cache still answers, online or offline
    assert resolve_backbone(f"hf-hub:{REPO}") == first
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = resolve_backbone(f"hf-hub:{REPO}")
    assert offline == first
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_pretrained(offline).vit.eval().forward_features(images), model.forward_features(images))


def test_pinned_revision_gets_that_commits_weights(hub: HubStandIn) -> None:
    old_files, _ = tiny_timm_repo(seed=1)
    new_files, _ = tiny_timm_repo(seed=2)
    old = hub.add_commit(REPO, old_files)
    new = hub.add_commit(REPO, new_files)
    hub.add_commit(REPO, old_files, branch="v1.0")

    assert resolve_backbone(f"hf-hub:{REPO}").revision == new
    pinned = resolve_backbone(f"hf-hub:{REPO}@{old}")
    assert pinned.revision == old and pinned.weights_sha256 == sha256(old_files["model.safetensors"])
    overridden = resolve_backbone(f"hf-hub:{REPO}@{new}", revision=old)  # --revision wins over @REV
    assert overridden.revision == old
    tagged = resolve_backbone(f"hf-hub:{REPO}@v1.0")
    assert tagged.weights_sha256 == sha256(old_files["model.safetensors"]) and len(tagged.revision or "") == 40

    with pytest.raises(BackboneNotFoundError) as info:
        resolve_backbone(f"hf-hub:{REPO}@no-such-branch")
    assert "revision 'no-such-branch'" in str(info.value)


def test_repo_without_safetensors_falls_back_to_pickle(hub: HubStandIn, tmp_path: Path) -> None:
    files, _ = tiny_timm_repo(seed=3)
    from safetensors.torch import load

    path = tmp_path / "pytorch_model.bin"
    torch.save(load(files.pop("model.safetensors")), path)
    files["pytorch_model.bin"] = path.read_bytes()
    hub.add_commit(REPO, files)
    source = resolve_backbone(f"hf-hub:{REPO}")
    assert source.weights_path is not None and source.weights_path.name == "pytorch_model.bin"

    hub.add_commit("someorg/no-weights", {"config.json": files["config.json"]})
    with pytest.raises(BackboneNotFoundError, match="model.safetensors or pytorch_model.bin"):
        resolve_backbone("hf-hub:someorg/no-weights")


def test_missing_repo_is_not_found(hub: HubStandIn) -> None:
    with pytest.raises(BackboneNotFoundError) as info:
        resolve_backbone("hf-hub:someorg/does-not-exist")
    assert str(info.value) == ("backbone 'hf-hub:someorg/does-not-exist' not found on the Hub (check the name; private repos need HF_TOKEN)")
    with pytest.raises(BackboneNotFoundError, match="not found on the Hub"):  # 404 when a token is sent
        resolve_backbone("hf-hub:someorg/does-not-exist", token="hf_some_token")


def test_gated_repo_needs_licence_and_token(hub: HubStandIn) -> None:
    files, _ = tiny_timm_repo()
    hub.add_commit(REPO, files)
    hub.set_gated(REPO, allowed_tokens=("hf_accepted",))

    with pytest.raises(HubAuthError) as info:  # no token: 401
        resolve_backbone(f"hf-hub:{REPO}")
    message = str(info.value)
    assert "HTTP 401" in message and f"https://huggingface.co/{REPO}" in message
    assert "HF_TOKEN" in message and "hf auth login" in message and "huggingface-cli login" in message

    with pytest.raises(HubAuthError, match="HTTP 403"):  # a token whose owner did not accept the licence
        resolve_backbone(f"hf-hub:{REPO}", token="hf_other")

    with pytest.raises(HubAuthError, match="token is not valid"):  # a revoked or mistyped token
        resolve_backbone(f"hf-hub:{REPO}", token="hf_invalid_123")

    source = resolve_backbone(f"hf-hub:{REPO}", token="hf_accepted")
    assert source.weights_sha256 == sha256(files["model.safetensors"])
    assert any(r.authorization == "Bearer hf_accepted" for r in hub.requests)


def test_offline_and_not_cached(hub: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_commit(REPO, tiny_timm_repo()[0])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineNotCachedError) as info:
        resolve_backbone(f"hf-hub:{REPO}")
    assert f"'cegate pull hf-hub:{REPO}'" in str(info.value)
    with pytest.raises(OfflineNotCachedError, match="unset HF_HUB_OFFLINE"):
        pull_backbone(f"hf-hub:{REPO}")
    assert not [r for r in hub.requests if "/resolve/" in r.path]  # offline really sent nothing
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert resolve_backbone(f"hf-hub:{REPO}", offline=False).kind == "timm"


def test_unreachable_hub_and_not_cached(hub: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.stop()
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # huggingface_hub retries with back-off
    with pytest.raises(HubConnectionError) as info:
        resolve_backbone(f"hf-hub:{REPO}")
    message = str(info.value)
    assert hub.endpoint in message and f"cegate pull hf-hub:{REPO}" in message


def test_aliases_resolve_to_their_repos(hub: HubStandIn) -> None:
    timm_files, _ = tiny_timm_repo(seed=4)
    dinov2 = hub.add_commit("timm/vit_small_patch14_dinov2.lvd142m", timm_files)
    prithvi_files, checkpoint = tiny_prithvi_repo(seed=4)
    prithvi = hub.add_commit("ibm-nasa-geospatial/Prithvi-EO-2.0-300M", prithvi_files)

    small = resolve_backbone("dinov2-small")
    assert (small.kind, small.repo_id, small.revision) == ("timm", "timm/vit_small_patch14_dinov2.lvd142m", dinov2)
    eo = resolve_backbone("prithvi-eo-2-300m")
    assert (eo.kind, eo.revision) == ("prithvi", prithvi)
    assert eo.weights_path is not None and eo.weights_path.name == "Prithvi_EO_V2_300M.pt"
    assert load_pretrained(eo).band_names == ("blue", "green", "red", "nir_narrow", "swir_1", "swir_2")

    with pytest.raises(BackboneNotFoundError) as info:
        resolve_backbone("dinov2-base")
    assert "'dinov2-base' (hf-hub:timm/vit_base_patch14_dinov2.lvd142m) not found" in str(info.value)


def test_other_prithvi_repo_finds_its_checkpoint_by_listing(hub: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    files, _ = tiny_prithvi_repo(seed=6, weights_name="my_prithvi_finetune.pt")
    commit = hub.add_commit("someorg/prithvi-variant", files)
    source = resolve_backbone("hf-hub:someorg/prithvi-variant")
    assert source.kind == "prithvi" and source.revision == commit
    assert source.weights_path is not None and source.weights_path.name == "my_prithvi_finetune.pt"
    assert hub.count("GET", f"/api/models/someorg/prithvi-variant/revision/{commit}") == 1

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline, the snapshot folder is listed instead
    assert resolve_backbone("hf-hub:someorg/prithvi-variant") == source
