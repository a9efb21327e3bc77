"""What every update step shares: the Batch/Metrics types, the generator forward, parameter
averages, seeds in one program and several steps per call. Pure functions; no I/O."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ganjax.state import ModelState
from ganjax.xla_cpu import canonicalize_convs

Batch = dict[str, jnp.ndarray]
Metrics = dict[str, jnp.ndarray]


def generate(
    generator_state: ModelState, params: Any, noise: jnp.ndarray, labels: jnp.ndarray, train: bool
) -> tuple[jnp.ndarray, Any]:
    """Images [B, S, S, C] from noise [B, Z] and labels [B], and the updated BatchNorm statistics."""
    variables = {"params": params, "batch_stats": generator_state.batch_stats}
    if not train:
        return generator_state.apply_fn(variables, noise, labels, train=False), generator_state.batch_stats
    images, mutated = generator_state.apply_fn(variables, noise, labels, train=True, mutable=["batch_stats"])
    return images, mutated.get("batch_stats", {})


def ema_decay_at(step: jnp.ndarray, decay: float) -> jnp.ndarray:
    """EMA decay warmed up as in tf.train.ExponentialMovingAverage(num_updates=step)."""
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(average: Any, new: Any, step: jnp.ndarray, decay: float) -> Any:
    """One exponential-moving-average update of the tree `average` towards `new`, with the decay
    warmed up at `step` (`ema_decay_at`)."""
    rate = ema_decay_at(step, decay)
    return jax.tree.map(lambda a, n: rate * a + (1.0 - rate) * n, average, new)


def over_seeds(fn: Callable, in_axes: tuple[int | None, ...], vectorize: bool = False) -> Callable:
    """`fn` over S independent seeds in one compiled program, like `jax.vmap(fn, in_axes)`
    (in_axes: 0 for an argument stacked over seeds, None for one shared by all), by default as
    S unrolled calls on the slices; `vectorize` uses jax.vmap itself.

    Why unrolled: batching a convolution over per-seed weights turns it into a grouped
    convolution, which XLA:CPU runs several times slower than S plain ones (SmallCNN
    classifier step, 5 seeds: 3.3x; DCGAN-generator semi-supervised step, 3 seeds: 3.0x;
    benchmarks/seed_loop.py). Networks of dense layers only batch well: vectorize them. The
    measurement is XLA:CPU's: on GPU and TPU a batched convolution is the fast form, so there
    every network is vectorised.
    """
    if vectorize or jax.default_backend() != "cpu":
        return jax.vmap(fn, in_axes=in_axes)

    def mapped(*args):
        num_seeds = next(jax.tree.leaves(arg)[0].shape[0] for arg, axis in zip(args, in_axes) if axis == 0)
        outputs = []
        for seed in range(num_seeds):
            seed_args = [jax.tree.map(lambda x: x[seed], arg) if axis == 0 else arg for arg, axis in zip(args, in_axes)]
            outputs.append(fn(*seed_args))
        return jax.tree.map(lambda *values: jnp.stack(values), *outputs)

    return mapped


def make_multi_step(train_step: Callable[[Any, Batch, jax.Array], tuple[Any, Metrics]]) -> Callable:
    """`train_step` over K stacked batches in one `lax.scan`: (state, batches, keys) -> (state,
    metrics), with every batch and key leaf stacked on a new leading axis K (e.g. GAN batches
    [K, n_critic, B, ...] and keys [K]) and each metric [K, ...], step by step.

    On CPU the scanned body is `canonicalize_convs(train_step)`: convolutions inside a loop body
    stay non-canonical on XLA:CPU and run several times slower (ganjax/xla_cpu.py), and
    canonicalize_convs does not reach into a scan it is given, so it wraps the step, not the scan.
    """
    # On GPU / TPU XLA lays convolutions out itself, inside loops too: the step is scanned as it is.
    canonical_step = canonicalize_convs(train_step) if jax.default_backend() == "cpu" else train_step

    def multi_step(state: Any, batches: Batch, keys: jax.Array) -> tuple[Any, Metrics]:
        def body(state, inputs):
            batch, key = inputs
            return canonical_step(state, batch, key)

        return jax.lax.scan(body, state, (batches, keys))

    return multi_step

