"""The ICLR24 artificial experiment (Kumano et al., arXiv:2402.10470, artificial-data
experiments): learning from
perturbed noise. Read top to bottom:

1. ``N`` natural samples ``x_n`` from ``uniform`` (U([-1, 1]^d)) or ``gauss`` (N(0, I_d)) with
   uniformly random labels ``y_n``; f (``OneHiddenNet``, γ = 0.01) trained on them with the
   exponential loss by full-batch gradient descent (optionally stopped once the relative
   change of the loss falls below ``train_f.stop_tol``).
2. ``N_noise`` noise samples ``x_n^noise`` from the same distribution with random target
   labels ``y_n^adv`` (``targets``: ``random`` i.i.d., ``balanced`` half of each sign).
3. The configured attack perturbs each noise sample towards its target against f
   (``x_n^noise + η_n``), clipped to [-1, 1] for ``uniform`` unless ``attack.options.clip``
   says otherwise.
4. g is trained from scratch on ``{(x_n^noise + η_n, y_n^adv)}``; the control
   ``unperturbed_inputs`` g' on the same noise *without* perturbation, ``{(x_n^noise,
   y_n^adv)}``.
5. The leakage control ``mislabeled_clean``: g' on the clean inputs the perturbations were
   added to, with the target labels. Here those are the noise samples, so its training set is
   ``unperturbed_inputs``'s, ``{(x_n^noise, y_n^adv)}``, from its own initialization (seed stage
   ``mislabeled_clean``): a second draw of the same control. The natural samples ``x_n`` are not
   the choice: their labels are already uniformly random, so other labels would not mislabel
   them.

Metrics (docs/metrics.md): ``f_acc_train``, ``g_acc_train`` (g on the natural D),
``control_g_acc_train`` (g' on D), ``g_fit_acc`` / ``control_fit_acc`` (each on its own
training set), ``fooling_rate``, ``agreement`` / ``control_agreement`` (sign f = sign g, resp.
g', on ``n_test`` fresh samples), ``g_majority_share``, ``g_degenerate``, ``eps``,
``f_epochs``, ``g_epochs``, ``seconds``; with ``mislabeled_clean``:
``mislabeled_clean_acc_train``, ``mislabeled_clean_fit_acc``, ``mislabeled_clean_agreement``.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from pydantic import Field, model_validator
from torch import nn

from pertlearn.attacks import TargetedPGD, attack_class, fooling_rate, make_attack
from pertlearn.data import SYNTHETIC
from pertlearn.experiments import stages
from pertlearn.experiments.config import AttackConfig, ExperimentConfig, ModelConfig, StrictModel
from pertlearn.experiments.result import Result
from pertlearn.metrics import accuracy, agreement, majority_share
from pertlearn.seeding import resolve_device, stage_generator
from pertlearn.training import TrainConfig

DATA_RANGE: dict[str, tuple[float, float]] = {"uniform": (-1.0, 1.0)}
"""Data range the attacks clip to, per distribution (none for the unbounded ones)."""


class ArtificialDataConfig(StrictModel):
    """``uniform`` (U([-1, 1]^d)) or ``gauss`` (N(0, I_d)) samples with random labels."""

    name: Literal["uniform", "gauss"] = "uniform"
    dim: int = Field(1000, ge=1, le=10_000_000, description="input dimension d")
    n_train: int = Field(100, ge=2, le=100_000_000, description="natural samples N")
    n_test: int = Field(1000, ge=1, le=100_000_000, description="fresh samples (agreement)")
    n_noise: int = Field(1000, ge=1, le=100_000_000, description="noise samples N_noise")


ArtificialControl = Literal["unperturbed_inputs", "mislabeled_clean"]
DEFAULT_CONTROLS: tuple[ArtificialControl, ...] = ("unperturbed_inputs",)


def _default_train() -> TrainConfig:
    return TrainConfig(loss="exponential", lr=0.01)


class IclrArtificialConfig(ExperimentConfig):
    """The ``iclr_artificial`` pipeline's config (module docstring)."""

    pipeline: Literal["iclr_artificial"] = "iclr_artificial"
    data: ArtificialDataConfig = Field(default_factory=ArtificialDataConfig)
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(name="one_hidden", width=100, slope=0.01)
    )
    model_g: ModelConfig | None = Field(None, description="g's architecture; None: same as f")
    train_f: TrainConfig = Field(default_factory=_default_train)
    train_g: TrainConfig = Field(default_factory=_default_train)
    attack: AttackConfig = Field(
        default_factory=lambda: AttackConfig(name="pgd_l2", eps_per_sqrt_dim=0.0078)
    )
    targets: Literal["balanced", "random"] = "random"
    controls: list[ArtificialControl] = Field(default_factory=lambda: list(DEFAULT_CONTROLS))
    degenerate_threshold: float = Field(
        0.95, gt=0.5, le=1, description="g is degenerate when one sign exceeds this share"
    )
    fast_train: bool = Field(
        False,
        description="train f, g and the control with the explicit-gradient trainer "
        "(same numbers to float tolerance; the fast path on CUDA at paper scale)",
    )

    @model_validator(mode="after")
    def _margin_losses(self) -> IclrArtificialConfig:
        for key in ("train_f", "train_g"):
            if getattr(self, key).loss == "cross_entropy":
                raise ValueError(
                    f"{key}.loss must be a margin loss (binary labels), e.g. 'exponential'"
                )
        return self


