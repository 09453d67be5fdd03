"""Sweeps: a base config and axes over any config keys, expanded into validated configs.

A sweep spec is a TOML file (or a dict, or a sweep preset: a TOML file shipped in the package or
found in ``PERTLEARN_PRESETS``, see :mod:`pertlearn.experiments.presets`)::

    name = "shifted-gauss-dim"
    preset = "neurips-shifted-gauss-a"   # base experiment preset (optional)
    scale = "cpu"                        # its scale (default cpu)
    config = "base.toml"                 # optional base config file, relative to the spec
    seeds = [0, 1, 2]                    # or seeds = 3 (0, 1, 2); default: the base seed

    [base]                               # config keys over the preset / file
    save_tensors = false

    [grid]                               # product of these axes
    "train_f.lr" = [1.0, 0.1]
    "train_g.lr" = [1.0, 0.1]

    [zip]                                # paired axes: the i-th values go together
    "data.dim" = [10, 20, 30]
    "attack.eps" = [0.0032, 0.0045, 0.0055]

    [report]
    x = ["data.dim"]                     # x axes of the report's figures (default: every axis)

Keys may also be nested tables (``[grid.model] width = [10, 100]``). Several zip groups are
written as an array of tables (``[[zip]]``). Every configuration is validated before anything
runs; an axis naming a key that does not exist, an empty axis, zip axes of unequal length or
two configurations resolving to the same config raise one :class:`ConfigError`.

A relative path (``data.path``, ...: :data:`~pertlearn.experiments.config_tree.PATH_KEYS`) in
``[base]`` or an axis is read relative to the spec's folder, in the config file relative to
that file's folder, in ``--set`` relative to the current directory. Run ids hash the absolute
paths, the fingerprint the spec as written (and the config file as read), so a sweep resumed
from the same place keeps both.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pertlearn.experiments.config import (
    ConfigError,
    ExperimentConfig,
    deep_merge,
    parse_value,
    read_config_file,
    read_toml,
    set_key,
)
from pertlearn.experiments.config_tree import check_overrides, resolve_path_key
from pertlearn.experiments.pipelines import validate_config
from pertlearn.experiments.presets import SCALES, preset_tree, sweep_presets
from pertlearn.experiments.rundir import check_rerunnable
from pertlearn.seeding import resolved_device_name

SPEC_KEYS = {"name", "description", "preset", "scale", "config", "seeds", "base", "grid", "zip"}
SPEC_KEYS |= {"report"}


def canonical_json(payload: Any) -> str:
    """``payload`` as compact JSON with sorted keys (the input of every hash here)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def short_hash(payload: Any) -> str:
    """The first 16 hex digits of the SHA-256 of ``payload``'s :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]


def config_hash(config: ExperimentConfig) -> str:
    """A stable 16-hex-digit id of a resolved config: SHA-256 of its canonical JSON, leaving
    out the cosmetic ``name`` and ``description``, with ``device = "auto"`` resolved for this
    machine (:func:`~pertlearn.seeding.resolved_device_name`: a CPU run and a CUDA run give
    different numbers, so they get different ids). Equal configs give equal ids on any machine
    with the same device; the config saved in a run's ``config.json`` hashes to the same id."""
    payload = config.model_dump(mode="json", exclude={"name", "description"})
    payload["device"] = resolved_device_name(payload["device"])
    return short_hash(payload)


@dataclass(frozen=True)
class Axis:
    """One sweep dimension: ``keys`` that move together (one key for a grid axis, several for
    a zip group) and their ``values``, one tuple (one value per key) per step."""

    kind: str
    keys: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]

    @property
    def label(self) -> str:
        return " + ".join(self.keys)

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Point:
    """One configuration of a sweep: the swept ``values`` (key → value), the ``seed``, the
    validated ``config`` and its ``run_id`` (:func:`config_hash`)."""

    values: dict[str, Any]
    seed: int
    config: ExperimentConfig
    run_id: str

    def describe(self) -> str:
        parts = [f"{key}={value!r}" for key, value in self.values.items()]
        return ", ".join([*parts, f"seed={self.seed}"])


