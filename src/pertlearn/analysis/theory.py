"""Theory next to practice for one run: ``theory.json``, figures and the theory metrics.

:func:`read_run_data` reads a run directory (config, tensors, f and g); :func:`compute_theory`
evaluates the NeurIPS24 predictions (and, for one-hidden-layer networks, the ICLR24
conditions and surrogate) against what the networks did; :func:`write_theory` writes
``theory.json``, ``decision_map.{png,pdf,svg}`` and adds the theory metrics to ``metrics.json``
(every file atomically).

Perturbations: the crafted perturbation of sample n is ``x_adv − base`` where ``base`` is the
tensor ``x_base`` or ``x_noise`` if the run stored one (pipelines that perturb other inputs
than the training set), else ``x_train``. g's training inputs are ``g_inputs``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from pertlearn.analysis.decision_maps import Scorer, decision_map, plot_decision_map
from pertlearn.analysis.plotting import FORMATS
from pertlearn.atomic import write_json
from pertlearn.errors import cli_worded
from pertlearn.experiments.config import (
    ConfigError,
    ExperimentConfig,
    ModelConfig,
    format_validation_error,
)
from pertlearn.experiments.config_tree import RUN_CONFIG_FILE
from pertlearn.experiments.pipelines import IclrArtificialConfig, NeuripsConfig
from pertlearn.experiments.result import Result
from pertlearn.experiments.rundir import read_metrics, read_run
from pertlearn.experiments.stages import build_model
from pertlearn.theory import iclr
from pertlearn.theory import neurips as kernel_theory
from pertlearn.theory.kernel import DEFAULT_CHUNK
from pertlearn.theory.neurips import cosines, sign_agreement


@dataclass
class RunData:
    """What the theory needs from one binary run. Tensors are 2-D ``(N, d)`` inputs and ±1
    labels; ``f``/``g`` score models; ``model_f``/``model_g`` their config dicts.
    ``g_inputs`` defaults to ``x_adv`` and ``y_test`` is optional (runs whose test labels
    carry no meaning, e.g. the ICLR24 artificial data, need not store them)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor | None
    y_adv: torch.Tensor
    x_adv: torch.Tensor
    g_inputs: torch.Tensor
    base: torch.Tensor
    f: nn.Module
    g: nn.Module
    model_f: dict[str, Any]
    model_g: dict[str, Any]
    eps: float
    scenario: str
    loss_weights_f: torch.Tensor | None = None
    loss_weights_g: torch.Tensor | None = None
    name: str = "run"

    @property
    def perturbations(self) -> torch.Tensor:
        """Crafted perturbations ``x_adv − base`` ``(N, d)``."""
        return self.x_adv - self.base

    @property
    def g_base(self) -> torch.Tensor | None:
        """The non-perturbation part of g's inputs (``None`` when g saw perturbations only)."""
        rest = self.g_inputs - self.perturbations
        scale = self.g_inputs.abs().max().clamp_min(1e-30)
        return None if bool(rest.abs().max() <= 1e-6 * scale) else rest


def saved_model_config(config: Any, key: str, config_file: Path) -> ModelConfig:
    """The network config ``config`` found under ``key`` of a run's ``config_file``;
    :class:`ConfigError` (one line naming the file and the key) when it is not a valid one,
    as after an edit by hand."""
    try:
        return ModelConfig.model_validate(config)
    except ValidationError as err:
        problem = format_validation_error(err).removeprefix("invalid config: ")
        raise ConfigError(
            f"{config_file}: {key}: {problem}; restore the value the run was written with, or "
            "rerun the run"
        ) from None


def _model(model_config: ModelConfig, state: dict[str, torch.Tensor], dim: int) -> nn.Module:
    dtype = state["weight"].dtype
    model = build_model(model_config, dim, torch.Generator().manual_seed(0), dtype)
    model.load_state_dict(state)
    return model.eval()


BinaryConfig = NeuripsConfig | IclrArtificialConfig
"""Configs of the binary pipelines, the runs the theory covers."""


def binary_config(config: ExperimentConfig) -> BinaryConfig:
    """``config`` as the config of a binary pipeline; ``ValueError`` (one line) for another."""
    if not isinstance(config, BinaryConfig):
        covers = f"covers the binary pipelines (neurips, iclr_artificial), not {config.pipeline}"
        raise cli_worded(ValueError(f"the theory {covers}"), f"--theory {covers}")
    return config


