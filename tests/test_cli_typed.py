"""The typed hop from `cegate adapt` to the library: every flag sets one field of an option class,
that field carries the flag's help (`field(metadata=...)`, infra/option_fields.py), the command
shows that help, `adapt_options` passes each field by name, and `--help` groups the options in
panels."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from cegate_cli.backbone.galileo_options import GalileoOptions
from cegate_cli.cli import app
from cegate_cli.commands import adapt_config
from cegate_cli.commands.adapt import PANELS
from cegate_cli.infra.option_fields import flag_of, flagged_fields, help_of, option
from cegate_cli.options.adapt import AdaptOptions
from cegate_cli.options.train import SelfTrainConfig, TrainConfig
from cegate_cli.toolbox.kinds import registered_kinds

INVOCATION = ("--config", "--print-config", "--threads", "--json", "--quiet", "--verbose", "--help")
"""adapt's options about this invocation only (its file, its output): no option class holds them."""
BY_COMMAND = ("--token", "--offline", "--overwrite", "--resume")
"""Fields the command passes to `adapt_options` itself (never from a config file's values)."""


def _command() -> Any:
    return typer.main.get_command(app).commands["adapt"]  # type: ignore[attr-defined]


def _params() -> list[Any]:
    command = _command()
    return [p for p in command.get_params(typer.Context(command)) if not (p.opts and p.opts[0] in INVOCATION)]


def _flag(param: Any) -> str:
    """A parameter's name on the command line: its long flag, or SOURCE for the argument."""
    longs = [opt for opt in param.opts if opt.startswith("--")]
    return longs[0] if longs else str(param.name).upper()


def _where() -> dict[type, Callable[[AdaptOptions], Any]]:
    """Each option class adapt fills, and where an AdaptOptions holds it."""
    places: dict[type, Callable[[AdaptOptions], Any]] = {
        AdaptOptions: lambda o: o,
        TrainConfig: lambda o: o.train,
        SelfTrainConfig: lambda o: o.self_training,
        GalileoOptions: lambda o: o.galileo,
    }
    for spec in registered_kinds():
        places[spec.options] = lambda o, name=spec.name: o.toolbox.options(name)
    return places


def _fields_by_flag() -> dict[str, list[tuple[type, str]]]:
    found: dict[str, list[tuple[type, str]]] = {}
    for cls in _where():
        for flag, name in flagged_fields(cls).items():
            found.setdefault(flag, []).append((cls, name))
    return found


def test_every_adapt_flag_sets_exactly_one_field_that_names_it_and_shows_its_help() -> None:
    fields = _fields_by_flag()
    params = _params()
    assert len(params) > 40
    for param in params:
        flag = _flag(param)
        assert len(fields.get(flag, [])) == 1, f"{flag}: {fields.get(flag)}"
        cls, name = fields[flag][0]
        assert flag_of(cls, name) == flag
        assert param.help == help_of(cls, name), flag  # the text exists once: in the field
    # And no field names a flag adapt does not take.
    assert set(fields) == {_flag(p) for p in params}


def test_every_adapt_option_sits_in_a_named_panel_and_help_shows_them_in_order() -> None:
    command = _command()
    options = [p for p in command.get_params(typer.Context(command)) if p.opts and p.opts[0].startswith("-")]
    unplaced = [p.opts[0] for p in options if getattr(p, "rich_help_panel", None) not in PANELS]
    assert unplaced == [] and "--help" in {p.opts[0] for p in options}
    text = CliRunner().invoke(app, ["adapt", "--help"], env={"COLUMNS": "200"}).output
    at = [text.find(f"─ {title} ─") for title in PANELS]
    assert -1 not in at and at == sorted(at), at
    assert text.find("─ Arguments ─") < at[0]  # SOURCE first, then the data options
    assert "─ Options ─" not in text  # no option left outside the panels


def test_other_commands_keep_their_shared_options_outside_adapt_s_panels() -> None:
    predict = typer.main.get_command(app).commands["predict"]  # type: ignore[attr-defined]
    shared = {p.opts[0]: p for p in predict.get_params(typer.Context(predict))}
    assert all(getattr(shared[flag], "rich_help_panel", None) is None for flag in ("--json", "--token", "--device", "--quiet"))


def test_a_config_file_keeps_its_own_key_order() -> None:
    """FILE_ORDER places every option a file may set; --help's order does not move the keys."""
    keys = list(adapt_config.config_params(_command()))
    assert keys == list(adapt_config.file_keys())
    printed = CliRunner().invoke(app, ["adapt", "--print-config"]).stdout
    runtime = [key for key in keys if key in adapt_config.RUNTIME]  # the template lists them last
    listed = [line.split(":")[0] for line in printed.splitlines() if line and not line.startswith("#")]
    assert listed == [key for key in keys if key not in runtime] + runtime


