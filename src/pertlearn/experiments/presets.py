"""Named experiment presets and sweep presets: TOML files, listed by one registry.

Presets are data. The built-in ones are the TOML files of the package folder
``pertlearn/presets`` (read with :mod:`importlib.resources`, so they work from a wheel);
users add their own, without code, in one or more directories named by the environment
variable ``PERTLEARN_PRESETS`` (several separated by ``os.pathsep``). Every preset root has the
same layout::

    NAME.toml, any/folder/NAME.toml      the experiment preset NAME (folders only group files)
    _NAME.toml                           a base: other presets inherit it; not listed, not run
    sweeps/NAME.toml, sweeps/any/NAME.toml   the sweep preset NAME

An experiment preset file is a config tree (the keys of ``pertlearn presets --show NAME``) plus

- ``summary``: the one line that ``pertlearn presets`` prints (required, except in bases);
- ``preset = "BASE"``: inherit the tree of the preset or base ``BASE`` (its own keys win);
- ``[scale.cpu]`` / ``[scale.paper]``: keys merged over the file's other keys at that scale.

A relative path in a preset file (``data.path``, ``f_weights``, ...:
:data:`~pertlearn.experiments.config_tree.PATH_KEYS`) is read relative to the file's folder.

The tree of ``NAME`` at scale ``s`` is the tree of ``BASE`` at ``s``, deep-merged with the
file's keys, deep-merged with its ``[scale.s]`` table (tables merge key by key; any other
value, lists included, replaces); ``name`` defaults to ``NAME``. Budgets that follow the input
dimension d are written as rules, not numbers: ``attack.eps_per_sqrt_dim = c`` (ε = c·√d) and
``attack.eps_per_dim = c`` (an L0 budget of c·d coordinates).

A sweep preset file is a sweep spec (see :mod:`pertlearn.experiments.sweeps`: ``preset``,
``seeds``, ``[base]``, ``[zip]``, ``[grid]``, ``[report]``) plus ``summary`` and the same
``[scale.cpu]`` / ``[scale.paper]`` tables; its ``scale`` is the one asked for.

Names are unique: two files with one name (a user preset named like a built-in one included)
raise :class:`ConfigError`; to change a built-in preset, write a new one that inherits it
(``preset = "quickstart"``). Listing order: built-in presets by folder (the root first, then
the folders alphabetically) and name, then each user directory in the same order. Any problem
in a file raises a one-line :class:`ConfigError` naming the file.
"""

from __future__ import annotations

import difflib
import functools
import os
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pertlearn.errors import ConfigError, cli_worded
from pertlearn.experiments.config_tree import (
    apply_overrides,
    check_overrides,
    deep_merge,
    read_config_file,
    rebase_paths,
)

if TYPE_CHECKING:
    from pertlearn.experiments.config import ExperimentConfig

Scale = Literal["cpu", "paper"]
SCALES: tuple[Scale, ...] = ("cpu", "paper")
ENV_VAR = "PERTLEARN_PRESETS"
"""Environment variable: user preset directories, separated by ``os.pathsep``."""
SWEEP_FOLDER = "sweeps"
"""Top folder of a preset root that holds the sweep presets."""


@dataclass(frozen=True)
class PresetFile:
    """One preset (or sweep preset) file as read: ``common`` holds its keys except ``summary``,
    ``scale`` and (experiment presets) ``preset``; ``scales`` its ``[scale.*]`` tables."""

    name: str
    source: str
    summary: str
    base: str | None
    common: dict[str, Any]
    scales: dict[str, dict[str, Any]]

    @property
    def is_base(self) -> bool:
        return self.name.startswith("_")

    def own_tree(self, scale: str) -> dict[str, Any]:
        """The file's keys at ``scale`` (without what it inherits)."""
        return deep_merge(self.common, self.scales.get(scale, {}))


@dataclass(frozen=True)
class Preset:
    """A runnable experiment preset: ``build(scale)`` is its config tree (see
    :func:`preset_tree`)."""

    name: str
    summary: str
    source: str

    def build(self, scale: str) -> dict[str, Any]:
        return preset_tree(self.name, scale)


@dataclass(frozen=True)
class SweepPreset:
    """A sweep preset: ``build(scale)`` is its sweep spec at ``scale``."""

    name: str
    summary: str
    source: str
    file: PresetFile = field(repr=False)

    def build(self, scale: str) -> dict[str, Any]:
        check_scale(scale)
        return {**self.file.own_tree(scale), "scale": scale}


@dataclass(frozen=True)
class Registry:
    """Every preset file (bases included) and sweep preset, by name, in listing order."""

    presets: dict[str, PresetFile]
    sweeps: dict[str, PresetFile]


# ------------------------------------------------------------------------ reading files


def check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")


