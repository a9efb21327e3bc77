"""Times ganjax's GAN train step (the jitted, donated, sharded step the training loop runs).

    python benchmarks/train_step.py [--config configs/fashion_mnist.py] [--batch-sizes 64,256]
        [--repeats 7] [--steps 20]

Prints, per batch size: compile time, ms/step (median and min-max over repeats of
`--steps` steps each, after warm-up) and images/s (real images through D per second).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import numpy as np

from ganjax import data, parallel
from ganjax.config import load_config
from ganjax.state import create_gan_state
from ganjax.steps import make_gan_train_step


def time_gan_step(config, batch_size: int, repeats: int, steps: int, image_shape, num_classes):
    config.train.batch_size = batch_size
    mesh = parallel.make_mesh()
    train_step = parallel.jit_step(make_gan_train_step(config), mesh, batch_axis=1)
    state = parallel.replicate(create_gan_state(config, num_classes, image_shape, jax.random.key(0)), mesh)
    rng = np.random.default_rng(0)
    host_batch = {
        "images": rng.uniform(-1, 1, (config.gan.n_critic, batch_size, *image_shape)).astype(np.float32),
        "labels": rng.integers(0, num_classes, (config.gan.n_critic, batch_size)).astype(np.int32),
    }
    batch = parallel.shard_batch(host_batch, mesh, batch_axis=1)
    start = time.perf_counter()
    state, metrics = train_step(state, batch, jax.random.key(0))
    jax.block_until_ready(metrics)
    compile_seconds = time.perf_counter() - start
    for index in range(3):  # warm-up
        state, metrics = train_step(state, batch, jax.random.key(index))
    jax.block_until_ready(metrics)
    per_step = []
    for repeat in range(repeats):
        start = time.perf_counter()
        for index in range(steps):
            state, metrics = train_step(state, batch, jax.random.key(repeat * steps + index))
        jax.block_until_ready(metrics)
        per_step.append((time.perf_counter() - start) / steps)
    images = batch_size * config.gan.n_critic
    return {
        "batch_size": batch_size,
        "compile_s": compile_seconds,
        "ms_median": 1000 * statistics.median(per_step),
        "ms_min": 1000 * min(per_step),
        "ms_max": 1000 * max(per_step),
        "images_per_s": images / statistics.median(per_step),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/fashion_mnist.py")
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    config = load_config(args.config)
    train_set, _ = data.load_train_and_test(config.data)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__}, devices {jax.devices()}")
    print(f"config: {args.config} (G width {config.model.generator_width}, D width "
          f"{config.model.discriminator_width}, upsample {config.model.upsample}, loss {config.gan.loss})")
    print("batch  compile_s  ms/step median [min-max]  images/s")
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        result = time_gan_step(config, batch_size, args.repeats, args.steps, train_set.image_shape,
                               train_set.num_classes)
        print(f"{result['batch_size']:5d}  {result['compile_s']:9.2f}  "
              f"{result['ms_median']:8.1f} [{result['ms_min']:.1f}-{result['ms_max']:.1f}]  "
              f"{result['images_per_s']:9.0f}")


if __name__ == "__main__":
    main()
