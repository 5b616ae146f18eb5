"""`cegate adapt --config FILE`, `--print-config`, and RUN/config.yaml: adapt's options as YAML.

The habit of LightningCLI and TerraTorch users, and what makes a run reproducible: every option
of `cegate adapt` can come from a YAML file of `option: value` lines (the flag's name without
`--`; `batch_size` and `batch-size` both work), flags given on the command line win, and the
resolved options are saved as RUN/config.yaml when the run starts, so

    cegate adapt --config RUN/config.yaml -o RUN2

trains the same thing again. This module is the one owner of that format: which keys exist
(the command's own options, read from the command itself, so a new flag is a new key), how YAML
values become option values (relative paths are taken from the file's folder), the commented
template `--print-config` prints, and the mapping from the options to the library's
`AdaptOptions`. Defaults come from the library's configuration classes, through the command's
declarations or, for those it declares as None (the backbone, the kinds' sizes), filled in here
(`library_defaults`); defaults derived from other values (warm-up, LoRA alpha, ...) are left to
those classes.
"""

from __future__ import annotations

import difflib
import os
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from cegate_cli.errors import DataFileNotFoundError, DocumentError, InputError
from cegate_cli.infra.documents import read_yaml

NOT_IN_FILE = ("config", "print-config", "help", "token")
"""Options a config file cannot set: the file itself, and the Hub token (a secret: HF_TOKEN)."""
RUNTIME = ("overwrite", "resume", "offline", "threads", "json", "quiet", "verbose")
"""Options about this invocation, not about what trains: accepted in a file, never saved."""
FROM_RUN = ("backbone", "bands", "classes", "ignore-index", "decoder", "align")
"""What a run continued with --from takes from the earlier run (its run.json), with the toolbox
kinds' size flags (`from_run_keys`)."""
FILE_ORDER = (
    "out",
    "source",
    "target",
    "from",
    "confidence",
    "class-balance",
    "prior-alignment",
    "ema",
    "target-norm",
    "adapt-schedule",
    "adapt-steps",
    "guard",
    "prototypes",
    "backbone",
    "revision",
    "offline",
    "bands",
    "classes",
    "ignore-index",
    "align",
    "modules",
    "select",
    "reselect-every",
    "selection",
    "loss",
    "rare-crops",
    "class-weight-power",
    "calibrate",
    "fisher-samples",
    "steps",
    "batch-size",
    "crop",
    "lr",
    "seed",
    "device",
    "val-fraction",
    "val-every",
    "decoder",
    "augment",
    "illumination",
    "save-every",
    "patch-size",
    "month",
    "normalize",
    "overwrite",
    "resume",
    "threads",
    "json",
    "quiet",
    "verbose",
)
"""The order of the keys in the template and in RUN/config.yaml, with the toolbox kinds' size flags
after `decoder` (`file_keys`). Its own, not the command's: `adapt --help` lists the options by
panel, while a file keeps the order files have always had, so templates and runs' config.yaml
files compare line by line. An option not listed here comes after those that are."""
TEMPLATE_WIDTH = 96


def _with_kind_sizes(keys: tuple[str, ...]) -> tuple[str, ...]:
    """`keys` with every toolbox kind's size flag (`lora-rank`) after `decoder`, the head."""
    from cegate_cli.commands.registered_flags import kind_size_defaults

    at = keys.index("decoder") + 1
    return keys[:at] + tuple(kind_size_defaults()) + keys[at:]


def file_keys() -> tuple[str, ...]:
    """FILE_ORDER with every toolbox kind's size flag after the head, where files list them."""
    return _with_kind_sizes(FILE_ORDER)


def from_run_keys() -> tuple[str, ...]:
    """FROM_RUN with every toolbox kind's size flag after the head (`lora-rank`), where files list them."""
    return _with_kind_sizes(FROM_RUN)


def option_key(param: Any) -> str:
    """The YAML key of a command parameter: its long flag without `--`, or an argument's name."""
    for opt in param.opts:
        if opt.startswith("--"):
            return opt[2:]
    return str(param.name)


