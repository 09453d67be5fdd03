"""Record the golden metrics (see ``cases.py``).

``python -m tests.golden.record --machine`` writes the record of this machine's kind to
``machines/<id>.json``; without ``--machine`` it overwrites ``metrics.json``, the record made
before the experiments package was restructured (do that only to pin a deliberate change of the
numbers, and say so in the commit).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
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


MACHINES = Path(__file__).with_name("machines")
"""Records of the golden metrics per machine kind, ``<fingerprint id>.json``."""


def machine_fingerprint() -> dict[str, str]:
    """What decides the rounding of a CPU run: architecture, processor model and instruction
    set extensions, the torch version and the instruction set its kernels dispatch to.

    Float sums are reordered by the vectorized and BLAS kernels chosen for a processor, and a
    few golden cases (short, noisy trainings) amplify a last-bit difference into another
    prediction on a test point or two; runs on machines with the same fingerprint give the same
    numbers.
    """
    cpu: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in {"vendor_id", "cpu family", "model", "flags", "Features", "CPU part"}:
                cpu.setdefault(key, value.strip())
    flags = " ".join(sorted(cpu.pop("flags", cpu.pop("Features", "")).split()))
    return {
        "machine": platform.machine(),
        "processor": " / ".join(f"{k} {v}" for k, v in sorted(cpu.items())) or platform.processor(),
        "flags_sha256": hashlib.sha256(flags.encode()).hexdigest()[:16],
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def fingerprint_id(fingerprint: dict[str, str]) -> str:
    """A short stable name for a fingerprint (the file name of its record)."""
    text = json.dumps(fingerprint, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def machine_record_path() -> Path:
    """Where the record of this machine's kind is (or would be) kept."""
    return MACHINES / f"{fingerprint_id(machine_fingerprint())}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--machine",
        action="store_true",
        help="write the record of this machine's kind to machines/ instead of metrics.json",
    )
    args = parser.parse_args()
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
    if args.machine:
        golden["fingerprint"] = machine_fingerprint()
        path = machine_record_path()
        path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
