"""The one reader of the YAML and JSON files cegate is given: limits first, then the parse.

classes.yaml, `adapt --config`, run.json, the resume state, STAC items, a backbone's config.json
and `report --evaluation` all read through `read_yaml` or `read_json`, because these files come
from users, downloads and copied run folders. A file that could hurt is refused with a
`DocumentError` (one line naming the file) before it costs memory or crashes the parser:

- size: a few hundred bytes of YAML aliases (a "billion laughs" file) expand to 10**9 values,
  so aliases may expand to at most `MAX_YAML_VALUES` values and may not refer to themselves;
- nesting: Python's parsers recurse per level and end in a RecursionError traceback;
- a key given twice: both parsers keep the last one silently, so an edited option would vanish;
- bytes: a file larger than its kind needs (or `/dev/zero`) is not read at all.

The callers add what the file is for and what to do (`DocumentError.reason`).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from cegate_cli.errors import DocumentError

MAX_DEPTH = 100
"""Levels of nesting a document may have; cegate's own files use under 10."""
MAX_YAML_BYTES = 1 << 20
"""A class table or an option file is a few kilobytes."""
MAX_JSON_BYTES = 64 << 20
"""run.json and STAC items are kilobytes to a few megabytes; the resume state grows with the steps."""
MAX_YAML_VALUES = 100_000
"""Values a YAML document may hold once its aliases are expanded (255 classes are about 1,000)."""
_MERGE_TAG = "tag:yaml.org,2002:merge"


def read_yaml(path: Path, *, max_bytes: int = MAX_YAML_BYTES) -> Any:
    """The YAML document in `path` (safe types only), or DocumentError saying what is wrong."""
    text = _read_text(Path(path), max_bytes)
    loader = _LimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except _Refused as exc:
        raise DocumentError(path, exc.reason) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DocumentError(path, f"not valid YAML{where} ({reason})") from None
    except ValueError as exc:  # an integer of more digits than Python converts, a date like 2020-13-45
        raise DocumentError(path, f"not a usable YAML value ({_first_clause(exc)})") from None
    finally:
        loader.dispose()


def read_json(path: Path, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON document in `path`, or DocumentError saying what is wrong."""
    text = _read_text(Path(path), max_bytes)
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except _Refused as exc:
        raise DocumentError(path, exc.reason) from None
    except RecursionError:
        raise DocumentError(path, _too_deep()) from None
    except json.JSONDecodeError as exc:
        raise DocumentError(path, f"not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise DocumentError(path, f"not a usable JSON value ({_first_clause(exc)})") from None
    if _depth(data) > MAX_DEPTH:
        raise DocumentError(path, _too_deep())
    return data


def _read_text(path: Path, max_bytes: int) -> str:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DocumentError(path, "no such file") from None
    except OSError as exc:
        raise DocumentError(path, f"cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise DocumentError(path, "is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise DocumentError(path, "is not a regular file (a device, pipe or socket); give the file itself")
    if info.st_size > max_bytes:
        raise DocumentError(path, f"is {_size(info.st_size)}; a file of this kind holds at most {_size(max_bytes)}")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)  # a file that grows while read stops here too
    except OSError as exc:
        raise DocumentError(path, f"cannot be read ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:
        raise DocumentError(path, f"is larger than {_size(max_bytes)}, the most a file of this kind holds")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(path, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save it as UTF-8") from None


def _size(count: int) -> str:
    return f"{count / (1 << 20):,.1f} MiB" if count >= 1 << 20 else f"{count:,} bytes"


def _first_clause(exc: Exception) -> str:
    """Python's message up to its first colon (its advice on interpreter settings is not the user's)."""
    return str(exc).split(":")[0]


def _too_deep() -> str:
    return f"nested deeper than {MAX_DEPTH} levels; cegate's files nest a few levels"


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise _Refused(f"key {key!r} is given twice in one object; keep one")
        mapping[key] = value
    return mapping


def _depth(data: Any) -> int:
    """Nesting of parsed JSON (lists and objects), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit while composing (its composer recurses per
    level) and no mapping key given twice (it keeps the last one silently)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._level = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self._level >= MAX_DEPTH:
            line = self.peek_event().start_mark.line + 1
            raise _Refused(f"{_too_deep()} (line {line})")
        self._level += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._level -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # keys a merge (<<) brings in may be overridden: that is what merges are for
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _Refused(f"key {key!r} is given twice (lines {seen[key]} and {line}); keep one")
            seen[key] = line
        return super().construct_mapping(node, deep)


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, SequenceNode):
        yield from node.value
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value


def _check_expansion(root: Node) -> None:
    """Refuse aliases that expand past MAX_YAML_VALUES values or MAX_DEPTH levels, or that refer
    to the value holding them. Counted on the composed graph, where an alias is a shared node, so
    the check costs one visit per distinct node whatever the expansion."""
    values: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            kids = list(_children(node))
            values[key] = 1 + sum(values[id(kid)] for kid in kids)
            depth[key] = 1 + max((depth[id(kid)] for kid in kids), default=0)
            line = node.start_mark.line + 1
            if values[key] > MAX_YAML_VALUES:
                raise _Refused(
                    f"its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values (line {line}); write the values out instead of nesting aliases"
                )
            if depth[key] > MAX_DEPTH:
                raise _Refused(f"{_too_deep()} once its aliases are expanded (line {line})")
            continue
        if key in values:
            continue
        if key in open_nodes:
            raise _Refused(f"an alias refers to the value that holds it (line {node.start_mark.line + 1}); such a value never ends")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node) if id(kid) not in values)
