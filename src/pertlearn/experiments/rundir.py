"""The run directory: what one run leaves on disk, written atomically.

Layout::

    config.json           resolved config (``device`` as resolved, e.g. ``"cpu"`` for ``"auto"``),
                          resolved ε, device and the requested device, the class names (image
                          runs), package versions
    metrics.json          the metrics contract (docs/metrics.md) and ``stage_seconds``, the wall
                          time of each stage (not a metric: never compared or hashed)
    curves.json           training-loss curves of every network
    NAME.safetensors      weights (state dicts) of every trained network: f, g, each control
                          (``random_l2_noise``, ...) and ``transfer_model``
    tensors.safetensors   x_train, y_train, x_test, y_test, y_adv, x_adv, g_inputs, and
                          loss_weights_NAME (∫ℓ'dt per sample, from the trainer) per network
                          (skipped when ``save_tensors = false``)

Everything is written into a hidden temporary directory beside the target and renamed into
place at the end, so a run directory either exists complete or not at all.
"""

from __future__ import annotations

import glob
import json
import math
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as metadata_version
from pathlib import Path
from typing import Any, Protocol

import numpy
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from pertlearn.atomic import (
    left_temporaries,
    sync_dir,
    sync_tree,
    temporary_dir,
    umask,
    write_json,
)
from pertlearn.errors import RunDirError, RunDirExistsError, cli_worded
from pertlearn.experiments.config_tree import RUN_CONFIG_FILE
from pertlearn.plugins import loaded_distributions
from pertlearn.training import TrainResult
from pertlearn.training.minibatch import MinibatchResult


class RunOutput(Protocol):
    """What a run directory is written from (:class:`pertlearn.experiments.result.Result`)."""

    @property
    def config(self) -> Any: ...
    @property
    def metrics(self) -> dict[str, Any]: ...
    @property
    def models(self) -> dict[str, torch.nn.Module]: ...
    @property
    def curves(self) -> dict[str, Any]: ...
    @property
    def tensors(self) -> dict[str, torch.Tensor]: ...
    @property
    def device(self) -> str: ...
    @property
    def stage_seconds(self) -> dict[str, float]: ...
    @property
    def class_names(self) -> tuple[str, ...] | None: ...


