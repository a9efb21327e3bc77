"""S seeds in one compiled step: `jax.vmap` against `ganjax.steps.over_seeds` (S unrolled calls).

    python benchmarks/seed_loop.py [--repeats 5] [--steps 10]

Times, on random data of the real shapes, the long-tail classifier step of
configs/fashion_mnist_lt.py (SmallCNN, 5 seeds, batch 64) and the few-label steps of
configs/fashion_mnist_semi.py (semi_gan with the DCGAN generator, and supervised; 3 seeds,
batches of 100), each jitted both ways, interleaved; prints the median and min-max ms per
step over --repeats runs of --steps steps. Last line: `speedup_recognition=X speedup_semi_gan=Y`
(vmap time / over_seeds time; "recognition" is the long-tail classifier case).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from ganjax.config import load_config
from ganjax.steps import make_classifier_step, make_semi_gan_step, make_supervised_few_label_step, over_seeds
from ganjax.studies import engine, few_label, long_tail


def long_tail_case(num_seeds: int = 5, batch_size: int = 64):
    config = load_config("fashion_mnist_lt")
    config.experiment.num_seeds = num_seeds
    init_keys, _ = engine.seed_keys(config.seed, num_seeds, long_tail.CLASSIFIER_STREAM)
    states = long_tail.init_classifier_states(config, 10, (28, 28, 1), init_keys)
    rng = np.random.default_rng(0)
    batch = {
        "images": jnp.asarray(rng.uniform(-1, 1, (num_seeds, batch_size, 28, 28, 1)), jnp.float32),
        "labels": jnp.asarray(rng.integers(0, 10, (num_seeds, batch_size)), jnp.int32),
        "weights": jnp.ones((num_seeds, batch_size), jnp.float32),
    }
    step = make_classifier_step(long_tail.make_step_spec(long_tail.COMPOSITIONS["plain"], config, np.ones(10))[0])
    keys = jax.random.split(jax.random.key(1), num_seeds)
    runners = {
        "vmap": jax.vmap(step, in_axes=(0, 0, 0, None)),
        "over_seeds": over_seeds(step, in_axes=(0, 0, 0, None)),
    }
    return states, {name: (lambda s, fn=fn: fn(s, batch, keys, None)) for name, fn in runners.items()}


def semi_case(strategy: str, num_seeds: int = 3):
    config = load_config("fashion_mnist_semi")
    config.experiment.num_seeds = num_seeds
    rng = np.random.default_rng(0)
    size = config.semi.batch_size
    images = jnp.asarray(rng.uniform(-1, 1, (num_seeds, size, 28, 28, 1)), jnp.float32)
    batch = {"labelled_images": images, "labels": jnp.zeros((num_seeds, size), jnp.int32), "unlabelled_images": images}
    init_keys, _ = engine.seed_keys(config.seed, num_seeds, few_label.FEW_LABEL_STREAM)
    states = jax.vmap(lambda key: few_label.init_state(strategy, config, 10, images[0], key))(init_keys)
    make_step = {"semi_gan": make_semi_gan_step, "supervised": make_supervised_few_label_step}[strategy]
    step = make_step(few_label.step_spec(strategy, config))
    keys = jax.random.split(jax.random.key(1), num_seeds)
    runners = {"vmap": jax.vmap(step), "over_seeds": over_seeds(step, in_axes=(0, 0, 0))}  # unrolled
    return states, {name: (lambda s, fn=fn: fn(s, batch, keys)) for name, fn in runners.items()}


def time_case(states, runners: dict, repeats: int, steps: int) -> dict[str, list[float]]:
    jitted = {name: jax.jit(fn) for name, fn in runners.items()}
    current = {}
    for name, fn in jitted.items():  # compile and warm up
        current[name], metrics = fn(states)
        jax.block_until_ready(metrics)
    times = {name: [] for name in jitted}
    for _ in range(repeats):  # interleaved, so both see the same machine load
        for name, fn in jitted.items():
            start = time.perf_counter()
            for _ in range(steps):
                current[name], metrics = fn(current[name])
            jax.block_until_ready(metrics)
            times[name].append(1000 * (time.perf_counter() - start) / steps)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].platform}")
    speedups = {}
    cases = {
        "recognition": lambda: long_tail_case(),
        "semi_gan": lambda: semi_case("semi_gan"),
        "supervised": lambda: semi_case("supervised"),
    }
    for case, make in cases.items():
        states, runners = make()
        times = time_case(states, runners, args.repeats, args.steps)
        for name, values in times.items():
            print(f"{case:12s} {name:10s} median {statistics.median(values):8.1f} ms/step "
                  f"(min {min(values):.1f}, max {max(values):.1f})")
        speedups[case] = statistics.median(times["vmap"]) / statistics.median(times["over_seeds"])
    print(f"speedup_recognition={speedups['recognition']:.2f} speedup_semi_gan={speedups['semi_gan']:.2f}")


if __name__ == "__main__":
    main()
