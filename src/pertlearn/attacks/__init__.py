"""Attacks (targeted by default, untargeted with ``targeted=False``), one per module, around
the small interface in :mod:`pertlearn.attacks.base`.

User attacks subclass :class:`Attack` and register with :func:`register_attack`; configs then
name them by ``attack.name``. Registered in a plug-in (:mod:`pertlearn.plugins`), they are
known in every process.
"""

from pertlearn.attacks.base import (
    ATTACKS,
    Attack,
    attack_class,
    attack_names,
    attack_options,
    check_adversarial_inputs,
    check_targets,
    fooling_rate,
    make_attack,
    per_class_hit_rates,
    register_attack,
    target_hits,
)
from pertlearn.attacks.gradient_step import GradientStep
from pertlearn.attacks.pgd_base import TargetedPGD
from pertlearn.attacks.pgd_l0 import PgdL0
from pertlearn.attacks.pgd_l2 import PgdL2
from pertlearn.attacks.pgd_linf import PgdLinf, PgdLinfRescaled
from pertlearn.attacks.random_noise import RandomL2
from pertlearn.tensors import per_sample_norm

__all__ = [
    "ATTACKS",
    "Attack",
    "GradientStep",
    "PgdL0",
    "PgdL2",
    "PgdLinf",
    "PgdLinfRescaled",
    "RandomL2",
    "TargetedPGD",
    "attack_class",
    "attack_names",
    "attack_options",
    "check_adversarial_inputs",
    "check_targets",
    "fooling_rate",
    "make_attack",
    "per_class_hit_rates",
    "per_sample_norm",
    "register_attack",
    "target_hits",
]