def parse_preset_file(name: str, source: str, raw: bytes, *, sweep: bool) -> PresetFile:
    """Check the structure of one preset file (config keys are checked when it is loaded)."""
    where = f"preset file {source}"
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{where} is not valid TOML: {err}") from None
    summary = data.pop("summary", "")
    base = data.pop("preset", None) if not sweep else data.get("preset")
    scales = data.pop("scale", {})
    if not isinstance(summary, str) or "\n" in summary:
        raise ConfigError(f"{where}: summary must be a one-line string, got {summary!r}")
    if not summary and not name.startswith("_"):
        raise ConfigError(f'{where}: add a one-line summary = "..." (what `pertlearn` lists)')
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{where}: preset must be the name of a preset, got {base!r}")
    if not isinstance(scales, dict) or not all(
        scale in SCALES and isinstance(table, dict) for scale, table in scales.items()
    ):
        raise ConfigError(
            f"{where}: scale must hold only the tables [scale.cpu] and [scale.paper], "
            f"got {scales!r}"
        )
    if not sweep:  # a preset's relative paths are read relative to its file's folder
        folder = Path(source).parent
        data = rebase_paths(data, folder)
        scales = {scale: rebase_paths(table, folder) for scale, table in scales.items()}
    return PresetFile(name, source, summary, None if sweep else base, data, scales)


def _toml_files(root: Traversable, folder: str = "") -> Iterator[tuple[str, Traversable]]:
    """``(folder, file)`` of every ``.toml`` file under ``root``: files first, then each
    subfolder alphabetically."""
    entries = sorted(root.iterdir(), key=lambda entry: entry.name)
    for entry in entries:
        if entry.is_file() and entry.name.endswith(".toml"):
            yield folder, entry
    for entry in entries:
        if entry.is_dir() and not entry.name.startswith((".", "__")):
            yield from _toml_files(entry, f"{folder}{entry.name}/")


def read_root(root: Traversable) -> Registry:
    """The preset files of one preset root (see the module docstring for its layout)."""
    presets: dict[str, PresetFile] = {}
    sweeps: dict[str, PresetFile] = {}
    for folder, entry in _toml_files(root):
        sweep = folder.startswith(f"{SWEEP_FOLDER}/")
        name = entry.name.removesuffix(".toml")
        table = sweeps if sweep else presets
        if name in table:
            raise ConfigError(
                f"preset file {entry} repeats the name {name!r} of {table[name].source}; "
                "rename one of them"
            )
        table[name] = parse_preset_file(name, str(entry), entry.read_bytes(), sweep=sweep)
    return Registry(presets, sweeps)


@functools.cache
def builtin_registry() -> Registry:
    """The presets shipped in the package (read once)."""
    return read_root(resources.files("pertlearn") / "presets")


def user_directories() -> list[Path]:
    """The directories named by ``PERTLEARN_PRESETS`` (empty entries skipped)."""
    dirs = [Path(part) for part in os.environ.get(ENV_VAR, "").split(os.pathsep) if part]
    for path in dirs:
        if not path.is_dir():
            raise ConfigError(
                f"{ENV_VAR} names {str(path)!r}, which is not a directory; fix or unset it"
            )
    return dirs


def registry() -> Registry:
    """Built-in presets, then those of the user directories (read on every call, so edits
    show at once). A user preset may not reuse a name."""
    builtin = builtin_registry()
    presets = dict(builtin.presets)
    sweeps = dict(builtin.sweeps)
    for directory in user_directories():
        found = read_root(directory)
        pairs = ((presets, found.presets, "preset"), (sweeps, found.sweeps, "sweep"))
        for table, new, kind in pairs:
            for name, file in new.items():
                if name in table:
                    inherit = f' (or inherit it: preset = "{name}")' if kind == "preset" else ""
                    raise ConfigError(
                        f"preset file {file.source}: the {kind} name {name!r} is taken by "
                        f"{table[name].source}; rename the file{inherit}"
                    )
                table[name] = file
    return Registry(presets, sweeps)


# --------------------------------------------------------------------------- listing


def presets() -> dict[str, Preset]:
    """Every runnable experiment preset (bases left out), in listing order."""
    return {
        name: Preset(name, file.summary, file.source)
        for name, file in registry().presets.items()
        if not file.is_base
    }


def sweep_presets() -> dict[str, SweepPreset]:
    """Every sweep preset, in listing order."""
    return {
        name: SweepPreset(name, file.summary, file.source, file)
        for name, file in registry().sweeps.items()
    }


class PresetListing(Mapping[str, Preset]):
    """A live, read-only view of :func:`presets` (it follows ``PERTLEARN_PRESETS``)."""

    def __getitem__(self, name: str) -> Preset:
        return presets()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(presets())

    def __len__(self) -> int:
        return len(presets())

    def __contains__(self, name: object) -> bool:
        return name in presets()


