"""Pools the per-seed results of several runs of one experiment (e.g. the same config run again
with another --config.seed) and prints each strategy's mean ± std and 95% t-interval over all
seeds, and the paired gain of the first strategy over the second (seed s of one run trains
both strategies, so their difference is taken seed by seed).

    python benchmarks/pool_seeds.py RUN1/report.json RUN2/report.json [--strategies semi_gan,supervised] [--metric accuracy]

Last line: `gain=MEAN std=STD ci95=LO,HI seeds=N` in the metric's units x 100 (points).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ganjax import report


def per_seed(path: str, strategy: str, metric: str) -> list[float]:
    """strategy's per-seed values of metric in the report.json at path."""
    with open(path) as file:
        runs = json.load(file)
    if strategy not in runs or metric not in runs[strategy]:
        raise ValueError(f"{path} has no {metric!r} for strategy {strategy!r}; it reports {sorted(runs)}. "
                         "Pass --strategies and --metric that every run reports.")
    return list(runs[strategy][metric]["per_seed"])


def pool(paths: list[str], strategies: tuple[str, str], metric: str) -> dict[str, dict]:
    """{strategy: report.summarize of the pooled seeds, "gain": summary of the paired differences}."""
    values = {name: [v for path in paths for v in per_seed(path, name, metric)] for name in strategies}
    first, second = (np.asarray(values[name]) for name in strategies)
    if first.shape != second.shape:
        raise ValueError(f"The runs report {first.size} seeds of {strategies[0]} but {second.size} of "
                         f"{strategies[1]}; a paired gain needs both strategies in every run.")
    return {**{name: report.summarize(values[name]) for name in strategies}, "gain": report.summarize(first - second)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="report.json files of runs of the same experiment")
    parser.add_argument("--strategies", default="semi_gan,supervised", help="FIRST,SECOND: gain = FIRST - SECOND")
    parser.add_argument("--metric", default="accuracy")
    args = parser.parse_args(argv)
    names = tuple(name.strip() for name in args.strategies.split(","))
    if len(names) != 2:
        parser.error(f"--strategies needs two names, FIRST,SECOND; got {args.strategies!r}.")
    pooled = pool(args.reports, names, args.metric)
    for name, summary in pooled.items():
        points = [round(100 * v, 2) for v in summary["per_seed"]]
        low, high = (100 * v for v in summary["ci95"])
        print(f"{name:>12}: {100 * summary['mean']:.2f} ± {100 * summary['std']:.2f} "
              f"(95% CI {low:.2f} to {high:.2f}) over {len(points)} seeds {points}")
    gain = pooled["gain"]
    print(f"gain={100 * gain['mean']:.2f} std={100 * gain['std']:.2f} "
          f"ci95={100 * gain['ci95'][0]:.2f},{100 * gain['ci95'][1]:.2f} seeds={len(gain['per_seed'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
