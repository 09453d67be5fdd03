"""A trained f from a run directory or a weights file, instead of training one.

The feature studies build several data sets from one classifier (Ilyas et al.,
arXiv:1905.02175, Sec. 3: D_R from a robust model, D_det / D_rand from a standard one, each
trained once): ``f_weights = "runs/robust-f"`` in an images config loads that run's
``f.safetensors`` into the configured network.

From a **run directory** the run that trained f must have used the same data set, class
selection, split, sizes, seed and network: then f's training images are this run's training
images and its test accuracy is measured on images it never saw. For ``scenario = "robust"``
that run must have trained f adversarially, for ``"non_robust"`` not (when that run loaded its
f too, the run it loaded from answers). From a **.safetensors
file** (a state dict, e.g. a model trained elsewhere) nothing can be checked but the tensor
names and shapes: which images f was trained on is then the user's responsibility.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from pertlearn.data.download import sha256_file
from pertlearn.errors import ConfigError, RunDirError
from pertlearn.experiments.rundir import read_run

SAME_AS_SOURCE = (
    "seed",
    "data.name",
    "data.path",
    "data.classes",
    "data.split",
    "data.n_train",
    "data.n_test",
)
"""Keys whose values the run that trained f must share (plus ``model``): they fix f's training
images and the test images it must not have seen (``data.path``: the same image file, by its
absolute path)."""


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    value: Any = tree
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def source_mismatches(source: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """``"key: source ≠ this run"`` for every key of :data:`SAME_AS_SOURCE` and ``model``
    where the config tree ``source`` of the run that trained f differs from ``config``."""
    differ = []
    for key in (*SAME_AS_SOURCE, "model"):
        theirs, ours = _lookup(source, key), _lookup(config, key)
        if theirs != ours:
            differ.append(f"{key}: {theirs!r} there, {ours!r} here")
    return differ


def f_weights_file(source: str, config: dict[str, Any]) -> Path:
    """The weights file ``f_weights = source`` names, checked before any work is done.

    ``source``: a run directory of the images pipeline (its ``f.safetensors``; its config is
    checked against ``config``, this run's config tree, see the module docstring) or a
    ``.safetensors`` state dict. Any problem raises :class:`ConfigError` with one line naming
    ``f_weights``."""
    path = Path(source)
    if path.is_dir():
        try:
            record = read_run(path)
        except RunDirError as err:
            raise ConfigError(f"f_weights: {err}") from None
        if record.config.get("pipeline") != "images":
            raise ConfigError(
                f"f_weights: {source!r} is a {record.config.get('pipeline')!r} run; f must "
                "come from an images run"
            )
        differ = source_mismatches(record.config, config)
        if differ:
            raise ConfigError(
                f"f_weights: {source!r} trained f on other images or another network "
                f"({'; '.join(differ)}); use the same data, seed and model, or pass its "
                "f.safetensors file to load the weights unchecked"
            )
        _check_robustness(source, record.config, config.get("scenario"))
        path = path / "f.safetensors"
    if not path.is_file():
        raise ConfigError(
            f"f_weights: {str(path)!r} does not exist; give a run directory or a .safetensors "
            "file of f's weights"
        )
    return path


def load_f_weights(path: Path, model: nn.Module) -> str:
    """Load the state dict in ``path`` (from :func:`f_weights_file`) into ``model`` and return
    the file's SHA-256; :class:`ConfigError` naming ``f_weights`` and the file when it is
    corrupt or does not fit ``model`` (tensor names and shapes)."""
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise ConfigError(f"f_weights: {str(path)!r} is corrupt or truncated ({err})") from None
    _check_state(path, state, model)
    device = next(iter(model.parameters())).device
    model.load_state_dict({name: tensor.to(device) for name, tensor in state.items()})
    return sha256_file(path)


def trained_adversarially(source_config: dict[str, Any], depth: int = 0) -> bool | None:
    """Whether the f of the run with config tree ``source_config`` was trained adversarially;
    a run that loaded its f itself answers for the run directory it loaded from (``None``
    when that is a bare weights file, a directory no longer there, or a chain of more than
    16 such runs, e.g. a run that overwrote its own source)."""
    loaded_from = source_config.get("f_weights")
    if loaded_from is None:
        return _lookup(source_config, "train_f.adversarial") is not None
    if depth >= 16:
        return None
    try:
        return trained_adversarially(read_run(loaded_from).config, depth + 1)
    except RunDirError:
        return None


def _check_robustness(source: str, source_config: dict[str, Any], scenario: Any) -> None:
    adversarial = trained_adversarially(source_config)
    if adversarial is None:
        return
    if scenario == "robust" and not adversarial:
        raise ConfigError(
            f"f_weights: scenario 'robust' (D_R) needs a robust f, and {source!r} trained a "
            "standard one (no train_f.adversarial)"
        )
    if scenario == "non_robust" and adversarial:
        raise ConfigError(
            f"f_weights: scenario 'non_robust' (D_NR) needs a standard f, and {source!r} "
            "trained f adversarially"
        )


def state_mismatches(state: dict[str, torch.Tensor], model: nn.Module) -> str:
    """How the state dict ``state`` fails to fit ``model`` (tensor names and shapes), as one
    line naming the first three problems (``""`` when it fits)."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    problems = [f"missing {name}" for name in expected if name not in found]
    problems += [f"unexpected {name}" for name in found if name not in expected]
    problems += [
        f"{name} {found[name]} instead of {shape}"
        for name, shape in expected.items()
        if name in found and found[name] != shape
    ]
    return "; ".join(problems[:3]) + (f"; … {len(problems) - 3} more" if len(problems) > 3 else "")


def _check_state(path: Path, state: dict[str, torch.Tensor], model: nn.Module) -> None:
    shown = state_mismatches(state, model)
    if shown:
        raise ConfigError(
            f"f_weights: {str(path)!r} does not fit the configured network ({shown}); "
            "set model to the network that was trained"
        )
