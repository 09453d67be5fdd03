"""The NeurIPS24 binary pipeline (Kumano et al., arXiv:2410.23677).

Two-layer networks on binary data (synthetic Gaussians, uniform noise, a binary image task or
the user's own file). Read top to bottom: data → f → target labels → adversarial examples
→ g on the adversarial set only → controls → metrics.

Scenario (a) ``perturbation_only`` trains g on the perturbations ``r_n`` alone, scenario (b)
``on_original`` on ``x_n + r_n`` (arXiv:2410.23677, its two learning settings).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator
from torch import nn

from pertlearn.attacks import RandomL2, fooling_rate, make_attack
from pertlearn.data import SYNTHETIC, shifted_gauss
from pertlearn.data.catalogue import DATASETS, check_classes
from pertlearn.data.download import sha256_file
from pertlearn.data.files import file_split, tensor_file_dim
from pertlearn.experiments.config import (
    AttackConfig,
    ExperimentConfig,
    ModelConfig,
    PathSetting,
    StrictModel,
)
from pertlearn.experiments.image_data import binary_image_data
from pertlearn.experiments.result import Result
from pertlearn.experiments.stages import (
    CONTROL_STAGE,
    DTYPES,
    RunOutputs,
    binary_run_networks,
    binary_targets,
    craft,
    split_tensors,
    train_fresh,
)
from pertlearn.metrics import accuracy, agreement, majority_share
from pertlearn.seeding import resolve_device, stage_generator
from pertlearn.training import TrainConfig

IMAGE_ONLY_KEYS = ("classes", "data_dir", "center")


class NeuripsDataConfig(StrictModel):
    """Binary data: synthetic ``gauss`` (random labels), ``shifted_gauss`` (class means
    ±shift·1_d), ``uniform``; a binary image task ``mnist`` / ``fashion_mnist`` / ``cifar10``
    (``classes``: two classes, the first is +1); or the user's own file ``file`` (``path``: a
    .safetensors file with ``x_train`` ``(N, d)``, ``y_train`` ``(N,)`` ±1 [, ``x_test``,
    ``y_test``]). Keys that the chosen data set does not use are errors."""

    name: Literal[
        "gauss", "shifted_gauss", "uniform", "mnist", "fashion_mnist", "cifar10", "file"
    ] = "shifted_gauss"
    path: PathSetting = Field(None, description="file: the .safetensors file")
    dim: int = Field(100, ge=1, le=10_000_000, description="input dimension d")
    n_train: int = Field(1000, ge=2, le=100_000_000, description="training samples N")
    n_test: int = Field(1000, ge=1, le=100_000_000, description="fresh test samples")
    shift: float = Field(0.3, ge=-1e6, le=1e6, description="shifted_gauss: class means ±shift·1_d")
    classes: list[int] | None = Field(
        None, description="images: the two classes, relabeled +1 (first) and -1"
    )
    data_dir: PathSetting = Field(
        None, description="images: data directory (default $PERTLEARN_DATA, else the cache)"
    )
    split: float = Field(0.2, gt=0, lt=1, description="images, file: test fraction")
    center: bool = Field(True, description="images: subtract the data set's mean pixel")

    @model_validator(mode="before")
    @classmethod
    def _derived_dim(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") in DATASETS and "dim" not in data:
            data = {**data, "dim": DATASETS[data["name"]].dim}
        if isinstance(data, dict) and data.get("name") == "file":
            if not data.get("path"):
                raise ValueError("data.name = 'file' needs data.path (a .safetensors file)")
            # The file decides the dimension (a preset's data.dim does not apply to it).
            data = {**data, "dim": tensor_file_dim(data["path"])}
        return data

    def unused_keys(self) -> list[str]:
        """The keys that ``name`` does not use (left out of the resolved config)."""
        image = self.name in DATASETS
        unused = [] if image else list(IMAGE_ONLY_KEYS)
        unused += [] if self.name == "file" else ["path"]
        unused += [] if self.name == "shifted_gauss" else ["shift"]
        unused += [] if image or self.name == "file" else ["split"]
        return unused

    @model_serializer(mode="wrap")
    def _only_used(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        for key in self.unused_keys():
            dumped.pop(key, None)
        return dumped

    @model_validator(mode="after")
    def _used_keys(self) -> NeuripsDataConfig:
        fields = type(self).model_fields
        for key in self.unused_keys():
            if getattr(self, key) != fields[key].default:
                raise ValueError(f"data.{key} is not used by data.name = {self.name!r}; remove it")
        info = DATASETS.get(self.name)
        if info is not None and self.dim != info.dim:
            raise ValueError(
                f"{self.name} images have dimension {info.dim}; set data.dim = {info.dim} "
                "or leave it out"
            )
        if info is not None and self.classes is not None:
            check_classes(self.classes, info.num_classes)
        return self


NeuripsControl = Literal["random_l2_noise", "mislabeled_clean"]
DEFAULT_CONTROLS: tuple[NeuripsControl, ...] = ("random_l2_noise",)


class NeuripsConfig(ExperimentConfig):
    """The ``neurips`` pipeline's config. ``targets``: ``balanced`` (uniformly random ±1 with
    exactly half of each sign, the default), ``random`` (i.i.d., the paper's setting) or
    ``flip`` (``-y``). ``scenario``: ``perturbation_only`` (a) or ``on_original`` (b)."""

    pipeline: Literal["neurips"] = "neurips"
    data: NeuripsDataConfig = Field(default_factory=NeuripsDataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    model_g: ModelConfig | None = Field(None, description="g's architecture; None: same as f")
    train_f: TrainConfig = Field(default_factory=TrainConfig)
    train_g: TrainConfig = Field(default_factory=TrainConfig)
    attack: AttackConfig = Field(default_factory=lambda: AttackConfig(eps=0.01))
    targets: Literal["balanced", "random", "flip"] = "balanced"
    scenario: Literal["perturbation_only", "on_original"] = "perturbation_only"
    controls: list[NeuripsControl] = Field(default_factory=lambda: list(DEFAULT_CONTROLS))
    degenerate_threshold: float = Field(
        0.95, gt=0.5, le=1, description="g is degenerate when one sign exceeds this share"
    )


def make_dataset(
    config: NeuripsConfig, n: int, stage: str, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage *data*: ``(x (n, d), y (n,) ±1)`` of the configured data from the generator of
    ``stage`` (image and file data: the train part for ``stage = "data_train"``, else the test
    part of a seeded split)."""
    data = config.data
    if data.name in DATASETS:
        return binary_image_data(data, config.seed, stage, dtype)
    if data.name == "file":
        assert data.path is not None  # checked by NeuripsDataConfig
        split = file_split(data.path, data.split, stage_generator(config.seed, "data_split"), dtype)
        return split[:2] if stage == "data_train" else split[2:]
    generator = stage_generator(config.seed, stage)
    if data.name == "shifted_gauss":
        return shifted_gauss(n, data.dim, generator, shift=data.shift, dtype=dtype)
    return SYNTHETIC[data.name](n, data.dim, generator, dtype=dtype)


def draw_targets(config: NeuripsConfig, y: torch.Tensor) -> torch.Tensor:
    """Stage *targets*: ``y_adv`` ``(N,)`` ±1 by the rule ``config.targets``."""
    if config.targets == "flip":
        return -y
    return binary_targets(config.targets, y.shape[0], config.seed, y.dtype).to(y.device)


Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""``(x_train (N, d), y_train (N,), x_test (M, d), y_test (M,))``."""


def scores(
    config: NeuripsConfig,
    f: nn.Module,
    g: nn.Module,
    data: Data,
    *,
    x_adv: torch.Tensor,
    y_adv: torch.Tensor,
    g_inputs: torch.Tensor,
) -> dict[str, Any]:
    """Stage *evaluate*: the metrics of f and g (docs/metrics.md), in the contract's order."""
    x_train, y_train, x_test, y_test = data
    metrics: dict[str, Any] = {
        "f_acc_train": accuracy(f, x_train, y_train),
        "f_acc_test": accuracy(f, x_test, y_test),
        "g_acc_train": accuracy(g, x_train, y_train),
        "g_acc_test": accuracy(g, x_test, y_test),
        "agreement": agreement(f, g, x_test),
        "fooling_rate": fooling_rate(f, x_adv, y_adv),
        "g_fit_acc": accuracy(g, g_inputs, y_adv),
        "g_majority_share": majority_share(g, x_test),
        "eps": config.eps,
    }
    metrics["g_degenerate"] = metrics["g_majority_share"] > config.degenerate_threshold
    if config.data.path is not None:  # data.name = "file": which file the run learned from
        metrics["data_sha256"] = sha256_file(config.data.path)
    return metrics


def control_scores(
    control: nn.Module,
    data: Data,
    *,
    inputs: torch.Tensor,
    y_adv: torch.Tensor,
    name: str = "random_l2_noise",
) -> dict[str, Any]:
    """The metrics of the control g' ``name`` trained on ``(inputs, y_adv)``: its accuracy on
    the clean training and test sets and on its own training set (keys ``control_g_acc_*``,
    ``control_fit_acc`` for ``random_l2_noise``; ``NAME_acc_*``, ``NAME_fit_acc`` otherwise)."""
    x_train, y_train, x_test, y_test = data
    acc, fit = ("control_g", "control") if name == "random_l2_noise" else (name, name)
    return {
        f"{acc}_acc_train": accuracy(control, x_train, y_train),
        f"{acc}_acc_test": accuracy(control, x_test, y_test),
        f"{fit}_fit_acc": accuracy(control, inputs, y_adv),
    }


def neurips_networks(
    config: NeuripsConfig, metrics: dict[str, Any], *, model_factory: Any = None
) -> dict[str, nn.Module]:
    """The untrained networks of a run of ``config`` as :func:`run_neurips` builds them (the
    pipeline's ``networks``, :class:`~pertlearn.experiments.pipeline.NetworksFunction`): f, g
    and each control of ``config.controls``, for inputs ``(N, data.dim)``."""
    return binary_run_networks(config, "random_l2_noise")


def run_neurips(config: NeuripsConfig, *, progress: bool = False) -> Result:
    """Run the NeurIPS24 binary pipeline described by ``config``."""
    out = RunOutputs(config, resolve_device(config.device))
    clock, device = out.clock, out.device
    dtype = DTYPES[config.dtype]
    seed = config.seed

    with clock("data"):
        x_train, y_train = (
            t.to(device) for t in make_dataset(config, config.data.n_train, "data_train", dtype)
        )
        x_test, y_test = (
            t.to(device) for t in make_dataset(config, config.data.n_test, "data_test", dtype)
        )
    train = partial(train_fresh, seed=seed, device=device, progress=progress)

    # 1. f on the clean data.
    with clock("train_f"):
        f = out.add("f", train("f", config.model, x_train, y_train, config.train_f))
    # 2. target labels, 3. adversarial examples against f.
    with clock("craft"):
        y_adv = draw_targets(config, y_train)
        eps = config.eps
        attack = make_attack(config.attack.name, eps, **config.attack.options)
        x_adv = craft(attack, f, x_train, y_adv, seed, progress=progress)
        perturbation = x_adv - x_train
        g_inputs = perturbation if config.scenario == "perturbation_only" else x_adv
    # 4. a fresh g on the adversarial set only.
    g_model_config = config.model_g or config.model
    with clock("train_g"):
        g = out.add("g", train("g", g_model_config, g_inputs, y_adv, config.train_g))

    data = (x_train, y_train, x_test, y_test)
    with clock("evaluate"):
        out.metrics = scores(config, f, g, data, x_adv=x_adv, y_adv=y_adv, g_inputs=g_inputs)

    # 5. control: the same training on random perturbations of the same norm, same targets.
    if "random_l2_noise" in config.controls:
        with clock("controls"):
            noise = RandomL2(eps)(
                f, x_train, y_adv, generator=stage_generator(seed, "control_noise")
            )
            control_inputs = noise - x_train if config.scenario == "perturbation_only" else noise
            trained = train(
                "random_l2_noise",
                g_model_config,
                control_inputs,
                y_adv,
                config.train_g,
                stage=CONTROL_STAGE,
            )
            control = out.add("random_l2_noise", trained)
            out.metrics.update(control_scores(control, data, inputs=control_inputs, y_adv=y_adv))

    # 6. leakage control: the clean inputs with the target labels (no perturbation at all).
    if "mislabeled_clean" in config.controls:
        with clock("controls"):
            trained = train("mislabeled_clean", g_model_config, x_train, y_adv, config.train_g)
            leak = out.add("mislabeled_clean", trained)
            leak_scores = control_scores(
                leak, data, inputs=x_train, y_adv=y_adv, name="mislabeled_clean"
            )
            out.metrics.update(leak_scores)

    return out.result(split_tensors(*data) | {"y_adv": y_adv, "x_adv": x_adv, "g_inputs": g_inputs})
