"""Where the wall time of `python -m ganjax.train` goes, phase by phase.

    python benchmarks/profile_training.py [--config configs/fashion_mnist.py] [--steps 1000] \
        [--set KEY=VALUE ...]

Runs `ganjax.train.train_and_evaluate` in-process in a fresh workdir with timers around each
phase of the loop, and prints a table (seconds, share of the wall time, ms per step):

  start-up            data loading, state init, until the first step is called
  first calls         the first call of each compiled step function (compilation)
  GAN steps           every later step call, waited for (block_until_ready)
  host batches        drawing the next host batch(es) from the data iterator
  host->device        sharding the batch onto the mesh
  sample grids        generating and writing the fixed-noise PNG grid
  checkpoints         orbax saves (the asynchronous part finishes in `rest`)
  metrics log         appending to metrics.jsonl
  rest                everything else (progress bar, metric sums, final waits)

Timing each step call to completion serialises work that the real loop overlaps (it draws
the next batch while the device computes), so the phases are an upper bound on what each
costs; the loop's own images/s (metrics.jsonl) is printed beside them. Run it with the config
and step count of interest: the periods of logging, samples and checkpoints are the config's,
so 1,000 steps of configs/fashion_mnist.py holds 10 logs, one grid and one checkpoint, the
same shares as its 10,000-step run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time

import jax

import ganjax.train as train_module
from ganjax import checkpoint, data, parallel, visualize
from ganjax.cli import enable_compilation_cache
from ganjax.config import apply_overrides, load_config

PHASES = ("start-up", "first calls", "GAN steps", "host batches", "host->device", "sample grids", "checkpoints",
          "metrics log", "rest")


class Profile:
    """Seconds per phase, filled by the wrappers below."""

    def __init__(self):
        self.seconds = collections.Counter()
        self.start = time.perf_counter()
        self.first_step_at = None

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] += seconds


def _timed(profile: Profile, phase: str, function, block: bool = False):
    def wrapped(*args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        if block:
            jax.block_until_ready(result)
        profile.add(phase, time.perf_counter() - start)
        return result

    return wrapped


def _timed_step(profile: Profile, step_fn):
    """A compiled step whose first call counts as compilation and later ones as GAN steps."""
    called = [False]

    def wrapped(*args):
        if profile.first_step_at is None:
            profile.first_step_at = time.perf_counter()
        start = time.perf_counter()
        result = jax.block_until_ready(step_fn(*args))
        profile.add("GAN steps" if called[0] else "first calls", time.perf_counter() - start)
        called[0] = True
        return result

    return wrapped


class _TimedIterator:
    def __init__(self, profile: Profile, iterator):
        self.profile, self.iterator = profile, iterator

    def __iter__(self):
        return self

    def __next__(self):
        start = time.perf_counter()
        item = next(self.iterator)
        self.profile.add("host batches", time.perf_counter() - start)
        return item

    def __getattr__(self, name):
        return getattr(self.iterator, name)


def instrument(profile: Profile, monkeypatch: list) -> None:
    """Wraps the functions ganjax.train calls; `monkeypatch` collects (module, name, original)."""

    def patch(module, name, replacement):
        monkeypatch.append((module, name, getattr(module, name)))
        setattr(module, name, replacement)

    jit_step = parallel.jit_step
    patch(parallel, "jit_step", lambda *args, **kwargs: _timed_step(profile, jit_step(*args, **kwargs)))
    iterate_batches = data.iterate_batches
    patch(data, "iterate_batches", lambda *args, **kwargs: _TimedIterator(profile, iterate_batches(*args, **kwargs)))
    patch(parallel, "shard_global_batch", _timed(profile, "host->device", parallel.shard_global_batch, block=True))
    patch(train_module, "generate_images", _timed(profile, "sample grids", train_module.generate_images, block=True))
    patch(visualize, "save_image_grid", _timed(profile, "sample grids", visualize.save_image_grid))
    patch(checkpoint, "save", _timed(profile, "checkpoints", checkpoint.save))
    patch(train_module, "_append_metrics", _timed(profile, "metrics log", train_module._append_metrics))


def table(profile: Profile, total: float, steps: int) -> list[str]:
    profile.seconds["start-up"] = (profile.first_step_at or profile.start) - profile.start
    profile.seconds["rest"] = total - sum(seconds for phase, seconds in profile.seconds.items() if phase != "rest")
    lines = [f"  {'phase':<14s} {'seconds':>9s} {'share':>7s} {'ms/step':>8s}"]
    for phase in PHASES:
        seconds = profile.seconds[phase]
        lines.append(f"  {phase:<14s} {seconds:9.2f} {100 * seconds / total:6.1f}% {1000 * seconds / steps:8.2f}")
    lines.append(f"  {'total':<14s} {total:9.2f} {100.0:6.1f}% {1000 * total / steps:8.2f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/fashion_mnist.py")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    config = apply_overrides(load_config(args.config), [f"train.steps={args.steps}", *args.set])
    enable_compilation_cache()
    profile, patched = Profile(), []
    instrument(profile, patched)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            profile.start = time.perf_counter()
            train_module.train_and_evaluate(config, workdir)
            total = time.perf_counter() - profile.start
            with open(os.path.join(workdir, train_module.METRICS_FILE)) as stream:
                rates = [json.loads(line).get("images_per_sec") for line in stream]
    finally:
        for module, name, original in reversed(patched):
            setattr(module, name, original)
    rates = [rate for rate in rates if rate]
    print(f"config {args.config} {' '.join(args.set)}, {args.steps} steps, batch {config.train.batch_size}, "
          f"steps_per_call {config.train.steps_per_call}, {jax.device_count()} x {jax.devices()[0].platform}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("\n".join(table(profile, total, args.steps)))
    if rates:
        print(f"loop's own images/s (metrics.jsonl, instrumented run): median {sorted(rates)[len(rates) // 2]:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
