"""GPU benchmarks at paper scale (ICLR24 arXiv:2402.10470): the optimized CUDA path against the
straightforward fp32 loop on the same device.

    .venv/bin/python -m benchmarks.gpu                 # CUDA → benchmarks/results-gpu.json
    .venv/bin/python -m benchmarks.gpu --allow-cpu     # smoke run at tiny sizes on any machine
    .venv/bin/python -m benchmarks.gpu --only wrn,pgd --wrn-batches 50

Cases (each records its sizes, the seconds measured and how any full-size figure was
extrapolated):

- ``wrn``: one epoch of WRN-28-10 (dropout 0.3) on CIFAR-10-shaped random tensors
  (50,000 images ``(3, 32, 32)``, 10 classes, batch 128, augmentation on). *Baseline*: the
  straightforward loop, fp32, data on the host, each batch shuffled, augmented and copied to
  the device, loss read back per batch. *Ours*:
  :func:`~pertlearn.training.minibatch.fit_minibatch` with the data on the device,
  ``precision = "bf16"`` and ``channels_last = "on"``. Both run ``--wrn-batches`` batches
  after one untimed warm-up batch; the epoch time is extrapolated linearly to 391 batches
  (said in the record).
- ``pgd``: PGD-L2 throughput (images/s, 100 steps, ε = 0.5) on WRN-28-10 in eval mode.
  *Baseline*: fp32, the attack's default chunk of 256 images. *Ours*: bf16 autocast and the batch
  from :func:`~pertlearn.training.accel.probe_batch_size`.
- ``iclr``: wall time of the ICLR24 artificial paper-scale preset (``iclr-artificial-l2-uniform``
  at ``scale = "paper"``: d = 10,000, m = 1,000, N = 1,000, N_noise = 10,000, 100,000 epochs) on
  the device with ``fast_train = true``, measured with the epochs capped at ``E`` and ``2E``
  (``--iclr-epochs``) and extrapolated linearly to 100,000 (said in the record).

Without a CUDA device it refuses (exit 2, one line) unless ``--allow-cpu``, which runs every
case at a tiny size on the CPU (WRN-10-1 on 8×8 images, bf16) and writes
``benchmarks/results-gpu-smoke.json``: a check that the script works, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import pertlearn
from pertlearn.attacks import PgdL2
from pertlearn.experiments import load_config, run
from pertlearn.experiments.rundir import write_json
from pertlearn.models.cnn import WideResNet
from pertlearn.training.accel import probe_batch_size
from pertlearn.training.minibatch import MinibatchConfig, fit_minibatch, random_crop_flip

HERE = Path(__file__).parent
RESULTS = HERE / "results-gpu.json"
SMOKE_RESULTS = HERE / "results-gpu-smoke.json"
CASES = ("wrn", "pgd", "iclr")
CIFAR_TRAIN = 50_000
PAPER_EPOCHS = 100_000


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds of ``work()`` on ``device`` (synchronized before and after) and its value."""
    synchronize(device)
    start = time.perf_counter()
    value = work()
    synchronize(device)
    return time.perf_counter() - start, value


def wide_resnet(depth: int, widen: int, device: torch.device, side: int = 32) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    model = WideResNet((3, side, side), 10, depth=depth, widen=widen, dropout=0.3, generator=gen)
    return model.to(device)


SMOKE_SIDE = 8
"""Image side of the smoke run (WRN-10-1 on ``(3, 8, 8)`` images): seconds on a CPU."""


def cifar_shaped(n: int, seed: int = 0, side: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random images ``(n, 3, side, side)`` in [0, 1] (CIFAR-10: side 32) and labels
    ``(n,)`` in 0..9, on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, side, side, generator=gen)
    return x, torch.randint(0, 10, (n,), generator=gen)


