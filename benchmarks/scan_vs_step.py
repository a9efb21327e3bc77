"""K GAN steps per call under `lax.scan` against K calls of the per-step jitted function.

    python benchmarks/scan_vs_step.py [--config configs/fashion_mnist.py] [--k 10] [--repeats 3]

Prints ms per GAN step for both; the training loop uses the faster (per-step jit).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from ganjax import data
from ganjax.config import load_config
from ganjax.state import create_gan_state
from ganjax.steps import make_gan_train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/fashion_mnist.py")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = load_config(args.config)
    train_set, _ = data.load_train_and_test(config.data)
    shape, batch_size, steps = train_set.image_shape, config.train.batch_size, args.k
    train_step = make_gan_train_step(config)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.uniform(-1, 1, (steps, config.gan.n_critic, batch_size, *shape)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, train_set.num_classes, (steps, config.gan.n_critic, batch_size)), jnp.int32)

    def scanned(state, images, labels, key):
        def body(state, inputs):
            index, step_images, step_labels = inputs
            return train_step(state, {"images": step_images, "labels": step_labels}, jax.random.fold_in(key, index))

        return jax.lax.scan(body, state, (jnp.arange(steps), images, labels))

    per_step_fn = jax.jit(train_step, donate_argnums=0)
    scanned_fn = jax.jit(scanned, donate_argnums=0)
    make_state = lambda: create_gan_state(config, train_set.num_classes, shape, jax.random.key(0))  # noqa: E731
    state_a, state_b = make_state(), make_state()
    state_a, metrics = per_step_fn(state_a, {"images": images[0], "labels": labels[0]}, jax.random.key(0))
    state_b, metrics = scanned_fn(state_b, images, labels, jax.random.key(0))
    jax.block_until_ready((state_a, state_b))
    per_step, per_scan = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        start = time.perf_counter()
        for index in range(steps):
            state_a, metrics = per_step_fn(state_a, {"images": images[index], "labels": labels[index]},
                                           jax.random.key(index))
        jax.block_until_ready(metrics)
        per_step.append((time.perf_counter() - start) / steps)
        start = time.perf_counter()
        state_b, metrics = scanned_fn(state_b, images, labels, jax.random.key(1))
        jax.block_until_ready(metrics)
        per_scan.append((time.perf_counter() - start) / steps)
    print(f"config {args.config}, batch {batch_size}, K={steps}, jax {jax.__version__}")
    print(f"per-step jit: {1000 * statistics.median(per_step):.1f} ms/step (median of {args.repeats})")
    print(f"lax.scan K:   {1000 * statistics.median(per_scan):.1f} ms/step (median of {args.repeats})")


if __name__ == "__main__":
    main()
