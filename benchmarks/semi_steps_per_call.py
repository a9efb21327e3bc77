"""Few-label training speed with K steps per jitted call (semi.steps_per_call), per strategy.

    python benchmarks/semi_steps_per_call.py [--config configs/fashion_mnist_semi.py] \
        [--strategy semi_gan] [--ks 1,10] [--steps 200] [--repeats 2] [--set KEY=VALUE ...]

Times `ganjax.studies.engine.train` of the strategy (all seeds of the config, vmapped or
unrolled as in the experiment) for 2K and 2K + --steps steps, interleaved over K, and reports
the difference per step: the steady-state time of one step of all seeds, without start-up and
compilation (a warm-up run per K first fills the persistent compilation cache, so the timed runs
read it).
The results are the same for every K (tests/studies/test_few_label.py checks bitwise equality).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time

import jax

from ganjax import names, parallel
from ganjax.cli import enable_compilation_cache
from ganjax.config import apply_overrides, load_config
from ganjax.studies import engine, few_label


def timed_training(strategy: str, config, context: engine.StudyContext, steps: int) -> float:
    """Seconds to build `strategy` with `config` (semi.steps = `steps`) and train its seeds."""
    config = config.copy_and_resolve_references()
    config.semi.steps = steps
    start = time.perf_counter()
    states = engine.train(engine.build_strategy(strategy, dataclasses.replace(context, config=config)), config,
                          context.mesh, progress=False)
    jax.block_until_ready(states)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/fashion_mnist_semi.py")
    parser.add_argument("--strategy", default="semi_gan", choices=names.FEW_LABEL_STRATEGIES)
    parser.add_argument("--ks", default="1,10", help="comma-separated semi.steps_per_call values")
    parser.add_argument("--steps", type=int, default=200, help="timed steps (a multiple of every K)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    ks = [int(k) for k in args.ks.split(",")]
    if any(args.steps % k for k in ks):
        raise SystemExit(f"--steps {args.steps} must be a multiple of every K in {ks}.")
    enable_compilation_cache()
    config = apply_overrides(load_config(args.config), args.set)
    mesh = parallel.make_mesh()
    per_step: dict[int, list[float]] = {k: [] for k in ks}
    with tempfile.TemporaryDirectory() as workdir:
        context = few_label.prepare(config, workdir, mesh, progress=False)
        for k in ks:  # warm-up: fills the persistent compilation cache, so later compiles are cache reads
            config.semi.steps_per_call = k
            timed_training(args.strategy, config, context, 2 * k)
        for repeat in range(args.repeats):
            for k in ks:
                config.semi.steps_per_call = k
                short = timed_training(args.strategy, config, context, 2 * k)
                long = timed_training(args.strategy, config, context, 2 * k + args.steps)
                per_step[k].append((long - short) / args.steps)
                print(f"repeat {repeat} K={k:>3d}: {2 * k} steps {short:6.1f} s, {2 * k + args.steps} steps "
                      f"{long:6.1f} s -> {1000 * per_step[k][-1]:.1f} ms/step (load {os.getloadavg()[0]:.1f})",
                      flush=True)
    print(f"config {args.config} {' '.join(args.set)}, strategy {args.strategy}, {config.experiment.num_seeds} seeds, "
          f"{args.steps} timed steps, {jax.device_count()} x {jax.devices()[0].platform}, {os.cpu_count()} CPUs")
    base = statistics.median(per_step[ks[0]])
    for k, values in per_step.items():
        ms = [1000 * value for value in values]
        print(f"  K={k:<3d} {statistics.median(ms):8.1f} ms/step [{min(ms):.1f}-{max(ms):.1f}]  "
              f"speed-up vs K={ks[0]}: {base / statistics.median(values):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
