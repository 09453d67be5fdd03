"""The stages of perturbation learning that every pipeline composes.

data → train f → targets → craft (attack f) → train g → controls → evaluate. Each stage draws
its randomness from its own generator, derived from the run seed and the stage's name
(:mod:`pertlearn.seeding`), so changing one stage never shifts the random numbers of another.

Controls are named by what they train g' on (one table, docs/architecture.md):

============================  ==============================================================
``random_l2_noise``           (binary) random perturbations of the same L2 norm ε, same targets
``unperturbed_inputs``        g's inputs without the perturbation, same targets (the ICLR24
                              noise control; on natural images: clean images, target labels;
                              D_R / D_NR: the start points with g's labels)
``mislabeled_clean``          the clean inputs g's inputs were made from, with g's labels: what
                              leaks through the inputs themselves, without any perturbation
                              (neurips: the training inputs; iclr_artificial: the noise;
                              images: the training images, or D_R / D_NR's start images)
============================  ==============================================================
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from pertlearn.attacks import Attack, TargetedPGD
from pertlearn.data import balanced_signs, random_signs
from pertlearn.experiments.config import ExperimentConfig, ModelConfig
from pertlearn.experiments.result import Result
from pertlearn.models import OneHiddenNet, TwoLayerNet
from pertlearn.seeding import stage_generator
from pertlearn.training import TrainConfig, TrainResult, fit
from pertlearn.training.fast import fast_fit, supports_fast_fit

DTYPES = {"float32": torch.float32, "float64": torch.float64}

CONTROL_STAGE = "control_random"
"""Seeding stage of the control g' on ``random_l2_noise`` (neurips) or ``unperturbed_inputs``
(iclr_artificial, images); ``mislabeled_clean`` seeds from its own name. The name is part of the
seed derivation: changing it changes those controls' numbers."""


def build_model(
    config: ModelConfig, in_dim: int, generator: torch.Generator, dtype: torch.dtype
) -> nn.Module:
    """The binary network ``config`` names, for inputs ``(N, in_dim)`` → scores ``(N,)``."""
    if config.name == "two_layer":
        return TwoLayerNet(in_dim, config.width, config.slope, generator=generator, dtype=dtype)
    if config.name == "one_hidden":
        return OneHiddenNet(
            in_dim,
            config.width,
            config.slope,
            init_std=config.init_std,
            generator=generator,
            dtype=dtype,
        )
    raise ValueError(f"unknown binary model {config.name!r}; use two_layer or one_hidden")


def binary_networks(
    model_f: ModelConfig,
    model_g: ModelConfig,
    dim: int,
    *,
    seed: int,
    dtype: torch.dtype,
    stages: dict[str, str],
) -> dict[str, nn.Module]:
    """The untrained networks of a binary run, for inputs ``(N, dim)`` → scores ``(N,)``, on
    the CPU in ``dtype``, each initialised from the stage ``init_{stage}`` of ``seed`` as
    :func:`train_fresh` builds it: ``stages`` maps each network's name to its seeding stage
    (``f`` is of ``model_f``, every other network of ``model_g``)."""
    return {
        name: build_model(
            model_f if name == "f" else model_g, dim, stage_generator(seed, f"init_{stage}"), dtype
        )
        for name, stage in stages.items()
    }


def binary_run_networks(config: Any, noise_control: str) -> dict[str, nn.Module]:
    """:func:`binary_networks` of a run of the built-in binary ``config`` (``neurips`` or
    ``iclr_artificial``): f, g and each control of ``config.controls``, for inputs
    ``(N, data.dim)``; ``noise_control``, the pipeline's control on uninformative inputs, is
    seeded from :data:`CONTROL_STAGE`."""
    seeding = {
        "f": "f",
        "g": "g",
        noise_control: CONTROL_STAGE,
        "mislabeled_clean": "mislabeled_clean",
    }
    return binary_networks(
        config.model,
        config.model_g or config.model,
        config.data.dim,
        seed=config.seed,
        dtype=DTYPES[config.dtype],
        stages={
            name: stage
            for name, stage in seeding.items()
            if name in ("f", "g") or name in config.controls
        },
    )


