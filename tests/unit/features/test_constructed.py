"""Penultimate representations and the Ilyas et al. construction (arXiv:1905.02175, Sec. 3.1),
checked against hand-written forward passes and a model whose representation is the identity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pertlearn.features.constructed import (
    classifier_layer,
    construct_dataset,
    representation,
    start_points,
)
from pertlearn.models import ICLRResNet, SmallCNN, WideResNet, build_image_model
from pertlearn.models.cnn import IMAGE_MODELS


def small_cnn(gen: torch.Generator) -> SmallCNN:
    return SmallCNN((1, 12, 12), 10, width=4, hidden=16, generator=gen).eval()


def identity_rep_model(d: int) -> nn.Sequential:
    """A linear classifier whose penultimate representation is the flattened input."""
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 3))


def test_small_cnn_representation_matches_manual_forward(gen: torch.Generator) -> None:
    model = small_cnn(gen)
    x = torch.rand(5, 1, 12, 12, generator=gen)
    manual = model.head[:3](model.features(model.normalize(x)))  # flatten, linear, ReLU
    assert classifier_layer(model) == "head.3"
    torch.testing.assert_close(representation(model, x), manual)
    torch.testing.assert_close(representation(model, x, layer="head.2", take="output"), manual)
    assert representation(model, x).shape == (5, 16)

    class Mine(SmallCNN):
        pass

    assert classifier_layer(Mine((1, 12, 12), 10, width=4, hidden=16)) == "head.3"
    assert classifier_layer(nn.Linear(3, 2)) is None


def test_residual_net_representation_is_pooled_features(gen: torch.Generator) -> None:
    model = ICLRResNet((1, 8, 8), 10, generator=gen).eval()
    x = torch.rand(2, 1, 8, 8, generator=gen)
    with torch.no_grad():
        manual = F.adaptive_avg_pool2d(model.stages(model.stem(model.normalize(x))), 1).flatten(1)
        torch.testing.assert_close(representation(model, x), manual)


def test_wide_resnet_representation_is_pooled_features(gen: torch.Generator) -> None:
    # the network of the CIFAR-10 paper-scale presets, at depth 10 and widen 2 (64·2 features)
    model = WideResNet((3, 8, 8), 10, depth=10, widen=2, dropout=0.0, generator=gen).eval()
    x = torch.rand(3, 3, 8, 8, generator=gen)
    assert classifier_layer(model) == "linear"
    with torch.no_grad():
        out = F.relu(model.bn(model.blocks(model.conv(model.normalize(x)))))
        manual = F.adaptive_avg_pool2d(out, 1).flatten(1)
        rep = representation(model, x)
        torch.testing.assert_close(rep, manual)
        assert rep.shape == (3, 128)
        torch.testing.assert_close(model.linear(rep), model(x))


def test_penultimate_method_and_sequential_protocols(gen: torch.Generator) -> None:
    class WithMethod(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(6, 4)
            self.out = nn.Linear(4, 2)

        def penultimate(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.body(x))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.penultimate(x))

    x = torch.randn(3, 6, generator=gen)
    model = WithMethod()
    torch.testing.assert_close(representation(model, x), torch.tanh(model.body(x)))
    seq = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    torch.testing.assert_close(representation(seq, x), torch.relu(seq[0](x)))


def test_representation_errors(gen: torch.Generator) -> None:
    class Opaque(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2)
            self.unused = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x)

    x = torch.randn(2, 4, generator=gen)
    with pytest.raises(ValueError, match="penultimate"):
        representation(Opaque(), x)
    with pytest.raises(ValueError, match="no submodule"):
        representation(Opaque(), x, layer="nope")
    with pytest.raises(ValueError, match="not called"):
        representation(Opaque(), x, layer="unused")
    with pytest.raises(ValueError, match="take"):
        representation(Opaque(), x, layer="lin", take="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs layer"):
        representation(Opaque(), x, take="output")
    torch.testing.assert_close(representation(Opaque(), x, layer="lin"), x)


def test_identity_representation_converges_to_target(gen: torch.Generator) -> None:
    x_target = torch.rand(6, 1, 4, 4, generator=gen)
    x_start = torch.rand(6, 1, 4, 4, generator=gen)
    alpha = 0.05
    result = construct_dataset(identity_rep_model(16), x_target, x_start, steps=60, step_size=alpha)
    # ‖x_r − x‖ is the Euclidean distance: normalized GD walks the straight segment (inside the
    # box [0, 1], so clipping is inactive) by α per step until it is within α of the target.
    d0 = torch.linalg.vector_norm((x_target - x_start).flatten(1), dim=1)
    assert float(d0.min()) > 8 * alpha and float(d0.max()) < 60 * alpha
    for k in range(8):
        torch.testing.assert_close(result.distance[k], d0 - k * alpha, atol=1e-5, rtol=0)
    assert float(result.final_distance.max()) <= alpha / 2 + 1e-5
    gap = torch.linalg.vector_norm((result.x - x_target).flatten(1), dim=1)
    torch.testing.assert_close(gap, result.final_distance, atol=1e-5, rtol=0)


def test_distance_decreases_on_a_cnn(gen: torch.Generator) -> None:
    model = small_cnn(gen)
    x = torch.rand(8, 1, 12, 12, generator=gen)
    start = start_points(x, None, "other_image", generator=torch.Generator().manual_seed(1))
    result = construct_dataset(model, x, start, steps=12, step_size=0.05)
    mean = result.mean_distance
    assert result.distance.shape == (13, 8)
    assert torch.all(mean[1:] < mean[:-1]), mean
    assert float(mean[-1]) < 0.6 * float(mean[0])
    # the returned inputs have the distance reported for them
    again = (representation(model, result.x) - representation(model, x)).norm(dim=1)
    torch.testing.assert_close(again, result.final_distance, atol=1e-5, rtol=1e-4)
    assert torch.all(result.x >= 0) and torch.all(result.x <= 1)
    assert all(p.grad is None for p in model.parameters())


def test_deterministic_given_the_generator(gen: torch.Generator) -> None:
    model = small_cnn(gen)
    x = torch.rand(6, 1, 12, 12, generator=gen)

    def build(seed: int, batch_size: int = 256) -> torch.Tensor:
        start = start_points(x, None, "noise", generator=torch.Generator().manual_seed(seed))
        return construct_dataset(model, x, start, steps=3, step_size=0.1, batch_size=batch_size).x

    first = build(5)
    assert torch.equal(first, build(5))
    assert not torch.equal(first, build(6))
    torch.testing.assert_close(first, build(5, batch_size=4))  # batching does not matter


def test_eps_ball_keep_best_and_mode(gen: torch.Generator) -> None:
    model = identity_rep_model(16).train()
    x_target = torch.rand(4, 1, 4, 4, generator=gen)
    x_start = torch.rand(4, 1, 4, 4, generator=gen)
    out = construct_dataset(model, x_target, x_start, steps=20, step_size=0.1, eps=0.3).x
    moved = torch.linalg.vector_norm((out - x_start).flatten(1), dim=1)
    assert float(moved.max()) <= 0.3 + 1e-5
    assert model.training  # mode restored
    last = construct_dataset(model, x_target, x_start, steps=40, step_size=0.3, keep_best=False)
    kept = construct_dataset(model, x_target, x_start, steps=40, step_size=0.3)
    torch.testing.assert_close(last.final_distance, last.distance[-1])
    torch.testing.assert_close(kept.final_distance, kept.distance.min(dim=0).values)


def test_start_points_modes(gen: torch.Generator) -> None:
    n = 12
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 0, 1])
    other = start_points(x, y, "other_image", generator=torch.Generator().manual_seed(0))
    picked = other[:, 0, 0, 0].long()
    assert torch.all(picked != torch.arange(n))
    assert torch.equal(other, x[picked])
    cls = start_points(x, y, "other_class", generator=torch.Generator().manual_seed(0))
    picked = cls[:, 0, 0, 0].long()
    assert torch.all(y[picked] != y)
    noise = start_points(x, y, "noise", generator=torch.Generator().manual_seed(0))
    assert noise.shape == x.shape and float(noise.min()) >= 0 and float(noise.max()) <= 1
    again = start_points(x, y, "other_class", generator=torch.Generator().manual_seed(0))
    assert torch.equal(cls, again)


def test_bad_inputs_raise(gen: torch.Generator) -> None:
    model = identity_rep_model(4)
    x = torch.rand(3, 1, 2, 2, generator=gen)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="differ in shape"):
        construct_dataset(model, x, x[:2], steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="step_size"):
        construct_dataset(model, x, x, steps=1, step_size=0.0)
    with pytest.raises(ValueError, match="steps"):
        construct_dataset(model, x, x, steps=-1, step_size=0.1)
    with pytest.raises(ValueError, match="eps"):
        construct_dataset(model, x, x, steps=1, step_size=0.1, eps=-1.0)
    with pytest.raises(ValueError, match="outside"):
        construct_dataset(model, x, x + 2, steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="other_class"):
        start_points(x, None, "other_class", generator=g)
    with pytest.raises(ValueError, match="two classes"):
        start_points(x, torch.zeros(3, dtype=torch.long), "other_class", generator=g)
    with pytest.raises(ValueError, match="at least 2"):
        start_points(x[:1], None, "other_image", generator=g)
    with pytest.raises(ValueError, match="unknown start mode"):
        start_points(x, None, "mix", generator=g)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(IMAGE_MODELS))
def test_every_built_in_image_model_has_a_representation(name: str, gen: torch.Generator) -> None:
    """Common check over :data:`IMAGE_MODELS`: each network a config can name has a penultimate
    representation ``(N, D)`` (D_R / D_NR are constructed from it, after f is trained), and
    its last linear layer maps that representation to the logits."""
    options = {"depth": 10, "widen": 1} if name == "wide_resnet" else {}
    model = build_image_model(
        name, (1, 8, 8), 10, mean=(0.5,), std=(0.25,), options=options, generator=gen
    ).eval()
    x = torch.rand(3, 1, 8, 8, generator=gen)
    with torch.no_grad():
        rep = representation(model, x)
        assert rep.ndim == 2 and rep.shape[0] == 3
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        torch.testing.assert_close(last(rep), model(x))
