"""The theory of a run: the test-set agreements the decision map prints next to the agreement
on its plane, and compute_theory's numbers against the NeurIPS24 sums written out."""

from __future__ import annotations

import math
import re

import pytest
import torch

from pertlearn.analysis.theory import (
    RunData,
    agreements_on_test,
    check_theory_applies,
    compute_theory,
    run_data_from_result,
)
from pertlearn.attacks import GradientStep
from pertlearn.data.synthetic import balanced_signs, gauss, shifted_gauss
from pertlearn.experiments import Result, validate_config
from pertlearn.models import OneHiddenNet, TwoLayerNet


def test_agreements_on_test_are_found_at_any_depth_and_in_either_order() -> None:
    theory = {
        "run": "x",
        "neurips": {"agree_f_g": 0.524, "agree_fhat_ghat": 0.534, "scenario_b": {}},
        "iclr": {"g_surrogate": {"agree_gtilde_ftilde": 0.505, "agree_gtilde_g": 0.8}},
    }
    pairs = [["f", "g"], ["fhat", "ghat"], ["ftilde", "gtilde"], ["f", "ftilde"]]
    assert agreements_on_test(theory, pairs) == {
        ("f", "g"): 0.524,
        ("fhat", "ghat"): 0.534,
        ("ftilde", "gtilde"): 0.505,
    }


def _phi_loop(a: torch.Tensor, b: torch.Tensor, slope: float) -> torch.Tensor:
    """The NeurIPS24 kernel entry by entry with Python floats (closed form
    ``γ + (1 − γ)²(π − θ)/(2π)``, ``cos θ = ρ`` of the biased pre-activations), independent of
    the chunked in-place implementation (itself checked against Monte Carlo)."""
    d = a.shape[1]
    out = torch.empty(a.shape[0], b.shape[0], dtype=torch.float64)
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            cov = float(a[i] @ b[j]) / d + 1
            var = (float(a[i] @ a[i]) / d + 1) * (float(b[j] @ b[j]) / d + 1)
            theta = math.acos(max(-1.0, min(1.0, cov / math.sqrt(var))))
            out[i, j] = slope + (1 - slope) ** 2 * (math.pi - theta) / (2 * math.pi)
    return out


def _sign_agree(a: torch.Tensor, b: torch.Tensor) -> float:
    return sum((p >= 0) == (q >= 0) for p, q in zip(a.tolist(), b.tolist(), strict=True)) / len(a)


def test_compute_theory_evaluates_the_predictions_where_the_perturbations_were_crafted() -> None:
    """A run that perturbs noise inputs (``base`` ≠ ``x_train``) in scenario (b) (g's inputs
    are ``base + η``), with non-uniform loss weights: the numbers of ``compute_theory`` equal the
    NeurIPS24 sums written out here: ``u_n = (1/N) Σ_k c_k y_k Φ(base_n, x_k) x_k`` at the
    *perturbed* points, ``f̂`` with f's weights, ĝ over g's inputs with the predicted
    ``r̂_n = ε y_n^adv u_n/‖u_n‖`` and the original term of ``base``."""
    g = torch.Generator().manual_seed(0)
    n, m, d, slope, eps = 12, 12, 6, 0.2, 0.5  # m = n: directions at x_train would not raise
    x, y = shifted_gauss(n, d, g, dtype=torch.float64)
    base = torch.randn(m, d, generator=g, dtype=torch.float64)
    x_test, y_test = shifted_gauss(15, d, g, dtype=torch.float64)
    f = TwoLayerNet(d, 40, slope, generator=g, dtype=torch.float64)
    net_g = TwoLayerNet(d, 40, slope, generator=g, dtype=torch.float64)
    y_adv = balanced_signs(m, g, torch.float64)
    x_adv = GradientStep(eps)(f, base, y_adv)
    c_f = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    c_g = torch.rand(m, generator=g, dtype=torch.float64) + 0.5
    model = {"name": "two_layer", "slope": slope}
    run = RunData(
        x_train=x, y_train=y, x_test=x_test, y_test=y_test, y_adv=y_adv, x_adv=x_adv,
        g_inputs=x_adv, base=base, f=f, g=net_g, model_f=model, model_g=model, eps=eps,
        scenario="on_original", loss_weights_f=c_f, loss_weights_g=c_g,
    )  # fmt: skip
    report = compute_theory(run, chunk_size=5)
    section = report.theory["neurips"]

    u = (_phi_loop(base, x, slope) * (c_f * y)[None, :]) @ x / n  # (m, d), at base
    eta = x_adv - base
    cos = [float(eta[i] @ (y_adv[i] * u[i])) / float(eta[i].norm() * u[i].norm()) for i in range(m)]
    assert section["cos_direction_signed"]["mean"] == pytest.approx(sum(cos) / m, abs=1e-12)
    assert report.metrics["cos_direction_mean"] == pytest.approx(
        sum(abs(c) for c in cos) / m, abs=1e-12
    )
    k_test = _phi_loop(x_test, x, slope)
    f_hat = (k_test * (c_f * y)[None, :] * (x_test @ x.T)).sum(1) / n
    with torch.no_grad():
        f_scores, g_scores = f(x_test), net_g(x_test)
    assert section["agree_fhat_f"] == pytest.approx(_sign_agree(f_hat, f_scores))
    assert section["fhat_acc_test"] == pytest.approx(_sign_agree(f_hat, y_test))
    r_hat = eps * y_adv[:, None] * u / u.norm(dim=1, keepdim=True)
    k_g = _phi_loop(x_test, x_adv, slope) * (c_g * y_adv)[None, :]
    pert_term = (k_g * (x_test @ r_hat.T)).sum(1) / m
    orig_term = (k_g * (x_test @ base.T)).sum(1) / m
    g_hat = pert_term + orig_term
    assert section["agree_ghat_g"] == pytest.approx(_sign_agree(g_hat, g_scores))
    assert section["agree_fhat_ghat"] == pytest.approx(_sign_agree(f_hat, g_hat))
    torch.testing.assert_close(report.scorers["ghat"](x_test), g_hat)
    torch.testing.assert_close(report.scorers["fhat"](x_test), f_hat)
    dominates = (pert_term.abs() > orig_term.abs()).double().mean().item()
    assert section["scenario_b"]["perturbation_term_dominates"] == pytest.approx(dominates)


