"""Run many NeurIPS24-pipeline configurations as a few batched computations.

:func:`run_many` gives the same :class:`~pertlearn.experiments.result.Result` for each config
as :func:`~pertlearn.experiments.pipelines.run` would (same data, initialisations, targets,
attacks and metrics, to float tolerance), but trains together every network whose shapes
match (learning rates, seeds, ε, targets may differ) with
:func:`pertlearn.training.fast.fit_batched`, and trains identical networks once: configs that
differ only in g's settings share f, and the random-noise control does not depend on f at all.
(On the CPU with the identity loss, where the fast trainer's incremental scheme makes an epoch a
few passes over memory, each distinct network trains on its own instead: batching does not pay
there.)

Configs of other pipelines, or with networks / losses / batching the fast trainer does not
cover, run one by one through :func:`~pertlearn.experiments.pipelines.run`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import torch
from torch import nn

from pertlearn.attacks import RandomL2, make_attack
from pertlearn.experiments.config import ExperimentConfig, ModelConfig
from pertlearn.experiments.pipelines import run
from pertlearn.experiments.pipelines.neurips import (
    NeuripsConfig,
    control_scores,
    draw_targets,
    make_dataset,
    scores,
)
from pertlearn.experiments.result import Result
from pertlearn.experiments.stages import CONTROL_STAGE, DTYPES, StageClock, build_model
from pertlearn.models import OneHiddenNet, TwoLayerNet
from pertlearn.seeding import resolve_device, stage_generator
from pertlearn.training import TrainConfig, TrainingDivergedError, TrainResult, fit
from pertlearn.training.fast import diverged_message, fit_batched, supports_fast_fit
from pertlearn.training.losses import MARGIN_LOSSES

MEMORY_BUDGET = 2**30
"""Bytes of stacked inputs one batched training may hold; larger groups are split."""


def can_batch(config: ExperimentConfig) -> TypeGuard[NeuripsConfig]:
    """True when :func:`run_many` trains ``config``'s networks in batches: the ``neurips``
    pipeline, fixed-readout networks, margin losses, full batches."""
    if not isinstance(config, NeuripsConfig) or "mislabeled_clean" in config.controls:
        return False
    trains = (config.train_f, config.train_g)
    full = all(t.batch_size is None or t.batch_size >= config.data.n_train for t in trains)
    return full and all(t.loss in MARGIN_LOSSES for t in trains)


@dataclass(eq=False)
class _Job:
    """One network to train: model (initialised), inputs, labels, config."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    config: TrainConfig
    name: str
    result: TrainResult | None = None
    error: str | None = None


@dataclass
class _Run:
    """The per-config state between stages."""

    config: NeuripsConfig
    device: torch.device
    dtype: torch.dtype
    data_train: tuple[torch.Tensor, torch.Tensor] = field(init=False)
    data_test: tuple[torch.Tensor, torch.Tensor] = field(init=False)
    f: _Job = field(init=False)
    g: _Job = field(init=False)
    control: _Job | None = None
    y_adv: torch.Tensor = field(init=False)
    x_adv: torch.Tensor = field(init=False)


def _json(model: Any) -> str:
    return str(model.model_dump_json()) if model is not None else "null"


