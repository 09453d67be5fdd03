"""NeurIPS24 predictions: directions, f̂ and ĝ against brute-force sums and trained networks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from pertlearn.attacks import GradientStep
from pertlearn.data.synthetic import balanced_signs, shifted_gauss
from pertlearn.models import TwoLayerNet
from pertlearn.theory import (
    cosines,
    fhat,
    ghat,
    phi,
    predicted_directions,
    predicted_perturbations,
    sign_agreement,
)
from pertlearn.training import TrainConfig, fit


def _data(seed: int = 0, n: int = 30, dim: int = 8):
    g = torch.Generator().manual_seed(seed)
    x, y = shifted_gauss(n, dim, g, dtype=torch.float64)
    return x, y, g


def test_directions_equal_the_explicit_sum() -> None:
    x, y, g = _data()
    c = torch.rand(x.shape[0], generator=g, dtype=torch.float64) + 0.5
    k = phi(x, x, 0.25)
    n = x.shape[0]
    expected = torch.stack(
        [sum(c[j] * y[j] * k[i, j] * x[j] for j in range(n)) / n for i in range(n)]
    )
    got = predicted_directions(x, y, 0.25, weights=c, chunk_size=4)
    torch.testing.assert_close(got, expected)
    # identity loss: weights all equal → the same direction up to the constant
    torch.testing.assert_close(
        predicted_directions(x, y, 0.25, weights=torch.full_like(y, 3.0)),
        3 * predicted_directions(x, y, 0.25),
    )


def test_fhat_and_ghat_equal_the_explicit_sums() -> None:
    x, y, g = _data(1)
    z = torch.randn(7, x.shape[1], generator=g, dtype=torch.float64)
    n = x.shape[0]
    kz = phi(z, x, 0.0)
    expected_f = torch.stack(
        [sum(y[j] * kz[i, j] * (x[j] @ z[i]) for j in range(n)) / n for i in range(z.shape[0])]
    )
    torch.testing.assert_close(fhat(z, x, y, 0.0, chunk_size=2), expected_f)

    y_adv = balanced_signs(n, g, torch.float64)
    u = predicted_directions(x, y, 0.0)
    r_hat = predicted_perturbations(u, y_adv, 0.1)
    torch.testing.assert_close(r_hat.norm(dim=1), torch.full((n,), 0.1, dtype=torch.float64))
    x_adv = x + r_hat  # scenario (b)
    ka = phi(z, x_adv, 0.0)
    pert = torch.stack(
        [
            sum(y_adv[j] * ka[i, j] * (r_hat[j] @ z[i]) for j in range(n)) / n
            for i in range(z.shape[0])
        ]
    )
    orig = torch.stack(
        [sum(y_adv[j] * ka[i, j] * (x[j] @ z[i]) for j in range(n)) / n for i in range(z.shape[0])]
    )
    got = ghat(z, x_adv, y_adv, r_hat, 0.0, originals=x, chunk_size=3)
    torch.testing.assert_close(got.perturbation, pert)
    torch.testing.assert_close(got.original, orig)
    torch.testing.assert_close(got.total, pert + orig)
    # the spec's ĝ: (1/N) Σ_n Φ(x_n^adv, z) ⟨u_n, z⟩ — same terms up to the factor ε/‖u_n‖ > 0
    scaled = ghat(z, x_adv, y_adv, 0.1 * y_adv[:, None] * u, 0.0).perturbation
    spec = torch.stack(
        [sum(ka[i, j] * (u[j] @ z[i]) for j in range(n)) / n for i in range(z.shape[0])]
    )
    torch.testing.assert_close(scaled, 0.1 * spec)
    assert ghat(z, x_adv, y_adv, r_hat, 0.0).original.abs().max().item() == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_predicted_direction_matches_gradient_of_wide_trained_network(seed: int) -> None:
    x, y, g = _data(seed, n=40, dim=20)
    x, y = x.float(), y.float()
    net = TwoLayerNet(20, 2000, 0.0, generator=g)
    history = fit(net, x, y, TrainConfig(loss="identity", lr=1.0, epochs=50, plateau_patience=None))
    y_adv = balanced_signs(40, g)
    x_adv = GradientStep(0.05)(net, x, y_adv)
    u = predicted_directions(x, y, 0.0, weights=history.loss_weights)
    cos = cosines(x_adv - x, y_adv[:, None] * u)
    assert cos.mean().item() > 0.95
    assert cos.min().item() > 0.9


def test_fhat_agrees_with_trained_network_and_logistic_weights_are_used() -> None:
    g = torch.Generator().manual_seed(3)
    x, y = shifted_gauss(200, 10, g)
    z, _ = shifted_gauss(300, 10, g)
    net = TwoLayerNet(10, 1000, 0.0, generator=g)
    history = fit(net, x, y, TrainConfig(loss="logistic", lr=1.0, epochs=100))
    assert history.loss_weights is not None
    # logistic weights differ per sample (∫σ dt is smaller for well-fit samples)
    assert history.loss_weights.std().item() > 0
    with torch.no_grad():
        f_scores = net(z)
    predicted = fhat(z, x, y, 0.0, weights=history.loss_weights)
    assert sign_agreement(predicted, f_scores) > 0.95


def test_weight_shape_is_checked() -> None:
    x, y, _ = _data()
    with pytest.raises(ValueError, match="one weight per training sample"):
        predicted_directions(x, y, 0.0, weights=torch.ones(3, dtype=torch.float64))


def test_sign_agreement_counts_ties_as_positive() -> None:
    a = torch.tensor([1.0, -1.0, 0.0, 2.0])
    b = torch.tensor([3.0, 1.0, 5.0, -1.0])
    assert sign_agreement(a, b) == 0.5


def test_directions_at_other_points() -> None:
    x, y, g = _data(5)
    noise = torch.randn(11, x.shape[1], generator=g, dtype=torch.float64)
    k = phi(noise, x, 0.0)
    expected = (k * y[None, :]) @ x / x.shape[0]
    torch.testing.assert_close(predicted_directions(x, y, 0.0, at=noise, chunk_size=3), expected)


def test_cosines_stay_in_range_and_handle_zero_rows() -> None:
    a = torch.tensor([[1e-3, 2e-3, 3e-3], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    b = torch.tensor([[1e-3, 2e-3, 3e-3], [1.0, 2.0, 3.0], [-2.0, 0.0, 0.0]])
    c = cosines(a * 7.3, b)
    assert c[0].item() <= 1.0 and c[0].item() == pytest.approx(1.0)
    assert c[1].item() == 0.0 and c[2].item() == -1.0


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (lambda y: y[:, None], r"labels must have shape \(30,\), one per input, got \(30, 1\)"),
        (lambda y: y[:10], r"labels must have shape \(30,\), one per input, got \(10,\)"),
        (lambda y: (y > 0).double(), r"labels must be -1 or \+1, got 0 \(map 0/1 labels"),
    ],
)
def test_labels_of_another_shape_or_kind_are_refused_not_broadcast(
    labels: Callable[[torch.Tensor], torch.Tensor], message: str
) -> None:
    """Labels ``(N, 1)`` would broadcast to a ``(N, N, d)`` result and 0/1 labels give a
    wrong prediction without a word: each function names itself and the problem."""
    x, y, _ = _data()
    for call, where in (
        (lambda: predicted_directions(x, labels(y), 0.0), "predicted_directions"),
        (lambda: fhat(x, x, labels(y), 0.0), "fhat"),
        (lambda: ghat(x, x, labels(y), x, 0.0), "ghat"),
        (lambda: predicted_perturbations(x, labels(y), 0.1), "predicted_perturbations"),
    ):
        with pytest.raises(ValueError, match=rf"^{where}: {message}"):
            call()
