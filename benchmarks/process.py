"""Whole-process benchmark: what a user waits for at the shell, imports and start-up included.

    .venv/bin/python -m benchmarks.process              # → benchmarks/results-process.json
    .venv/bin/python -m benchmarks.process --reps 3 --out /tmp/p.json

Cases, each a fresh interpreter per repetition (``sys.executable``, this checkout's ``src``
first on ``PYTHONPATH``):

- ``quickstart``: ``python -m pertlearn run --preset quickstart -q`` against the straightforward
  baseline as a process (``python -m benchmarks.baseline --preset quickstart``), alternating
  which goes first; medians, the ratio baseline/ours, and the largest metric difference (must
  stay within 0.005). Also the pipeline's own ``seconds`` (``metrics.json``) of the cold runs
  next to the warm in-process time (the same pipeline run again in one process).
- ``help`` and ``presets``: ``python -m pertlearn --help`` / ``presets`` (median of ``reps``).

The machine's load average is recorded before and after every case: on a shared machine the
figures move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results-process.json")
METRIC_TOL = 0.005

WARM = """
import json, sys, time
import pertlearn
config = pertlearn.load_config(preset="quickstart")
times = []
for _ in range(int(sys.argv[1]) + 1):
    start = time.perf_counter()
    pertlearn.run(config)
    times.append(time.perf_counter() - start)
print(json.dumps({"first": times[0], "warm": times[1:]}))
"""


def environment() -> dict[str, str]:
    """This process's environment with the checkout's ``src`` first on ``PYTHONPATH``."""
    paths = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def timed_process(args: list[str], cwd: Path) -> tuple[float, str]:
    """Wall seconds of ``python ARGS`` as a fresh process, and its standard output."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=environment()
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def summary(times: list[float]) -> dict[str, Any]:
    return {"median_s": statistics.median(times), "times_s": times}


def case_startup(command: list[str], reps: int, work: Path) -> dict[str, Any]:
    """``python -m pertlearn COMMAND`` as a whole process, ``reps`` times."""
    before = load()
    times = [timed_process(["-m", "pertlearn", *command], work)[0] for _ in range(reps)]
    return {
        "command": f"pertlearn {' '.join(command)}",
        **summary(times),
        "target": "median <= 0.3 s",
        "met": statistics.median(times) <= 0.3,
        "load_average": before,
        "load_average_end": load(),
    }


def metric_diff(ours: dict[str, Any], base: dict[str, Any]) -> tuple[float, str]:
    worst, where = 0.0, ""
    for key, value in base.items():
        if key == "seconds":
            continue
        diff = abs(float(ours[key]) - float(value))
        if diff > worst:
            worst, where = diff, key
    return worst, where


def case_quickstart(reps: int, work: Path) -> dict[str, Any]:
    """The quickstart run against the baseline, as whole processes, alternating."""
    before = load()
    ours_times: list[float] = []
    base_times: list[float] = []
    cold_seconds: list[float] = []
    worst, where = 0.0, ""
    for rep in range(reps):
        out = work / f"run-{rep}"
        ours_args = ["-m", "pertlearn", "run", "--preset", "quickstart", "-q", "--out", str(out)]
        base_args = ["-m", "benchmarks.baseline", "--preset", "quickstart"]
        order = [("ours", ours_args), ("base", base_args)]
        for side, args in order if rep % 2 == 0 else order[::-1]:
            seconds, stdout = timed_process(args, work if side == "ours" else ROOT)
            if side == "ours":
                ours_times.append(seconds)
                ours_metrics = json.loads((out / "metrics.json").read_text())
                cold_seconds.append(float(ours_metrics["seconds"]))
            else:
                base_times.append(seconds)
                base_metrics = json.loads(stdout.strip().splitlines()[-1])
        diff, key = metric_diff(ours_metrics, base_metrics)
        if diff >= worst:
            worst, where = diff, key
    _, stdout = timed_process(["-c", WARM, str(max(3, reps))], work)
    warm = json.loads(stdout.strip().splitlines()[-1])
    ours_median, base_median = statistics.median(ours_times), statistics.median(base_times)
    cold, warm_median = statistics.median(cold_seconds), statistics.median(warm["warm"])
    return {
        "command": "pertlearn run --preset quickstart -q  vs  python -m benchmarks.baseline",
        "ours": summary(ours_times),
        "baseline": summary(base_times),
        "speedup": base_median / ours_median,
        "check": {"max_metric_diff": worst, "where": where, "ok": worst <= METRIC_TOL},
        "pipeline_seconds": {
            "cold_median_s": cold,
            "cold_s": cold_seconds,
            "warm_in_process_median_s": warm_median,
            "warm_in_process_s": warm["warm"],
            "first_in_process_s": warm["first"],
            "cold_over_warm": cold / warm_median,
        },
        "target": "speedup >= 3, metrics within 0.005, cold pipeline <= 1.5 x warm",
        "met": base_median / ours_median >= 3 and worst <= METRIC_TOL and cold <= 1.5 * warm_median,
        "load_average": before,
        "load_average_end": load(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.process", description=__doc__)
    parser.add_argument("--reps", type=int, default=5, help="processes per side and case")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default {RESULTS}")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "command": " ".join(["python -m benchmarks.process", *(argv or sys.argv[1:])]),
        "benchmarks": {},
    }
    with tempfile.TemporaryDirectory(prefix="pertlearn-process-") as tmp:
        work = Path(tmp)
        for name, command in (("help", ["--help"]), ("presets", ["presets"])):
            results["benchmarks"][name] = case_startup(command, args.reps, work)
            row = results["benchmarks"][name]
            print(f"{row['command']:<34} {row['median_s']:7.3f} s  load {row['load_average']}")
        row = case_quickstart(args.reps, work)
        results["benchmarks"]["quickstart"] = row
        pipe = row["pipeline_seconds"]
        print(
            f"quickstart process: ours {row['ours']['median_s']:.2f} s, baseline "
            f"{row['baseline']['median_s']:.2f} s, speedup {row['speedup']:.2f}x, "
            f"max metric diff {row['check']['max_metric_diff']:.4f}; pipeline cold "
            f"{pipe['cold_median_s']:.2f} s vs warm {pipe['warm_in_process_median_s']:.2f} s "
            f"({pipe['cold_over_warm']:.2f}x); load {row['load_average']} -> "
            f"{row['load_average_end']}"
        )
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
