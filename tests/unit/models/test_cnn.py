"""Image models: output shapes, normalization inside the model, reproducible initialisation,
WRN-28-10's parameter count, and user factories."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from pertlearn.models.cnn import (
    IMAGE_MODELS,
    ICLRResNet,
    Normalize,
    SmallCNN,
    WideResNet,
    build_image_model,
    image_model_names,
    image_model_options,
    register_network,
)


def test_normalize_matches_manual_formula() -> None:
    x = torch.rand(4, 3, 5, 5)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    expected = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    torch.testing.assert_close(Normalize(mean, std)(x), expected)


@pytest.mark.parametrize(
    ("cls", "shape"),
    [(SmallCNN, (1, 28, 28)), (ICLRResNet, (1, 28, 28)), (SmallCNN, (3, 32, 32))],
)
def test_logit_shapes(cls: type[nn.Module], shape: tuple[int, int, int]) -> None:
    model = cls(shape, 7, mean=(0.5,), std=(0.25,))
    assert model(torch.rand(3, *shape)).shape == (3, 7)


def test_normalization_is_inside_the_model() -> None:
    """A model with (mean, std) on x equals the same weights with (0, 1) on (x - mean)/std."""
    gen = torch.Generator().manual_seed(0)
    a = SmallCNN((1, 28, 28), 10, mean=(0.13,), std=(0.31,), generator=gen)
    b = SmallCNN((1, 28, 28), 10)
    b.load_state_dict(
        {k: v for k, v in a.state_dict().items() if "normalize" not in k}, strict=False
    )
    x = torch.rand(5, 1, 28, 28)
    torch.testing.assert_close(a(x), b((x - 0.13) / 0.31))
    assert not any("normalize" in name for name, _ in a.named_parameters())


def test_seeded_initialisation_is_reproducible() -> None:
    def make(seed: int) -> nn.Module:
        return ICLRResNet(generator=torch.Generator().manual_seed(seed))

    same = [
        torch.equal(p, q) for p, q in zip(make(1).parameters(), make(1).parameters(), strict=True)
    ]
    assert all(same)
    assert not torch.equal(make(1).linear.weight, make(2).linear.weight)


def test_wide_resnet_28_10_has_the_published_size() -> None:
    model = WideResNet((3, 32, 32), 10, depth=28, widen=10, dropout=0.3)
    assert sum(p.numel() for p in model.parameters()) == 36_479_194  # 36.5M (Zagoruyko 2016)
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.3 for m in model.modules()) == 12


def test_wide_resnet_small_forward_and_bad_depth() -> None:
    model = WideResNet(depth=10, widen=1, dropout=0.0)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WideResNet(depth=27)


def factory(in_shape: tuple[int, int, int], num_classes: int, hidden: int = 8) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_shape[0] * in_shape[1] * in_shape[2], hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def test_build_builtin_and_custom_models(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    module = types.ModuleType("user_models")
    module.factory = factory  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "user_models", module)
    model = build_image_model(
        "small_cnn", (1, 28, 28), 10, mean=(0.1,), std=(0.3,), options={"width": 4}
    )
    assert isinstance(model, SmallCNN) and model.features[0].out_channels == 4
    custom = build_image_model(
        "custom",
        (1, 28, 28),
        3,
        mean=(0,),
        std=(1,),
        options={"factory": "user_models:factory", "hidden": 5},
    )
    assert custom(torch.rand(2, 1, 28, 28)).shape == (2, 3)
    with pytest.raises(ValueError, match="unknown image model"):
        build_image_model("resnet9000", (1, 28, 28), 10, mean=(0,), std=(1,))
    with pytest.raises(ValueError, match=r"needs model\.options\.factory"):
        build_image_model("custom", (1, 28, 28), 10, mean=(0,), std=(1,))
    with pytest.raises(ValueError, match=r"small_cnn.*unexpected keyword"):
        build_image_model("small_cnn", (1, 28, 28), 10, mean=(0,), std=(1,), options={"x": 1})


def test_image_model_options_are_what_each_network_takes_from_the_config() -> None:
    assert image_model_options("small_cnn") == ["width", "hidden"]
    assert image_model_options("mlp") == ["hidden", "depth"]
    assert image_model_options("wide_resnet") == ["depth", "widen", "dropout"]
    for name in IMAGE_MODELS:  # each listed option is accepted by the builder
        options = {"iclr_resnet": {"blocks": 1}, "wide_resnet": {"depth": 10, "widen": 1}}.get(
            name, {}
        )
        assert set(options) <= set(image_model_options(name))
        shape = (3, 32, 32) if name == "wide_resnet" else (1, 28, 28)
        build_image_model(name, shape, 10, mean=(0.0,), std=(1.0,), options=options)


def factory_taking_a_generator(
    in_shape: tuple[int, int, int], num_classes: int, generator: torch.Generator | None = None
) -> nn.Module:
    """A user factory that initialises its layer from the generator it is given."""
    layer = nn.Linear(in_shape[0] * in_shape[1] * in_shape[2], num_classes)
    with torch.no_grad():
        layer.weight.normal_(generator=generator)
    return nn.Sequential(nn.Flatten(), layer)


def test_a_custom_network_from_a_config_is_initialised_from_the_run_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``model.name = "custom"``: the factory runs with torch's global generator seeded from
    the stage generator, so default initialisation is the same in every run of the config
    (and differs between seeds), whatever the process drew before; the caller's global
    random state is left as it was; a factory taking ``generator`` receives it."""
    import types

    module = types.ModuleType("user_models")
    module.factory = factory  # type: ignore[attr-defined]
    module.with_generator = factory_taking_a_generator  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "user_models", module)

    def build(seed: int, spec: str = "user_models:factory") -> nn.Module:
        return build_image_model(
            "custom",
            (1, 4, 4),
            3,
            mean=(0,),
            std=(1,),
            options={"factory": spec},
            generator=torch.Generator().manual_seed(seed),
        )

    def weights(model: nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in model.parameters()]

    state = torch.random.get_rng_state()
    first = weights(build(1))
    torch.rand(7)  # the process draws something in between
    again = weights(build(1))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], weights(build(2))[0])
    torch.random.set_rng_state(state)
    build(1)
    assert torch.equal(torch.random.get_rng_state(), state)
    given = weights(build(3, "user_models:with_generator"))[0]
    expected = torch.empty(3, 16).normal_(generator=torch.Generator().manual_seed(3))
    assert torch.equal(given, expected)