def versions() -> dict[str, str]:
    """Versions that decide the numbers a run gives; ``plugins`` lists the distributions
    (``name version``) whose plug-ins the process loaded, when any did."""
    found = {
        "pertlearn": metadata_version("pertlearn"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
    }
    plugins = loaded_distributions()
    if plugins:
        found["plugins"] = ", ".join(plugins)
    return found


RUN_DIR_FILES = (RUN_CONFIG_FILE, "metrics.json", "curves.json")
"""Files every run directory holds; ``config.json`` also names the pertlearn version."""

OWN_FILE_SUFFIXES = (".json", ".safetensors", ".png", ".pdf", ".svg", ".html", ".csv")
"""Suffixes of the files pertlearn writes into a run directory (anything else is the user's)."""

FIGURES_DIR = "figures"
"""The folder of the figure files of ``pertlearn report`` (PNG, PDF, SVG) in a run directory."""

TRACKING_DIRS = ("tensorboard", "mlruns")
"""Folders an experiment-tracking export (``--log``) writes into a run or sweep directory."""


def _is_own(entry: Path) -> bool:
    """Whether ``entry`` of a run directory is one pertlearn writes: a plain file with one of
    :data:`OWN_FILE_SUFFIXES`, the :data:`FIGURES_DIR` folder holding only such files, or a
    folder of an experiment-tracking export (:data:`TRACKING_DIRS`)."""
    if entry.is_symlink():
        return False
    if entry.is_dir():
        return entry.name in TRACKING_DIRS or (
            entry.name == FIGURES_DIR
            and all(
                not child.is_symlink() and child.is_file() and child.suffix in OWN_FILE_SUFFIXES
                for child in entry.iterdir()
            )
        )
    return entry.suffix in OWN_FILE_SUFFIXES


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a run directory pertlearn wrote: it holds ``config.json``,
    ``metrics.json`` and ``curves.json``, and ``config.json`` records the pertlearn version."""
    if not path.is_dir() or not all((path / name).is_file() for name in RUN_DIR_FILES):
        return False
    try:
        with (path / RUN_CONFIG_FILE).open() as handle:
            payload = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(payload, dict) and "pertlearn" in (payload.get("versions") or {})


def check_writable(out: Path) -> None:
    """Raise :class:`RunDirExistsError` (an ``OSError``) unless the directory ``out`` can be
    created: its nearest existing ancestor is a writable directory."""
    ancestor = Path(os.path.abspath(out)).parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RunDirExistsError(
            f"cannot create {str(out)!r}: {str(ancestor)!r} is a file, not a directory"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise RunDirExistsError(f"cannot create {str(out)!r}: {str(ancestor)!r} is not writable")


def check_target(out: Path, overwrite: bool) -> None:
    """Raise :class:`RunDirExistsError` unless ``out`` may be written: it does not exist, or
    ``overwrite`` is set and ``out`` is a run directory that holds only files pertlearn writes.
    Nothing else is ever replaced (a user's folder, the current directory, a sweep). A run
    directory that a killed overwrite left set aside is put back first
    (:func:`restore_set_aside`)."""
    restore_set_aside(out)
    if not out.exists() and not out.is_symlink():
        check_writable(out)
        return
    if not overwrite:
        exists = f"run directory {str(out)!r} already exists"
        raise cli_worded(
            RunDirExistsError(f"{exists}; choose another output directory or pass overwrite=True"),
            f"{exists}; choose another --out or pass --overwrite",
        )
    if out.is_symlink() or not is_run_dir(out):
        raise RunDirExistsError(
            f"{str(out)!r} is not a pertlearn run directory (no config.json, metrics.json and "
            "curves.json written by pertlearn); refusing to replace it: choose another output "
            "directory"
        )
    foreign = sorted(entry.name for entry in out.iterdir() if not _is_own(entry))
    if foreign:
        raise RunDirExistsError(
            f"run directory {str(out)!r} holds files pertlearn did not write ({foreign[0]!r}"
            f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}); refusing to "
            "replace it: move them out or choose another output directory"
        )


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state.items():
        tensor = value.detach().contiguous().cpu()
        if tensor.data_ptr() in seen:  # safetensors refuses shared storage (g_inputs is x_adv)
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        out[key] = tensor
    return out


def curves_record(curves: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What ``curves.json`` holds for the training records ``curves`` (network name →
    :class:`~pertlearn.training.TrainResult`): per network its ``loss`` per epoch, its
    ``epochs_run``, the learning rate at the end ``final_lr`` (``null`` when not recorded) and
    the per-epoch lists of ``curves_extra`` (image trainers: ``train_acc``, ``val_acc``,
    ``lr``). A record that already is such a dict is taken as it is."""
    return {
        name: dict(history)
        if isinstance(history, Mapping)
        else {
            "loss": history.losses,
            "epochs_run": history.epochs_run,
            "final_lr": None if math.isnan(history.final_lr) else history.final_lr,
            **getattr(history, "curves_extra", {}),  # e.g. val_acc of image trainers
        }
        for name, history in curves.items()
    }


def write_run_dir(result: RunOutput, out: Path, *, overwrite: bool = False) -> Path:
    """Write ``result`` to ``out`` atomically and return ``out``."""
    out = Path(os.path.abspath(out))
    check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    # left by an interrupted write, and by an overwrite killed after the new run was in place
    for stale in left_temporaries(out.parent, out.name) + set_aside(out):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = temporary_dir(out.parent, out.name)
    os.chmod(tmp, 0o777 & ~umask())  # like a plain mkdir, not mkdtemp's 0700
    try:
        config = result.config
        write_json(
            tmp / RUN_CONFIG_FILE,
            {
                # The device the run used, so that a rerun from this file reproduces it (and
                # hashes to the same run id); what the config asked for stays beside it.
                "config": {**config.model_dump(mode="json"), "device": result.device},
                "resolved": {
                    "eps": config.eps,
                    "device": result.device,
                    "device_requested": config.device,
                    **(
                        {"class_names": list(result.class_names)}
                        if result.class_names is not None
                        else {}
                    ),
                },
                "versions": versions(),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        timings = {"stage_seconds": result.stage_seconds} if result.stage_seconds else {}
        write_json(tmp / "metrics.json", {**result.metrics, **timings})
        write_json(tmp / "curves.json", curves_record(result.curves))
        for name, model in result.models.items():
            save_file(_contiguous(model.state_dict()), str(tmp / f"{name}.safetensors"))
        if config.save_tensors and result.tensors:
            tensors = dict(result.tensors)
            for name, history in result.curves.items():
                weights = getattr(history, "loss_weights", None)
                if weights is not None:
                    tensors[f"loss_weights_{name}"] = weights
            save_file(_contiguous(tensors), str(tmp / "tensors.safetensors"))
        sync_tree(tmp)
        swap_into_place(tmp, out)
        sync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


SET_ASIDE_SUFFIX = ".old"
"""Suffix of the hidden folder ``.NAME.*.old`` holding a run directory that an overwrite set
aside (:func:`swap_into_place`) until the new one is in place."""


def set_aside(out: Path) -> list[Path]:
    """The folders ``.NAME.*.old`` beside ``out`` holding a run directory set aside by an
    overwrite of ``out`` (:func:`swap_into_place`), oldest first."""
    found = out.parent.glob(f".{glob.escape(out.name)}.*{SET_ASIDE_SUFFIX}")
    return sorted((p for p in found if p.is_dir()), key=lambda p: p.stat().st_mtime_ns)


def restore_set_aside(out: Path) -> bool:
    """Put back the run directory that an overwrite of ``out`` set aside when the process was
    killed between the two renames of :func:`swap_into_place` (``out`` missing, its old run in
    ``.NAME.*.old/run``); whether one was put back."""
    if os.path.lexists(out):
        return False
    for old in reversed(set_aside(out)):
        if (old / "run").is_dir():
            os.rename(old / "run", out)
            shutil.rmtree(old, ignore_errors=True)
            return True
    return False


def swap_into_place(new: Path, out: Path) -> None:
    """Rename the complete directory ``new`` to ``out``. An existing ``out`` (checked by
    :func:`check_target`) is first renamed aside and removed only once ``new`` is in place, so a
    failure at any point leaves either the old or the new run directory; a process killed
    between the two renames leaves the old one aside, where the next write to ``out`` puts it
    back (:func:`restore_set_aside`)."""
    if not out.exists():
        os.rename(new, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=SET_ASIDE_SUFFIX))
    os.rename(out, old / "run")
    try:
        os.rename(new, out)
    except BaseException:
        os.rename(old / "run", out)
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)


class CorruptFileError(RunDirError):
    """A file of a run or sweep directory cannot be read as what it should hold; the message is one
    line naming the file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`CorruptFileError` naming the file when it cannot be
    read, is not UTF-8 JSON, or holds something other than an object."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorruptFileError(path, "missing") from None
    except UnicodeDecodeError:
        raise CorruptFileError(path, "not UTF-8 text") from None
    except OSError as err:
        raise CorruptFileError(path, f"cannot be read ({err.strerror or err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise CorruptFileError(path, f"not valid JSON ({err})") from None
    except RecursionError:
        raise CorruptFileError(path, "not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        kind = {type(None): "null", bool: "boolean", str: "string", list: "array"}.get(
            type(data), "number"
        )
        raise CorruptFileError(path, f"holds a JSON {kind}, not an object")
    return data


def check_safetensors(path: Path) -> None:
    """Raise :class:`CorruptFileError` naming ``path`` unless it is a whole ``.safetensors``
    file: its header is read and must describe exactly the file's bytes (a truncated or
    extended file fails); no tensor is loaded."""
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise CorruptFileError(path, f"corrupt or truncated ({err})") from None


@dataclass(frozen=True)
class RunRecord:
    """A run directory written by :func:`write_run_dir`, read and checked: ``config`` is the
    resolved config tree (every key its pipeline uses), ``resolved`` the resolved ε and
    device (image runs: and ``class_names``), ``versions`` the package versions, ``metrics``
    the metrics contract."""

    path: Path
    config: dict[str, Any]
    resolved: dict[str, Any]
    versions: dict[str, str]
    metrics: dict[str, Any]

    @property
    def pipeline(self) -> str:
        return str(self.config["pipeline"])

    @property
    def name(self) -> str:
        return str(self.config["name"])

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The name of each class ``0..K-1`` of an image run (``resolved.class_names``);
        ``None`` for a binary run, or a run recorded without them."""
        names = self.resolved.get("class_names")
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return tuple(names)
        return None

    def curves(self) -> dict[str, Any] | None:
        """``curves.json`` (``None`` when absent)."""
        path = self.path / "curves.json"
        if not path.exists():
            return None
        return read_json_object(path)

    def has_tensors(self, name: str = "tensors") -> bool:
        return (self.path / f"{name}.safetensors").is_file()

    def tensors(self, name: str = "tensors") -> dict[str, torch.Tensor]:
        """A ``.safetensors`` file of the run (:func:`read_tensors`)."""
        return read_tensors(self.path, name)


def read_run(run_dir: str | Path) -> RunRecord:
    """Read the run directory ``run_dir``; :class:`RunDirError` with one line naming the file
    when it is not a complete run directory."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"{str(path)!r} is not a run directory (not a directory)")
    if not (path / RUN_CONFIG_FILE).is_file():
        sweep = (
            f"; it is a sweep directory, its runs are in {str(path / 'runs')!r}"
            if (path / "sweep.json").is_file()
            else ""
        )
        raise RunDirError(f"{str(path)!r} is not a run directory (no config.json){sweep}")
    saved = read_json_object(path / RUN_CONFIG_FILE)
    config = saved.get("config")
    if not isinstance(config, dict) or "pipeline" not in config:
        raise RunDirError(
            f"{str(path / 'config.json')!r} holds no resolved config (key 'config' with "
            "'pipeline'); was it written by pertlearn?"
        )
    metrics = read_json_object(path / "metrics.json")
    return RunRecord(
        path=path,
        config=config,
        resolved=dict(saved.get("resolved") or {}),
        versions=dict(saved.get("versions") or {}),
        metrics=metrics,
    )


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The ``metrics.json`` of a run directory (:class:`CorruptFileError` naming it when it is
    missing or not a JSON object)."""
    return read_json_object(Path(run_dir) / "metrics.json")


def read_tensors(run_dir: str | Path, name: str = "tensors") -> dict[str, torch.Tensor]:
    """The tensors of the file ``NAME.safetensors`` of a run directory, on the CPU: ``tensors``
    (the data and crafted inputs), or the weights of a network (``f``, ``g``, a control).
    :class:`RunDirError` naming the file when it is missing, :class:`CorruptFileError` (one
    too) when it is corrupt or truncated."""
    path = Path(run_dir) / f"{name}.safetensors"
    if not path.is_file():
        fix = (
            "rerun with save_tensors = true"
            if name == "tensors"
            else "the run directory is incomplete: rerun it (pertlearn run RUN_DIR --out NEW_DIR)"
        )
        raise RunDirError(f"run {str(run_dir)!r} has no {path.name}; {fix}")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise CorruptFileError(path, f"corrupt or truncated ({err})") from None


MINIBATCH_CURVES = ("train_acc", "val_acc", "lr")
"""The per-epoch lists ``curves.json`` holds beside ``loss`` for the image trainers
(:attr:`~pertlearn.training.minibatch.MinibatchResult.curves_extra`)."""


def _numbers(path: Path, where: str, value: Any) -> list[float]:
    """``value`` as a list of numbers; :class:`CorruptFileError` naming ``where`` otherwise."""
    if not isinstance(value, list) or not all(
        isinstance(item, int | float) and not isinstance(item, bool) for item in value
    ):
        raise CorruptFileError(path, f"{where} is not a list of numbers")
    return [float(item) for item in value]


def _train_record(
    path: Path, name: str, entry: Any, loss_weights: torch.Tensor | None
) -> TrainResult:
    """The training record of network ``name`` from its entry of ``curves.json``."""
    if not isinstance(entry, dict) or "loss" not in entry or "epochs_run" not in entry:
        raise CorruptFileError(path, f"{name!r} holds no training curve (loss and epochs_run)")
    losses = _numbers(path, f"{name}.loss", entry["loss"])
    epochs = entry["epochs_run"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise CorruptFileError(path, f"{name}.epochs_run is not a whole number >= 0")
    final_lr = entry.get("final_lr")  # absent from run directories of earlier versions
    if final_lr is None:
        final_lr = math.nan
    elif isinstance(final_lr, bool) or not isinstance(final_lr, int | float):
        raise CorruptFileError(path, f"{name}.final_lr is not a number")
    if not any(key in entry for key in MINIBATCH_CURVES):
        return TrainResult(
            losses=losses, epochs_run=epochs, loss_weights=loss_weights, final_lr=final_lr
        )
    train_acc, val_acc, lr = (
        _numbers(path, f"{name}.{key}", entry.get(key, [])) for key in MINIBATCH_CURVES
    )
    return MinibatchResult(
        losses=losses,
        epochs_run=epochs,
        loss_weights=loss_weights,
        final_lr=final_lr,
        train_acc=train_acc,
        val_acc=val_acc,
        lr=lr,
    )


def read_curves(
    run_dir: str | Path, loss_weights: Mapping[str, torch.Tensor] | None = None
) -> dict[str, TrainResult]:
    """``curves.json`` of a run directory as the training records a run returns
    (:attr:`Result.curves <pertlearn.experiments.result.Result.curves>`), network name →
    :class:`~pertlearn.training.TrainResult` (image trainers:
    :class:`~pertlearn.training.minibatch.MinibatchResult`) with ``losses``, ``epochs_run``,
    ``final_lr`` and the per-epoch ``train_acc``, ``val_acc`` and ``lr`` it records.
    ``loss_weights``: the per-sample weights ``(N,)`` by network (the ``loss_weights_NAME``
    tensors of ``tensors.safetensors``). ``resumed_from`` (how a process ran, not what it
    computed) is not saved and reads as 0; ``final_lr`` reads as NaN from run directories of
    earlier versions. :class:`CorruptFileError` naming the file when it is missing or not such
    a record."""
    path = Path(run_dir) / "curves.json"
    weights = loss_weights or {}
    return {
        name: _train_record(path, name, entry, weights.get(name))
        for name, entry in read_json_object(path).items()
    }


def _recorded_metrics(source: str | Path) -> tuple[Path, dict[str, Any]]:
    """The run directory that ``source`` (a run directory, or its ``config.json``, as
    ``pertlearn run`` takes) names, and its metrics; empty metrics when it has none readable
    (``source`` is then a config file of another kind, or a damaged run)."""
    run_dir = Path(source)
    if run_dir.name == RUN_CONFIG_FILE:
        run_dir = run_dir.parent
    if not (run_dir / "metrics.json").is_file():
        return run_dir, {}
    try:
        return run_dir, read_json_object(run_dir / "metrics.json")
    except CorruptFileError:
        return run_dir, {}


def check_rerunnable(source: str | Path) -> None:
    """Raise :class:`RunDirError` when ``source``, a run directory (or its ``config.json``),
    built its networks with a ``model_factory`` passed from Python (its metric
    ``model_factory``): ``config.json`` cannot record the factory, so a rerun from it would
    train another network."""
    run_dir, metrics = _recorded_metrics(source)
    factory = metrics.get("model_factory")
    if isinstance(factory, str):
        raise RunDirError(
            f"run {str(run_dir)!r} built its networks with model_factory={factory} passed from "
            "Python, which its config.json cannot record; rerun it from Python: "
            f"run_images(load_config({str(run_dir)!r}), model_factory={factory.rsplit('.', 1)[-1]})"
        )


def changed_data_note(source: str | Path, data_path: str, data_sha256: str | None) -> str:
    """When ``source`` is a run directory (or its ``config.json``) whose metrics record the
    SHA-256 of the data file the run read (``data_sha256``), and its rerun read ``data_path``
    with another SHA-256 (``data_sha256``, from the rerun's metrics): one line saying so; empty
    otherwise (nothing recorded or read, or the same file)."""
    run_dir, metrics = _recorded_metrics(source)
    recorded = metrics.get("data_sha256")
    if not isinstance(recorded, str) or data_sha256 is None or data_sha256 == recorded:
        return ""
    return (
        f"the data file {data_path!r} changed since run {str(run_dir)!r} read it (its SHA-256 "
        f"is no longer the run's data_sha256 {recorded[:12]}...); the rerun learns from the "
        "file as it is now"
    )