def config_params(command: Any) -> dict[str, Any]:
    """Key -> parameter for every option a config file may set, in a file's order (FILE_ORDER)."""
    params = {option_key(p): p for p in command.params if option_key(p) not in NOT_IN_FILE}
    listed = file_keys()
    return {key: params[key] for key in (*[k for k in listed if k in params], *[k for k in params if k not in listed])}


# -- reading ------------------------------------------------------------------------------------
def read_yaml_mapping(path: Path) -> dict[Any, Any]:
    """The top-level mapping of a YAML file (through the one safe loader: no key given twice, no
    alias bombs), or one line saying what is wrong with it."""
    path = Path(path)
    if not os.path.lexists(path):
        raise DataFileNotFoundError(f"--config {path}: no such file; `cegate adapt --print-config > adapt.yaml` writes a template")
    try:
        data = read_yaml(path)
    except DocumentError as exc:
        raise InputError(f"{exc}; `cegate adapt --print-config` prints a template to start from") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected `option: value` lines (a YAML mapping), found a {type(data).__name__}")
    return data


def file_defaults(path: Path, command: Any, hints: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter name -> value for every key of the config file at `path`, checked and converted.

    `hints` are the command function's annotations (parameter name -> type). Unknown keys, keys
    given twice and values of the wrong type are one line naming the file and the key. A key with
    no value (`out:`, `null`) is not set: the command line or the default gives it, so the
    template `--print-config` prints, required options left empty, loads as written.
    """
    params = config_params(command)
    values: dict[str, Any] = {}
    seen: set[str] = set()
    for raw_key, raw_value in read_yaml_mapping(path).items():
        key = str(raw_key).strip().replace("_", "-")
        if key == "token":
            raise InputError(f"{path}: 'token' does not belong in a file; set HF_TOKEN or pass --token")
        param = params.get(key)
        if param is None:
            close = difflib.get_close_matches(key, list(params), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"{path}: unknown option {raw_key!r}{hint}; `cegate adapt --print-config` lists every option")
        if param.name in seen:
            raise InputError(f"{path}: option {key!r} is given twice")
        seen.add(param.name)
        if raw_value is not None:
            values[param.name] = convert(raw_value, hints[param.name], key=key, path=path)
    return values


def convert(value: Any, annotation: Any, *, key: str, path: Path) -> Any:
    """A YAML value (not None: that is no value, see `file_defaults`) as the option's type (see
    `_base_type`); relative paths from `path`'s folder."""
    base, _ = _base_type(annotation)
    where = f"{path}: {key}: "
    if base is bool:
        if not isinstance(value, bool):
            raise InputError(f"{where}{value!r} is not true or false")
        return value
    if isinstance(value, bool):
        raise InputError(f"{where}{value!r} is a yes/no value; this option takes {_type_name(base)}")
    if base is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise InputError(f"{where}{value!r} is not a whole number")
        return value
    if base is float:
        if not isinstance(value, (int, float)):
            raise InputError(f"{where}{value!r} is not a number")
        return float(value)
    if base is Path:
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{where}{value!r} is not a path")
        given = Path(value).expanduser()
        return given if given.is_absolute() else (Path(path).parent / given)
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)  # bands: [red, green, blue] as --bands red,green,blue
    if isinstance(value, (str, int, float)):
        return str(value)
    raise InputError(f"{where}expected {_type_name(base)}, found a {type(value).__name__}")


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the type under Annotated/Optional, whether None is allowed)."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else str
    return annotation, optional


def _type_name(base: Any) -> str:
    return {int: "a whole number", float: "a number", Path: "a path", bool: "true or false"}.get(base, "text")


def load_config_callback(hints: Callable[[], Mapping[str, Any]]) -> Callable[[Any, Any, Path | None], Path | None]:
    """The eager `--config` callback: the file's values become the command's defaults (click's
    `default_map`), so flags on the command line still win and every value is converted and
    checked as if it had been typed."""

    def callback(ctx: Any, param: Any, value: Path | None) -> Path | None:
        if value is None or getattr(ctx, "resilient_parsing", False):
            return value
        ctx.default_map = {**(ctx.default_map or {}), **file_defaults(Path(value), ctx.command, hints())}
        return value

    return callback


