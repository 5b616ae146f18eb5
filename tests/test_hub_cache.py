"""Backbones from a Hub cache built by the test (offline), from local folders, and spec errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hub_repos import tiny_timm_repo, write_hub_cache
from safetensors.torch import save_file

from cegate_cli.backbone import load_pretrained
from cegate_cli.backbone.hub import BackboneSource, file_sha256, resolve_backbone
from cegate_cli.backbone.registry import known_specs
from cegate_cli.errors import BackboneNotFoundError, InputError, OfflineNotCachedError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub-cache"


def test_offline_load_from_hub_cache_gives_the_saved_model(offline_cache: Path) -> None:
    files, model = tiny_timm_repo(seed=3)
    snapshot = write_hub_cache(offline_cache, "someorg/tiny-vit", files, COMMIT)

    source = resolve_backbone("hf-hub:someorg/tiny-vit", cache_dir=offline_cache)

    assert source.kind == "timm"
    assert source.repo_id == "someorg/tiny-vit"
    assert source.revision == COMMIT  # the commit, not "main"
    assert source.local_dir == snapshot
    assert source.weights_path == snapshot / "model.safetensors"
    assert source.weights_sha256 == file_sha256(snapshot / "model.safetensors")
    pretrained = load_pretrained(source)
    assert pretrained.architecture == "vit_tiny_patch16_224"
    assert pretrained.band_names == ("red", "green", "blue")
    assert pretrained.vit.num_classes == 0 and pretrained.vit.dynamic_img_size
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(pretrained.vit.eval().forward_features(images), model.forward_features(images))
        # any size that is a multiple of the patch works (position embedding resampled on the fly)
        assert pretrained.vit.forward_features(torch.randn(1, 3, 48, 64)).shape == (1, 1 + 6 * 8, 32)


def test_offline_pinned_revision_and_missing_revision(offline_cache: Path) -> None:
    files, _ = tiny_timm_repo(seed=1)
    write_hub_cache(offline_cache, "someorg/tiny-vit", files, COMMIT)
    pinned = resolve_backbone(f"hf-hub:someorg/tiny-vit@{COMMIT}", cache_dir=offline_cache)
    assert pinned.revision == COMMIT

    other = "f" * 40
    with pytest.raises(OfflineNotCachedError) as info:
        resolve_backbone("hf-hub:someorg/tiny-vit", revision=other, cache_dir=offline_cache)
    assert "cegate pull hf-hub:someorg/tiny-vit" in str(info.value)


def test_offline_not_cached_suggests_cegate_pull(offline_cache: Path) -> None:
    with pytest.raises(OfflineNotCachedError) as info:
        resolve_backbone("dinov2-small", cache_dir=offline_cache)
    message = str(info.value)
    assert "'cegate pull dinov2-small'" in message
    assert "timm/vit_small_patch14_dinov2.lvd142m" in message
    assert "HF_HUB_OFFLINE" in message


def test_cached_repo_without_safetensors_uses_the_pickle(offline_cache: Path, tmp_path: Path) -> None:
    files, model = tiny_timm_repo(seed=2)
    from safetensors.torch import load

    state = load(files.pop("model.safetensors"))
    buffer = tmp_path / "pytorch_model.bin"
    torch.save(state, buffer)
    files["pytorch_model.bin"] = buffer.read_bytes()
    write_hub_cache(offline_cache, "someorg/old-vit", files, COMMIT)

    source = resolve_backbone("hf-hub:someorg/old-vit", cache_dir=offline_cache)
    assert source.weights_path is not None and source.weights_path.name == "pytorch_model.bin"
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_pretrained(source).vit.eval().forward_features(images), model.forward_features(images))


def test_local_folder_with_classifier_head_and_other_grid(tmp_path: Path) -> None:
    """A repo saved with a 10-class head at 32 px loads headless; a 48 px config resamples pos_embed."""
    files, model = tiny_timm_repo(seed=4, head_classes=10)
    folder = tmp_path / "my-vit"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    source = resolve_backbone(str(folder))
    assert (source.kind, source.repo_id, source.revision) == ("timm", None, None)
    vit = load_pretrained(source).vit.eval()
    assert not any(key.startswith("head.") for key in vit.state_dict())
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(vit.forward_features(images), model.forward_features(images))

    config = json.loads((folder / "config.json").read_text())
    config["model_args"]["img_size"] = [48, 48]
    (folder / "config.json").write_text(json.dumps(config))
    vit48 = load_pretrained(resolve_backbone(str(folder))).vit
    assert vit48.pos_embed.shape == (1, 1 + 36, 32)


def test_weights_that_do_not_fit_are_an_error_naming_the_keys(tmp_path: Path) -> None:
    files, model = tiny_timm_repo(seed=5)
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_bytes(files["config.json"])
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("blocks.1.")}
    state["extra.weight"] = torch.zeros(3)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(InputError) as info:
        load_pretrained(resolve_backbone(str(folder)))
    message = str(info.value)
    assert "missing (12): blocks.1." in message and "unexpected (1): extra.weight" in message


def test_band_names_from_config(tmp_path: Path) -> None:
    files, _ = tiny_timm_repo(seed=6)
    folder = tmp_path / "bands"
    folder.mkdir()
    config = json.loads(files["config.json"])
    config["band_names"] = ["nir", "red", "green"]
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(files["model.safetensors"])
    assert load_pretrained(resolve_backbone(str(folder))).band_names == ("nir", "red", "green")


def test_local_folder_missing_files_names_them(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BackboneNotFoundError, match="has no config.json"):
        resolve_backbone(str(empty))
    files, _ = tiny_timm_repo()
    (empty / "config.json").write_bytes(files["config.json"])
    with pytest.raises(BackboneNotFoundError, match="model.safetensors or pytorch_model.bin"):
        resolve_backbone(str(empty))
    with pytest.raises(BackboneNotFoundError, match="does not exist"):
        resolve_backbone(str(tmp_path / "nowhere"))


def test_unknown_specs_list_the_aliases() -> None:
    with pytest.raises(InputError) as info:
        resolve_backbone("dinov3-giant")
    for alias in known_specs():
        assert alias in str(info.value)
    with pytest.raises(InputError, match="hf-hub:someorg/model"):
        resolve_backbone("someorg/model")  # a repo name without the prefix, and no such folder
    with pytest.raises(InputError, match="ORG/NAME"):
        resolve_backbone("hf-hub:not a repo")


def test_embedded_tiny_needs_no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = resolve_backbone("tiny")
    assert source.kind == "embedded" and source.repo_id is None and source.revision is None
    pretrained = load_pretrained(source)
    assert pretrained.band_names == ("blue", "green", "red", "nir")


def test_backbone_source_round_trips_through_json(tmp_path: Path) -> None:
    source = BackboneSource(
        spec="dinov2-small",
        kind="timm",
        repo_id="timm/vit_small_patch14_dinov2.lvd142m",
        revision=COMMIT,
        local_dir=tmp_path,
        config_path=tmp_path / "config.json",
        weights_path=tmp_path / "model.safetensors",
        weights_sha256="ab" * 32,
    )
    data = json.loads(json.dumps(source.to_dict()))
    assert data["revision"] == COMMIT and data["weights_path"] == str(tmp_path / "model.safetensors")
    assert BackboneSource.from_dict(data) == source
    with pytest.raises(InputError, match="weights_sha256"):
        BackboneSource.from_dict({k: v for k, v in data.items() if k != "weights_sha256"})


def test_revision_is_refused_for_folders_and_tiny(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="only applies to Hub backbones"):
        resolve_backbone("tiny", revision="main")
    with pytest.raises(InputError, match="local folder"):
        resolve_backbone(str(tmp_path), revision="main")
