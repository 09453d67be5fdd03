"""Convolutional networks for the ICLR24 image experiments (ICLR24 arXiv:2402.10470, image
experiments).

All models take images ``(N, C, H, W)`` with pixels in ``[0, 1]`` and return logits ``(N, K)``.
Input normalization (the data set's per-channel mean and std) happens *inside* the model, in
a :class:`Normalize` layer, so attacks work in pixel space and can clip to ``[0, 1]``.

- :class:`SmallCNN`: two conv layers and a linear head; trains in seconds on a CPU.
- :class:`ICLRResNet`: the ICLR24 residual CNN for MNIST / Fashion-MNIST (conv 1→16 stride 2,
  16→128, a 128-channel and a 256-channel residual stage of 3×3 convs, global average pooling,
  linear).
- :class:`ImageMLP`: a fully connected network on the flattened pixels (no convolution), the
  non-convolutional architecture of transfer studies.
- :class:`WideResNet`: WideResNet-d-k (Zagoruyko & Komodakis 2016) with dropout; the paper uses
  WRN-28-10 with dropout 0.3 for CIFAR-10.

Your own network: any ``nn.Module`` mapping ``(N, C, H, W)`` pixels in ``[0, 1]`` to logits
``(N, K)`` works as f or g. From Python pass it to
:func:`pertlearn.experiments.pipelines.images.run_images` as ``model_factory`` (a callable
``(in_shape, num_classes, generator) -> nn.Module``); from a config, register its factory by
name with :func:`register_network` (in a plug-in, :mod:`pertlearn.plugins`, every process
knows it) and set ``model.name`` to that name, or set ``model.name = "custom"`` and
``model.options = {factory = "package.module:function", ...}``. Either factory is called as
``function(in_shape=(C, H, W), num_classes=K, **options)`` (and ``generator=`` when it takes
one), with torch's global generator seeded from the run's seed, so its default initialisation
is the same in every run of the config.
Wrap it as ``nn.Sequential(Normalize(mean, std), net)`` if it expects normalized inputs.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

import torch
import torch.nn.functional as F
from torch import nn

from pertlearn.plugins import load_plugins, note_registered, qualified_name
from pertlearn.seeding import seeded_global_generator


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; ``mean`` and ``std`` are buffers (saved, not trained)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean {list(mean)} and std {list(std)} must match and std be > 0")
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(N, C, H, W)`` → same shape."""
        return (x - self.mean) / self.std


def _init_weights(module: nn.Module, generator: torch.Generator | None) -> None:
    """Kaiming-normal conv/linear weights (fan-out for convs), zero biases, BN to (1, 0),
    drawn from ``generator`` so initialisation is reproducible."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            fan = (
                m.weight[0].numel()
                if isinstance(m, nn.Linear)
                else (m.out_channels * m.kernel_size[0] * m.kernel_size[1])
            )
            std = (2.0 / fan) ** 0.5
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * std)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SmallCNN(nn.Module):
    """conv3×3(C→w) · ReLU · maxpool2 · conv3×3(w→2w) · ReLU · maxpool2 · linear(→hidden) ·
    ReLU · linear(→K). ``(N, C, H, W)`` → ``(N, K)``; H and W divisible by 4."""

    def __init__(
        self,
        in_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        *,
        width: int = 16,
        hidden: int = 128,
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        if h % 4 or w % 4:
            raise ValueError(f"SmallCNN needs H and W divisible by 4, got {h}×{w}")
        self.normalize = Normalize(_per_channel(mean, c), _per_channel(std, c))
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * (h // 4) * (w // 4), hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
        _init_weights(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)``."""
        return self.head(self.features(self.normalize(x)))