# -- what the command then works with -----------------------------------------------------------
def given(ctx: Any, name: str) -> bool:
    """Whether a parameter was set on the command line, by a config file or an environment
    variable (not its declared default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def check_from_run(ctx: Any) -> None:
    """With --from, the backbone, bands, classes and head come from the earlier run: refuse them.

    A config file's value equal to the default is no request (the template lists every option
    with its default), so a printed template works with --from too.
    """
    if ctx.params.get("from_run") is None:
        return
    params = config_params(ctx.command)
    defaults = library_defaults()

    def requested(key: str) -> bool:
        param = params[key]
        value = ctx.params[param.name]
        if not given(ctx, param.name) or value in (None, False):
            return False
        from_file = ctx.get_parameter_source(param.name).name == "DEFAULT_MAP"
        return not (from_file and value == defaults.get(key, param.default))

    named = [key for key in from_run_keys() if requested(key)]
    if named:
        config = ctx.params.get("config")
        where = f" (set in {config})" if config is not None and any(ctx.get_parameter_source(params[k].name).name == "DEFAULT_MAP" for k in named) else ""
        raise InputError(
            f"{', '.join('--' + k for k in named)}{where}: with --from these come from the earlier run ({ctx.params['from_run']}/run.json); leave them out"
        )


def library_defaults() -> dict[str, Any]:
    """The library's values of the options the command declares as None (`--help` shows them):
    there None, on the command line or as `null` in a config file, means the library's default,
    and RUN/config.yaml and the template record the value itself."""
    from cegate_cli.commands.registered_flags import kind_size_defaults
    from cegate_cli.options.adapt import AdaptOptions

    return {"backbone": AdaptOptions.backbone, **kind_size_defaults()}


def resolved_config(ctx: Any) -> dict[str, Any]:
    """The options this run trains with (key -> plain YAML value), defaults filled in, paths
    absolute: what RUN/config.yaml records. Options about this invocation (RUNTIME) are left
    out, and with --from what comes from the earlier run."""
    continued = ctx.params.get("from_run") is not None
    filled = library_defaults()
    from_run = from_run_keys()
    config: dict[str, Any] = {}
    for key, param in config_params(ctx.command).items():
        if key in RUNTIME or (continued and key in from_run):
            continue
        value = ctx.params[param.name]
        if value is None and key in filled:
            value = filled[key]
        config[key] = _plain(value)
    return config


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value.expanduser().resolve())
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def parameter_values(command: Any, config: Mapping[str, Any]) -> types.SimpleNamespace:
    """A resolved configuration (`resolved_config`) by the command's parameter names:
    `values.batch_size` is key `batch-size`, `values.from_run` is `from`. A key the configuration
    leaves out (with --from, what the earlier run gives) is None; the options about this
    invocation (RUNTIME) are not there, the command passes them itself."""
    params = config_params(command)
    return types.SimpleNamespace(**{param.name: config.get(key) for key, param in params.items() if key not in RUNTIME})


def adapt_options(values: types.SimpleNamespace, *, saved_config: dict[str, Any], token: str | None, offline: bool, overwrite: bool, resume: bool) -> Any:
    """`AdaptOptions` from a resolved configuration read by parameter name (`parameter_values`):
    one mapping for a run started from flags and one re-made from its config.yaml, so both train
    the same thing. Every field is passed by name from the parameter of that flag (`--batch-size`:
    `batch_size` -> `TrainConfig(batch_size=...)`, whose field names the flag in its metadata);
    the toolbox kinds' sizes come from their registry (`kind_size_values`)."""
    from cegate_cli.backbone.galileo_options import GalileoOptions
    from cegate_cli.commands.options import offline_flag
    from cegate_cli.commands.registered_flags import kind_size_values
    from cegate_cli.options.adapt import AdaptOptions
    from cegate_cli.options.train import SelfTrainConfig, TrainConfig
    from cegate_cli.toolbox.config import ToolboxConfig
    from cegate_cli.toolbox.kinds import parse_kinds

    def path(value: Any) -> Path | None:
        return None if value is None else Path(value)

    kinds = parse_kinds(values.modules)
    # Values are checked by TrainConfig/ToolboxConfig/SelfTrainConfig.check() inside adapt(); the
    # defaults derived from others (warm-up, save interval, LoRA alpha, statistics interval) are
    # the library's, so a Python caller gets the same run from the same values.
    train = TrainConfig(
        steps=int(values.steps),
        batch_size=values.batch_size,
        crop=values.crop,
        lr=values.lr,
        seed=values.seed,
        device=values.device,
        val_fraction=values.val_fraction,
        val_every=values.val_every,
        decoder=values.decoder or TrainConfig.decoder,
        select=str(values.select),
        reselect_every=values.reselect_every,
        fisher_samples=values.fisher_samples,
        augment=values.augment,
        illumination=values.illumination,
        selection=values.selection,
        loss=values.loss,
        rare_crops=values.rare_crops,
        class_weight_power=values.class_weight_power,
        calibrate=values.calibrate,
        save_every=values.save_every,
    )
    self_training = SelfTrainConfig(
        confidence=values.confidence,
        class_balance=values.class_balance,
        ema=values.ema,
        target_norm=values.target_norm,
        prior_alignment=values.prior_alignment,
        schedule=values.adapt_schedule,
        adapt_steps=values.adapt_steps,
        guard=values.guard,
        prototypes=values.prototypes,
    )
    galileo = GalileoOptions(
        patch_size=values.patch_size,
        month=None if values.month is None else values.month - 1,  # the command line counts from 1 = January
        normalize=values.normalize,
    )
    return AdaptOptions(
        source=path(values.source),
        out=Path(values.out),
        backbone=values.backbone or AdaptOptions.backbone,
        revision=values.revision,
        token=token,
        offline=offline_flag(offline),
        bands=values.bands,
        classes_file=path(values.classes),
        ignore_index=values.ignore_index,
        align=bool(values.align),
        kinds=kinds,
        toolbox=ToolboxConfig(kinds=kinds, **kind_size_values(saved_config)),
        train=train,
        overwrite=overwrite,
        resume=resume,
        target=path(values.target),
        from_run=path(values.from_run),
        self_training=self_training,
        galileo=galileo,
        saved_config=saved_config,
    )