def test_a_model_factory_from_python_is_initialised_from_the_run_seed() -> None:
    """``run_images(model_factory=...)``: a factory relying on torch's default initialisation
    builds the same network for the same run seed and stage, whatever the process drew
    before (:func:`~pertlearn.experiments.pipelines.images_stages.new_model`)."""
    import types

    from pertlearn.experiments.pipelines.images_stages import new_model

    def run(seed: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(
            seed=seed,
            model_factory=lambda shape, k, generator: factory(shape, k),
            in_shape=(1, 4, 4),
            num_classes=3,
            info=types.SimpleNamespace(mean=(0.5,), std=(0.25,)),  # unused by a factory
            device=torch.device("cpu"),
            dtype=torch.float32,
        )

    first = new_model(run(0), "f", None)  # type: ignore[arg-type]
    torch.rand(5)
    again = new_model(run(0), "f", None)  # type: ignore[arg-type]
    other = new_model(run(1), "f", None)  # type: ignore[arg-type]
    pairs = zip(first.parameters(), again.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not torch.equal(next(first.parameters()), next(other.parameters()))


@pytest.mark.parametrize(
    ("network", "message"),
    [
        (nn.Sequential(nn.Flatten(), nn.Linear(16, 5)), r"Sequential returns \(1, 5\)"),
        (
            nn.Sequential(nn.Flatten(), nn.Linear(16, 1), nn.Flatten(0)),
            r"Sequential returns \(1,\)",
        ),
        (nn.Linear(16, 3), r"Linear fails on one image: mat1 and mat2"),
    ],
)
def test_a_network_breaking_the_logits_contract_is_refused_before_training(
    network: nn.Module, message: str
) -> None:
    """A user network with the wrong number of classes, binary scores or a flat input is
    refused when it is built, naming the contract (images ``(N, C, H, W)`` → logits
    ``(N, K)``), instead of failing inside training with a bare torch error."""
    import types

    from pertlearn.experiments.pipelines.images_stages import new_model

    run = types.SimpleNamespace(
        seed=0,
        model_factory=lambda shape, k, generator: network,
        in_shape=(1, 4, 4),
        num_classes=3,
        info=types.SimpleNamespace(mean=(0.5,), std=(0.25,)),  # unused by a factory
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    contract = r"maps images \(N, 1, 4, 4\) in \[0, 1\] to logits \(N, 3\); "
    with pytest.raises(ValueError, match=contract + message):
        new_model(run, "f", None)  # type: ignore[arg-type]


@pytest.fixture
def networks() -> Iterator[dict[str, Any]]:
    """The registry of named networks, restored after the test."""
    from pertlearn.models.cnn import NETWORKS

    before = dict(NETWORKS)
    yield NETWORKS
    NETWORKS.clear()
    NETWORKS.update(before)


def test_a_registered_network_is_built_by_name(networks: dict[str, Any]) -> None:
    """``register_network``, as a call and as a decorator: the name builds the factory's
    network with the options, seeded like ``custom``; its options are the factory's keyword
    parameters (any for ``**options``); built-in names, ``custom`` and a name another factory
    holds are refused, the same factory registered again is not."""

    @register_network("test_linear")
    def linear(in_shape: tuple[int, int, int], num_classes: int, *, hidden: int = 3) -> nn.Module:
        return factory(in_shape, num_classes, hidden=hidden)

    assert register_network("test_any", lambda **options: linear(**options)) is not None
    assert "test_linear" in image_model_names() and "test_linear" not in IMAGE_MODELS
    assert image_model_options("test_linear") == ["hidden"]
    assert image_model_options("test_any") is None and image_model_options("custom") is None

    def build(seed: int) -> nn.Module:
        return build_image_model(
            "test_linear",
            (1, 4, 4),
            3,
            mean=(0,),
            std=(1,),
            options={"hidden": 5},
            generator=torch.Generator().manual_seed(seed),
        )

    first, again = build(1), build(1)
    assert first(torch.rand(2, 1, 4, 4)).shape == (2, 3)
    pairs = zip(first.parameters(), again.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not torch.equal(next(first.parameters()), next(build(2).parameters()))
    assert register_network("test_linear", linear) is linear  # the same factory again
    with pytest.raises(ValueError, match=r"'test_linear' is taken by .*linear; give .*factory"):
        register_network("test_linear", factory)
    for taken in ("small_cnn", "custom"):
        with pytest.raises(ValueError, match=f"network name '{taken}' is a built-in"):
            register_network(taken, factory)
    with pytest.raises(ValueError, match=r"unknown image model 'test_nope'.*test_any, test_linear"):
        build_image_model("test_nope", (1, 4, 4), 3, mean=(0,), std=(1,))
    networks["test_list"] = lambda **options: [1]  # not a Module
    with pytest.raises(ValueError, match="network 'test_list' returned list, not a Module"):
        build_image_model("test_list", (1, 4, 4), 3, mean=(0,), std=(1,))