def check_theory_applies(config: ExperimentConfig) -> None:
    """Raise ``ValueError`` (one line) when the theory cannot be computed for a run of
    ``config``, so that ``run --theory`` fails before computing anything: it needs a binary
    run (``neurips`` or ``iclr_artificial`` pipeline) with saved tensors, and for
    one-hidden-layer networks a LeakyReLU slope in (0, 1)."""
    config = binary_config(config)
    if not config.save_tensors:
        tensors = "needs the run's tensors: set save_tensors = true"
        raise cli_worded(ValueError(f"the theory {tensors}"), f"--theory {tensors}")
    for model in (config.model, config.model_g or config.model):
        if model.name == "one_hidden" and not 0 < model.slope < 1:
            raise ValueError(
                "the ICLR24 theory of one-hidden-layer networks needs a LeakyReLU slope in "
                f"(0, 1), got model.slope = {model.slope}"
            )


def read_run_data(run_dir: str | Path) -> RunData:
    """Read a run directory written by :meth:`pertlearn.Result.save` (with tensors)."""
    record = read_run(run_dir)
    config = record.config
    t = record.tensors()
    needed = ("x_train", "y_train", "x_test", "y_adv", "x_adv")
    missing = [key for key in needed if key not in t]
    if missing:
        raise ValueError(f"run {str(record.path)!r} lacks tensors {', '.join(missing)}")
    if t["x_train"].ndim != 2 or t["y_train"].ndim != 1:
        raise ValueError(
            "the theory covers binary runs with inputs (N, d); this run has inputs of shape "
            f"{tuple(t['x_train'].shape)}"
        )
    model_f = config["model"]
    g_key = "model_g" if config.get("model_g") else "model"
    model_g = config[g_key]
    config_file = record.path / RUN_CONFIG_FILE
    dim = t["x_train"].shape[1]
    f = _model(saved_model_config(model_f, "model", config_file), record.tensors("f"), dim)
    g = _model(saved_model_config(model_g, g_key, config_file), record.tensors("g"), dim)
    return _run_data(
        t,
        f,
        g,
        model_f,
        model_g,
        eps=float(record.resolved["eps"]),
        scenario=config.get("scenario", "perturbation_only"),  # iclr_artificial: g sees x_adv
        weights=(t.get("loss_weights_f"), t.get("loss_weights_g")),
        name=record.name,
    )


def run_data_from_result(result: Result) -> RunData:
    """:class:`RunData` of an in-memory :class:`pertlearn.Result` of a binary pipeline (no run
    directory needed)."""
    t = result.tensors
    config = binary_config(result.config)
    model_f = config.model.model_dump()
    model_g = (config.model_g or config.model).model_dump()
    weights = [getattr(result.curves.get(key), "loss_weights", None) for key in ("f", "g")]
    return _run_data(
        t,
        result.models["f"],
        result.models["g"],
        model_f,
        model_g,
        eps=float(config.eps),
        # iclr_artificial: g sees x_adv, the perturbations of noise
        scenario=config.scenario if isinstance(config, NeuripsConfig) else "perturbation_only",
        weights=(weights[0], weights[1]),
        name=config.name,
    )


def _run_data(
    t: dict[str, torch.Tensor],
    f: nn.Module,
    g: nn.Module,
    model_f: dict[str, Any],
    model_g: dict[str, Any],
    *,
    eps: float,
    scenario: str,
    weights: tuple[torch.Tensor | None, torch.Tensor | None],
    name: str,
) -> RunData:
    """:class:`RunData` from a run's tensors ``t`` (the keys of ``tensors.safetensors``)."""
    return RunData(
        x_train=t["x_train"],
        y_train=t["y_train"],
        x_test=t["x_test"],
        y_test=t.get("y_test"),
        y_adv=t["y_adv"],
        x_adv=t["x_adv"],
        g_inputs=t.get("g_inputs", t["x_adv"]),
        base=t.get("x_base", t.get("x_noise", t["x_train"])),
        f=f,
        model_f=model_f,
        loss_weights_f=weights[0],
        g=g,
        model_g=model_g,
        loss_weights_g=weights[1],
        eps=eps,
        scenario=scenario,
        name=name,
    )


