"""Fuzz the config and run-folder parsers: every hostile or broken document is one CegateError line
naming the file, never a traceback, a hang or gigabytes of memory (issue 32).

Two kinds of cases. Built to hurt: a "billion laughs" alias bomb, nesting 10,000 (YAML flow) and
100,000 (JSON) levels deep, aliases that refer to themselves, a key given twice, a number of
5,000 digits, a device file, a folder under the file's name. Seeded mutations (deterministic):
random bytes of a good classes.yaml and adapt config changed, and every field of a good run.json
replaced by values of the wrong kind, each read through the reader a user reaches.
"""

from __future__ import annotations

import json
import math
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from cegate_cli.backbone.hub import resolve_backbone
from cegate_cli.cli import app
from cegate_cli.commands import adapt_config
from cegate_cli.commands.adapt import adapt_command
from cegate_cli.data.bands import BandChoice
from cegate_cli.data.classes import ClassInfo, ClassTable, load_class_table
from cegate_cli.data.stac import read_item
from cegate_cli.data.stats import BandStats
from cegate_cli.errors import CegateError, DataError, DocumentError, RunFolderError
from cegate_cli.infra import documents
from cegate_cli.infra.documents import read_json, read_yaml
from cegate_cli.options.train import TrainConfig
from cegate_cli.run import BackboneRecord, BandCopy, RunManifest, read_manifest
from cegate_cli.run.state import read_state, record_path, write_state
from cegate_cli.toolbox.config import ToolboxConfig

SEED = 20240932
GOOD_CLASSES = "ignore_index: 255\nclasses:\n  - {id: 0, name: water, color: '#1f78b4'}\n  - {id: 1, name: land}\n"


