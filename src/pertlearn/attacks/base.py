"""The small interface every attack implements, and the registry configs name attacks by.

An attack is *targeted* by default: given a model, clean inputs ``x`` (shape ``(N, ...)``) and
target labels (``(N,)``: ±1 for binary models whose output is ``(N,)``, ``0..K-1`` for models
with logits ``(N, K)``), :meth:`Attack.perturb` returns adversarial inputs of the same shape as
``x`` that push the model towards the targets. With ``targeted=False`` the labels passed are the
true ones and the attack pushes the model *away* from them: it maximizes their loss (Madry et al.
2018, arXiv:1706.06083, eq. 2.1) instead of minimizing it. Calling an attack checks the labels
against the model's output shape (:func:`check_targets`) the same way for every attack, and
what ``perturb`` returns against ``x`` (:func:`check_adversarial_inputs`: shape, dtype, device,
finite values), so a user attack that breaks the contract fails naming itself. The model's
parameters are never changed and receive no gradients. To add an attack, subclass
:class:`Attack`, implement ``perturb`` and decorate the class with :func:`register_attack`; in
a module named by a ``pertlearn.plugins`` entry point of your package (:mod:`pertlearn.plugins`)
every process sees it.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar

import torch
from torch import Generator, Tensor, nn

from pertlearn.plugins import load_plugins, note_registered, qualified_name
from pertlearn.training.losses import ATTACK_LOSSES, per_sample_loss, predict


def check_target_shape(target: Any, n: int, name: str) -> None:
    """Raise ValueError unless ``target`` is a tensor of shape ``(n,)``: one label per input."""
    if not isinstance(target, Tensor):
        raise ValueError(
            f"{name}: targets must be a tensor of shape (N,), got {type(target).__name__}; "
            "wrap them with torch.as_tensor"
        )
    if target.ndim != 1:
        raise ValueError(
            f"{name}: targets must have shape (N,), one label per input, got "
            f"{tuple(target.shape)}; pass class indices (or ±1), not one-hot rows"
        )
    if target.shape[0] != n:
        raise ValueError(f"{name}: {n} inputs but {target.shape[0]} targets")


def check_adversarial_inputs(x_adv: Any, x: Tensor, name: str) -> None:
    """Raise ValueError naming the attack ``name`` unless ``x_adv``, what its ``perturb``
    returned for the inputs ``x`` ``(N, ...)``, is a tensor of the same shape, dtype and
    device as ``x`` (one adversarial input per clean input, ready to replace it) with finite
    values."""
    where = f"{name}: perturb must return adversarial inputs like x"
    if not isinstance(x_adv, Tensor):
        raise ValueError(
            f"{where} (a tensor of shape {tuple(x.shape)}), got {type(x_adv).__name__}"
        )
    if x_adv.shape != x.shape:
        raise ValueError(
            f"{where}: shape {tuple(x.shape)}, got {tuple(x_adv.shape)} "
            "(return one input per row of x, not flattened or cut)"
        )
    if x_adv.dtype != x.dtype:
        raise ValueError(
            f"{where}: dtype {x.dtype}, got {x_adv.dtype} (cast back with .to(x.dtype))"
        )
    if x_adv.device != x.device:
        raise ValueError(
            f"{where}: device {x.device}, got {x_adv.device} (create tensors on x.device)"
        )
    if x_adv.is_floating_point() and not bool(torch.isfinite(x_adv).all()):
        raise ValueError(f"{name}: perturb returned NaN or infinite adversarial inputs")


def check_targets(outputs: Tensor, target: Any, name: str) -> None:
    """Raise ValueError unless ``target`` holds one label per row of ``outputs`` that the model
    can output: ±1 for binary scores ``(N,)``, integers in ``0..K-1`` for logits ``(N, K)``."""
    check_target_shape(target, outputs.shape[0], name)
    check_target_values(outputs, target, name)


def check_target_values(outputs: Tensor, target: Tensor, name: str) -> None:
    """Raise ValueError unless every label in ``target`` (``(N,)``) is one the model can output;
    only the shape of ``outputs`` past the batch dimension is used (the outputs of one sample
    suffice): ±1 for binary scores ``(N,)``, integers in ``0..K-1`` for logits ``(N, K)``."""
    values = target.detach().to(torch.float64)
    if outputs.ndim == 1:
        bad = (values != 1) & (values != -1)
        if bool(bad.any()):
            raise ValueError(
                f"{name}: the model outputs binary scores (N,), so targets must be -1 or +1; "
                f"got {values[bad][0].item():g} (map 0/1 labels with 2 * y - 1)"
            )
        return
    if outputs.ndim != 2:
        raise ValueError(
            f"{name}: the model must output scores (N,) or logits (N, K), "
            f"got shape {tuple(outputs.shape)}"
        )
    if outputs.shape[1] == 1:
        raise ValueError(
            f"{name}: the model outputs (N, 1); a binary model must output scores (N,) with "
            "targets -1 or +1 (end it with nn.Flatten(0)), a classifier logits (N, K >= 2)"
        )
    classes = outputs.shape[1]
    bad = (values < 0) | (values >= classes) | (values != values.round())
    if bool(bad.any()):
        raise ValueError(
            f"{name}: the model has {classes} classes, so targets must be integers in "
            f"0..{classes - 1}; got {values[bad][0].item():g} (pass class indices)"
        )


def draw(
    kind: Literal["uniform", "normal"],
    shape: tuple[int, ...],
    generator: Generator | None,
    like: Tensor,
) -> Tensor:
    """Random numbers of ``shape`` (``U[0, 1)`` or ``N(0, 1)``) drawn from ``generator`` on its
    own device, returned with the dtype and device of ``like``."""
    device = generator.device if generator is not None else torch.device("cpu")
    sample = torch.rand if kind == "uniform" else torch.randn
    return sample(shape, generator=generator, dtype=like.dtype, device=device).to(like.device)


class Attack(ABC):
    """Base class of attacks.

    Args:
        eps: perturbation budget (its norm depends on the attack), ``eps >= 0``.
        loss: margin loss used for binary models (``identity``, ``logistic``, ``exponential``);
            models with logits use cross-entropy, except with ``logit_margin``, the margin of
            the label's logit over the best other (Carlini & Wagner, arXiv:1608.04644 §V-A).
        targeted: ``True`` (default): move towards the labels passed (minimize their loss).
            ``False``: the labels passed are the true ones; move away from them (maximize their
            loss, Madry et al. 2018, arXiv:1706.06083 eq. 2.1).
    """

    name: ClassVar[str] = "attack"
    step_callback: Callable[[], None] | None = None
    """Called after every update step of an iterative attack (progress bars); set by the
    caller around a call, ``None`` (the default) for none."""

    def __init__(self, eps: float, *, loss: str = "logistic", targeted: bool = True) -> None:
        """An attack of budget ``eps``; the keyword arguments are its options
        (``attack.options`` in a config).

        Args:
            eps: budget, ``>= 0`` (its meaning depends on the attack).
            loss: per-sample loss the attack descends: a margin loss (``identity``,
                ``logistic``, ``exponential``) for binary models, cross-entropy for logits, or
                ``logit_margin`` (Carlini & Wagner, arXiv:1608.04644 §V-A) for logits.
            targeted: ``False``: the labels passed are the true ones and the attack ascends
                their loss (Madry et al., arXiv:1706.06083 eq. 2.1).
        """
        if not eps >= 0:  # also rejects NaN
            raise ValueError(f"{self.name}: eps must be non-negative, got {eps}")
        if loss not in ATTACK_LOSSES:
            raise ValueError(
                f"{self.name}: unknown loss {loss!r}; choose one of {', '.join(ATTACK_LOSSES)} "
                "(models with logits use cross-entropy unless it is logit_margin)"
            )
        if not isinstance(targeted, bool):
            raise ValueError(f"{self.name}: targeted must be true or false, got {targeted!r}")
        self.eps = float(eps)
        self.loss = loss
        self.targeted = targeted

    def objective(self, outputs: Tensor, target: Tensor) -> Tensor:
        """Per-sample objective the attack *minimizes*, shape ``(N,)``, from the model outputs
        (``(N,)`` or ``(N, K)``): the loss ``ℓ`` of the label when targeted, ``-ℓ`` when not."""
        loss = per_sample_loss(outputs, target, self.loss)
        return loss if self.targeted else -loss

    def target_loss(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        """Per-sample objective at ``x``, shape ``(N,)``: the loss of the target label (lower
        means closer to the target), or its negative for an untargeted attack."""
        return self.objective(model(x), target)

    def loss_and_grad(self, model: nn.Module, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Objective ``(N,)`` (:meth:`target_loss`) and its gradient with respect to the input
        (shape of ``x``). Samples are independent, so the gradient of the sum is per-sample."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = self.target_loss(model, x, target)
            (grad,) = torch.autograd.grad(loss.sum(), x)
        return loss.detach(), grad

    def success(self, hits: Tensor) -> Tensor:
        """Which samples the attack has achieved, ``(N,)`` bool, from :func:`target_hits`:
        the hits themselves when targeted, the misses (misclassified) when untargeted."""
        return hits if self.targeted else ~hits

    @abstractmethod
    def perturb(
        self, model: nn.Module, x: Tensor, target: Tensor, *, generator: Generator | None = None
    ) -> Tensor:
        """Adversarial inputs: the shape, dtype and device of ``x`` (checked on every call by
        :func:`check_adversarial_inputs`)."""

    def validate_targets(self, model: nn.Module, x: Tensor, target: Any) -> None:
        """The check every call runs: ``x`` is a floating-point tensor ``(N, ...)`` (gradients
        need one) and ``target`` has one label per input, of the kind the model outputs
        (:func:`check_targets`; one sample is run through the model for its output shape)."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"{self.name}: inputs x must be a floating-point tensor (N, ...), got {got}; "
                "convert them, e.g. x.float() / 255 for 8-bit images"
            )
        check_target_shape(target, x.shape[0], self.name)
        if x.shape[0] == 0:
            return
        with torch.no_grad():
            outputs = model(x[:1])
        check_target_values(outputs, target, self.name)

    def __call__(
        self, model: nn.Module, x: Tensor, target: Tensor, *, generator: Generator | None = None
    ) -> Tensor:
        was_training = model.training
        model.eval()
        try:
            self.validate_targets(model, x, target)
            x_adv = self.perturb(model, x, target, generator=generator)
            check_adversarial_inputs(x_adv, x, self.name)
            return x_adv.detach()
        finally:
            model.train(was_training)

    def __repr__(self) -> str:
        extra = "" if self.targeted else ", targeted=False"
        return f"{type(self).__name__}(eps={self.eps:g}, loss={self.loss!r}{extra})"