@torch.no_grad()
def _scores(model: nn.Module, x: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    return torch.cat([model(chunk) for chunk in x.split(batch)])


def _neurips(
    run: RunData, chunk_size: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Scorer]]:
    slope_f, slope_g = float(run.model_f["slope"]), float(run.model_g["slope"])
    bias_f = run.model_f["name"] == "two_layer"
    bias_g = run.model_g["name"] == "two_layer"
    x, y = run.x_train, run.y_train
    at = None if run.base is x else run.base  # where the perturbations were crafted
    directions = kernel_theory.predicted_directions(
        x, y, slope_f, weights=run.loss_weights_f, chunk_size=chunk_size, bias=bias_f, at=at
    )
    signed = cosines(run.perturbations, run.y_adv[:, None] * directions)
    r_hat = kernel_theory.predicted_perturbations(directions, run.y_adv, run.eps)
    originals = run.g_base

    def fhat_scorer(z: torch.Tensor) -> torch.Tensor:
        return kernel_theory.fhat(
            z, x, y, slope_f, weights=run.loss_weights_f, chunk_size=chunk_size, bias=bias_f
        )

    def ghat_at(z: torch.Tensor) -> kernel_theory.GHat:
        return kernel_theory.ghat(
            z,
            run.g_inputs,
            run.y_adv,
            r_hat,
            slope_g,
            originals=originals,
            weights=run.loss_weights_g,
            chunk_size=chunk_size,
            bias=bias_g,
        )

    f_hat = fhat_scorer(run.x_test)
    g_hat = ghat_at(run.x_test)
    f_scores, g_scores = _scores(run.f, run.x_test), _scores(run.g, run.x_test)
    section: dict[str, Any] = {
        "kernel": {"slope_f": slope_f, "slope_g": slope_g, "bias_f": bias_f, "bias_g": bias_g},
        "loss_weights": {
            "f": "trainer" if run.loss_weights_f is not None else "uniform (identity loss)",
            "g": "trainer" if run.loss_weights_g is not None else "uniform (identity loss)",
        },
        "cos_direction": iclr.summary(signed.abs()),
        "cos_direction_signed": iclr.summary(signed),
        "agree_fhat_f": sign_agreement(f_hat, f_scores),
        "agree_ghat_g": sign_agreement(g_hat.total, g_scores),
        "agree_fhat_ghat": sign_agreement(f_hat, g_hat.total),
        "agree_f_g": sign_agreement(f_scores, g_scores),
    }
    if run.y_test is not None:
        section["fhat_acc_test"] = sign_agreement(f_hat, run.y_test)
        section["ghat_acc_test"] = sign_agreement(g_hat.total, run.y_test)
    if originals is not None:
        section["scenario_b"] = {
            "perturbation_term_dominates": (g_hat.perturbation.abs() > g_hat.original.abs())
            .float()
            .mean()
            .item(),
            "agree_ghat_perturbation_term_fhat": sign_agreement(g_hat.perturbation, f_hat),
            "agree_ghat_original_term_fhat": sign_agreement(g_hat.original, f_hat),
        }
    metrics = {
        "cos_direction_mean": section["cos_direction"]["mean"],
        "agree_fhat_f": section["agree_fhat_f"],
        "agree_ghat_g": section["agree_ghat_g"],
        "agree_fhat_ghat": section["agree_fhat_ghat"],
    }

    def ghat_scorer(z: torch.Tensor) -> torch.Tensor:
        return ghat_at(z).total

    return section, metrics, {"fhat": fhat_scorer, "ghat": ghat_scorer}


