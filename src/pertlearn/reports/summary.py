"""The end-of-run summary: the metrics table, the time of each stage, and a note for each metric
that looks like a failure and is not (or that is one). Used by ``pertlearn run`` and
``pertlearn theory``; callable on ``result.metrics`` from Python. Imports neither torch nor
matplotlib."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_summary(metrics: dict[str, Any], class_names: Sequence[str] | None = None) -> str:
    """The end-of-run table: one metric per line, and a warning for a degenerate g. Per-class
    metrics name each class by ``class_names[k]`` when given (an image run's
    ``Result.class_names``), else by its index ``k``."""
    # keys longer than the usual column (mislabeled_clean_best_acc_test) widen it: the values
    # stay right-aligned in one column
    width = max(
        [22, *(len(key) + 2 for key, value in metrics.items() if not isinstance(value, dict))]
    )
    lines = ["", f"{'metric':<{width}}{'value':>10}", "-" * (width + 10)]
    for key, value in metrics.items():
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, float):
            text = f"{value:.4f}" if key != "seconds" else f"{value:.1f}"
        elif isinstance(value, dict):  # per-class metrics: "class:value" pairs
            pairs = []
            for k, v in value.items():
                named = class_name(k, class_names)
                shown = f"{v:.2f}" if isinstance(v, float) else str(v)
                pairs.append(f"{k if named is None else named}:{shown}")
            lines.append(key)
            lines.append("  " + " ".join(pairs))
            continue
        else:
            text = str(value)
        lines.append(f"{key:<{width}}{text:>10}")
    if metrics.get("g_degenerate"):
        lines.append(
            "warning: g predicts one class on more than "
            "its degenerate_threshold share of the test set (g_degenerate = true)"
        )
    lines += reading_notes(metrics)
    return "\n".join(lines)


def class_name(key: str | int, class_names: Sequence[str] | None) -> str | None:
    """The name of the class with index ``key`` (``3`` or ``"3"``) in ``class_names``; ``None``
    when ``class_names`` does not name it."""
    index = key if isinstance(key, int) else int(key) if key.isdigit() else -1
    if class_names is None or not 0 <= index < len(class_names):
        return None
    return class_names[index]


def format_stage_seconds(stage_seconds: dict[str, float]) -> str:
    """The one-line time per stage of a run, e.g. ``stages: data 0.0s · train f 1.2s · ...``
    (empty without timings)."""
    if not stage_seconds:
        return ""
    parts = [
        f"{stage.replace('_', ' ')} {seconds:.1f}s" for stage, seconds in stage_seconds.items()
    ]
    return "stages: " + " · ".join(parts)


LOW_HIT_RATE = 0.5
"""Below this share of adversarial examples at their target, the summary warns."""


def reading_notes(metrics: dict[str, Any]) -> list[str]:
    """One line for each metric that looks like a failure and is not, or that is one."""
    notes: list[str] = []
    fooling, fit = metrics.get("fooling_rate"), metrics.get("g_fit_acc")
    classes = metrics.get("num_classes")
    constructed = metrics.get("scenario") in ("robust", "non_robust")
    if constructed and isinstance(fooling, float) and fooling < LOW_HIT_RATE:
        notes.append(
            f"warning: f gives only {fooling:.0%} of the constructed images the label of the "
            "image they were matched to; raise construction.steps or construction.step_size"
        )
    elif classes is not None and isinstance(fooling, float) and fooling < LOW_HIT_RATE:
        notes.append(
            f"warning: only {fooling:.0%} of the adversarial examples reach their target; g's "
            "accuracy says little until most do (raise attack.eps, or attack.options "
            "until_fooled / restarts)"
        )
    elif classes is None and isinstance(fooling, float) and abs(fooling - 0.5) < 0.1:
        notes.append(
            "note: fooling_rate near 0.5 is expected with a tiny ε: f barely moves, and about "
            "half of the random targets already agree with f"
        )
    if classes is None and isinstance(fit, float) and fit < 0.6:
        notes.append(
            "note: g_fit_acc is g on its own training inputs: in scenario a the perturbations "
            "alone (near 0.5 is expected there), in scenario b natural inputs with their "
            "(mostly wrong) targets, hard to fit; g_acc_test on clean data is the result"
        )
    f_train = metrics.get("f_acc_train")
    chance = metrics.get("chance", 0.5)
    f_test, g_test = metrics.get("f_acc_test"), metrics.get("g_acc_test")
    if isinstance(f_test, float) and isinstance(g_test, float):
        if abs(g_test - chance) < 0.05 and f_test > chance + 0.2:
            notes.append(
                "warning: g is at chance on clean test data while f is not; if that is not the "
                "finding, check train_g.lr (a diverging g ends at chance), the budget ε and "
                "fooling_rate"
            )
    if isinstance(f_train, float) and f_train < chance + 0.1:
        notes.append(
            "warning: f is near chance on its own training data; lower the learning rate or "
            "train longer before reading g (under adversarial training, a few clean epochs "
            "first: train_f.adversarial.clean_epochs)"
        )
    return notes
