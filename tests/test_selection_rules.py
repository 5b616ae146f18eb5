"""The baselines' selection rules (TrainConfig.selection) that benchmarks/bench_quality.py compares."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.run import read_manifest

SMALL = TrainConfig(
    steps=4,
    batch_size=2,
    crop=32,
    lr=2e-3,
    warmup_steps=1,
    val_every=2,
    val_crops=4,
    save_every=4,
    fisher_samples=2,
    select="4",
    seed=3,
    reselect_every=2,
)


@pytest.fixture(scope="module")
def demo(demo_dataset):
    return demo_dataset(n_source=3, n_target=1, size=80, seed=1)


def _run(demo, out: Path, **changes):
    return adapt(AdaptOptions(source=demo.source_dir, out=out, backbone="tiny", train=replace(SMALL, **changes)))


def test_random_draws_the_same_count_reproducibly_and_records_its_rule(demo, tmp_path: Path) -> None:
    first = _run(demo, tmp_path / "a", selection="random")
    second = _run(demo, tmp_path / "b", selection="random")
    assert [s.rule for s in first.outcome.selections] == ["random", "random"]
    assert all(len(s.selected) == 4 for s in first.outcome.selections)
    assert [s.selected for s in first.outcome.selections] == [s.selected for s in second.outcome.selections]
    assert read_manifest(tmp_path / "a").training.selection == "random"


def test_all_activates_every_candidate_and_none_trains_the_head_only(demo, tmp_path: Path) -> None:
    every = _run(demo, tmp_path / "all", selection="all")
    assert len(every.outcome.final_selection) == 3 * every.manifest.backbone.depth  # lora, adapter, earth per block
    assert read_manifest(tmp_path / "all").select_count == len(every.outcome.final_selection)  # what inspect reports
    head = _run(demo, tmp_path / "none", selection="none")
    assert head.outcome.final_selection == []
    weights = load_file(str(tmp_path / "none" / "adapter.safetensors"))
    assert not any(k.startswith("toolbox.") for k in weights)


def test_full_trains_and_saves_the_backbone(demo, tmp_path: Path) -> None:
    from cegate_cli.backbone import load_pretrained
    from cegate_cli.backbone.hub import resolve_backbone

    result = _run(demo, tmp_path / "full", selection="full", reselect_every=0)
    weights = load_file(str(tmp_path / "full" / "adapter.safetensors"))
    backbone = {k[len("backbone.") :]: v for k, v in weights.items() if k.startswith("backbone.")}
    assert result.outcome.final_selection == [] and backbone
    pretrained = load_pretrained(resolve_backbone("tiny")).vit.state_dict()
    blocks = {n[len("vit.") :].replace("base_layer.", ""): v for n, v in backbone.items() if n.startswith("vit.blocks.")}
    assert blocks.keys() <= pretrained.keys()
    changed = [n for n, v in blocks.items() if n.endswith("fc1.weight") and not torch.equal(v, pretrained[n])]
    assert changed, "full fine-tuning left the block weights untouched"


def test_validation_crops_do_not_have_to_match_on_resume() -> None:
    # They never change the trained weights, and states from before 64 became the default hold 16.
    from cegate_cli.options.train import NOT_FINGERPRINTED

    assert TrainConfig(val_crops=16).resume_fingerprint() == TrainConfig().resume_fingerprint()
    assert "val_crops" in NOT_FINGERPRINTED  # what _load_state drops from a saved fingerprint


def test_default_rule_keeps_the_resume_fingerprint_of_older_runs() -> None:
    # States written before the option existed (the plain Fisher rule, then the default) still resume.
    assert "selection" not in TrainConfig(selection="fisher").resume_fingerprint()
    assert TrainConfig().resume_fingerprint()["selection"] == "fisher-cost"
    assert TrainConfig(selection="random").resume_fingerprint()["selection"] == "random"
    # Runs recorded before the option existed trained with the plain Fisher rule.
    assert TrainConfig.from_dict({"steps": 5}).selection == "fisher"


def test_a_full_fine_tuning_run_predicts_with_its_own_backbone(demo, tmp_path: Path) -> None:
    from cegate_cli.run import load_run

    _run(demo, tmp_path / "full", selection="full", reselect_every=0)
    weights = load_file(str(tmp_path / "full" / "adapter.safetensors"))
    loaded = load_run(tmp_path / "full", device="cpu")
    params = dict(loaded.model.backbone.named_parameters())
    for name, tensor in weights.items():
        if name.startswith("backbone."):
            assert torch.equal(params[name[len("backbone.") :]].detach(), tensor), name


def test_fisher_rules_on_a_constructed_score_grid() -> None:
    """Six blocks whose gradients grow toward the input (the depth bias seen on every backbone)."""
    from cegate_cli.toolbox.fisher import select_by_fisher_rule

    scores = {}
    for layer in range(6):
        depth_scale = 10.0 ** (5 - layer)  # block 0 has 100,000x the gradient energy of block 5
        scores[("lora", layer)] = 1.0 * depth_scale
        scores[("adapter", layer)] = (3.0 if layer == 4 else 2.0) * depth_scale
        scores[("earth", layer)] = 0.5 * depth_scale
    assert select_by_fisher_rule("fisher", scores, 3, 6) == [("lora", 0), ("adapter", 0), ("earth", 0)]  # all in block 0
    # Cost-aware: only the upper half may train, so the backward pass stops at block 3.
    assert select_by_fisher_rule("fisher-cost", scores, 3, 6) == [("lora", 3), ("adapter", 3), ("earth", 3)]
    # Within-block ranking: every block's adapter is its best module; block 4's adapter stands out most.
    picked = select_by_fisher_rule("fisher-block", scores, 2, 6)
    assert picked[-1] == ("adapter", 4) and all(kind == "adapter" for kind, _ in picked)
    # More modules than the budget's blocks hold: the cut moves down just enough.
    assert min(layer for _, layer in select_by_fisher_rule("fisher-cost", scores, 12, 6)) == 2


def test_head_warmup_trains_the_head_alone_then_scores_and_trains_the_chosen_modules(demo, tmp_path: Path) -> None:
    """head_warmup (issue 12, beyond the paper): steps 0..N-1 train no module (the backbone and every
    module stay as initialised), the Fisher scoring happens at step N, and the chosen modules train after."""
    result = _run(demo, tmp_path / "w", steps=6, head_warmup=3, reselect_every=0, selection="fisher")
    events = [(s.step, s.rule, len(s.selected)) for s in result.outcome.selections]
    assert events == [(0, "head-warmup", 0), (3, "fisher", 4)]
    assert result.outcome.selections[1].scores.samples > 0
    assert read_manifest(tmp_path / "w").training.head_warmup == 3


def test_head_warmup_must_end_before_the_last_step_and_old_states_still_resume() -> None:
    from cegate_cli.errors import InputError

    with pytest.raises(InputError, match="head_warmup 4"):
        replace(SMALL, head_warmup=4).check()
    assert "head_warmup" not in SMALL.resume_fingerprint()
    assert replace(SMALL, head_warmup=2).resume_fingerprint()["head_warmup"] == 2


def test_only_modules_restricts_the_candidates_so_all_trains_exactly_them(demo, tmp_path: Path) -> None:
    """The oracle study's single-module runs (benchmarks/bench_real.py --oracle): `only_modules` with rule all."""
    from cegate_cli.errors import InputError

    options = AdaptOptions(
        source=demo.source_dir,
        out=tmp_path / "one",
        backbone="tiny",
        only_modules=(("earth", 2),),
        train=replace(SMALL, selection="all", select="1", reselect_every=0),
    )
    result = adapt(options)
    assert [s.selected for s in result.outcome.selections] == [[("earth", 2)]]
    assert {tuple(k) for k in read_manifest(tmp_path / "one").ever_selected} == {("earth", 2)}
    with pytest.raises(InputError, match="modules lora@9 do not exist in this toolbox"):
        adapt(replace(options, out=tmp_path / "none", only_modules=(("lora", 9),)))
    assert not (tmp_path / "none").exists()