def target_hits(model: nn.Module, x_adv: Tensor, target: Tensor) -> Tensor:
    """Which adversarial inputs ``x_adv`` (``(N, ...)``) the model assigns to their target
    label (``(N,)``: ±1 or class indices), as a bool tensor ``(N,)`` on the model's device."""
    with torch.no_grad():
        predicted = predict(model(x_adv))
    return predicted == target.to(device=predicted.device, dtype=predicted.dtype)


def fooling_rate(model: nn.Module, x_adv: Tensor, target: Tensor) -> float:
    """Share of adversarial inputs that ``model`` assigns to their target label (the mean of
    :func:`target_hits`)."""
    return target_hits(model, x_adv, target).double().mean().item()


def per_class_hit_rates(hits: Tensor, target: Tensor, num_classes: int) -> dict[str, float | None]:
    """Mean of the bool ``hits`` (``(N,)``) per target class ``k`` in ``0..num_classes-1``,
    keyed by ``str(k)``; ``None`` for a class no sample targets (JSON ``null``)."""
    if hits.shape != target.shape or hits.ndim != 1:
        raise ValueError(
            f"per_class_hit_rates: hits {tuple(hits.shape)} and targets {tuple(target.shape)} "
            "must both have shape (N,)"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"per_class_hit_rates: num_classes must be an integer >= 1, got {num_classes!r}"
        )
    rates: dict[str, float | None] = {}
    target = target.to(hits.device)
    for k in range(num_classes):
        mask = target == k
        rates[str(k)] = hits[mask].double().mean().item() if bool(mask.any()) else None
    return rates