def _changed(default: Any) -> Any:
    """A value other than `default`, of its type (None: a text or path; CHANGED gives those)."""
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 3
    if isinstance(default, float):
        return default + 0.125
    return None


CHANGED = {
    "SOURCE": ("/data/source", Path("/data/source")),
    "--out": ("/data/run2", Path("/data/run2")),
    "--target": ("/data/target", Path("/data/target")),
    "--from": ("/data/run", Path("/data/run")),
    "--classes": ("/data/classes.yaml", Path("/data/classes.yaml")),
    "--backbone": ("tiny", "tiny"),
    "--revision": ("v1", "v1"),
    "--bands": ("red,green", "red,green"),
    "--ignore-index": (7, 7),
    "--modules": ("adapter,earth", ("adapter", "earth")),
    "--decoder": ("unet", "unet"),
    "--select": ("6", "6"),
    "--selection": ("random", "random"),
    "--loss": ("ce", "ce"),
    "--device": ("cpu", "cpu"),
    "--target-norm": ("source", "source"),
    "--adapt-schedule": ("joint", "joint"),
    "--adapt-steps": (9, 9),
    "--patch-size": (4, 4),
    "--month": (5, 4),  # the command line counts months from 1, the field from 0
    "--normalize": ("data", "data"),
}
"""Flag -> (a value in the configuration, the field's value) where `_changed` cannot tell."""


def test_adapt_options_passes_each_flag_to_its_field() -> None:
    """A changed value of each flag reaches exactly the field that names it (a swapped keyword
    argument in `adapt_options` fails here)."""
    command = _command()
    template = yaml.safe_load(CliRunner().invoke(app, ["adapt", "--print-config"]).stdout)
    base = {key: value for key, value in template.items() if key not in adapt_config.RUNTIME} | {"out": "/data/run"}
    where = _where()

    def build(config: dict[str, Any]) -> AdaptOptions:
        values = adapt_config.parameter_values(command, config)
        return adapt_config.adapt_options(values, saved_config=config, token=None, offline=False, overwrite=False, resume=False)

    before = build(base)
    checked = 0
    for flag, [(cls, name)] in _fields_by_flag().items():
        if flag in BY_COMMAND:
            continue
        key = "source" if flag == "SOURCE" else flag[2:]
        given, expected = CHANGED.get(flag, (None, None))
        if flag not in CHANGED:
            given = expected = _changed(base[key])
        assert given is not None, f"{flag}: say in CHANGED which value to try"
        after = build({**base, key: given})
        assert getattr(where[cls](after), name) == expected, flag
        assert getattr(where[cls](before), name) != expected, flag
        checked += 1
    assert checked > 40
    by_command = adapt_config.adapt_options(
        adapt_config.parameter_values(command, base), saved_config=base, token="t", offline=True, overwrite=True, resume=True
    )
    assert (by_command.token, by_command.offline, by_command.overwrite, by_command.resume) == ("t", True, True, True)


def test_option_fields_hold_help_and_flag() -> None:
    @dataclasses.dataclass(frozen=True)
    class Example:
        where: Path = option(help="Where.", flag="WHERE")
        size: int = option(3, help="How big.", flag="--size")
        quiet: bool = option(False, help="Not shown on a command line.")

    assert Example(Path("x")).size == 3 and Example.size == 3
    with pytest.raises(TypeError):
        Example()  # type: ignore[call-arg]  # no default: required
    assert help_of(Example, "size") == "How big." and flag_of(Example, "quiet") is None
    assert flagged_fields(Example) == {"WHERE": "where", "--size": "size"}
    with pytest.raises(KeyError, match="Example has no field 'nope'"):
        help_of(Example, "nope")


@pytest.mark.parametrize("name", ["predict", "evaluate"])
def test_predict_and_evaluate_show_the_help_of_the_mapping_fields_they_set(name: str) -> None:
    """Their flags that set a field of MapOptions or VectorOptions show that field's help."""
    from cegate_cli.predict.map_options import MapOptions
    from cegate_cli.predict.vector_options import VectorOptions

    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    params = {p.opts[0]: p for p in command.get_params(typer.Context(command)) if p.opts and p.opts[0].startswith("--")}
    shown = 0
    for cls in (MapOptions, VectorOptions):
        for flag, field_name in flagged_fields(cls).items():
            if flag in params:
                assert params[flag].help == help_of(cls, field_name), (name, flag)
                shown += 1
    assert shown >= (10 if name == "predict" else 7)