# -- the template -------------------------------------------------------------------------------
def template(command: Any) -> str:
    """Every option a config file may set, each with its help as a comment and its default."""
    filled = library_defaults()
    lines = [
        "# cegate adapt configuration: every option of `cegate adapt`, set to its default.",
        "# Use it with:  cegate adapt --config adapt.yaml   (options given on the command line win).",
        "# Keys are the flags without `--`; relative paths are taken from this file's folder.",
        "# A key with no value (null) is not set: its default applies, or the command line gives it.",
        "# The Hub token is not read from here: set HF_TOKEN (or pass --token).",
        "",
    ]
    params = config_params(command)
    trained = [key for key in params if key not in RUNTIME]
    runtime = [key for key in params if key in RUNTIME]
    for key in trained + runtime:
        if runtime and key == runtime[0]:
            lines += ["# -- about this invocation only (never saved in RUN/config.yaml) --", ""]
        param = params[key]
        help_text = " ".join(str(getattr(param, "help", "") or "").split())
        if getattr(param, "required", False):
            help_text += " (required: here or on the command line)"
        default = param.default
        if default is None and key in filled:
            default = filled[key]
        shown = getattr(param, "show_default", None)
        if default is None and isinstance(shown, str) and shown:
            help_text += f" (null: {shown})"
        lines += textwrap.wrap(help_text, TEMPLATE_WIDTH, initial_indent="# ", subsequent_indent="# ")
        lines.append(yaml.safe_dump({key: str(default) if isinstance(default, Path) else default}, sort_keys=False).rstrip())
        lines.append("")
    return "\n".join(lines)
