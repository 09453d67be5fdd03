"""Perturbation learning on your own images, saved as a safetensors file.

    python examples/own_images.py [--out runs/own-images] [--tiny]

An image data file holds ``x_train`` (N, C, H, W) floats in [0, 1] or uint8 0..255 (read as
x / 255) with C = 1 or 3 and ``y_train`` (N,) integer class labels 0..K-1, optionally
``x_test`` / ``y_test`` (otherwise a seeded share ``data.split`` is held out) and the metadata
``class_names`` (a JSON list of K names, used by the report); the image shape, ``data.dim``
and the number of classes K (1 + the largest label) are read from the file. Here the data are
three classes of 16×16 8-bit RGB images made on the spot: noise tinted red, green or blue.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

import pertlearn

CLASS_NAMES = ["red", "green", "blue"]


def make_images(path: Path, n: int, size: int, seed: int = 0) -> None:
    """``n`` uint8 images ``(n, 3, size, size)`` of 3 classes: class k brightens channel k."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = 0.6 * torch.rand(n, 3, size, size, generator=gen)
    x[torch.arange(n), y] += 0.4  # the class's own channel is brighter
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    metadata = {"class_names": json.dumps(CLASS_NAMES)}
    save_file({"x_train": pixels, "y_train": y}, str(path), metadata=metadata)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="save the run directory here")
    parser.add_argument("--tiny", action="store_true", help="a few seconds (used by the tests)")
    args = parser.parse_args(argv)
    n, size, epochs = (120, 8, 2) if args.tiny else (2000, 16, 10)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "my_images.safetensors"
        make_images(path, n, size)
        config = pertlearn.load_config(
            preset="iclr-mnist-natural-rand-l2",
            overrides=[
                "data.name='file'",
                f"data.path={str(path)!r}",
                "model.options={width=8, hidden=32}",
                f"train_f.epochs={epochs}",
                f"train_g.epochs={epochs}",
                "controls=[]",
            ],
        )
        result = pertlearn.run(config)
    m = result.metrics
    print(
        f"{m['num_classes']} classes of {tuple(result.tensors['x_train'].shape[1:])} images: "
        f"f_acc_test {m['f_acc_test']:.3f}, g_acc_test {m['g_acc_test']:.3f}, "
        f"chance {m['chance']:.3f}"
    )
    if args.out is not None:
        print("saved", result.save(args.out))
    return m


if __name__ == "__main__":
    main()