PRESETS: Mapping[str, Preset] = PresetListing()


def unknown_name(name: str, known: Sequence[str], what: str, listing: str) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(f"unknown {what} {name!r}; {hint}run `{listing}` to list them")


# ------------------------------------------------------------------------- resolving


def _resolve(
    files: dict[str, PresetFile], name: str, scale: str, chain: tuple[str, ...]
) -> dict[str, Any]:
    file = files[name]
    tree: dict[str, Any] = {}
    if file.base is not None:
        if file.base in chain or file.base == name:
            cycle = " -> ".join([*chain, name, file.base])
            raise ConfigError(f"preset file {file.source}: presets inherit in a cycle ({cycle})")
        if file.base not in files:
            known = [n for n in files if n != name]
            close = difflib.get_close_matches(file.base, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"preset file {file.source}: base preset {file.base!r} does not exist{hint}"
            )
        tree = _resolve(files, file.base, scale, (*chain, name))
    return deep_merge(tree, file.own_tree(scale))


def preset_tree(name: str, scale: str = "cpu") -> dict[str, Any]:
    """The config tree of preset ``name`` at ``scale`` (unvalidated, ready for overrides)."""
    files = registry().presets
    if name not in files or files[name].is_base:
        if name in files:
            raise ConfigError(
                f"{name!r} is a base of other presets, not a preset; run `pertlearn presets`"
            )
        runnable = [n for n, file in files.items() if not file.is_base]
        raise unknown_name(name, runnable, "preset", "pertlearn presets")
    check_scale(scale)
    tree = _resolve(files, name, scale, ())
    tree.setdefault("name", name)
    return tree


# ----------------------------------------------------------------------- loading


def load_config(
    source: str | Path | dict[str, Any] | None = None,
    *,
    preset: str | None = None,
    scale: str | None = None,
    overrides: Sequence[str] = (),
) -> ExperimentConfig:
    """Build a validated config, the way the CLI does.

    ``source`` is a config file (TOML, JSON, or a run directory, whose recorded config runs
    the same run again: :func:`~pertlearn.experiments.config_tree.read_config_file`) or a
    config tree. A tree (or file) may name a base
    ``preset`` and ``scale`` at its top; its other keys are merged over that preset. Without
    ``source`` and ``preset`` the ``quickstart`` preset is used. ``overrides`` are
    ``key=value`` strings applied last. Raises :class:`ConfigError` with a one-line message.
    """
    check_overrides(overrides)
    tree: dict[str, Any] = {}
    if isinstance(source, str | Path) and str(source) in presets() and not Path(source).exists():
        name = str(source)
        missing = f"config file {name!r} does not exist; {name!r} is a preset"
        raise cli_worded(
            ConfigError(f"{missing}: load_config(preset={name!r})"),
            f"{missing}: --preset {name}",
        )
    if source is not None:
        tree = read_config_file(source) if isinstance(source, str | Path) else dict(source)
    base = tree.pop("preset", None)
    file_scale = tree.pop("scale", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"preset must be the name of a preset (a string), got {base!r}")
    if preset is not None and base is not None and preset != base:
        named = f"the config file names preset {base!r} but"
        raise cli_worded(
            ConfigError(f"{named} preset={preset!r} was passed"), f"{named} --preset is {preset!r}"
        )
    base = preset or base or (None if source is not None else "quickstart")
    base_tree: dict[str, Any] | None = None
    if base is not None:
        base_tree = preset_tree(base, scale or file_scale or "cpu")
        tree = deep_merge(base_tree, tree)
    elif scale is not None:
        raise cli_worded(
            ConfigError("scale needs a preset: pass preset=NAME, or set preset = NAME in the file"),
            "--scale needs a preset: --preset NAME, or preset = NAME in the file",
        )
    # lazy: the pipelines import torch; listing presets (and bad names) must not
    from pertlearn.experiments.pipelines import validate_config

    try:
        return validate_config(apply_overrides(tree, list(overrides)))
    except ConfigError as err:
        if base_tree is not None:
            check_preset(str(base), base_tree)
        raise err from None


def check_preset(name: str, tree: dict[str, Any]) -> None:
    """Raise a :class:`ConfigError` naming the preset's file if its own tree is invalid."""
    # lazy: the pipelines import torch; listing presets must not
    from pertlearn.experiments.pipelines import validate_config

    try:
        validate_config(tree)
    except ConfigError as err:
        files = registry().presets
        bases: list[str] = []
        base = files[name].base
        while base is not None and base in files and base not in bases:
            bases.append(base)
            base = files[base].base
        inherits = f", which inherits {', '.join(bases)}" if bases else ""
        raise ConfigError(f"preset {name!r} ({files[name].source}{inherits}): {err}") from None
