"""Record the golden metrics: ``python -m tests.golden.record`` (see ``cases.py``)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from tests.golden.cases import CASES, IGNORED, SWEEP_SPEC

import pertlearn


def case_metrics(preset: str, overrides: list[str]) -> dict[str, Any]:
    config = pertlearn.load_config(preset=preset, overrides=overrides)
    metrics = pertlearn.run(config).metrics
    return {k: v for k, v in metrics.items() if k not in IGNORED}


def sweep_metrics(workdir: Path) -> dict[str, dict[str, Any]]:
    from pertlearn.experiments.execution import run_sweep
    from pertlearn.experiments.store import collect_results
    from pertlearn.experiments.sweeps import load_sweep

    spec = workdir / "sweep.toml"
    spec.write_text(SWEEP_SPEC)
    sweep = load_sweep(str(spec))
    run_sweep(sweep, workdir / "out", workers=1)
    rows, _ = collect_results(workdir / "out")
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = f"seed={row['seed']},lr_f={row['train_f.lr']},lr_g={row['train_g.lr']}"
        out[key] = {
            k: v for k, v in row.items() if k.split(".")[0] not in IGNORED and k != "run_id"
        }
    return dict(sorted(out.items()))


def main() -> None:
    torch.set_num_threads(1)
    golden: dict[str, Any] = {"cases": {}, "sweep": {}}
    for name, (preset, overrides) in CASES.items():
        golden["cases"][name] = case_metrics(preset, overrides)
        print(
            name, golden["cases"][name].get("g_acc_test", golden["cases"][name].get("g_acc_train"))
        )
    with tempfile.TemporaryDirectory() as tmp:
        golden["sweep"] = sweep_metrics(Path(tmp))
    path = Path(__file__).with_name("metrics.json")
    path.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
