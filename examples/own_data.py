"""Perturbation learning on your own binary data set, saved as a safetensors file.

    python examples/own_data.py [--out runs/own-data] [--tiny]

A data file holds ``x_train`` (N, d) and ``y_train`` (N,) with labels ±1, optionally
``x_test`` / ``y_test`` (otherwise a seeded share ``data.split`` is held out), each part at least
one sample of finite values; ``data.dim`` is read from the file. Here the data are two Gaussian
clouds made on the spot.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

import pertlearn


def make_data(path: Path, n: int, dim: int, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    y = torch.where(torch.rand(n, generator=gen) < 0.5, 1.0, -1.0)
    x = torch.randn(n, dim, generator=gen) + 0.3 * y[:, None]  # class means ±0.3·1_d
    save_file({"x_train": x, "y_train": y}, str(path))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="save the run directory here")
    parser.add_argument("--tiny", action="store_true", help="a few seconds (used by the tests)")
    args = parser.parse_args(argv)
    n, dim, epochs = (200, 20, 100) if args.tiny else (1000, 100, 1000)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "my_data.safetensors"
        make_data(path, n, dim)
        config = pertlearn.load_config(
            preset="quickstart",
            overrides=[
                "data.name='file'",
                f"data.path={str(path)!r}",
                f"train_f.epochs={epochs}",
                f"train_g.epochs={epochs}",
            ],
        )
        result = pertlearn.run(config)
    m = result.metrics
    print(
        f"d = {config.data.dim}: f_acc_test {m['f_acc_test']:.3f}, "
        f"g_acc_test {m['g_acc_test']:.3f}, agreement {m['agreement']:.3f}"
    )
    if args.out is not None:
        print("saved", result.save(args.out))
    return m


if __name__ == "__main__":
    main()