def test_random_cost_draws_only_from_the_blocks_fisher_cost_may_use(demo, tmp_path: Path) -> None:
    """The control for fisher-cost: the same blocks, chosen without scores (6 blocks: 3-5 hold 9 modules)."""
    from cegate_cli.toolbox.config import ToolboxConfig
    from cegate_cli.toolbox.fisher import within_cost_budget

    keys = [(kind, layer) for layer in range(6) for kind in ToolboxConfig().kinds]  # the default toolbox's 3 kinds
    assert {layer for _, layer in within_cost_budget(keys, 4, 6)} == {3, 4, 5}
    assert {layer for _, layer in within_cost_budget(keys, 12, 6)} == {2, 3, 4, 5}  # the cut moves down just enough
    result = _run(demo, tmp_path / "rc", selection="random-cost")
    assert all(len(s.selected) == 4 and min(layer for _, layer in s.selected) >= 3 for s in result.outcome.selections)


def test_fisher_cost_scores_only_the_modules_it_may_pick() -> None:
    """Scoring fewer modules changes nothing of which modules fisher-cost may pick: the pool of its
    own pool is the pool, with the cut at its place and moved down alike; the other rules score all."""
    from cegate_cli.toolbox.fisher import FISHER_RULES, modules_to_score, select_by_fisher_rule, within_cost_budget

    keys = [(kind, layer) for layer in range(6) for kind in ("lora", "adapter", "earth")]
    scores = {key: 10.0 ** (5 - key[1]) * (2.0 if key[0] == "adapter" else 1.0) for key in keys}
    for k in (3, 9, 12):
        pool = modules_to_score("fisher-cost", keys, k, 6)
        assert pool == within_cost_budget(keys, k, 6) and within_cost_budget(pool, k, 6) == pool
        picked = select_by_fisher_rule("fisher-cost", {key: scores[key] for key in pool}, k, 6)
        assert picked == select_by_fisher_rule("fisher-cost", scores, k, 6)
    assert {layer for _, layer in modules_to_score("fisher-cost", keys, 4, 6)} == {3, 4, 5}
    for rule in FISHER_RULES:
        if rule != "fisher-cost":
            assert modules_to_score(rule, keys, 4, 6) == keys


