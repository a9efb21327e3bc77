"""The one training loop of ganjax: the GAN (ganjax.train), every study strategy
(ganjax.studies.engine) and the standalone classifier (ganjax.classify) step through it.

It calls a compiled step once per step, or K steps at once (steps_per_call, a `lax.scan` over K
stacked batches and keys, see ganjax.steps.make_multi_step) on every K-aligned block of K steps
(steps before the first aligned one, after a resume, and after the last, the tail, run one by
one), so that K > 1 reaches the same state as K = 1. After every call it advances the progress
bar and hands the metrics to the caller's `after_call`, which logs, checks, samples, saves, and
may stop the loop or replace the state (a roll-back).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from ganjax.data import stack_batches


@jax.jit
def fold_in_steps(keys: jax.Array, steps: jax.Array) -> jax.Array:
    """fold_in(keys, step) for each of steps [n] -> [n, *keys.shape]: one key (a GAN's, a single
    classifier's) or a key per seed [S], each folded with the step number."""

    def at(step):
        if keys.ndim == 0:
            return jax.random.fold_in(keys, step)
        return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, step)

    return jax.vmap(at)(steps)


def run_steps(
    state: Any,
    *,
    start_step: int,
    total_steps: int,
    next_batch: Callable[[], Any],
    place: Callable[[Any, bool], Any],
    step_keys: Callable[[np.ndarray], Any],
    single: Callable,
    multi: Callable | None = None,
    steps_per_call: int = 1,
    after_call: Callable[[Any, int, Any, bool], tuple[Any, bool]] | None = None,
    bar=None,
) -> tuple[Any, int]:
    """Runs steps start_step + 1 ... total_steps; returns (state, the last step run).

    Args:
      next_batch: () -> the next host batch (the loop asks for them in step order).
      place: (host batch, stacked) -> device batch; stacked batches have a leading K axis.
      step_keys: (steps [n] int) -> the keys of those steps ([n, ...]); the loop passes step
        numbers counted from 0 (the batch index), one per step of the call.
      single: (state, batch, key) -> (state, metrics), one step.
      multi: (state, batches, keys) -> (state, metrics [K, ...]), steps_per_call steps.
      after_call: (state, step reached, metrics, stacked) -> (state, stop), after every call.
      bar: a tqdm progress bar advanced by the steps of each call, or None.
    """
    step = start_step
    while step < total_steps:
        aligned = multi is not None and steps_per_call > 1 and step % steps_per_call == 0
        if aligned and step + steps_per_call <= total_steps:
            calls = np.arange(step, step + steps_per_call)
            batch = place(stack_batches([next_batch() for _ in calls]), True)
            state, metrics = multi(state, batch, step_keys(calls))
            stacked = True
        else:
            calls = np.arange(step, step + 1)
            state, metrics = single(state, place(next_batch(), False), step_keys(calls)[0])
            stacked = False
        step += len(calls)
        if bar is not None:
            bar.update(len(calls))
        if after_call is not None:
            state, stop = after_call(state, step, metrics, stacked)
            if stop:
                break
    return state, step