class ImageMLP(nn.Module):
    """Fully connected network on the flattened pixels: flatten · (linear(→hidden) · ReLU) ×
    ``depth`` · linear(→K). ``(N, C, H, W)`` → ``(N, K)``; no convolution, so no built-in
    translation bias (the contrast to :class:`SmallCNN` in transfer studies)."""

    def __init__(
        self,
        in_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        *,
        hidden: int = 256,
        depth: int = 2,
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if hidden < 1 or depth < 1:
            raise ValueError(f"ImageMLP needs hidden >= 1 and depth >= 1, got {hidden}, {depth}")
        c, h, w = in_shape
        self.normalize = Normalize(_per_channel(mean, c), _per_channel(std, c))
        layers: list[nn.Module] = [nn.Flatten()]
        width = c * h * w
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)
        _init_weights(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)``."""
        return self.net(self.normalize(x))

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the last linear layer, ``(N, hidden)``: the penultimate representation
        the construction of D_R / D_NR matches (:mod:`pertlearn.features.constructed`)."""
        return self.net[:-1](self.normalize(x))


class _ResidualBlock(nn.Module):
    """Two 3×3 conv-BN layers with a ReLU between and an identity (or 1×1 conv) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ICLRResNet(nn.Module):
    """The ICLR24 residual CNN for MNIST / Fashion-MNIST (ICLR24 arXiv:2402.10470, image
    experiments).

    conv3×3 C→16 stride 2 · BN · ReLU → conv3×3 16→128 · BN · ReLU → residual stage of
    ``blocks`` 128-channel blocks → residual stage of ``blocks`` 256-channel blocks (first with
    stride 2) → global average pooling → linear 256→K. ``(N, C, H, W)`` → ``(N, K)``.
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        *,
        blocks: int = 1,
        mean: Sequence[float] = (0.1307,),
        std: Sequence[float] = (0.3081,),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        c = in_shape[0]
        self.normalize = Normalize(_per_channel(mean, c), _per_channel(std, c))
        self.stem = nn.Sequential(
            nn.Conv2d(c, 16, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 128, 3, padding=1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(),
        )
        stage1 = [_ResidualBlock(128, 128) for _ in range(blocks)]
        stage2 = [_ResidualBlock(128, 256, stride=2)]
        stage2 += [_ResidualBlock(256, 256) for _ in range(blocks - 1)]
        self.stages = nn.Sequential(*stage1, *stage2)
        self.linear = nn.Linear(256, num_classes)
        _init_weights(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)``."""
        out = self.stages(self.stem(self.normalize(x)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class _WideBlock(nn.Module):
    """Pre-activation wide basic block: BN · ReLU · conv3×3 · dropout · BN · ReLU · conv3×3."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(self.dropout(out))))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    """WideResNet-``depth``-``widen`` with dropout (ICLR24 arXiv:2402.10470: WRN-28-10, dropout
    0.3, CIFAR-10).

    ``depth = 6n + 4``; three stages of ``n`` blocks with ``16k, 32k, 64k`` channels (strides
    1, 2, 2), BN · ReLU, global average pooling, linear. ``(N, C, H, W)`` → ``(N, K)``.
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int] = (3, 32, 32),
        num_classes: int = 10,
        *,
        depth: int = 28,
        widen: int = 10,
        dropout: float = 0.3,
        mean: Sequence[float] = (0.4914, 0.4822, 0.4465),
        std: Sequence[float] = (0.2470, 0.2435, 0.2616),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4 (e.g. 16, 22, 28), got {depth}")
        n = (depth - 4) // 6
        c = in_shape[0]
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.normalize = Normalize(_per_channel(mean, c), _per_channel(std, c))
        self.conv = nn.Conv2d(c, widths[0], 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_ch = widths[0]
        for stage, out_ch in enumerate(widths[1:]):
            for i in range(n):
                stride = (1 if stage == 0 else 2) if i == 0 else 1
                layers.append(_WideBlock(in_ch, out_ch, stride, dropout))
                in_ch = out_ch
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_ch)
        self.linear = nn.Linear(in_ch, num_classes)
        _init_weights(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)``."""
        out = F.relu(self.bn(self.blocks(self.conv(self.normalize(x)))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def _per_channel(values: Sequence[float], channels: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise ValueError(f"{len(values)} normalization values for {channels} channels")
    return values


IMAGE_MODELS: dict[str, type[nn.Module]] = {
    "small_cnn": SmallCNN,
    "mlp": ImageMLP,
    "iclr_resnet": ICLRResNet,
    "wide_resnet": WideResNet,
}
"""Name → class of the built-in image models (``model.name`` in image configs)."""

CUSTOM = "custom"
"""The ``model.name`` whose factory is imported from ``model.options.factory``."""

NETWORKS: dict[str, Callable[..., nn.Module]] = {}
"""Name → factory of the image networks registered with :func:`register_network` (a user's,
a plug-in's), called as ``factory(in_shape=, num_classes=, **options)``; the built-in ones
are :data:`IMAGE_MODELS`. :func:`image_model_names` and :func:`build_image_model` load the
plug-ins first."""

NetworkFactory = TypeVar("NetworkFactory", bound=Callable[..., nn.Module])


@overload
def register_network(name: str) -> Callable[[NetworkFactory], NetworkFactory]: ...
@overload
def register_network(name: str, factory: NetworkFactory) -> NetworkFactory: ...
def register_network(name: str, factory: Any = None) -> Any:
    """Make the image network ``factory`` available to configs as ``model.name = name``
    (``model.options`` are its keyword arguments); as ``register_network(name, factory)`` or
    as the decorator ``@register_network(name)``.

    The factory is called as ``factory(in_shape=(C, H, W), num_classes=K, **options)``, plus
    ``generator=`` when it takes one, with torch's global generator seeded from the run seed,
    and returns an ``nn.Module`` mapping pixels in ``[0, 1]`` to logits ``(N, K)``. A built-in
    name, ``custom``, or a name another factory holds raises ValueError; the same factory
    registered again (its module reloaded) replaces its earlier self."""
    if factory is None:
        return lambda given: register_network(name, given)
    if not isinstance(name, str) or not name:
        raise ValueError(f"a network name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ValueError(f"network {name!r}: the factory must be callable, got {factory!r}")
    if name in IMAGE_MODELS or name == CUSTOM:
        raise ValueError(
            f"network name {name!r} is a built-in image network; give yours a name of its own"
        )
    existing = NETWORKS.get(name)
    if existing is not None and qualified_name(existing) != qualified_name(factory):
        raise ValueError(
            f"network name {name!r} is taken by {qualified_name(existing)}; give "
            f"{qualified_name(factory)} a name of its own"
        )
    NETWORKS[name] = factory
    note_registered("network", name, getattr(factory, "__module__", None) or "")
    return factory


def image_model_names() -> list[str]:
    """Every ``model.name`` an image config accepts: the built-in networks, ``custom``, then
    the registered ones (plug-ins loaded first), each group in its order."""
    load_plugins()
    return [*IMAGE_MODELS, CUSTOM, *sorted(NETWORKS)]


def unknown_image_model(name: str) -> str:
    """The message for an image network ``name`` that is neither built in nor registered."""
    return (
        f"unknown image model {name!r}; choose one of {', '.join([*IMAGE_MODELS, CUSTOM])} "
        f"(built in) or {', '.join(sorted(NETWORKS)) or 'none'} (registered; your own network "
        "by name: register_network in a module named by a 'pertlearn.plugins' entry point of "
        "your installed package, or custom with options.factory = 'package.module:function')"
    )


PASSED_BY_BUILDER = ("mean", "std", "generator")
"""Keyword arguments :func:`build_image_model` passes itself (not ``model.options``)."""

PASSED_TO_FACTORY = ("in_shape", "num_classes", "generator")
"""Keyword arguments a registered network's factory gets from the builder."""


def image_model_options(name: str) -> list[str] | None:
    """The keyword options (``model.options``) the image network ``name`` takes: a built-in
    one's keyword-only parameters but those :func:`build_image_model` passes itself; a
    registered one's parameters but ``in_shape``, ``num_classes`` and ``generator``; ``None``
    for any (``custom``, or a factory taking ``**options``). ValueError for an unknown name."""
    if name in IMAGE_MODELS:
        parameters = inspect.signature(IMAGE_MODELS[name].__init__).parameters.values()
        return [
            p.name
            for p in parameters
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in PASSED_BY_BUILDER
        ]
    if name == CUSTOM:
        return None
    if name not in image_model_names():
        raise ValueError(unknown_image_model(name))
    try:
        found = list(inspect.signature(NETWORKS[name]).parameters.values())
    except (TypeError, ValueError):  # a callable without a signature
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in found):
        return None
    keywords = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in found if p.kind in keywords and p.name not in PASSED_TO_FACTORY]