def _iclr(run: RunData) -> tuple[dict[str, Any], dict[str, Any], dict[str, Scorer]]:
    slope = float(run.model_f["slope"])
    x, y = run.x_train, run.y_train
    stats = iclr.data_statistics(x)
    cond = iclr.orthogonality_condition(stats, slope)
    lam = iclr.max_margin_lambdas(x, y)
    lo, hi = iclr.lambda_bounds(stats, slope)
    inside = ((lam.values > lo) & (lam.values < hi)).double()
    w = iclr.surrogate_weight(x.double(), y.double(), lam.values)
    f_tilde = run.x_test.double() @ w
    f_scores, g_scores = _scores(run.f, run.x_test), _scores(run.g, run.x_test)
    pert = run.perturbations.double()
    k = max(1, round((pert != 0).sum(1).double().median().item()))
    predicted = {
        "l2": iclr.predicted_perturbation(w, run.y_adv, run.eps, "l2"),
        "linf": iclr.predicted_perturbation(w, run.y_adv, run.eps, "linf"),
    }
    dense = k >= pert.shape[1]  # every coordinate changed: the L0 overlap says nothing
    # g's surrogate on its own training set, split into base and perturbation terms.
    g_in = run.g_inputs.double()
    lam_g = iclr.max_margin_lambdas(g_in, run.y_adv.double())
    base = run.g_base
    base64 = torch.zeros_like(g_in) if base is None else base.double()
    parts = iclr.surrogate_decomposition(
        run.x_test.double(), base64, g_in - base64, run.y_adv.double(), lam_g.values
    )
    dominates = parts.perturbation_dominates
    pert_term = parts.perturbation
    scale = (pert_term @ f_tilde) / (f_tilde @ f_tilde).clamp_min(1e-300)
    corr = torch.corrcoef(torch.stack([pert_term, f_tilde]))[0, 1].item()
    g_tilde = parts.total
    agree_dom = (
        sign_agreement(g_tilde[dominates], f_scores[dominates]) if bool(dominates.any()) else None
    )
    agree_not = (
        sign_agreement(g_tilde[~dominates], f_scores[~dominates])
        if bool((~dominates).any())
        else None
    )
    section: dict[str, Any] = {
        "slope": slope,
        "R_min": stats.r_min,
        "R_max": stats.r_max,
        "p_max": stats.p_max,
        "N": stats.n,
        "orthogonality_condition": cond.holds,
        "orthogonality_bound": cond.bound,
        "orthogonality_margin": cond.margin,
        "orthogonality_ratio": cond.ratio,
        "lambdas": {
            "method": lam.method,
            "converged": lam.converged,
            "kkt_residual": lam.kkt_residual,
            "min_margin": lam.min_margin,
            "bounds": [lo, hi],
            "share_in_bounds": inside.mean().item(),
            "all_in_bounds": bool(inside.all()),
            "summary": iclr.summary(lam.values),
        },
        "agree_ftilde_f": sign_agreement(f_tilde, f_scores),
        "perturbations": {
            "cos_l2": iclr.summary(cosines(pert, predicted["l2"])),
            "cos_linf": iclr.summary(cosines(pert, predicted["linf"])),
            "l0_k": k,
            "l0_overlap": None if dense else iclr.summary(iclr.l0_overlap(pert, w)),
        },
        "g_surrogate": {
            "lambdas_method": lam_g.method,
            "lambdas_converged": lam_g.converged,
            "agree_gtilde_g": sign_agreement(g_tilde, g_scores),
            "agree_gtilde_f": sign_agreement(g_tilde, f_scores),
            "agree_gtilde_ftilde": sign_agreement(g_tilde, f_tilde),
            "perturbation_term_dominates": dominates.double().mean().item(),
            "agree_gtilde_f_where_perturbation_dominates": agree_dom,
            "agree_gtilde_f_where_noise_dominates": agree_not,
            "perturbation_term_vs_ftilde": {"scale": scale.item(), "correlation": corr},
        },
    }
    if run.y_test is not None:
        section["ftilde_acc_test"] = sign_agreement(f_tilde, run.y_test)
    metrics = {
        "orthogonality_condition": cond.holds,
        "orthogonality_margin": cond.margin,
        "agree_ftilde_f": section["agree_ftilde_f"],
        "agree_gtilde_g": section["g_surrogate"]["agree_gtilde_g"],
    }
    w_g = (lam_g.values * run.y_adv.double()) @ g_in

    def ftilde_scorer(z: torch.Tensor) -> torch.Tensor:
        return z.double() @ w

    def gtilde_scorer(z: torch.Tensor) -> torch.Tensor:
        return z.double() @ w_g

    return section, metrics, {"ftilde": ftilde_scorer, "gtilde": gtilde_scorer}


LABELS = {"f": "f", "g": "g", "fhat": "f̂", "ghat": "ĝ", "ftilde": "f̃", "gtilde": "g̃"}


@dataclass
class TheoryReport:
    """``theory`` (the JSON document), ``metrics`` (the contract keys), ``scorers`` (name →
    ``(M, d) → (M,)`` decision functions: f, g, f̂, ĝ and for ICLR runs f̃, g̃)."""

    theory: dict[str, Any]
    metrics: dict[str, Any]
    scorers: dict[str, Scorer]


