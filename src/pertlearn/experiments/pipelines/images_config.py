"""The configuration of the images pipeline (:mod:`pertlearn.experiments.pipelines.images`):
the data set and class selection, the image networks, robust evaluation, the construction of
D_R / D_NR, band-limited perturbations, and :class:`ImagesConfig` itself."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from pertlearn.attacks import attack_names, attack_options, make_attack
from pertlearn.attacks.base import unknown_attack
from pertlearn.data.catalogue import DATASETS, check_classes
from pertlearn.data.files import image_file_shape
from pertlearn.experiments.config import (
    AttackConfig,
    ExperimentConfig,
    PathSetting,
    StrictModel,
)
from pertlearn.models import image_model_names, image_model_options
from pertlearn.models.cnn import unknown_image_model
from pertlearn.training.accel import Precision
from pertlearn.training.minibatch import MinibatchConfig


class ImageDataConfig(StrictModel):
    """An image data set split 80/20 (``split``) by the run seed; ``n_train`` / ``n_test`` cap
    the two parts; ``classes`` keeps a subset (relabeled in this order).

    ``name = "file"``: the user's own images, ``path`` a .safetensors file with ``x_train``
    ``(N, C, H, W)`` floats in ``[0, 1]`` or uint8 ``0..255`` (``C`` = 1 or 3), ``y_train``
    ``(N,)`` integer labels ``0..K-1`` and optionally ``x_test`` / ``y_test`` (kept as the test
    part; otherwise ``split`` holds out a share), and optionally the class names as metadata
    ``class_names`` (a JSON list of K strings); ``dim`` and the image shape come from the
    file's header, the number of classes from its labels
    (:func:`pertlearn.data.files.load_image_file`)."""

    name: Literal["mnist", "fashion_mnist", "cifar10", "file"] = "mnist"
    path: PathSetting = Field(None, description="file: the .safetensors file of images")
    dim: int = Field(784, ge=1, description="C·H·W, set from the data set")
    n_train: int = Field(10_000_000, ge=2, description="cap on the training part")
    n_test: int = Field(10_000_000, ge=1, description="cap on the test part")
    n_noise: int = Field(
        1000, ge=1, le=100_000_000, description="uniform scenario: noise images attacked"
    )
    classes: list[int] | None = Field(None, description="classes used (default: all)")
    data_dir: PathSetting = Field(
        None, description="data directory (default $PERTLEARN_DATA, else the cache)"
    )
    split: float = Field(0.2, gt=0, lt=1, description="test fraction of the split")

    @model_validator(mode="before")
    @classmethod
    def _derived_dim(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name", "mnist") in DATASETS and "dim" not in data:
            data = {**data, "dim": DATASETS[data.get("name", "mnist")].dim}
        if isinstance(data, dict) and data.get("name") == "file":
            if not data.get("path"):
                raise ValueError("data.name = 'file' needs data.path (a .safetensors file)")
            # The file decides the dimension (a preset's data.dim does not apply to it).
            c, h, w = image_file_shape(data["path"])
            data = {**data, "dim": c * h * w}
        return data

    @model_serializer(mode="wrap")
    def _only_used(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``path`` only for a data file (configs of the built-in sets stay as they were)."""
        dumped: dict[str, Any] = handler(self)
        if self.name != "file":
            dumped.pop("path", None)
        return dumped

    @model_validator(mode="after")
    def _checks(self) -> ImageDataConfig:
        if self.name == "file":
            if self.data_dir is not None:
                raise ValueError("data.data_dir is not used by data.name = 'file'; remove it")
            return self  # the classes are checked against the file's labels when it is read
        if self.path is not None:
            raise ValueError(
                f"data.path is not used by data.name = {self.name!r}; remove it "
                "(or set data.name = 'file')"
            )
        info = DATASETS[self.name]
        if self.dim != info.dim:
            raise ValueError(f"{self.name} images have dimension {info.dim}; leave data.dim out")
        if self.classes is not None:
            check_classes(self.classes, info.num_classes)
        return self


