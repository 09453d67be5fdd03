"""The image MLP (``model.name = "mlp"``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pertlearn.models.cnn import ImageMLP, build_image_model


def test_mlp_maps_images_to_logits_without_convolutions() -> None:
    model = build_image_model(
        "mlp",
        (3, 32, 32),
        10,
        mean=(0.5,),
        std=(0.25,),
        options={"hidden": 32, "depth": 3},
        generator=torch.Generator().manual_seed(0),
    )
    assert isinstance(model, ImageMLP)
    assert model(torch.rand(5, 3, 32, 32)).shape == (5, 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [m.in_features for m in linears] == [3072, 32, 32, 32]
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules())


def test_mlp_init_follows_the_generator() -> None:
    def make(seed: int) -> nn.Module:
        return ImageMLP(generator=torch.Generator().manual_seed(seed))

    a, b, c = make(1), make(1), make(2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.net[1].weight, c.net[1].weight)


def test_mlp_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="depth"):
        ImageMLP(depth=0)
