"""K GAN steps per call under `lax.scan` against K calls of the per-step jitted function.

    python benchmarks/scan_vs_step.py [--config configs/fashion_mnist.py] [--k 10] [--repeats 3]
        [--loops per_step,scan,scan_canonical] [--unroll 1]

Prints ms per GAN step for each loop, measured interleaved:
  per_step        K calls of the jitted step (donated state);
  scan            one jitted `lax.scan` over the K steps, the step as written;
  scan_canonical  the same scan of `ganjax.xla_cpu.canonicalize_convs(step)`.
Why "scan" is slow on XLA:CPU: its ConvCanonicalization pass rewrites convolutions into the
NHWC/HWIO order its fast kernels take only in the entry computation, so the input- and
weight-gradient convolutions that JAX's transpose rules emit stay non-canonical inside a while
loop's body and are emitted as naive loops (ganjax/xla_cpu.py; jax-ml/jax#12868).
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

LOOPS = ("per_step", "scan", "scan_canonical")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/fashion_mnist.py")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loops", default=",".join(LOOPS), help=f"comma-separated subset of {LOOPS}")
    parser.add_argument("--unroll", type=int, default=1, help="lax.scan's unroll for the scanned loops")
    args = parser.parse_args()
    loops = args.loops.split(",")
    if unknown := set(loops) - set(LOOPS):
        parser.error(f"unknown loops {sorted(unknown)}; choose from {LOOPS}")
    config = load_config(args.config)
    train_set, _ = data.load_train_and_test(config.data)
    shape, batch_size, steps = train_set.image_shape, config.train.batch_size, args.k
    train_step = make_gan_train_step(config)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.uniform(-1, 1, (steps, config.gan.n_critic, batch_size, *shape)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, train_set.num_classes, (steps, config.gan.n_critic, batch_size)), jnp.int32)

    def make_scanned(step):
        def scanned(state, images, labels, key):
            def body(state, inputs):
                index, step_images, step_labels = inputs
                return step(state, {"images": step_images, "labels": step_labels}, jax.random.fold_in(key, index))

            return jax.lax.scan(body, state, (jnp.arange(steps), images, labels), unroll=args.unroll)

        return jax.jit(scanned, donate_argnums=0)

    per_step_fn = jax.jit(train_step, donate_argnums=0)

    def run_per_step(state, key_offset):
        for index in range(steps):
            state, metrics = per_step_fn(state, {"images": images[index], "labels": labels[index]},
                                         jax.random.key(key_offset + index))
        return state, metrics

    runners = {"per_step": run_per_step}
    if "scan" in loops:
        scan_fn = make_scanned(train_step)
        runners["scan"] = lambda state, key_offset: scan_fn(state, images, labels, jax.random.key(key_offset))
    if "scan_canonical" in loops:
        from ganjax.xla_cpu import canonicalize_convs

        canonical_fn = make_scanned(canonicalize_convs(train_step))
        runners["scan_canonical"] = lambda state, key_offset: canonical_fn(
            state, images, labels, jax.random.key(key_offset))
    make_state = lambda: create_gan_state(config, train_set.num_classes, shape, jax.random.key(0))  # noqa: E731
    states, times, first = {}, {loop: [] for loop in loops}, {}
    for loop in loops:  # compile + first call
        start = time.perf_counter()
        states[loop], metrics = runners[loop](make_state(), 0)
        jax.block_until_ready(metrics)
        first[loop] = time.perf_counter() - start
    for repeat in range(args.repeats):  # interleaved, so all see the same machine load
        for loop in loops:
            start = time.perf_counter()
            states[loop], metrics = runners[loop](states[loop], 1 + repeat)
            jax.block_until_ready(metrics)
            times[loop].append((time.perf_counter() - start) / steps)
    print(f"config {args.config}, batch {batch_size}, K={steps}, unroll={args.unroll}, jax {jax.__version__}")
    for loop in loops:
        values = [1000 * value for value in times[loop]]
        print(f"{loop:15s} {statistics.median(values):8.1f} ms/step (median of {args.repeats}; "
              f"min {min(values):.1f}, max {max(values):.1f}); first call incl. compile {first[loop]:.1f} s")


if __name__ == "__main__":
    main()