def load_factory(spec: str) -> Callable[..., nn.Module]:
    """Import ``"package.module:function"`` (a user's model factory)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"model factory {spec!r} must look like 'package.module:function'")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import model factory {spec!r}: {err}") from None
    if not callable(factory):
        raise ValueError(f"model factory {spec!r} is not callable")
    return factory


def _call_factory(
    factory: Callable[..., nn.Module],
    in_shape: tuple[int, int, int],
    num_classes: int,
    options: dict[str, Any],
    generator: torch.Generator | None,
) -> Any:
    """Call a user's model factory as ``factory(in_shape=, num_classes=, **options)``, with
    ``generator=`` too when it takes one. With a ``generator``, the factory runs with torch's
    global generator seeded with the generator's seed (and restored after; the generator
    itself is not drawn from), so that layers initialised by torch's defaults get the same
    weights in every run of the same config."""
    try:
        takes_generator = "generator" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a callable without a signature (some builtins)
        takes_generator = False
    kwargs: dict[str, Any] = {"in_shape": in_shape, "num_classes": num_classes, **options}
    if takes_generator:
        kwargs["generator"] = generator
    if generator is None:
        return factory(**kwargs)
    with seeded_global_generator(generator.initial_seed()):
        return factory(**kwargs)


def _user_network(
    what: str,
    factory: Callable[..., nn.Module],
    in_shape: tuple[int, int, int],
    num_classes: int,
    options: dict[str, Any],
    generator: torch.Generator | None,
) -> nn.Module:
    """The network a user's ``factory`` (named ``what`` in errors) builds; ValueError unless
    it is an ``nn.Module``."""
    model = _call_factory(factory, in_shape, num_classes, options, generator)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{what} returned {type(model).__name__}, not a Module")
    return model


def build_image_model(
    name: str,
    in_shape: tuple[int, int, int],
    num_classes: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    options: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Instantiate image model ``name`` (``small_cnn``, ``mlp``, ``iclr_resnet``,
    ``wide_resnet``, ``custom`` with ``options["factory"]``, or a name registered with
    :func:`register_network`) for images ``in_shape`` and ``num_classes`` classes;
    ``mean``/``std`` set the input normalization of the built-in ones. ``options`` are extra
    keyword arguments."""
    options = dict(options or {})
    if name == CUSTOM:
        spec = options.pop("factory", None)
        if not isinstance(spec, str):
            raise ValueError(
                "model.name = 'custom' needs model.options.factory = 'module:function'"
            )
        factory = load_factory(spec)
        return _user_network(
            f"model factory {spec!r}", factory, in_shape, num_classes, options, generator
        )
    if name not in IMAGE_MODELS:
        if name not in image_model_names():
            raise ValueError(unknown_image_model(name))
        return _user_network(
            f"network {name!r}", NETWORKS[name], in_shape, num_classes, options, generator
        )
    try:
        return IMAGE_MODELS[name](
            in_shape, num_classes, mean=mean, std=std, generator=generator, **options
        )
    except TypeError as err:
        raise ValueError(f"model {name!r}: {err}") from None
