"""Config trees (nested dicts as read from TOML) before validation: ``--set`` values, dotted
keys, overrides, deep merges, and config files (TOML, JSON, a run directory's ``config.json``).
Imports nothing heavy (no torch, no pydantic), so that listing presets stays instant."""

from __future__ import annotations

import copy
import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pertlearn.errors import ConfigError

MAX_CONFIG_BYTES = 1_000_000
"""Config files larger than this are refused (a config is a few kilobytes)."""

RUN_CONFIG_FILE = "config.json"
"""The file of a run directory that records its config (``{"config": tree, "resolved": ...}``)."""

ATTACK_BUDGETS = ("eps", "eps_per_sqrt_dim", "eps_per_dim")
"""The three ways to give an attack's budget; setting one clears the others."""

PATH_KEYS = ("data.path", "data.data_dir", "f_weights", "checkpoint_dir")
"""Config keys that name a file or folder. A relative one in a config file (a preset file, a
sweep spec) is read relative to that file's folder (:func:`rebase_paths`); one given as
``--set`` or from Python, relative to the current directory; the validated config holds it
absolute, so a run directory's ``config.json`` reruns from any directory."""


def resolve_path(value: str, folder: str | Path) -> str:
    """The path ``value`` (``~`` expanded) joined onto ``folder`` unless it is absolute."""
    path = os.path.expanduser(value)
    return path if os.path.isabs(path) else os.path.join(folder, path)


def resolve_path_key(key: str, value: Any, folder: str | Path | None) -> Any:
    """``value`` of the dotted config key ``key`` read relative to ``folder``, for a path key
    (:data:`PATH_KEYS`) holding a string; any other key or value, or no ``folder``, as is."""
    if folder is None or key not in PATH_KEYS or not isinstance(value, str):
        return value
    return resolve_path(value, folder)


def rebase_paths(tree: dict[str, Any], folder: str | Path) -> dict[str, Any]:
    """A copy of the config tree ``tree`` with its relative paths (:data:`PATH_KEYS`) read
    relative to ``folder``, the folder of the file the tree was written in."""
    tree = copy.deepcopy(tree)
    for dotted in PATH_KEYS:
        *parents, last = dotted.split(".")
        node: Any = tree
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            node[last] = resolve_path_key(dotted, node[last], folder)
    return tree


def parse_value(text: str) -> Any:
    """A ``--set`` value as TOML (``3``, ``0.1``, ``true``, ``"x"``, ``[1, 2]``), else the raw
    string (so ``--set data.name=gauss`` needs no quotes)."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


def set_key(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree[a][b] = value`` for ``dotted = "a.b"``, creating tables on the way. Setting
    one of the attack budgets (``attack.eps``, ``attack.eps_per_sqrt_dim``,
    ``attack.eps_per_dim``) clears the others."""
    if not dotted or any(not part for part in dotted.split(".")):
        raise ConfigError(f"invalid key {dotted!r}: use dotted names like model.width")
    *parents, last = dotted.split(".")
    node = tree
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted}: {'.'.join(parents[: i + 1])} is not a table")
        node = child
    node[last] = value
    if parents == ["attack"] and last in ATTACK_BUDGETS:
        for other in ATTACK_BUDGETS:
            if other != last:
                node.pop(other, None)


def check_overrides(overrides: Any) -> None:
    """Raise :class:`ConfigError` unless ``overrides`` is a sequence of strings (a single
    string or a dict would be taken apart character by character or key by key)."""
    if isinstance(overrides, str | bytes | dict) or not all(
        isinstance(item, str) for item in overrides
    ):
        shown = repr(overrides)
        raise ConfigError(
            "overrides must be a list of 'key=value' strings such as ['model.width=1000'], got "
            f"{type(overrides).__name__} {shown[:60]}{'...' if len(shown) > 60 else ''}"
        )


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``tree`` with each ``key=value`` of ``overrides`` applied in order."""
    check_overrides(overrides)
    tree = copy.deepcopy(tree)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(
                f"override {item!r} is not of the form key=value (e.g. model.width=1000)"
            )
        set_key(tree, key.strip(), parse_value(text.strip()))
    return tree


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated recursively by ``update`` (tables merge, other values replace). An
    empty table in ``update`` replaces the base's table (``attack.options = {}`` drops the
    options a preset set for another attack). A new attack budget in ``update`` replaces the
    base's budget of another kind."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and value and isinstance(merged.get(key), dict):
            if key == "attack" and any(k in value for k in ATTACK_BUDGETS):
                for other in ATTACK_BUDGETS:
                    merged[key].pop(other, None)
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _config_text(path: Path) -> str:
    """The text of the config file ``path``; :class:`ConfigError` naming it when it is missing,
    a directory, oversized or not UTF-8 (a byte-order mark is dropped)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(
            f"config file {str(path)!r} is a directory without {RUN_CONFIG_FILE}; pass a config "
            "file or a run directory"
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {str(path)!r} is larger than {MAX_CONFIG_BYTES // 1000} kB; "
            "is it really a config?"
        )
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not TOML
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (binary?)") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a missing, oversized, binary or invalid file raises
    :class:`ConfigError` naming the file."""
    path = Path(path)
    text = _config_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    except RecursionError:
        raise ConfigError(f"config file {str(path)!r} is nested too deeply") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The config tree of ``path``: a TOML file; a ``.json`` file holding a config tree; or a
    run directory (or its ``config.json``), whose recorded ``config`` is the tree that reran
    gives the same run. :class:`ConfigError` naming the file for anything else.

    A TOML or JSON config file's relative paths (:data:`PATH_KEYS`) are read relative to its
    folder; a run's record is returned as recorded (its paths are absolute; a record written
    before they were holds them as given, read relative to the current directory)."""
    path = Path(path)
    if path.is_dir() and (path / RUN_CONFIG_FILE).is_file():
        path = path / RUN_CONFIG_FILE
    if path.suffix.lower() != ".json":
        return rebase_paths(read_toml(path), path.parent)
    text = _config_text(path)
    try:
        tree = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid JSON: {err}") from None
    except RecursionError:
        raise ConfigError(f"config file {str(path)!r} is nested too deeply") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {str(path)!r} holds no JSON object; a config is a table")
    if isinstance(tree.get("config"), dict) and "resolved" in tree:  # a run's record
        return dict(tree["config"])
    return rebase_paths(tree, path.parent)
