"""The one training loop of ganjax: the GAN (ganjax.train), every study strategy
(ganjax.studies.engine) and the standalone classifier (ganjax.classify) step through it.

It calls a compiled step once per step, or K steps at once (steps_per_call, a `lax.scan` over K
stacked batches and keys, see ganjax.steps.make_multi_step) on every K-aligned block of K steps
(steps before the first aligned one, after a resume, and after the last, the tail, run one by
one), so that K > 1 reaches the same state as K = 1. After every call it advances the progress
bar and hands the metrics to the caller's `after_call`, which logs, checks, samples, saves, and
may stop the loop or replace the state (a roll-back).

The loop waits for each call to finish before the next: JAX dispatches asynchronously, and the
queue of steps dispatched ahead (up to a logging window: the main job's 100 steps ran on for
46-73 s on 2 CPU cores) would keep running after Ctrl-C. The wait costs no measurable throughput, as the
batches are prepared by a thread (ganjax.data.BatchIterator). Given an `on_interrupt`, Ctrl-C (SIGINT)
stops the loop after the call in flight instead of wherever KeyboardInterrupt strikes: the caller
saves the state reached, and the loop raises `Interrupted`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator

import jax
import numpy as np
from tqdm.auto import tqdm

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


def progress_bar(total: int, *, desc: str, initial: int = 0, disable: bool = False, leave: bool = True) -> tqdm:
    """A bar for `run_steps` (tqdm.auto: a widget in notebooks) counting finished steps. Its rate is the
    average over the steps run so far (smoothing=0) without each step function's first call, whose
    compilation run_steps takes off the bar's clock (tqdm's unpause), so the ETA holds steady through
    the periodic pauses (samples, checkpoints, live FID) instead of jumping after each, as a
    moving average of the last few seconds (tqdm's default) does."""
    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=disable, leave=leave, smoothing=0.0)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped `run_steps` between calls, at `step`; `saved` is what the caller's on_interrupt
    says it saved there (e.g. "checkpoint step 120 in workdir/checkpoints")."""

    def __init__(self, step: int, saved: str):
        super().__init__(f"stopped at step {step}; {saved}")
        self.step = step
        self.saved = saved


@contextlib.contextmanager
def _sigint_requests() -> Iterator[threading.Event]:
    """Yields an event that the first Ctrl-C sets instead of raising KeyboardInterrupt; the handler
    then steps aside, so a second Ctrl-C interrupts at once. Off the main thread, or when SIGINT is
    ignored or handled outside Python, nothing is installed and the event stays unset."""
    requested = threading.Event()
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield requested
        return

    def request_stop(signum, frame):
        requested.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, request_stop)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


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
    on_interrupt: Callable[[Any, int], str] | None = None,
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
      bar: a tqdm progress bar (`progress_bar`) advanced by the steps of each call once it has finished, or
        None. The first call of `single` and of `multi` (compilation) is left out of its elapsed time.
      on_interrupt: (state, step reached) -> what it saved, e.g. a checkpoint of that step. Given,
        Ctrl-C stops the loop after the call in flight and its after_call, calls it, and raises
        Interrupted(step, what it saved). None leaves Ctrl-C to raise KeyboardInterrupt.
    """
    stop_requests = _sigint_requests() if on_interrupt is not None else contextlib.nullcontext(threading.Event())
    step = start_step
    compiled = set()  # the step functions (single: False, multi: True) whose first call has finished
    with stop_requests as stop_requested:
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
            jax.block_until_ready(metrics)
            step += len(calls)
            if bar is not None:
                if stacked not in compiled:
                    bar.unpause()  # drops the time since the bar's last refresh: this call's compilation
                bar.update(len(calls))
            compiled.add(stacked)
            if after_call is not None:
                state, stop = after_call(state, step, metrics, stacked)
                if stop:
                    break
            if stop_requested.is_set():
                raise Interrupted(step, on_interrupt(state, step))
    return state, step