def test_compute_theory_iclr_section_equals_the_max_margin_surrogate_solved_directly() -> None:
    """One-hidden-layer run on nearly orthogonal data (all samples support vectors): the ICLR24
    numbers of ``compute_theory`` equal those of ``w̃ = Σ_n λ_n y_n x_n`` with ``λ`` from a
    dense solve of ``Σ_k λ_k y_k y_n ⟨x_k, x_n⟩ = 1`` (not the conjugate gradients of the
    package), the condition ``γ³R_min⁴/(3NR_max²) > p_max`` from statistics computed here, and
    the L2 prediction ``ε y^adv w̃/‖w̃‖``."""
    g = torch.Generator().manual_seed(1)
    n, d, slope, eps = 8, 400, 0.5, 0.3
    x, y = gauss(n, d, g, dtype=torch.float64)
    base, _ = gauss(n, d, g, dtype=torch.float64)
    x_test, _ = gauss(20, d, g, dtype=torch.float64)
    f = OneHiddenNet(d, 16, slope, generator=g, dtype=torch.float64)
    net_g = OneHiddenNet(d, 16, slope, generator=g, dtype=torch.float64)
    y_adv = balanced_signs(n, g, torch.float64)
    x_adv = GradientStep(eps)(f, base, y_adv)
    model = {"name": "one_hidden", "slope": slope}
    run = RunData(
        x_train=x, y_train=y, x_test=x_test, y_test=None, y_adv=y_adv, x_adv=x_adv,
        g_inputs=x_adv, base=base, f=f, g=net_g, model_f=model, model_g=model, eps=eps,
        scenario="noise",
    )  # fmt: skip
    section = compute_theory(run).theory["iclr"]

    gram = x @ x.T
    lam = torch.linalg.solve((y[:, None] * y[None, :]) * gram, torch.ones(n, dtype=torch.float64))
    assert bool((lam > 0).all())
    w = (lam * y) @ x
    norms = gram.diagonal().sqrt()
    p_max = (gram - torch.diag(gram.diagonal())).abs().max().item()
    bound = slope**3 * norms.min().item() ** 4 / (3 * n * norms.max().item() ** 2)
    assert section["p_max"] == pytest.approx(p_max, rel=1e-12)
    assert section["orthogonality_bound"] == pytest.approx(bound, rel=1e-12)
    assert section["orthogonality_condition"] == (p_max < bound)
    with torch.no_grad():
        f_scores = f(x_test)
    assert section["agree_ftilde_f"] == pytest.approx(_sign_agree(x_test @ w, f_scores))
    eta = x_adv - base
    cos_l2 = [float(eta[i] @ (y_adv[i] * w)) / float(eta[i].norm() * w.norm()) for i in range(n)]
    assert section["perturbations"]["cos_l2"]["mean"] == pytest.approx(sum(cos_l2) / n, abs=1e-9)
    assert section["perturbations"]["l0_k"] == d  # a dense L2 step changes every coordinate
    assert section["perturbations"]["l0_overlap"] is None
    lo, hi = 1 / (2 * norms.max().item() ** 2), 3 / (2 * slope**2 * norms.min().item() ** 2)
    assert section["lambdas"]["bounds"] == pytest.approx([lo, hi], rel=1e-12)
    inside = ((lam > lo) & (lam < hi)).double().mean().item()
    assert section["lambdas"]["share_in_bounds"] == pytest.approx(inside)


def test_theory_of_an_image_run_is_refused_in_one_line() -> None:
    config = validate_config({"pipeline": "images"})
    result = Result(config=config, metrics={}, models={}, curves={})
    message = "the theory covers the binary pipelines (neurips, iclr_artificial), not images"
    with pytest.raises(ValueError, match=re.escape(message)):
        run_data_from_result(result)
    with pytest.raises(ValueError, match=re.escape(message)):
        check_theory_applies(config)