ATTACKS: dict[str, type[Attack]] = {}
"""Name → attack class, as named in configs (``attack.name``): the attacks registered so far.
Look names up with :func:`attack_class` / :func:`attack_names`, which load the plug-ins
first (:func:`pertlearn.plugins.load_plugins`)."""

A = TypeVar("A", bound=type[Attack])


def register_attack(cls: A) -> A:
    """Class decorator adding an attack to :data:`ATTACKS` under ``cls.name``.

    A name already registered by another class raises ValueError (registering a user attack
    as ``pgd_l2``, or a subclass that forgot its own ``name`` and inherits its parent's, would
    otherwise replace that attack everywhere it is named); the same class registered again,
    as when its module is reloaded, replaces its earlier self."""
    existing = ATTACKS.get(cls.name)
    if existing is not None and qualified_name(existing) != qualified_name(cls):
        raise ValueError(
            f"attack name {cls.name!r} is taken by {qualified_name(existing)}; give "
            f"{cls.__name__} a name of its own (class attribute name = '...')"
        )
    ATTACKS[cls.name] = cls
    note_registered("attack", cls.name, cls.__module__)
    return cls


def attack_names() -> list[str]:
    """The names of the registered attacks, built-in and from plug-ins, sorted."""
    load_plugins()
    return sorted(ATTACKS)


def attack_class(name: str) -> type[Attack]:
    """The registered attack class ``name`` (plug-ins loaded first); ValueError naming the
    registered ones otherwise."""
    load_plugins()
    if name not in ATTACKS:
        raise ValueError(unknown_attack(name))
    return ATTACKS[name]


def attack_options(name: str) -> list[str] | None:
    """The keyword options the registered attack ``name`` takes beyond ε (the parameters of its
    ``__init__`` after ``eps``), or ``None`` when it takes any (``**options``)."""
    parameters = list(inspect.signature(attack_class(name).__init__).parameters.values())[2:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters]


def unknown_attack(name: str) -> str:
    """The message for an attack ``name`` that is not registered: the registered names, and
    how a user attack becomes known (a plug-in, in every process; or an import, in one)."""
    return (
        f"unknown attack {name!r}; choose one of {', '.join(attack_names())} (your own attack: "
        "register it in a module named by a 'pertlearn.plugins' entry point of your installed "
        "package, seen by the pertlearn command and every sweep worker, or import the module "
        "registering it before the config is loaded, seen in that Python process only)"
    )


def make_attack(name: str, eps: float, **options: Any) -> Attack:
    """Instantiate the registered attack ``name``; unknown names and options raise ValueError."""
    cls = attack_class(name)
    try:
        return cls(eps, **options)
    except TypeError as err:
        raise ValueError(f"attack {name!r}: {err}") from None
