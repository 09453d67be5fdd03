"""A sweep on a local Ray instance (needs the extra: pip install 'pertlearn[ray]').

    python examples/ray_sweep.py [--out runs/ray-sweep] [--tiny]

Writes a sweep spec (the quickstart over two learning-rate pairs and two seeds), runs it with
``pertlearn sweep SPEC --executor ray``, which starts a local Ray instance for the sweep (give
``--address HEAD:PORT`` to use a cluster), then prints the results table. Rerunning the same
command resumes: finished configurations are skipped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

SPEC = """\
name = "ray-example"
preset = "quickstart"
seeds = [0, 1]

[base]
save_tensors = false
train_f.epochs = {epochs}
train_g.epochs = {epochs}

[zip]
"train_f.lr" = [1.0, 0.1]
"train_g.lr" = [1.0, 0.1]
"""


def pertlearn(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pertlearn", *args], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"pertlearn {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="the sweep directory")
    parser.add_argument("--tiny", action="store_true", help="short training (used by the tests)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "sweep.toml"
        spec.write_text(SPEC.format(epochs=50 if args.tiny else 1000))
        out = args.out if args.out is not None else Path(tmp) / "sweep"
        pertlearn("sweep", str(spec), "--out", str(out), "--executor", "ray", "--workers", "2")
        table = pertlearn("results", str(out))
    print(table)
    return table


if __name__ == "__main__":
    main()
