import pytest
import torch

from pertlearn.data import balanced_signs, gauss, random_signs, shifted_gauss, uniform


@pytest.mark.parametrize("make", [gauss, uniform, shifted_gauss])
def test_shapes_labels_and_reproducibility(make, gen):
    x, y = make(257, 13, gen)
    assert x.shape == (257, 13) and y.shape == (257,)
    assert set(y.unique().tolist()) <= {-1.0, 1.0}
    x2, y2 = make(257, 13, torch.Generator().manual_seed(1234))
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_gauss_moments(gen):
    x, y = gauss(20000, 5, gen)
    assert x.mean(0).abs().max() < 0.05
    assert (x.var(0) - 1).abs().max() < 0.05
    assert abs(y.mean().item()) < 0.05


def test_shifted_gauss_class_means(gen):
    x, y = shifted_gauss(20000, 4, gen, shift=0.3)
    assert (y == 1).sum() == (y == -1).sum() == 10000
    assert torch.allclose(x[y == 1].mean(0), torch.full((4,), 0.3), atol=0.05)
    assert torch.allclose(x[y == -1].mean(0), torch.full((4,), -0.3), atol=0.05)


def test_uniform_range_and_moments(gen):
    x, _ = uniform(20000, 3, gen)
    assert x.min() >= -1 and x.max() <= 1
    assert (x.var(0) - 1 / 3).abs().max() < 0.02


def test_balanced_and_random_signs(gen):
    b = balanced_signs(101, gen)
    assert (b == -1).sum() == 50 and (b == 1).sum() == 51
    r = random_signs(10000, gen)
    assert set(r.unique().tolist()) == {-1.0, 1.0}
    assert abs(r.mean().item()) < 0.05


def test_float64(gen):
    x, y = gauss(3, 2, gen, dtype=torch.float64)
    assert x.dtype == y.dtype == torch.float64


@pytest.mark.parametrize("n,dim", [(0, 3), (3, 0)])
def test_bad_sizes(n, dim, gen):
    with pytest.raises(ValueError, match="at least 1"):
        gauss(n, dim, gen)