def train_fresh(
    name: str,
    model_config: ModelConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    train_config: TrainConfig,
    *,
    seed: int,
    device: torch.device,
    progress: bool = False,
    stage: str | None = None,
    fast: bool = False,
) -> tuple[nn.Module, TrainResult]:
    """Stage *train*: a fresh binary model for inputs ``x`` ``(N, d)``, initialised from the
    stage ``init_{stage}`` of ``seed`` (``stage`` defaults to ``name``) in ``x``'s dtype, trained
    on ``(x, y)`` (``y`` ``(N,)`` ±1) by :func:`~pertlearn.training.fit` with mini-batches drawn
    from the stage ``batches_{stage}``. ``fast``: train with the explicit-gradient
    :func:`~pertlearn.training.fast.fast_fit` instead where it applies
    (:func:`~pertlearn.training.fast.supports_fast_fit`: the same numbers to float tolerance,
    the schedule kept on the device on CUDA)."""
    stage = stage or name
    init = stage_generator(seed, f"init_{stage}")
    model = build_model(model_config, x.shape[1], init, x.dtype).to(device)
    batches = stage_generator(seed, f"batches_{stage}")
    if fast and supports_fast_fit(model, x, y, train_config):
        history = fast_fit(model, x, y, train_config, name=name, progress=progress)
    else:
        history = fit(model, x, y, train_config, generator=batches, name=name, progress=progress)
    return model, history


def binary_targets(rule: str, n: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Stage *targets*: ``n`` target labels ``(n,)`` ±1 drawn by ``rule`` (``balanced``: half
    of each sign in random order; ``random``: i.i.d. uniform) from the stage ``targets``."""
    draw = balanced_signs if rule == "balanced" else random_signs
    return draw(n, stage_generator(seed, "targets"), dtype)


def craft(
    attack: Attack,
    f: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    seed: int,
    *,
    progress: bool = False,
) -> torch.Tensor:
    """Stage *craft*: adversarial inputs ``attack(f, x, targets)``, same shape as ``x``, with
    the attack's randomness from the stage ``attack``. ``progress``: a bar on stderr that
    counts the update steps of an iterative attack as they run (PGD: ``steps`` per batch of
    inputs, more with restarts or ``until_fooled``), else the ``N`` crafted inputs."""
    iterative = isinstance(attack, TargetedPGD)
    with tqdm(
        total=None if iterative else x.shape[0],
        desc=f"craft ({attack.name})",
        unit="step" if iterative else "input",
        disable=not progress,
        leave=False,
    ) as bar:
        if iterative and progress:
            attack.step_callback = lambda: bar.update(1)
        try:
            x_adv = attack(f, x, targets, generator=stage_generator(seed, "attack"))
        finally:
            attack.step_callback = None
        if not iterative:
            bar.update(x.shape[0])
    return x_adv


STAGE_NAMES = (
    "data",
    "train_f",
    "train_f_and_controls",
    "craft",
    "train_g",
    "controls",
    "evaluate",
)
"""The stages :class:`StageClock` times in a run, in the order they are reported
(``metrics.json``'s ``stage_seconds``; a batched sweep run trains f and its controls together
as ``train_f_and_controls``)."""


class StageClock:
    """Wall time per stage of one run: ``with clock("train_f"): ...`` adds the block's seconds
    to ``clock.seconds["train_f"]`` (a stage timed twice adds up). The times are reported
    beside the metrics, never part of them or of a run id."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def ordered(self) -> dict[str, float]:
        """The seconds per stage in the order of :data:`STAGE_NAMES` (other names last)."""
        rank = {name: i for i, name in enumerate(STAGE_NAMES)}
        return dict(sorted(self.seconds.items(), key=lambda item: rank.get(item[0], len(rank))))

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


@dataclass
class RunOutputs:
    """What one run produces, filled stage by stage: the trained networks and their training
    curves by name (``f``, ``g``, each control), the metrics and the time of each stage
    (``with outputs.clock("train_f"): ...``), and the names of the classes (image runs);
    :meth:`result` closes the run."""

    config: ExperimentConfig
    device: torch.device
    clock: StageClock = field(default_factory=StageClock)
    started: float = field(default_factory=time.perf_counter)
    models: dict[str, nn.Module] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None

    def add(self, name: str, trained: tuple[nn.Module, Any]) -> nn.Module:
        """Record the network ``name`` and its training curve (``trained``: what the trainer
        returned); return the network."""
        self.models[name], self.curves[name] = trained
        return trained[0]

    def result(self, tensors: dict[str, torch.Tensor]) -> Result:
        """The :class:`Result` of the run with its saved ``tensors``; ``seconds`` (the run's
        wall time) joins the metrics."""
        self.metrics["seconds"] = time.perf_counter() - self.started
        return Result(
            self.config,
            self.metrics,
            self.models,
            self.curves,
            tensors,
            device=str(self.device),
            stage_seconds=self.clock.ordered(),
            class_names=self.class_names,
        )


def split_tensors(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """The tensors a run saves of its data split (``y_test`` left out when ``None``)."""
    split = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return {key: value for key, value in split.items() if value is not None}