class ImageModelConfig(StrictModel):
    """``small_cnn`` (options ``width``, ``hidden``), ``mlp`` (``hidden``, ``depth``: fully
    connected), ``iclr_resnet`` (the ICLR24 residual CNN
    for MNIST / Fashion-MNIST), ``wide_resnet`` (``depth``, ``widen``, ``dropout``),
    ``custom`` (``options.factory = "package.module:function"``, the user's own network) or a
    network registered by name (``register_network``, e.g. in a plug-in; options: its
    factory's keyword arguments)."""

    name: str = Field(
        "small_cnn",
        description="small_cnn, mlp, iclr_resnet, wide_resnet, custom, or a network a plug-in "
        "registered (`pertlearn plugins` lists them)",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments")

    @field_validator("name")
    @classmethod
    def _known_network(cls, name: str) -> str:
        if name not in image_model_names():
            raise ValueError(unknown_image_model(name))
        return name

    @model_validator(mode="after")
    def _known_options(self) -> ImageModelConfig:
        """A network's options are its own (a sweep over ``model.name`` may carry another
        network's options from the base config)."""
        takes = image_model_options(self.name)
        if takes is None:
            return self
        for key in self.options:
            if key not in takes:
                raise ValueError(
                    f"options.{key} is not an option of model {self.name!r} (it takes: "
                    f"{', '.join(takes) or 'none'}); fix or remove it (options = {{}} drops the "
                    "options a preset set for its own network)"
                )
        return self


class RobustEvalConfig(StrictModel):
    """Robust accuracy of f and g: clean test images attacked *untargeted* (away from their
    true label) by ``attack`` at ``eps`` with ``steps`` iterations; the metrics
    ``f_robust_acc`` and ``g_robust_acc`` are the shares still classified correctly."""

    attack: str = "pgd_l2"
    eps: float = Field(gt=0)
    steps: int = Field(20, ge=1)
    n_test: int = Field(1000, ge=1, description="test images attacked (the first n_test)")


class ConstructConfig(StrictModel):
    """The construction of D_R / D_NR (scenarios ``robust`` / ``non_robust``; Ilyas et al.
    arXiv:1905.02175, Sec. 3.1 and App. C): ``steps`` normalized gradient steps of L2 length
    ``step_size`` on ``‖rep(x_r) − rep(x)‖₂`` from ``start`` (``other_image``: another training
    image, ``other_class``: one of another class, ``noise``: U[0, 1] pixels), optionally kept in
    an L2 ball of radius ``eps`` around the start; ``batch_size`` images at a time."""

    steps: int = Field(100, ge=1, description="normalized gradient steps")
    step_size: float = Field(0.1, gt=0, description="L2 length of each step")
    start: Literal["other_image", "other_class", "noise"] = Field(
        "other_image", description="start points of the descent"
    )
    eps: float | None = Field(None, gt=0, description="L2 ball around the start; None: none")
    batch_size: int = Field(500, ge=1, description="images constructed at once")


PIXEL_RANGE = (0.0, 1.0)
"""The data range of the images every attack of this pipeline is clipped to."""


def untargeted_options(
    steps: int, step_size: float | None = None, precision: Precision = "fp32"
) -> dict[str, Any]:
    """The options of an untargeted registry attack (robust evaluation, adversarial training):
    ``steps`` iterations of ``step_size`` (the attack's default when ``None``), clipped to
    :data:`PIXEL_RANGE`, its forward passes in ``precision``."""
    options: dict[str, Any] = {"steps": steps, "targeted": False, "clip": PIXEL_RANGE}
    if step_size is not None:
        options["step_size"] = step_size
    if precision != "fp32":
        options["precision"] = precision
    return options


def attacks_taking(options: Iterable[str]) -> list[str]:
    """The registered attacks (sorted) that take every keyword option in ``options``."""
    return sorted(
        name
        for name in attack_names()
        if (known := attack_options(name)) is None or set(options) <= set(known)
    )


def check_attack_takes(where: str, name: str, options: Iterable[str], why: str) -> None:
    """Raise ``ValueError`` naming ``where`` unless the registered attack ``name`` exists and
    takes every option in ``options`` (``why``: what the pipeline needs them for)."""
    if name not in attack_names():
        raise ValueError(f"{where}: {unknown_attack(name)}")
    known = attack_options(name)
    missing = [option for option in options if known is not None and option not in known]
    if missing:
        raise ValueError(
            f"{where}: attack {name!r} takes no {', '.join(missing)} ({why}); choose one of "
            f"{', '.join(attacks_taking(options))}"
        )


CONSTRUCTED_SCENARIOS = ("robust", "non_robust")
"""Scenarios whose training set is constructed by representation matching (D_R, D_NR)."""


class PerturbationFilterConfig(StrictModel):
    """Band-limited perturbations: g trains on ``x + low_pass(δ, cutoff)`` (``kind =
    "low_pass"``) or ``x + high_pass(δ, cutoff)`` (``"high_pass"``), ``δ = x_adv − x``; the
    cut-off is a radial frequency bin (:mod:`pertlearn.features.spectra`; 0..20 for 28×28
    images, 0..23 for 32×32)."""

    kind: Literal["low_pass", "high_pass"]
    cutoff: float = Field(ge=0, description="radial frequency bin: low_pass keeps bins <= cutoff")


class ImagesConfig(ExperimentConfig):
    """The ``images`` pipeline's config (module docstring). ``train_f`` / ``train_g``: the
    mini-batch training of f and of g (and of the control). ``craft_batch_size``: images
    generated and attacked at once. ``checkpoint_dir``: per-epoch checkpoints of every network
    (sub-folders ``f``, ``g``, ``unperturbed_inputs``, ``mislabeled_clean``) so a killed run
    resumes. ``construction``: scenarios ``robust`` / ``non_robust`` only. ``f_weights``: f
    is loaded (:mod:`pertlearn.experiments.trained_f`), ``train_f`` then only trains the
    ``transfer_eval`` model."""

    pipeline: Literal["images"] = "images"
    data: ImageDataConfig = Field(default_factory=ImageDataConfig)
    model: ImageModelConfig = Field(default_factory=ImageModelConfig)
    model_g: ImageModelConfig | None = Field(None, description="g's network; None: same as f")
    train_f: MinibatchConfig = Field(default_factory=MinibatchConfig)
    train_g: MinibatchConfig = Field(default_factory=MinibatchConfig)
    attack: AttackConfig = Field(default_factory=lambda: AttackConfig(name="pgd_l2", eps=2.0))
    scenario: Literal["natural_rand", "natural_det", "uniform", "robust", "non_robust"] = (
        "natural_rand"
    )
    construction: ConstructConfig | None = Field(
        None, description="robust / non_robust: the construction (default: ConstructConfig())"
    )
    controls: list[Literal["unperturbed_inputs", "mislabeled_clean"]] = Field(default_factory=list)
    craft_batch_size: int | Literal["auto"] = Field(
        1000,
        description="images generated/attacked per batch (>= 1), or auto: from CUDA memory",
    )
    craft_precision: Precision = Field(
        "fp32", description="fp32, bf16 or fp16 (CUDA) autocast of the crafting attack"
    )
    checkpoint_dir: PathSetting = Field(None, description="resumable per-epoch checkpoints")
    f_weights: PathSetting = Field(
        None,
        description="use a trained f instead of training one: a run directory of this "
        "pipeline (same data, seed and model) or a .safetensors file of f's weights",
    )
    degenerate_threshold: float = Field(
        0.95, gt=0, le=1, description="g is degenerate when one class exceeds this share"
    )
    robust_eval: RobustEvalConfig | None = Field(
        None, description="also measure f's and g's accuracy under an untargeted attack"
    )
    perturbation_filter: PerturbationFilterConfig | None = Field(
        None, description="g learns from x + a low- or high-passed perturbation"
    )
    transfer_eval: bool = Field(
        False, description="score the adversarial set with an independent model of g's network"
    )
    keep: Literal["all", "fooled"] = Field(
        "all",
        description="fooled: g and the controls learn only the examples f assigns to their target",
    )

    @property
    def crafts_with_attack(self) -> bool:
        """False for the constructed scenarios (D_R, D_NR): ``construction`` makes g's
        training set, and ``attack`` is not used."""
        return self.construction is None

    @model_validator(mode="before")
    @classmethod
    def _default_construction(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and data.get("scenario") in CONSTRUCTED_SCENARIOS
            and data.get("construction") is None
        ):
            data = {**data, "construction": {}}
        return data

    @model_validator(mode="after")
    def _scenario_keys(self) -> ImagesConfig:
        constructed = self.scenario in CONSTRUCTED_SCENARIOS
        if self.construction is not None and not constructed:
            raise ValueError(
                f"construction: only for scenario 'robust' or 'non_robust', not {self.scenario!r}"
            )
        # A loaded f (f_weights) is checked against the run that trained it, at run time.
        trained_here = self.f_weights is None
        robust_f = self.train_f.adversarial is not None
        if trained_here and self.scenario == "robust" and not robust_f:
            raise ValueError(
                "scenario 'robust' (D_R) needs a robust f: set train_f.adversarial "
                "(use 'non_robust' for a standard f)"
            )
        if trained_here and self.scenario == "non_robust" and robust_f:
            raise ValueError(
                "scenario 'non_robust' (D_NR) needs a standard f: remove train_f.adversarial "
                "(use 'robust' for an adversarially trained f)"
            )
        if constructed and self.perturbation_filter is not None:
            raise ValueError(
                "perturbation_filter: only for the attacked scenarios (natural_rand, "
                f"natural_det, uniform), not {self.scenario!r} whose images are constructed; "
                "remove perturbation_filter or change scenario"
            )
        if "mislabeled_clean" in self.controls:
            if self.scenario == "uniform":
                raise ValueError(
                    "controls: mislabeled_clean needs clean images; the uniform scenario "
                    "perturbs noise (use unperturbed_inputs)"
                )
            if self.construction is not None and self.construction.start == "noise":
                raise ValueError(
                    "controls: mislabeled_clean needs clean start images; construction.start is "
                    "'noise' (use unperturbed_inputs)"
                )
        return self

    @model_validator(mode="after")
    def _craft_batch(self) -> ImagesConfig:
        if self.craft_batch_size != "auto" and self.craft_batch_size < 1:
            raise ValueError(
                f"craft_batch_size must be at least 1 or 'auto', got {self.craft_batch_size}"
            )
        return self

    @model_validator(mode="after")
    def _crafting_attack(self) -> ImagesConfig:
        """The crafting attack is clipped to the pixel range (unless its options set ``clip``),
        so it must take ``clip``."""
        if "clip" not in self.attack.options:
            check_attack_takes(
                "attack.name", self.attack.name, ["clip"], "crafted images stay in the pixel range"
            )
        return self

    @model_validator(mode="after")
    def _untargeted_attacks(self) -> ImagesConfig:
        """Build the untargeted attacks of robust evaluation and adversarial training the way
        the run does, so that an attack without iterations or pixel clipping (or a budget it
        cannot take) is an error of the config, not of the run after f is trained."""
        untargeted: dict[str, tuple[str, float, dict[str, Any]]] = {}
        if self.robust_eval is not None:
            robust = self.robust_eval
            untargeted["robust_eval"] = (
                robust.attack,
                robust.eps,
                untargeted_options(robust.steps),
            )
        for key in ("train_f", "train_g"):
            train = getattr(self, key)
            if train.adversarial is not None:
                adv = train.adversarial
                options = untargeted_options(adv.steps, adv.step_size, train.precision)
                untargeted[f"{key}.adversarial"] = (adv.attack, adv.eps, options)
        for where, (name, eps, options) in untargeted.items():
            check_attack_takes(
                f"{where}.attack", name, options, "it runs untargeted, iterated, in the pixel range"
            )
            try:
                make_attack(name, eps, **options)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
        return self


# ----------------------------------------------------------------------------- stages
