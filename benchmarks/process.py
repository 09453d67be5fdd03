"""Whole-process benchmark: what a user waits for at the shell, imports and start-up included.

    .venv/bin/python -m benchmarks.process              # → benchmarks/results-process.json
    .venv/bin/python -m benchmarks.process --reps 3 --out /tmp/p.json

Cases, each a fresh interpreter per repetition (``sys.executable``, this checkout's ``src``
first on ``PYTHONPATH``):

- ``quickstart``: ``python -m pertlearn run --preset quickstart -q`` against the straightforward
  baseline as a process (``python -m benchmarks.baseline --preset quickstart``), in rotating
  order; medians, the ratio baseline/ours, and the largest metric difference (must stay within
  0.005). Also the pipeline's own ``seconds`` (``metrics.json``) of the cold CLI runs next to
  the warm in-process time, from a third process per repetition that runs the pipeline three
  times (first run cold, the other two warm).
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
    """The quickstart run against the baseline, as whole processes, in rotating order with a
    third process that runs the pipeline three times (its first run is as cold as the CLI's;
    the median of the other two is the warm in-process time of that repetition)."""
    before = load()
    times: dict[str, list[float]] = {"ours": [], "base": []}
    cold: list[float] = []
    first: list[float] = []
    warm: list[float] = []
    worst, where = 0.0, ""
    for rep in range(reps):
        out = work / f"run-{rep}"
        sides = [
            ("ours", ["-m", "pertlearn", "run", "--preset", "quickstart", "-q", "--out", str(out)]),
            ("base", ["-m", "benchmarks.baseline", "--preset", "quickstart"]),
            ("warm", ["-c", WARM, "2"]),
        ]
        shift = rep % len(sides)
        for side, args in sides[shift:] + sides[:shift]:
            seconds, stdout = timed_process(args, ROOT if side == "base" else work)
            if side == "ours":
                times["ours"].append(seconds)
                ours_metrics = json.loads((out / "metrics.json").read_text())
                cold.append(float(ours_metrics["seconds"]))
            elif side == "base":
                times["base"].append(seconds)
                base_metrics = json.loads(stdout.strip().splitlines()[-1])
            else:
                runs = json.loads(stdout.strip().splitlines()[-1])
                first.append(runs["first"])
                warm.append(statistics.median(runs["warm"]))
        diff, key = metric_diff(ours_metrics, base_metrics)
        if diff >= worst:
            worst, where = diff, key
    ours_median, base_median = statistics.median(times["ours"]), statistics.median(times["base"])
    cold_median, warm_median = statistics.median(cold), statistics.median(warm)
    return {
        "command": "pertlearn run --preset quickstart -q  vs  python -m benchmarks.baseline",
        "ours": summary(times["ours"]),
        "baseline": summary(times["base"]),
        "speedup": base_median / ours_median,
        "check": {"max_metric_diff": worst, "where": where, "ok": worst <= METRIC_TOL},
        "pipeline_seconds": {
            "cold_cli_median_s": cold_median,
            "cold_cli_s": cold,
            "first_in_process_median_s": statistics.median(first),
            "first_in_process_s": first,
            "warm_in_process_median_s": warm_median,
            "warm_in_process_s": warm,
            "cold_over_warm": cold_median / warm_median,
            "first_over_warm": statistics.median(first) / warm_median,
        },
        "target": "speedup >= 3, metrics within 0.005, cold pipeline <= 1.5 x warm",
        "met": base_median / ours_median >= 3
        and worst <= METRIC_TOL
        and cold_median <= 1.5 * warm_median,
        "load_average": before,
        "load_average_end": load(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.process",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the usage lines
    )
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
            f"{pipe['cold_cli_median_s']:.2f} s (first run of a process "
            f"{pipe['first_in_process_median_s']:.2f} s) vs warm "
            f"{pipe['warm_in_process_median_s']:.2f} s "
            f"({pipe['cold_over_warm']:.2f}x); load {row['load_average']} -> "
            f"{row['load_average_end']}"
        )
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