def billion_laughs(key: str = "lol") -> str:
    """Nine levels of nine aliases each: 9**9 (387 million) strings once expanded, 700 bytes on disk."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + f"\n{key}: *a8\n"


HOSTILE_YAML = {
    "billion laughs": (billion_laughs(), "aliases (*name) expand to more than"),
    "flow nesting": ("[" * 10_000 + "]" * 10_000, "nested deeper than 100 levels"),
    "block nesting": ("".join(" " * i + "a:\n" for i in range(1_000)), "nested deeper than 100 levels"),
    "alias to itself": ("a: &x [1, *x]\n", "an alias refers to the value that holds it"),
    "key twice": ("steps: 3\nlr: 0.1\nsteps: 4\n", "key 'steps' is given twice (lines 1 and 3)"),
    "5000 digits": ("steps: " + "9" * 5000 + "\n", "not a usable YAML value"),
    "not UTF-8": ("steps: \udcff\n", "not UTF-8 text"),
    "unclosed": ("steps: [1, 2\n", "not valid YAML at line 2"),
}
HOSTILE_JSON = {
    "nesting": ("[" * 100_000 + "]" * 100_000, "nested deeper than 100 levels"),
    "nesting below the recursion limit": ("[" * 500 + "]" * 500, "nested deeper than 100 levels"),
    "key twice": ('{"format": "x", "format": "y"}', "key 'format' is given twice"),
    "5000 digits": ("9" * 5000, "not a usable JSON value"),
    "truncated": ('{"format": "cegate-run/1", "backbone": {', "not valid JSON at line 1"),
}


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


def _one_line(exc: BaseException, path: Path) -> str:
    message = str(exc)
    assert "\n" not in message and str(path) in message, message
    return message


# -- the one loader ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(HOSTILE_YAML))
def test_hostile_yaml_is_refused_fast_and_by_name(name: str, tmp_path: Path) -> None:
    text, expected = HOSTILE_YAML[name]
    path = _write(tmp_path / "doc.yaml", text)
    started = time.perf_counter()
    with pytest.raises(DocumentError) as err:
        read_yaml(path)
    assert time.perf_counter() - started < 5
    assert expected in _one_line(err.value, path)


@pytest.mark.parametrize("name", list(HOSTILE_JSON))
def test_hostile_json_is_refused_fast_and_by_name(name: str, tmp_path: Path) -> None:
    text, expected = HOSTILE_JSON[name]
    path = _write(tmp_path / "doc.json", text)
    started = time.perf_counter()
    with pytest.raises(DocumentError) as err:
        read_json(path)
    assert time.perf_counter() - started < 5
    assert expected in _one_line(err.value, path)


def test_what_is_not_a_small_regular_file_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "classes.yaml"
    folder.mkdir()
    with pytest.raises(DocumentError, match="is a folder, not a file"):
        read_yaml(folder)
    with pytest.raises(DocumentError, match="is not a regular file"):
        read_yaml(Path("/dev/zero"))  # endless: reading it would never stop
    with pytest.raises(DocumentError, match="no such file"):
        read_json(tmp_path / "absent.json")
    monkeypatch.setattr(documents, "MAX_YAML_BYTES", 64)
    big = _write(tmp_path / "big.yaml", "steps: 3\n" * 10)
    with pytest.raises(DocumentError, match="is 90 bytes; a file of this kind holds at most 64 bytes"):
        read_yaml(big, max_bytes=documents.MAX_YAML_BYTES)


def test_what_the_limits_leave_alone_still_loads(tmp_path: Path) -> None:
    merged = _write(tmp_path / "merge.yaml", "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")
    assert read_yaml(merged) == {"base": {"x": 1, "y": 2}, "other": {"x": 3, "y": 2}}  # a merge may override
    shared = _write(tmp_path / "alias.yaml", "bands: &b [red, green]\nagain: *b\n")
    assert read_yaml(shared) == {"bands": ["red", "green"], "again": ["red", "green"]}
    nested = _write(tmp_path / "nested.json", "[" * 90 + "]" * 90)
    assert read_json(nested) is not None
    assert read_json(_write(tmp_path / "bom.json", '\ufeff{"a": 1}')) == {"a": 1}


# -- classes.yaml -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["billion laughs", "block nesting", "alias to itself", "5000 digits"])
def test_hostile_class_tables_are_one_line(name: str, tmp_path: Path) -> None:
    text, expected = HOSTILE_YAML[name]
    path = _write(tmp_path / "classes.yaml", GOOD_CLASSES + text.replace("steps:", "extra:"))
    with pytest.raises(DataError) as err:
        load_class_table(path)
    assert expected in _one_line(err.value, path) and "examples/classes.yaml" in str(err.value)


def test_a_class_table_with_a_key_twice_names_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "classes.yaml", GOOD_CLASSES + "ignore_index: 0\n")
    with pytest.raises(DataError, match="key 'ignore_index' is given twice"):
        load_class_table(path)


def _mutations(text: str, count: int, rng: np.random.Generator) -> Iterator[str]:
    """`count` copies of `text`, each with 1 to 4 random edits drawn from YAML's special characters."""
    alphabet = list(":-[]{}&*!|>'\"#%@`,? \n\t0123456789abcxyz.") + ["<<: ", "&a ", "*a", "\ufeff", "\x00", "\udcff"]
    for _ in range(count):
        chars = list(text)
        for _ in range(int(rng.integers(1, 5))):
            at = int(rng.integers(len(chars) + 1))
            action = int(rng.integers(3))
            if action == 0 and chars:
                del chars[min(at, len(chars) - 1)]
            elif action == 1 and chars:
                chars[min(at, len(chars) - 1)] = str(rng.choice(alphabet))
            else:
                chars.insert(at, str(rng.choice(alphabet)))
        yield "".join(chars)


def test_mutated_class_tables_load_or_are_one_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(SEED)
    path = tmp_path / "classes.yaml"
    loaded = refused = 0
    for number, text in enumerate(_mutations(GOOD_CLASSES, 300, rng)):
        _write(path, text)
        try:
            table = load_class_table(path)
        except DataError as exc:
            _one_line(exc, path)
            refused += 1
        except Exception as exc:  # pragma: no cover - the report of a failure
            pytest.fail(f"case {number} {text!r}: {type(exc).__name__}: {exc}")
        else:
            assert isinstance(table, ClassTable)
            loaded += 1
    assert loaded and refused  # the mutations reach both outcomes


