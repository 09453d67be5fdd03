"""Time the NeurIPS24 theory (directions, f̂, ĝ, decision map) at the papers' sweep size.

    .venv/bin/python benchmarks/bench_theory.py --n 10000 --dim 1000

The networks are untrained (the theory's cost does not depend on the weights); everything
else is what ``pertlearn theory`` computes. Peak kernel memory is one ``chunk × N`` block.
"""

from __future__ import annotations

import argparse
import time

import torch

from pertlearn.analysis.theory import RunData, compute_theory, draw_maps
from pertlearn.attacks import GradientStep
from pertlearn.data.synthetic import balanced_signs, shifted_gauss
from pertlearn.models import TwoLayerNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--maps", type=int, default=0, help="decision-map resolution (0: none)")
    parser.add_argument("--out", default="/tmp", help="folder for the decision map")
    args = parser.parse_args()

    g = torch.Generator().manual_seed(0)
    x, y = shifted_gauss(args.n, args.dim, g)
    x_test, y_test = shifted_gauss(args.n_test, args.dim, g)
    f = TwoLayerNet(args.dim, args.width, generator=g)
    g_net = TwoLayerNet(args.dim, args.width, generator=g)
    y_adv = balanced_signs(args.n, g)
    eps = 0.001 * args.dim**0.5
    x_adv = GradientStep(eps)(f, x, y_adv)
    run = RunData(
        x_train=x, y_train=y, x_test=x_test, y_test=y_test, y_adv=y_adv, x_adv=x_adv,
        g_inputs=x_adv - x, base=x, f=f, g=g_net,
        model_f={"name": "two_layer", "slope": 0.0}, model_g={"name": "two_layer", "slope": 0.0},
        eps=eps, scenario="perturbation_only", name="bench",
    )  # fmt: skip
    torch.set_num_threads(torch.get_num_threads())
    start = time.perf_counter()
    report = compute_theory(run, chunk_size=args.chunk_size)
    theory_s = time.perf_counter() - start
    print(f"N={args.n} d={args.dim} chunk={args.chunk_size}: theory {theory_s:.1f} s")
    print({k: round(v, 4) for k, v in report.metrics.items()})
    if args.maps:
        start = time.perf_counter()
        draw_maps(run, report, args.out, resolution=args.maps)
        print(f"decision map {args.maps}x{args.maps}: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