def _train_jobs(jobs: Sequence[_Job], progress: bool) -> None:
    """Train ``jobs`` in place: groups of equal shapes together, the rest one by one."""
    groups: dict[Hashable, list[_Job]] = {}
    for job in jobs:
        if not supports_fast_fit(job.model, job.x, job.y, job.config):
            try:
                job.result = fit(job.model, job.x, job.y, job.config, name=job.name)
            except TrainingDivergedError as err:
                job.error = str(err)
            continue
        model = job.model
        assert isinstance(model, TwoLayerNet | OneHiddenNet)
        key: Hashable = (
            type(model),
            model.width,
            model.slope,
            tuple(job.x.shape),
            job.x.dtype,
            str(job.x.device),
            job.config.loss,
        )
        if job.config.loss == "identity" and job.x.device.type == "cpu":
            # The incremental scheme of the fast trainer (identity loss, CPU) costs a few passes
            # over (N, m) per epoch; batching adds nothing there, and one configuration with
            # many activation flips would force dense steps on the whole batch.
            key = (key, id(job))
        groups.setdefault(key, []).append(job)
    for group in groups.values():
        per_job = group[0].x.numel() * group[0].x.element_size()
        size = max(1, MEMORY_BUDGET // max(per_job, 1))
        for start in range(0, len(group), size):
            _train_group(group[start : start + size], progress)


def _train_group(group: list[_Job], progress: bool) -> None:
    models: list[TwoLayerNet | OneHiddenNet] = []
    for job in group:
        assert isinstance(job.model, TwoLayerNet | OneHiddenNet)
        models.append(job.model)
    first = models[0]
    with torch.no_grad():
        weight = torch.stack([m.weight.detach() for m in models])
        bias = None
        if isinstance(first, TwoLayerNet):
            bias = torch.stack([m.bias.detach() for m in models if isinstance(m, TwoLayerNet)])
        readout = torch.stack([m.readout for m in models])
        shared = all(job.x is group[0].x for job in group)
        x = group[0].x if shared else torch.stack([job.x for job in group])
        y = torch.stack([job.y for job in group])
        out = fit_batched(
            weight,
            bias,
            readout,
            first.slope,
            x,
            y,
            [job.config for job in group],
            progress=progress,
            name=f"{len(group)} × {group[0].name}",
        )
        for b, (job, model) in enumerate(zip(group, models, strict=True)):
            model.weight.copy_(weight[b])
            if bias is not None and isinstance(model, TwoLayerNet):
                model.bias.copy_(bias[b])
            model.eval()
            diverged = out.diverged[b]
            if diverged is None:
                job.result = out.result(b)
            else:
                job.error = diverged_message(job.name, diverged)


def _raise_first_error(runs: list[_Run], indices: list[int], only_f: bool = False) -> None:
    """Raise the error the sequential loop would hit first (config order, then f, g, control);
    ``only_f``: after the first phase, where a failed f stops everything."""
    for i, state in zip(indices, runs, strict=True):
        jobs = (state.f,) if only_f else (state.f, getattr(state, "g", None), state.control)
        for job in jobs:
            if job is not None and job.error is not None:
                raise TrainingDivergedError(f"config {i} ({state.config.name}): {job.error}")


def _metrics(state: _Run, g_inputs: torch.Tensor) -> dict[str, Any]:
    """The metrics of :func:`~pertlearn.experiments.pipelines.neurips.run_neurips`."""
    data = (*state.data_train, *state.data_test)
    metrics = scores(
        state.config,
        state.f.model,
        state.g.model,
        data,
        x_adv=state.x_adv,
        y_adv=state.y_adv,
        g_inputs=g_inputs,
    )
    if state.control is not None:
        control = state.control
        metrics.update(control_scores(control.model, data, inputs=control.x, y_adv=state.y_adv))
    return metrics


def run_many(configs: Sequence[ExperimentConfig], *, progress: bool = False) -> list[Result]:
    """Run every config and return their results in order (see the module docstring).

    The result of each config equals ``run(config)`` to float tolerance, except
    ``metrics["seconds"]`` and ``stage_seconds``, which are the batch's wall times divided by
    the number of batched configs (f and the controls train together: one
    ``train_f_and_controls`` stage). A diverging training raises
    :class:`TrainingDivergedError` naming the config.
    """
    results: list[Result | None] = [None] * len(configs)
    batchable = [(i, c) for i, c in enumerate(configs) if can_batch(c)]
    indices = [i for i, _ in batchable]
    start = time.perf_counter()
    clock = StageClock()
    with clock("data"):
        states = _build_runs([c for _, c in batchable])

    # f and the control (which does not depend on f): every distinct network once, together.
    with clock("train_f_and_controls"):
        _controls(states)
        jobs = _unique(state.f for state in states)
        jobs += _unique(state.control for state in states if state.control is not None)
        _train_jobs(jobs, progress)
    _raise_first_error(states, indices, only_f=True)

    # Attacks against the trained f, then every distinct g, together.
    with clock("craft"):
        _attack(states)
    with clock("train_g"):
        _train_jobs(_unique(state.g for state in states), progress)
    _raise_first_error(states, indices)

    finished = []
    with clock("evaluate"):
        for state in states:
            g_inputs = state.g.x
            finished.append((state, g_inputs, _metrics(state, g_inputs)))
    count = max(1, len(states))
    share = (time.perf_counter() - start) / count
    stage_shares = {stage: seconds / count for stage, seconds in clock.ordered().items()}
    for i, (state, g_inputs, metrics) in zip(indices, finished, strict=True):
        metrics["seconds"] = share
        result = _result(state, g_inputs, metrics)
        result.stage_seconds = dict(stage_shares)
        results[i] = result
    for i, config in enumerate(configs):
        if results[i] is None:
            results[i] = run(config, progress=progress)
    return [r for r in results if r is not None]


def _unique(jobs: Any) -> list[_Job]:
    seen: dict[int, _Job] = {}
    for job in jobs:
        seen.setdefault(id(job), job)
    return list(seen.values())


def _build_runs(configs: list[NeuripsConfig]) -> list[_Run]:
    """Data, initial networks and training jobs of each config; identical jobs are shared."""
    data: dict[Hashable, tuple[torch.Tensor, torch.Tensor]] = {}
    f_jobs: dict[Hashable, _Job] = {}
    states = []
    for config in configs:
        device = resolve_device(config.device)
        dtype = DTYPES[config.dtype]
        state = _Run(config, device, dtype)
        base = (config.seed, _json(config.data), config.dtype, str(device))
        for split, n in (("data_train", config.data.n_train), ("data_test", config.data.n_test)):
            if (split, *base) not in data:
                x, y = make_dataset(config, n, split, dtype)
                data[(split, *base)] = (x.to(device), y.to(device))
        state.data_train = data[("data_train", *base)]
        state.data_test = data[("data_test", *base)]
        f_key = (*base, _json(config.model), _json(config.train_f))
        if f_key not in f_jobs:
            model = _init(config, config.model, "f", state)
            x, y = state.data_train
            f_jobs[f_key] = _Job(model, x, y, config.train_f, "f")
        state.f = f_jobs[f_key]
        states.append(state)
    return states


def _init(config: NeuripsConfig, model_config: ModelConfig, name: str, state: _Run) -> nn.Module:
    dim = state.data_train[0].shape[1]
    generator = stage_generator(config.seed, f"init_{name}")
    return build_model(model_config, dim, generator, state.dtype).to(state.device)


def _controls(states: list[_Run]) -> None:
    """Target labels and the random-noise control job of each config. Neither depends on f,
    so the control trains in the same batch as f; identical ones are shared (the control
    depends on the data, targets, ε, scenario and g's settings)."""
    targets: dict[Hashable, torch.Tensor] = {}
    control_jobs: dict[Hashable, _Job] = {}
    for state in states:
        config = state.config
        x_train, y_train = state.data_train
        base = (config.seed, _json(config.data), config.dtype, str(state.device))
        if (*base, config.targets) not in targets:
            targets[(*base, config.targets)] = draw_targets(config, y_train)
        state.y_adv = targets[(*base, config.targets)]
        if "random_l2_noise" not in config.controls:
            continue
        g_model = config.model_g or config.model
        key: Hashable = (*base, config.targets, config.scenario, config.eps)
        key = (key, _json(g_model), _json(config.train_g))
        if key not in control_jobs:
            noise = RandomL2(config.eps)(
                state.f.model,
                x_train,
                state.y_adv,
                generator=stage_generator(config.seed, "control_noise"),
            )
            inputs = noise - x_train if config.scenario == "perturbation_only" else noise
            model = _init(config, g_model, CONTROL_STAGE, state)
            control_jobs[key] = _Job(model, inputs, state.y_adv, config.train_g, "random_l2_noise")
        state.control = control_jobs[key]


def _attack(states: list[_Run]) -> None:
    """Adversarial examples against the trained f, and the g job of each config (shared when
    f, targets, attack, scenario and g's settings are identical)."""
    g_jobs: dict[Hashable, tuple[_Job, torch.Tensor]] = {}
    for state in states:
        config = state.config
        x_train = state.data_train[0]
        g_model = config.model_g or config.model
        key: Hashable = (id(state.f), id(state.y_adv), _json(config.attack), config.scenario)
        key = (key, _json(g_model), _json(config.train_g))
        if key not in g_jobs:
            attack = make_attack(config.attack.name, config.eps, **config.attack.options)
            generator = stage_generator(config.seed, "attack")
            x_adv = attack(state.f.model, x_train, state.y_adv, generator=generator)
            g_inputs = x_adv - x_train if config.scenario == "perturbation_only" else x_adv
            model = _init(config, g_model, "g", state)
            g_jobs[key] = (_Job(model, g_inputs, state.y_adv, config.train_g, "g"), x_adv)
        state.g, state.x_adv = g_jobs[key]


def _result(state: _Run, g_inputs: torch.Tensor, metrics: dict[str, Any]) -> Result:
    """A :class:`Result` owning its own copies of shared networks."""
    models: dict[str, nn.Module] = {
        "f": copy.deepcopy(state.f.model),
        "g": copy.deepcopy(state.g.model),
    }
    assert state.f.result is not None and state.g.result is not None
    curves = {"f": state.f.result, "g": state.g.result}
    if state.control is not None:
        assert state.control.result is not None
        models["random_l2_noise"] = copy.deepcopy(state.control.model)
        curves["random_l2_noise"] = state.control.result
    x_train, y_train = state.data_train
    x_test, y_test = state.data_test
    tensors = {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "y_adv": state.y_adv,
        "x_adv": state.x_adv,
        "g_inputs": g_inputs,
    }
    return Result(state.config, metrics, models, curves, tensors, device=str(state.device))


def run_each(
    configs: Sequence[ExperimentConfig], *, progress: bool = False
) -> list[Result | Exception]:
    """:func:`run_many` for sweep runners, with failures isolated per config: the results in
    order, or for a config that fails (e.g. a diverging training) the exception that
    ``run(config)`` raises. A failure in the batch reruns its configs one by one."""
    try:
        return list(run_many(configs, progress=progress))
    except Exception:
        outcomes: list[Result | Exception] = []
        for config in configs:
            try:
                outcomes.append(run(config, progress=progress))
            except Exception as err:  # reported per config, like a sweep's failed run
                outcomes.append(err)
        return outcomes