@dataclass
class Sweep:
    """A parsed sweep spec. :meth:`points` expands and validates it."""

    name: str
    description: str
    base: dict[str, Any]
    axes: list[Axis]
    seeds: list[int] | None
    report_x: list[str] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    """The spec file's folder: relative paths of the axes are read relative to it."""

    @property
    def swept_keys(self) -> list[str]:
        return [key for axis in self.axes for key in axis.keys]

    @property
    def fingerprint(self) -> str:
        """Identity of the sweep (its normalized spec without cosmetic fields): a sweep
        directory holds the runs of exactly one fingerprint."""
        payload = {k: v for k, v in self.spec.items() if k not in {"name", "description", "report"}}
        return short_hash(payload)

    def base_config(self) -> ExperimentConfig:
        try:
            return validate_config(copy.deepcopy(self.base))
        except ConfigError as err:
            raise ConfigError(f"sweep {self.name!r}: the base config is invalid: {err}") from None

    def points(self) -> list[Point]:
        """Every configuration (product of the axes, then the seeds), validated. Raises
        :class:`ConfigError` naming the first bad configuration; nothing is run."""
        base_config = self.base_config()
        for key in self.swept_keys:
            check_key_exists(key, type(base_config))
        seeds = self.seeds if self.seeds is not None else [base_config.seed]
        points: list[Point] = []
        seen: dict[str, Point] = {}
        for steps in itertools.product(*(axis.values for axis in self.axes)):
            values: dict[str, Any] = {}
            for axis, step in zip(self.axes, steps, strict=True):
                values.update(zip(axis.keys, step, strict=True))
            for seed in seeds:
                tree = copy.deepcopy(self.base)
                for key, value in values.items():
                    set_key(tree, key, resolve_path_key(key, copy.deepcopy(value), self.folder))
                tree["seed"] = seed
                try:
                    config = validate_config(tree)
                except ConfigError as err:
                    where = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "base"
                    raise ConfigError(
                        f"sweep {self.name!r}, configuration {where}, seed={seed}: {err}"
                    ) from None
                point = Point(values, seed, config, config_hash(config))
                if point.run_id in seen:
                    raise ConfigError(
                        f"sweep {self.name!r}: configurations ({seen[point.run_id].describe()}) "
                        f"and ({point.describe()}) resolve to the same config; "
                        "remove the duplicate axis values"
                    )
                seen[point.run_id] = point
                points.append(point)
        return points


# ------------------------------------------------------------------------ key checks


def _model_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (``Model`` or ``Model | None``), if any."""
    candidates = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        candidates = list(typing.get_args(annotation))
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _is_mapping(annotation: Any) -> bool:
    return annotation is dict or typing.get_origin(annotation) is dict


def check_key_exists(key: str, config_class: type[ExperimentConfig]) -> None:
    """Raise :class:`ConfigError` unless dotted ``key`` names a field of ``config_class`` (the
    sweep's pipeline config; keys inside free-form tables such as ``attack.options`` pass)."""
    if key == "seed":
        raise ConfigError("sweep axis 'seed': list seeds with `seeds = [...]`, not as an axis")
    model: type[BaseModel] = config_class
    pipeline = config_class.model_fields["pipeline"].default
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:i]) or "the top level"
            raise ConfigError(
                f"sweep axis {key!r} names no key of the {pipeline} pipeline "
                f"({part!r} is not a key of {where}); "
                "check its spelling (see `pertlearn presets --show NAME`)"
            )
        annotation = fields[part].annotation
        if i == len(parts) - 1 or _is_mapping(annotation):
            return
        inner = _model_class(annotation)
        if inner is None:
            raise ConfigError(
                f"sweep axis {key!r} names no config key: {'.'.join(parts[: i + 1])} is a value, "
                "not a table"
            )
        model = inner


# ----------------------------------------------------------------------- parsing


