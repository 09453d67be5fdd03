"""Robust and non-robust datasets by representation matching (Ilyas et al. 2019,
arXiv:1905.02175, Sec. 3.1 and App. C).

For every training image ``x`` (label ``y``) Ilyas et al. build ``x_r`` by minimizing

    ‖g(x_r) − g(x)‖₂   over x_r, starting from another image (or noise),

where ``g`` is the penultimate-layer representation of a model, and keep the label ``y``.
With a *robust* (adversarially trained) model this gives ``D_R``, whose images carry only the
features a robust model uses; with a *standard* model it gives ``D_NR``. The minimization is
normalized gradient descent: each step moves by ``step_size`` along the L2-normalized gradient,
then clips to the data range (App. C: L2 steps, no budget; an optional L2 ball around the start
is offered as ``eps``).

The representation (:func:`representation`) is found by this protocol, first match wins:

1. ``layer="name"``: the *input* of the named submodule (``take="input"``, the name of the
   classifier layer) or its *output* (``take="output"``, the name of the layer before it),
   flattened to ``(N, D)``; captured by a forward hook, the rest of the forward pass is skipped.
2. the model has a ``penultimate(x)`` method: its result, flattened.
3. a built-in CNN: the input of its last linear layer (:data:`CLASSIFIER_LAYERS`).
4. an ``nn.Sequential``: the input of its last child.

Anything else raises ValueError asking for ``layer``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from pertlearn.models.cnn import ICLRResNet, SmallCNN, WideResNet
from pertlearn.tensors import normalize

Take = Literal["input", "output"]
StartMode = Literal["other_image", "other_class", "noise"]

CLASSIFIER_LAYERS: dict[type[nn.Module], str] = {
    SmallCNN: "head.3",
    ICLRResNet: "linear",
    WideResNet: "linear",
}
"""Built-in image model class → name of its final linear layer, whose input (``(N, hidden)``
for :class:`SmallCNN`, the pooled ``(N, 256)`` / ``(N, 64·widen)`` features of the residual
networks) is the penultimate representation."""


class _Captured(Exception):
    """Raised by the capturing hook to stop the forward pass once the representation is in."""


def classifier_layer(model: nn.Module) -> str | None:
    """Name of the layer whose input is ``model``'s penultimate representation, by steps 3–4 of
    the protocol (built-in CNNs and their subclasses, ``nn.Sequential``); ``None`` if neither
    applies."""
    for cls in type(model).__mro__:
        if cls in CLASSIFIER_LAYERS:
            return CLASSIFIER_LAYERS[cls]
    if isinstance(model, nn.Sequential) and len(model) > 0:
        return str(len(model) - 1)
    return None


def _tap(model: nn.Module, x: torch.Tensor, layer: str, take: Take) -> torch.Tensor:
    """Input or output of submodule ``layer`` during ``model(x)``."""
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        raise ValueError(f"{type(model).__name__} has no submodule {layer!r}") from None
    captured: list[torch.Tensor] = []

    def grab(value: Any) -> None:
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"layer {layer!r} {take} is {type(value).__name__}, not a tensor")
        captured.append(value)
        raise _Captured

    if take == "input":
        handle = module.register_forward_pre_hook(lambda _m, args: grab(args[0] if args else None))
    else:
        handle = module.register_forward_hook(lambda _m, _args, out: grab(out))
    try:
        model(x)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"layer {layer!r} was not called in {type(model).__name__}.forward")
    return captured[0]


def representation(
    model: nn.Module,
    x: torch.Tensor,
    *,
    layer: str | None = None,
    take: Take = "input",
) -> torch.Tensor:
    """Penultimate-layer representation ``g(x)`` of ``model`` for inputs ``x`` ``(N, ...)``,
    shape ``(N, D)`` (see the module docstring for how the layer is found). Differentiable with
    respect to ``x``; the model's train/eval mode is left as it is (use eval mode).

    ``layer``/``take``: the submodule whose input (``"input"``) or output (``"output"``) is
    the representation, e.g. ``layer="head.3"`` or ``layer="head.2", take="output"`` for
    :class:`~pertlearn.models.SmallCNN`.
    """
    if take not in ("input", "output"):
        raise ValueError(f"take must be 'input' or 'output', got {take!r}")
    if x.ndim < 2:
        raise ValueError(f"inputs must have shape (N, ...), got {tuple(x.shape)}")
    if layer is None and take != "input":
        raise ValueError("take='output' needs layer='<name of the layer before the classifier>'")
    if layer is None:
        method = getattr(model, "penultimate", None)
        if callable(method) and not isinstance(method, nn.Module):
            out = method(x)
            if not isinstance(out, torch.Tensor):
                raise ValueError(f"{type(model).__name__}.penultimate returned a non-tensor")
            return _flat(out, x.shape[0], "penultimate()")
        layer = classifier_layer(model)
        if layer is None:
            raise ValueError(
                f"cannot locate the penultimate layer of {type(model).__name__}: pass "
                "layer='<name of its classifier layer>' or give it a penultimate(x) method"
            )
    return _flat(_tap(model, x, layer, take), x.shape[0], f"layer {layer!r} {take}")


def _flat(out: torch.Tensor, n: int, what: str) -> torch.Tensor:
    if out.ndim < 1 or out.shape[0] != n:
        raise ValueError(f"{what} has shape {tuple(out.shape)}, expected a batch of {n}")
    return out.reshape(n, -1)


@dataclass(frozen=True)
class Construction:
    """Result of :func:`construct_dataset`.

    ``x``: constructed inputs ``(N, ...)`` (per sample the iterate with the smallest distance,
    or the last one without ``keep_best``); ``distance``: ``‖g(x_r^{(k)}) − g(x)‖₂`` of the
    raw iterates ``k = 0..steps``, shape ``(steps + 1, N)`` (row 0: the start points);
    ``final_distance``: the distance of the returned ``x``, shape ``(N,)``.
    """

    x: torch.Tensor
    distance: torch.Tensor
    final_distance: torch.Tensor

    @property
    def mean_distance(self) -> torch.Tensor:
        """Mean distance over samples per iterate, shape ``(steps + 1,)``."""
        return self.distance.mean(dim=1)


def _check_positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if value == float("inf"):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def construct_dataset(
    model: nn.Module,
    x_target: torch.Tensor,
    x_start: torch.Tensor,
    *,
    steps: int,
    step_size: float,
    eps: float | None = None,
    clip: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int = 256,
    keep_best: bool = True,
    layer: str | None = None,
    take: Take = "input",
) -> Construction:
    """Normalized gradient descent on ``‖g(x_r) − g(x_target)‖₂`` from ``x_start``
    (arXiv:1905.02175, Sec. 3.1, the minimization defining D̂_R / D̂_NR; App. C). The
    constructed inputs are the result's ``x``: pair them with the labels of ``x_target`` to get
    D̂_R (robust ``model``) or D̂_NR (standard ``model``).

    ``x_target``, ``x_start``: ``(N, C, H, W)`` (any ``(N, ...)`` the model accepts) on the
    model's device. Each of ``steps`` updates is
    ``x_r ← clip(P_eps(x_r − step_size · ∇/‖∇‖₂))`` with ``∇`` the input gradient of the
    squared distance (same direction as the distance's), ``P_eps`` the projection onto the L2
    ball of radius ``eps`` around ``x_start`` (none when ``eps is None``, as in the paper) and
    ``clip`` the data range (``None``: no clipping). Runs in eval mode (restored afterwards),
    ``batch_size`` samples at a time; the model's parameters get no gradients. Deterministic:
    the randomness of a construction is in its start points (:func:`start_points`).
    """
    if x_target.shape != x_start.shape:
        raise ValueError(
            f"x_target {tuple(x_target.shape)} and x_start {tuple(x_start.shape)} differ in shape"
        )
    if x_target.ndim < 2 or not x_target.is_floating_point():
        raise ValueError(f"inputs must be float tensors (N, ...), got {tuple(x_target.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    step_size = _check_positive(step_size, "step_size")
    radius = None if eps is None else _check_positive(eps, "eps")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    bounds: tuple[float, float] | None = None
    if clip is not None:
        bounds = (float(clip[0]), float(clip[1]))
        if not bounds[0] < bounds[1]:
            raise ValueError(f"clip must be (low, high) with low < high, got {clip!r}")
        if x_start.numel() and (x_start.min() < bounds[0] or x_start.max() > bounds[1]):
            raise ValueError(f"x_start lies outside the data range clip={clip!r}")

    def rep(x: torch.Tensor) -> torch.Tensor:
        return representation(model, x, layer=layer, take=take)

    was_training = model.training
    model.eval()
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    try:
        for xt, x0 in zip(x_target.split(batch_size), x_start.split(batch_size), strict=True):
            with torch.no_grad():
                goal = rep(xt.detach())
            parts.append(
                _descend(rep, goal, x0.detach(), steps, step_size, radius, bounds, keep_best)
            )
    finally:
        model.train(was_training)
    if not parts:
        empty = x_start.new_zeros((steps + 1, 0))
        return Construction(x_start.clone(), empty, x_start.new_zeros((0,)))
    xs, traces, finals = zip(*parts, strict=True)
    return Construction(torch.cat(xs), torch.cat(traces, dim=1), torch.cat(finals))


def _descend(
    rep: Callable[[torch.Tensor], torch.Tensor],
    goal: torch.Tensor,
    x0: torch.Tensor,
    steps: int,
    step_size: float,
    radius: float | None,
    bounds: tuple[float, float] | None,
    keep_best: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch of :func:`construct_dataset`: returns the kept iterates ``(B, ...)``, the
    distance trace ``(steps + 1, B)`` and the kept iterates' distances ``(B,)``."""
    x_r = x0.clone()
    best = x0.clone()
    best_d = x0.new_full((x0.shape[0],), float("inf"))
    trace: list[torch.Tensor] = []
    view = (-1, *([1] * (x0.ndim - 1)))

    def keep(candidate: torch.Tensor, dist: torch.Tensor) -> None:
        better = dist < best_d if keep_best else torch.ones_like(dist, dtype=torch.bool)
        best_d.copy_(torch.where(better, dist, best_d))
        best.copy_(torch.where(better.view(view), candidate, best))

    for _ in range(steps):
        x_r.requires_grad_(True)
        with torch.enable_grad():
            sq = (rep(x_r) - goal).pow(2).sum(dim=1)
            (grad,) = torch.autograd.grad(sq.sum(), x_r)
        dist = sq.detach().sqrt()
        trace.append(dist)
        x_r = x_r.detach()
        keep(x_r, dist)
        x_r = x_r - step_size * normalize(grad, 2.0)
        if radius is not None:
            delta = (x_r - x0).flatten(1).renorm(p=2, dim=0, maxnorm=radius)
            x_r = x0 + delta.view_as(x_r)
        if bounds is not None:
            x_r = x_r.clamp(bounds[0], bounds[1])
    with torch.no_grad():
        dist = (rep(x_r) - goal).pow(2).sum(dim=1).sqrt()
    trace.append(dist)
    keep(x_r, dist)
    return best, torch.stack(trace), best_d


def start_points(
    x: torch.Tensor,
    y: torch.Tensor | None,
    mode: StartMode = "other_image",
    *,
    generator: torch.Generator,
) -> torch.Tensor:
    """Start points ``(N, ...)`` for :func:`construct_dataset` (arXiv:1905.02175, App. C:
    another training image, or noise).

    ``mode``: ``"other_image"``: for each ``i`` the image ``x[j]``, ``j`` uniform among the
    other ``N − 1`` indices; ``"other_class"``: ``j`` uniform among the images whose label in
    ``y`` (``(N,)``) differs from ``y[i]``; ``"noise"``: i.i.d. U[0, 1] pixels. All draws come
    from ``generator`` (on its own device; the result is on ``x``'s device).
    """
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, ...), got {tuple(x.shape)}")
    n = x.shape[0]
    if y is not None and (y.ndim != 1 or y.shape[0] != n):
        raise ValueError(f"y must have shape ({n},), got {tuple(y.shape)}")
    gen_device = generator.device
    if mode == "noise":
        noise = torch.rand(x.shape, generator=generator, device=gen_device, dtype=x.dtype)
        return noise.to(x.device)
    if mode == "other_image":
        if n < 2:
            raise ValueError(f"mode 'other_image' needs at least 2 images, got {n}")
        shift = torch.randint(1, n, (n,), generator=generator, device=gen_device).cpu()
        index = (torch.arange(n) + shift) % n
        return x[index.to(x.device)].clone()
    if mode == "other_class":
        if y is None:
            raise ValueError("mode 'other_class' needs the labels y")
        labels = y.cpu()
        index = torch.empty(n, dtype=torch.long)
        for c in torch.unique(labels).tolist():
            mine = torch.nonzero(labels == c).flatten()
            pool = torch.nonzero(labels != c).flatten()
            if pool.numel() == 0:
                raise ValueError("mode 'other_class' needs at least two classes in y")
            pick = torch.randint(
                0, pool.numel(), (mine.numel(),), generator=generator, device=gen_device
            )
            index[mine] = pool[pick.cpu()]
        return x[index.to(x.device)].clone()
    raise ValueError(f"unknown start mode {mode!r}; choose other_image, other_class or noise")