def attack_options(config: IclrArtificialConfig) -> dict[str, Any]:
    """``attack.options`` plus the data range of the distribution as ``clip`` (for attacks
    that take one, unless the options set it)."""
    options = dict(config.attack.options)
    if issubclass(attack_class(config.attack.name), TargetedPGD) and "clip" not in options:
        options["clip"] = DATA_RANGE.get(config.data.name)
    return options


def iclr_artificial_networks(
    config: IclrArtificialConfig, metrics: dict[str, Any], *, model_factory: Any = None
) -> dict[str, nn.Module]:
    """The untrained networks of a run of ``config`` as :func:`run_iclr_artificial` builds
    them (the pipeline's ``networks``, :class:`~pertlearn.experiments.pipeline.NetworksFunction`):
    f, g and each control of ``config.controls``, for inputs ``(N, data.dim)``."""
    return stages.binary_run_networks(config, "unperturbed_inputs")


def run_iclr_artificial(config: IclrArtificialConfig, *, progress: bool = False) -> Result:
    """Run the ICLR24 artificial experiment described by ``config`` (module docstring)."""
    out = stages.RunOutputs(config, resolve_device(config.device))
    clock, device = out.clock, out.device
    dtype = stages.DTYPES[config.dtype]
    seed = config.seed
    data = config.data
    # The attack first, so that a bad budget or option fails before any training.
    eps = config.eps
    attack = make_attack(config.attack.name, eps, **attack_options(config))

    def sample(n: int, stage: str) -> Any:
        return SYNTHETIC[data.name](n, data.dim, stage_generator(seed, stage), dtype=dtype)

    with clock("data"):
        x_train, y_train = (t.to(device) for t in sample(data.n_train, "data_train"))
        x_test = sample(data.n_test, "data_test")[0].to(device)
        x_noise = sample(data.n_noise, "data_noise")[0].to(device)
        y_adv = stages.binary_targets(config.targets, data.n_noise, seed, dtype).to(device)
    if isinstance(attack, TargetedPGD):
        attack.check_input(x_noise)  # e.g. an L0 budget above d, or noise outside the range

    train = partial(
        stages.train_fresh, seed=seed, device=device, progress=progress, fast=config.fast_train
    )

    # 1. f on the natural data.
    with clock("train_f"):
        f = out.add("f", train("f", config.model, x_train, y_train, config.train_f))
    # 2.-3. the noise, perturbed towards its targets against f.
    with clock("craft"):
        x_adv = stages.craft(attack, f, x_noise, y_adv, seed, progress=progress)
    # 4. g on the perturbed noise only.
    g_model_config = config.model_g or config.model
    with clock("train_g"):
        g = out.add("g", train("g", g_model_config, x_adv, y_adv, config.train_g))

    with clock("evaluate"):
        out.metrics = {
            "f_acc_train": accuracy(f, x_train, y_train),
            "g_acc_train": accuracy(g, x_train, y_train),
            "agreement": agreement(f, g, x_test),
            "fooling_rate": fooling_rate(f, x_adv, y_adv),
            "g_fit_acc": accuracy(g, x_adv, y_adv),
            "g_majority_share": majority_share(g, x_test),
            "eps": eps,
            "f_epochs": out.curves["f"].epochs_run,
            "g_epochs": out.curves["g"].epochs_run,
        }
        out.metrics["g_degenerate"] = out.metrics["g_majority_share"] > config.degenerate_threshold

    # 5. control g': the same noise and targets, without the perturbation.
    if "unperturbed_inputs" in config.controls:
        with clock("controls"):
            trained = train(
                "unperturbed_inputs",
                g_model_config,
                x_noise,
                y_adv,
                config.train_g,
                stage=stages.CONTROL_STAGE,
            )
            control = out.add("unperturbed_inputs", trained)
            out.metrics["control_g_acc_train"] = accuracy(control, x_train, y_train)
            out.metrics["control_fit_acc"] = accuracy(control, x_noise, y_adv)
            out.metrics["control_agreement"] = agreement(f, control, x_test)

    # 6. leakage control: the clean inputs of the attack (the noise) with the target labels.
    if "mislabeled_clean" in config.controls:
        with clock("controls"):
            trained = train("mislabeled_clean", g_model_config, x_noise, y_adv, config.train_g)
            leak = out.add("mislabeled_clean", trained)
            out.metrics.update(
                mislabeled_clean_acc_train=accuracy(leak, x_train, y_train),
                mislabeled_clean_fit_acc=accuracy(leak, x_noise, y_adv),
                mislabeled_clean_agreement=agreement(f, leak, x_test),
            )

    tensors = stages.split_tensors(x_train, y_train, x_test, None)
    return out.result(tensors | {"x_noise": x_noise, "y_adv": y_adv, "x_adv": x_adv})
