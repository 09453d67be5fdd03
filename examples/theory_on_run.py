"""The papers' theory next to what the networks did, on a finished run.

    python examples/theory_on_run.py [--out runs/theory] [--tiny]

Runs the quickstart, saves it, then computes on the saved run directory what NeurIPS24
predicts: the direction of each perturbation (a Φ-weighted sum of the training samples) and
the decision functions f̂, ĝ (``pertlearn theory RUN_DIR`` does the same from the shell). It
also evaluates the kernel Φ directly, as a plain tensor function.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pertlearn
from pertlearn.analysis.theory import write_theory
from pertlearn.theory import phi


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the run directory here")
    parser.add_argument("--tiny", action="store_true", help="a few seconds (used by the tests)")
    args = parser.parse_args(argv)
    overrides = ["train_f.epochs=100", "train_g.epochs=100", "data.n_test=200"] if args.tiny else []
    config = pertlearn.load_config(preset="quickstart", overrides=overrides)
    result = pertlearn.run(config)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = result.save(args.out if args.out is not None else Path(tmp) / "run")
        theory = write_theory(run_dir, maps=not args.tiny)  # theory.json (+ decision_map.png)
        metrics = json.loads((run_dir / "metrics.json").read_text())
    print(f"cos(r_n, predicted direction), mean |.|: {theory['cos_direction_mean']:.3f}")
    print(
        f"sign agreement f̂ vs f {theory['agree_fhat_f']:.3f}, ĝ vs g "
        f"{theory['agree_ghat_g']:.3f}, f̂ vs ĝ {theory['agree_fhat_ghat']:.3f}"
    )
    print(f"measured agreement of f and g: {metrics['agreement']:.3f}")
    x = result.tensors["x_train"][:3]
    print("Φ on three training samples (γ = 0):\n", phi(x, x, slope=0.0))
    return theory


if __name__ == "__main__":
    main()