def _flatten_axes(table: Any, where: str, prefix: str = "") -> dict[str, list[Any]]:
    """``{"data": {"dim": [1, 2]}, "model.width": [3]}`` → ``{"data.dim": [1, 2], ...}``."""
    if not isinstance(table, dict):
        raise ConfigError(f"sweep {where} must be a table of key = [values], got {table!r}")
    axes: dict[str, list[Any]] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            axes.update(_flatten_axes(value, where, f"{key}."))
        elif isinstance(value, list):
            if not value:
                raise ConfigError(f"sweep {where} axis {key!r} is empty; give at least one value")
            axes[key] = value
        else:
            raise ConfigError(
                f"sweep {where} axis {key!r} must be a list of values, got {value!r} "
                f"(write {key} = [{value!r}] for a single value, or put it in [base])"
            )
    return axes


def _flatten_tree(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for name, value in tree.items():
        if isinstance(value, dict) and value:
            items.extend(_flatten_tree(value, f"{prefix}{name}."))
        else:
            items.append((f"{prefix}{name}", value))
    return items


def _parse_seeds(raw: Any) -> list[int] | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise ConfigError(f"sweep seeds = {raw}: give a positive count or a list of seeds")
        return list(range(raw))
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw)
    ):
        raise ConfigError(
            f"sweep seeds must be a non-empty list of non-negative integers or a count, got {raw!r}"
        )
    if len(set(raw)) != len(raw):
        raise ConfigError(f"sweep seeds {raw!r} repeat a seed")
    return list(raw)


def _zip_groups(raw: Any) -> list[Axis]:
    groups = raw if isinstance(raw, list) else [raw]
    axes = []
    for i, group in enumerate(groups):
        where = "zip" if len(groups) == 1 else f"zip group {i + 1}"
        flat = _flatten_axes(group, where)
        if not flat:
            raise ConfigError(f"sweep {where} is empty; give at least one key = [values]")
        lengths = {key: len(values) for key, values in flat.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{key} has {n}" for key, n in lengths.items())
            raise ConfigError(
                f"sweep {where} axes must have equal lengths (paired values): {detail}"
            )
        keys = tuple(flat)
        values = tuple(zip(*(flat[key] for key in keys), strict=True))
        axes.append(Axis("zip", keys, values))
    return axes


def parse_sweep(
    spec: dict[str, Any],
    *,
    base_dir: Path | None = None,
    scale: str | None = None,
    overrides: Sequence[str] = (),
    default_name: str = "sweep",
) -> Sweep:
    """Parse a sweep spec (see the module docstring) into a :class:`Sweep`.

    ``scale`` replaces the spec's scale; ``overrides`` (``key=value``) apply to the base
    config. A ``config`` path, and the relative paths of ``[base]`` and the axes, are read
    relative to ``base_dir`` (the spec file's folder). Raises :class:`ConfigError`.
    """
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown sweep key(s) {', '.join(map(repr, unknown))}; a sweep spec has "
            f"{', '.join(sorted(SPEC_KEYS))}"
        )
    name = str(spec.get("name", default_name))
    tree: dict[str, Any] = {}
    config_file = spec.get("config")
    config_tree: dict[str, Any] = {}
    if config_file is not None and not isinstance(config_file, str):
        raise ConfigError(f"sweep config must be the path of a config file, got {config_file!r}")
    if config_file is not None:
        path = Path(config_file)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        config_tree = read_config_file(path)
        check_rerunnable(path)  # a run directory whose networks its config cannot rebuild
        tree = copy.deepcopy(config_tree)
    preset = spec.get("preset", tree.pop("preset", None))
    if preset is not None and not isinstance(preset, str):
        raise ConfigError(f"sweep preset must be the name of a preset, got {preset!r}")
    file_scale = tree.pop("scale", None)
    used_scale = scale or spec.get("scale") or file_scale or "cpu"
    if used_scale not in SCALES:
        raise ConfigError(f"unknown scale {used_scale!r}; choose one of {', '.join(SCALES)}")
    if preset is not None:
        tree = deep_merge(preset_tree(str(preset), used_scale), tree)
    base_table = spec.get("base", {})
    if not isinstance(base_table, dict):
        raise ConfigError(f"sweep [base] must be a table of config keys, got {base_table!r}")
    for key, value in _flatten_tree(base_table):
        set_key(tree, key, resolve_path_key(key, copy.deepcopy(value), base_dir))
    check_overrides(overrides)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        set_key(tree, key.strip(), parse_value(text.strip()))
    if spec.get("description"):
        tree["description"] = str(spec["description"])

    axes: list[Axis] = []
    if "zip" in spec:
        axes.extend(_zip_groups(spec["zip"]))
    grid = _flatten_axes(spec.get("grid", {}), "grid")
    axes.extend(Axis("grid", (key,), tuple((v,) for v in values)) for key, values in grid.items())
    keys = [key for axis in axes for key in axis.keys]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ConfigError(f"sweep key(s) {', '.join(repeated)} appear in more than one axis")
    seeds = _parse_seeds(spec.get("seeds"))
    axis_keys = [*keys, *(["seed"] if seeds is not None else [])]
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key in axis_keys:
            setter = "its seeds set" if key == "seed" else "its axis sets"
            raise ConfigError(
                f"override {item!r} names a key the sweep varies, which {setter} in every "
                "configuration; change the sweep's values instead"
            )

    report = spec.get("report", {})
    raw_x = report.get("x", []) if isinstance(report, dict) else []
    if not isinstance(raw_x, list) or not all(isinstance(key, str) for key in raw_x):
        raise ConfigError(f"sweep report.x must be a list of swept keys, got {raw_x!r}")
    report_x = list(raw_x)
    for key in report_x:
        if key not in keys:
            raise ConfigError(f"sweep report.x {key!r} is not a swept key ({', '.join(keys)})")

    normalized = {
        "name": name,
        "preset": preset,
        "scale": used_scale if preset is not None else None,
        "config": config_tree,
        "base": base_table,
        "overrides": list(overrides),
        "axes": [{"kind": a.kind, "keys": list(a.keys), "values": a.values} for a in axes],
        "seeds": seeds,
    }
    normalized = json.loads(canonical_json(normalized))
    return Sweep(
        name=name,
        description=str(spec.get("description", "")),
        base=tree,
        axes=axes,
        seeds=seeds,
        report_x=report_x,
        spec=normalized,
        folder=base_dir,
    )