def compute_theory(
    run: RunData,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    iclr_theory: bool | None = None,
) -> TheoryReport:
    """The NeurIPS24 section always, the ICLR24 section when ``iclr_theory`` (default: when f
    is a one-hidden-layer network)."""
    start = time.perf_counter()
    if iclr_theory is None:
        iclr_theory = run.model_f["name"] == "one_hidden"
    theory: dict[str, Any] = {"run": run.name, "scenario": run.scenario, "eps": run.eps}
    theory["neurips"], metrics, predicted = _neurips(run, chunk_size)
    scorers: dict[str, Scorer] = {
        "f": lambda z: _scores(run.f, z),
        "g": lambda z: _scores(run.g, z),
        **predicted,
    }
    if iclr_theory:
        section, more, surrogates = _iclr(run)
        theory["iclr"] = section
        metrics.update(more)
        scorers.update(surrogates)
    theory["seconds"] = time.perf_counter() - start
    return TheoryReport(theory, metrics, scorers)


def agreements_on_test(
    theory: dict[str, Any], pairs: list[list[str]]
) -> dict[tuple[str, str], float]:
    """The test-set sign agreement of each pair ``[a, b]`` found anywhere in the ``theory``
    document (key ``agree_a_b`` or ``agree_b_a``, at any depth)."""
    found: dict[tuple[str, str], float] = {}
    sections = [theory]
    while sections:
        section = sections.pop()
        for key, value in section.items():
            if isinstance(value, dict):
                sections.append(value)
                continue
            for a, b in pairs:
                if key in (f"agree_{a}_{b}", f"agree_{b}_{a}") and isinstance(value, float):
                    found.setdefault((a, b), value)
    return found


def draw_maps(
    run: RunData,
    report: TheoryReport,
    out_dir: str | Path,
    *,
    resolution: int = 81,
    axes: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Write ``decision_map.{png,pdf,svg}`` into ``out_dir``; returns the grid agreement shares."""
    rows = [["f", "g"], ["fhat", "ghat"]]
    if "ftilde" in report.scorers:
        rows.append(["ftilde", "gtilde"])
    names = [name for row in rows for name in row]
    try:
        dmap = decision_map(
            {name: report.scorers[name] for name in names},
            run.x_train,
            run.y_train,
            axes=axes,
            resolution=resolution,
        )
    except ValueError as err:  # e.g. default axes without training samples of both labels
        if axes is not None:
            raise
        raise cli_worded(
            ValueError(f"{err}; pass axes=(u, v), or maps=False to skip the map"),
            f"{err}; pass --no-maps to skip the map",
        ) from None
    shares = {f"{a}={b}": dmap.agreement(a, b) for a, b in rows}
    shares.update({"f=fhat": dmap.agreement("f", "fhat"), "g=ghat": dmap.agreement("g", "ghat")})
    on_test = agreements_on_test(report.theory, rows)
    path = plot_decision_map(
        dmap,
        Path(out_dir) / "decision_map.png",
        rows=rows,
        labels=LABELS,
        test_agreement=on_test,
        title=(
            f"{run.name}: signs of the networks (top) and of the theory's predictions on the "
            f"plane of {'the class means' if axes is None else 'the given axes'}\n"
            "right column: where the two signs agree on this plane (share of the plotted grid; "
            "in brackets the agreement on the test set)"
        ),
    )
    return {
        "file": path.name,
        "files": [path.with_suffix(f".{fmt}").name for fmt in FORMATS],
        "resolution": resolution,
        "grid_agreement": shares,
    }


def write_theory(
    run_dir: str | Path,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    maps: bool = True,
    resolution: int = 81,
    axes: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Compute the theory of the run in ``run_dir`` and write ``theory.json``,
    ``decision_map.{png,pdf,svg}`` (``maps``) and the theory metrics into its ``metrics.json``.
    Returns the theory metrics."""

    run_dir = Path(run_dir)
    run = read_run_data(run_dir)
    report = compute_theory(run, chunk_size=chunk_size)
    if maps:
        report.theory["decision_map"] = draw_maps(
            run, report, run_dir, resolution=resolution, axes=axes
        )
    write_json(run_dir / "theory.json", report.theory)
    metrics = read_metrics(run_dir)
    metrics.update(report.metrics)
    write_json(run_dir / "metrics.json", metrics)
    return report.metrics