def _spy_on_scoring(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, int]]]:
    """The modules each Fisher scoring of the trainer switched on."""
    from cegate_cli.train import supervised

    scored: list[list[tuple[str, int]]] = []
    real = supervised.empirical_fisher

    def spy(model, toolbox, samples, loss_fn, keys=None, statistic="fisher"):
        scored.append([tuple(key) for key in keys])
        return real(model, toolbox, samples, loss_fn, keys=keys, statistic=statistic)

    monkeypatch.setattr(supervised, "empirical_fisher", spy)
    return scored


def test_fisher_cost_run_scores_and_picks_only_in_the_blocks_at_or_above_the_cut(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tiny has 6 blocks: with --select 4, blocks 3-5 (9 modules) are all fisher-cost may pick, so
    they are all it scores; blocks 0-2 are recorded as not scored, and the pick is their top 4."""
    import json

    from cegate_cli.toolbox.fisher import normalize_within_kind, select_top

    scored = _spy_on_scoring(monkeypatch)
    result = _run(demo, tmp_path / "fc", selection="fisher-cost")
    upper = {(kind, layer) for layer in (3, 4, 5) for kind in ("lora", "adapter", "earth")}
    lower = [(kind, layer) for layer in (0, 1, 2) for kind in ("lora", "adapter", "earth")]
    assert len(scored) == 2 and all(set(keys) == upper for keys in scored)  # step 0 and the rescoring at step 2
    for selection in result.outcome.selections:
        assert selection.rule == "fisher-cost" and set(selection.scores.raw) == upper
        assert selection.scores.normalized == normalize_within_kind(selection.scores.raw)  # normalised among the scored only
        assert selection.selected == select_top(selection.scores.normalized, 4)
        assert sorted(selection.unscored) == sorted(lower)
    history = json.loads((tmp_path / "fc" / "run.json").read_text())["selection"]["history"]
    assert all(len(event["unscored"]) == 9 and len(event["scores"]) == 9 for event in history)


def test_fisher_run_still_scores_every_candidate(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    scored = _spy_on_scoring(monkeypatch)
    result = _run(demo, tmp_path / "f", selection="fisher", reselect_every=0)
    assert [len(keys) for keys in scored] == [18]
    (selection,) = result.outcome.selections
    assert len(selection.scores.raw) == 18 and selection.unscored == []
    (event,) = json.loads((tmp_path / "f" / "run.json").read_text())["selection"]["history"]
    assert "unscored" not in event and len(event["scores"]) == 18  # run.json as written before
