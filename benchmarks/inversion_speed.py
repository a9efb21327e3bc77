"""Inversion speed on CPU with and without rewriting the gradient's convolutions (ganjax.xla_cpu).

    python benchmarks/inversion_speed.py --workdir workdirs/fashion_mnist [--num 32] [--steps 25]
        [--restarts 1] [--classes 2] [--repeats 2]

The inversion (`ganjax.repair.inversion.invert_batch`: repair by inversion and Defense-GAN's projection)
runs its Adam steps in a `lax.scan`, whose body XLA:CPU's convolution canonicalisation does not visit.
Inverts `--num` images that the GAN of `--workdir` makes (`--classes` candidate classes x `--restarts`
starts x `--steps` Adam steps each, every pixel weighed 1, no prior: Defense-GAN's projection) with
canonical_convs False and True, and prints for each the compile time, the best of `--repeats` timed
runs, the images per second, and the largest difference between the two results.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from ganjax.cli import enable_compilation_cache
from ganjax.repair.inversion import invert_batch
from ganjax.sample import load_generator
from ganjax.state import generator_source


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num", type=int, default=32)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    enable_compilation_cache()
    generator = load_generator(args.workdir)
    source = generator_source(generator.state, generator.use_ema)
    labels = np.arange(args.num, dtype=np.int32) % generator.num_classes
    images = jnp.asarray(generator.sample(jax.random.key(0), labels))
    candidates = jnp.asarray(np.stack([(labels + shift) % generator.num_classes for shift in range(args.classes)], 1))
    starts = jax.random.normal(jax.random.key(1), (args.num, args.classes, args.restarts,
                                                   generator.config.model.noise_dim), jnp.float32)
    weights = jnp.ones(images.shape[:3], jnp.float32)
    print(f"{jax.devices()[0].device_kind}; {args.num} images x {args.classes} classes x {args.restarts} starts x "
          f"{args.steps} steps; generator step {generator.step}")
    results = {}
    for canonical in (False, True):
        def run():
            return jax.block_until_ready(invert_batch(
                source, images, weights, candidates, starts, jnp.float32(0.05), jnp.float32(0.0), steps=args.steps,
                gan_loss=generator.config.gan.loss, canonical_convs=canonical))

        start = time.perf_counter()
        results[canonical] = run()
        compile_and_run = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        best = min(times)
        print(f"canonical_convs={canonical}: first call {compile_and_run:.1f} s, best run {best:.2f} s, "
              f"{args.num / best:.2f} images/s")
    difference = float(np.max(np.abs(np.asarray(results[True][0]) - np.asarray(results[False][0]))))
    print(f"largest difference between the two projections: {difference:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