def straightforward_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator,
) -> float:
    """The plain loop: host data, per-batch augmentation on the host and copy to the device,
    fp32, the loss read back every batch; returns the mean loss."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    model.train()
    order = torch.randperm(x.shape[0], generator=generator)
    total = 0.0
    for first in range(0, x.shape[0], batch_size):
        idx = order[first : first + batch_size]
        xb = random_crop_flip(x[idx], generator).to(device)
        yb = y[idx].to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * idx.numel()
    return total / x.shape[0]


def wrn_case(device: torch.device, smoke: bool, batches: int) -> dict[str, Any]:
    depth, widen, batch, side = (10, 1, 16, SMOKE_SIDE) if smoke else (28, 10, 128, 32)
    n = batches * batch
    x, y = cifar_shaped(n, side=side)
    precision = "bf16"
    warm_x, warm_y = cifar_shaped(batch, seed=1, side=side)

    base_model = wide_resnet(depth, widen, device, side)
    straightforward_epoch(base_model, warm_x, warm_y, batch, device, torch.Generator())
    base_s, _ = timed(
        device,
        lambda: straightforward_epoch(
            base_model, x, y, batch, device, torch.Generator().manual_seed(0)
        ),
    )

    ours_model = wide_resnet(depth, widen, device, side)
    config = MinibatchConfig(
        batch_size=batch,
        epochs=1,
        augment=True,
        plateau_patience=None,
        precision=precision,
        channels_last="on",
    )
    fit_minibatch(ours_model, warm_x.to(device), warm_y.to(device), config)
    x_dev, y_dev = x.to(device), y.to(device)
    ours_s, _ = timed(
        device,
        lambda: fit_minibatch(
            ours_model, x_dev, y_dev, config, generator=torch.Generator().manual_seed(0)
        ),
    )
    full_batches = math.ceil(CIFAR_TRAIN / batch)
    return {
        "model": f"WRN-{depth}-{widen}",
        "image_shape": [3, side, side],
        "images": n,
        "batch_size": batch,
        "batches_timed": batches,
        "baseline": "fp32, host data, per-batch augmentation and copy, loss read per batch",
        "ours": f"fit_minibatch: data on the device, precision {precision}, channels_last on",
        "baseline_seconds": base_s,
        "ours_seconds": ours_s,
        "speedup": base_s / ours_s,
        "epoch_seconds_baseline": base_s * full_batches / batches,
        "epoch_seconds_ours": ours_s * full_batches / batches,
        "extrapolation": f"linear from {batches} timed batches to {full_batches} (50,000 images)",
    }


def pgd_case(device: torch.device, smoke: bool, images: int) -> dict[str, Any]:
    depth, widen, side = (10, 1, SMOKE_SIDE) if smoke else (28, 10, 32)
    model = wide_resnet(depth, widen, device, side).eval()
    x, _ = cifar_shaped(images, seed=2, side=side)
    x = x.to(device)
    target = torch.randint(0, 10, (images,), generator=torch.Generator().manual_seed(3)).to(device)
    steps = 100
    precision = "bf16"
    chunk = (
        probe_batch_size(model, x[:1], precision=precision)
        if device.type == "cuda"
        else min(images, 256)
    )
    baseline = PgdL2(0.5, steps=steps, clip=(0.0, 1.0))
    ours = PgdL2(0.5, steps=steps, clip=(0.0, 1.0), precision=precision, batch_size=chunk)
    PgdL2(0.5, steps=1, clip=(0.0, 1.0))(model, x[:8], target[:8])  # warm-up
    base_s, _ = timed(device, lambda: baseline(model, x, target))
    ours_s, _ = timed(device, lambda: ours(model, x, target))
    return {
        "model": f"WRN-{depth}-{widen}",
        "image_shape": [3, side, side],
        "images": images,
        "steps": steps,
        "baseline": "fp32, chunks of 256",
        "ours": f"precision {precision}, chunk {chunk}"
        + (" (probed from CUDA memory)" if device.type == "cuda" else ""),
        "baseline_seconds": base_s,
        "ours_seconds": ours_s,
        "baseline_images_per_s": images / base_s,
        "ours_images_per_s": images / ours_s,
        "speedup": base_s / ours_s,
        "baseline_fooling_rate": baseline.last_fooling_rate,
        "ours_fooling_rate": ours.last_fooling_rate,
    }


def iclr_case(device: torch.device, smoke: bool, epochs: int) -> dict[str, Any]:
    sizes = (
        ["data.dim=200", "data.n_train=20", "data.n_noise=100", "data.n_test=100", "model.width=10"]
        if smoke
        else []
    )

    def capped(cap: int) -> float:
        overrides = [
            *sizes,
            f"device={device}",
            "fast_train=true",
            "save_tensors=false",
            f"train_f.epochs={cap}",
            f"train_g.epochs={cap}",
        ]
        config = load_config(
            preset="iclr-artificial-l2-uniform", scale="paper", overrides=overrides
        )
        seconds, _ = timed(device, lambda: run(config))
        return seconds

    first, second = capped(epochs), capped(2 * epochs)
    per_epoch = max(second - first, 0.0) / epochs
    fixed = first - per_epoch * epochs
    return {
        "preset": "iclr-artificial-l2-uniform (scale paper)" + (", shrunk" if smoke else ""),
        "fast_train": True,
        "epochs_capped": [epochs, 2 * epochs],
        "seconds_capped": [first, second],
        "seconds_per_epoch": per_epoch,
        "paper_epochs": PAPER_EPOCHS,
        "extrapolated_seconds": fixed + per_epoch * PAPER_EPOCHS,
        "extrapolation": (
            f"linear t = a + b·E through E = {epochs} and {2 * epochs} to {PAPER_EPOCHS} epochs of "
            "f, g and the control (an upper bound if ReduceLROnPlateau or stop_tol end early)"
        ),
    }


def device_record(device: torch.device) -> dict[str, Any]:
    record: dict[str, Any] = {
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        ),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "pertlearn": pertlearn.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        record["device_memory_gib"] = props.total_memory / 2**30
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the usage lines
    )
    parser.add_argument("--allow-cpu", action="store_true", help="smoke run at tiny sizes")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("--wrn-batches", type=int, default=None, help="batches timed (wrn)")
    parser.add_argument("--pgd-images", type=int, default=None, help="images attacked (pgd)")
    parser.add_argument("--iclr-epochs", type=int, default=None, help="epoch cap E (iclr)")
    parser.add_argument("--out", type=Path, default=None, help="where the JSON goes")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        print(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}", file=sys.stderr)
        return 2
    smoke = not torch.cuda.is_available()
    if smoke and not args.allow_cpu:
        print(
            "benchmarks.gpu needs a CUDA device (none found); pass --allow-cpu for a tiny "
            "smoke run on the CPU",
            file=sys.stderr,
        )
        return 2
    device = torch.device("cpu" if smoke else "cuda")
    out = args.out or (SMOKE_RESULTS if smoke else RESULTS)
    record: dict[str, Any] = {**device_record(device), "smoke": smoke, "cases": {}}
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "wrn": lambda: wrn_case(device, smoke, args.wrn_batches or (2 if smoke else 100)),
        "pgd": lambda: pgd_case(device, smoke, args.pgd_images or (4 if smoke else 1024)),
        "iclr": lambda: iclr_case(device, smoke, args.iclr_epochs or (5 if smoke else 2000)),
    }
    for name in cases:
        started = time.perf_counter()
        record["cases"][name] = runners[name]()
        print(
            f"{name}: {json.dumps(record['cases'][name])} ({time.perf_counter() - started:.1f} s)",
            flush=True,
        )
    write_json(out, record)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