# ------------------------------------------------------------------------ loading


def load_sweep(
    source: str | Path | dict[str, Any],
    *,
    scale: str | None = None,
    overrides: Sequence[str] = (),
) -> Sweep:
    """A :class:`Sweep` from a TOML file path, a sweep preset name (``pertlearn sweep
    --list``), or a spec dict (the keys of a sweep file: module docstring).

    ``scale`` replaces the spec's preset scale (``cpu`` or ``paper``); ``overrides``
    (``["key=value", ...]``, like ``pertlearn sweep --set``) apply to the base config of every
    configuration; one naming a swept key (or ``seed`` when the spec lists ``seeds``) is a
    :class:`ConfigError`. :meth:`Sweep.points` lists the validated configurations,
    :func:`~pertlearn.experiments.execution.run_sweep` runs them."""
    if isinstance(source, dict):
        return parse_sweep(source, scale=scale, overrides=overrides)
    path = Path(source)
    if path.suffix == ".toml" or path.exists():
        spec = read_toml(path)
        return parse_sweep(
            spec, base_dir=path.parent, scale=scale, overrides=overrides, default_name=path.stem
        )
    presets = sweep_presets()
    name = str(source)
    if name not in presets:
        close = difflib.get_close_matches(name, presets, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"{name!r} is neither a sweep file nor a sweep preset; {hint}"
            "run `pertlearn sweep --list` to list the presets"
        )
    spec = presets[name].build(scale or "cpu")
    spec.setdefault("name", name)
    folder = Path(presets[name].source).parent
    return parse_sweep(spec, base_dir=folder, scale=scale, overrides=overrides, default_name=name)