# -- adapt --config ---------------------------------------------------------------------------------


def _adapt_command() -> Any:
    return typer.main.get_command(app).commands["adapt"]  # type: ignore[attr-defined]


def _file_defaults(path: Path) -> dict[str, Any]:
    return adapt_config.file_defaults(path, _adapt_command(), typing.get_type_hints(adapt_command, include_extras=True))


@pytest.mark.parametrize("name", list(HOSTILE_YAML))
def test_hostile_config_files_are_one_line_from_the_cli(name: str, tmp_path: Path) -> None:
    text, expected = HOSTILE_YAML[name]
    config = _write(tmp_path / "adapt.yaml", text)
    result = CliRunner().invoke(app, ["adapt", "--config", str(config), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"Error: {config}: ") and expected in lines[0], result.output
    assert not (tmp_path / "run").exists()


def test_a_config_key_given_twice_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = _write(tmp_path / "adapt.yaml", "steps: 300\nbatch-size: 4\nsteps: 30\n")
    result = CliRunner().invoke(app, ["adapt", "--config", str(config), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert f"Error: {config}: key 'steps' is given twice (lines 1 and 3)" in result.output


def test_mutated_config_files_load_or_are_one_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(SEED + 1)
    good = "steps: 300\nbatch-size: 4\nbands: [red, green, blue]\nlr: 0.005\naugment: true\nbackbone: tiny\nout: run\n"
    path = tmp_path / "adapt.yaml"
    outcomes = {"loaded": 0, "refused": 0}
    for number, text in enumerate(_mutations(good, 300, rng)):
        _write(path, text)
        try:
            _file_defaults(path)
        except CegateError as exc:
            _one_line(exc, path)
            outcomes["refused"] += 1
        except Exception as exc:  # pragma: no cover - the report of a failure
            pytest.fail(f"case {number} {text!r}: {type(exc).__name__}: {exc}")
        else:
            outcomes["loaded"] += 1
    assert all(outcomes.values()), outcomes


# -- run.json ---------------------------------------------------------------------------------------


def _good_manifest() -> dict[str, Any]:
    table = ClassTable((ClassInfo(0, "water", (0, 0, 255)), ClassInfo(1, "land", (0, 255, 0))))
    backbone = BackboneRecord(
        source=resolve_backbone("tiny"),
        architecture="cegate_tiny_vit_patch8",
        pretrained_bands=("blue", "green", "red", "nir"),
        band_mapping=(BandCopy("red", "red"), BandCopy("green", "green"), BandCopy("blue", "blue")),
        patch_size=8,
        embed_dim=96,
        depth=6,
        parameters=670_000,
    )
    manifest = RunManifest(
        backbone=backbone,
        bands=BandChoice((1, 2, 3), ("red", "green", "blue")),
        normalization=BandStats(("red", "green", "blue"), (1.0, 2.0, 3.0), (1.0, 1.0, 1.0)),
        classes=table,
        toolbox=ToolboxConfig(),
        training=TrainConfig(),
        kinds=("lora", "adapter"),
        select_count=3,
        status="complete",
    )
    return manifest.to_dict()


def _run_folder(tmp_path: Path, data: Any) -> Path:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "run.json").write_text(json.dumps(data) if not isinstance(data, str) else data)
    return run


@pytest.mark.parametrize(
    "change,expected",
    [
        (lambda d: [d], "holds a JSON list, not the object cegate writes"),
        (lambda d: d["toolbox"].update(adapter_hidden=1e9), "toolbox.adapter_hidden is 1000000000.0, not a whole number"),
        (lambda d: d["toolbox"].update(lora_rank=10_000_000), "toolbox: --lora-rank 10000000"),
        (lambda d: d["toolbox"].update(kinds="lora"), "toolbox.kinds is 'lora', not a list of names"),
        (lambda d: d["toolbox"].update(surprise=1), "toolbox.surprise is not a field cegate knows"),
        (lambda d: d["training"].update(crop="128"), "training.crop is '128', not a whole number"),
        (lambda d: d["training"].update(calibrate=1), "training.calibrate is 1, not true or false"),
        (lambda d: d.update(classes={"classes": [{"id": "x", "name": "a", "color": [0, 0, 0]}]}), "classes is damaged"),
        (lambda d: d.update(metrics=[]), "metrics is not an object of fields"),
        (lambda d: d["selection"].pop("count"), "selection.count is missing"),
        (lambda d: d.pop("bands"), "bands is missing"),
    ],
)
def test_a_damaged_run_json_names_the_file_and_the_field(change: Callable[[dict], Any], expected: str, tmp_path: Path) -> None:
    data = _good_manifest()
    changed = change(data)
    run = _run_folder(tmp_path, changed if isinstance(changed, list) else data)
    with pytest.raises(RunFolderError) as err:
        read_manifest(run)
    assert expected in _one_line(err.value, run / "run.json")
    result = CliRunner().invoke(app, ["inspect", str(run)])
    assert result.exit_code == 2 and result.output.startswith(f"Error: {run / 'run.json'}: "), result.output


@pytest.mark.parametrize("name", list(HOSTILE_JSON))
def test_hostile_run_json_is_one_line(name: str, tmp_path: Path) -> None:
    run = _run_folder(tmp_path, HOSTILE_JSON[name][0])
    with pytest.raises(RunFolderError) as err:
        read_manifest(run)
    assert HOSTILE_JSON[name][1] in _one_line(err.value, run / "run.json")


def _leaves(value: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield path + (key,)
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield path + (index,)
            yield from _leaves(item, path + (index,))


def test_every_run_json_field_replaced_by_the_wrong_kind_loads_or_is_one_line(tmp_path: Path) -> None:
    good = _good_manifest()
    wrong_kinds = [None, "x", [], {}, [1, 2], 1e9, -1, True, 10**30, math.inf, "1e9", {"__tensor__": "x"}]
    rng = np.random.default_rng(SEED + 2)
    places = list(_leaves(good))
    refused = 0
    for number in range(400):
        data = json.loads(json.dumps(good))
        where = places[int(rng.integers(len(places)))]
        holder = data
        for key in where[:-1]:
            holder = holder[key]
        holder[where[-1]] = wrong_kinds[int(rng.integers(len(wrong_kinds)))]
        run = _run_folder(tmp_path, data)
        try:
            manifest = read_manifest(run)
        except RunFolderError as exc:
            _one_line(exc, run / "run.json")
            refused += 1
        except Exception as exc:  # pragma: no cover - the report of a failure
            pytest.fail(f"case {number}: {where} = {holder[where[-1]]!r}: {type(exc).__name__}: {exc}")
        else:
            manifest.toolbox.check()  # what was accepted can build modules
            assert all(isinstance(v, int) and not isinstance(v, bool) for v in (manifest.toolbox.lora_rank, manifest.training.crop))
    assert refused > 100


# -- the resume state and STAC items ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        (HOSTILE_JSON["nesting"][0], "nested deeper than 100 levels"),
        (HOSTILE_JSON["5000 digits"][0], "not a usable JSON value"),
        ('{"format": "cegate-train-state/2", "state": []}', "incomplete"),
        ('["cegate-train-state/2"]', "format None"),
    ],
)
def test_a_hostile_resume_record_is_one_line(text: str, expected: str, tmp_path: Path) -> None:
    import torch

    state = tmp_path / "state"
    write_state(state, {"step": 1, "weights": torch.zeros(2)})
    record_path(state).write_text(text)
    with pytest.raises(RunFolderError) as err:
        read_state(state)
    assert expected in _one_line(err.value, record_path(state)) and "--overwrite" in str(err.value)


@pytest.mark.parametrize("name", list(HOSTILE_JSON))
def test_a_hostile_stac_item_is_one_line(name: str, tmp_path: Path) -> None:
    path = _write(tmp_path / "item.json", HOSTILE_JSON[name][0])
    with pytest.raises(DataError) as err:
        read_item(path)
    assert HOSTILE_JSON[name][1] in _one_line(err.value, path)
