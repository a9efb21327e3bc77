"""The training loop's progress bar: tqdm.auto everywhere, finished steps counted, a steady ETA."""

import os
import re

import jax.numpy as jnp
import numpy as np
import pytest
import tqdm.auto

from conftest import REPO
from ganjax import loop


def test_every_progress_bar_is_tqdm_auto():
    """tqdm.auto shows a widget in notebooks (Colab) and text in a terminal; plain tqdm prints text everywhere."""
    plain = []
    for directory, _, files in os.walk(os.path.join(REPO, "ganjax")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                with open(path) as stream:
                    if re.search(r"^\s*(from tqdm import|import tqdm$|from tqdm\.std import)", stream.read(), re.M):
                        plain.append(os.path.relpath(path, REPO))
    assert plain == []
    bar = loop.progress_bar(10, desc="train", disable=True)
    assert isinstance(bar, tqdm.auto.tqdm)


def _run(total, start_step, bar, compile_seconds=30.0, step_seconds=0.02, pause_every=100, pause_seconds=0.5):
    """run_steps on a fake clock: the first call compiles, every step takes step_seconds, and every pause_every
    steps the caller pauses (samples, a checkpoint, a live FID). Returns (finish time, [(step, predicted finish)])."""
    clock = [0.0]
    bar._time = lambda: clock[0]  # tqdm's clock
    bar.start_t = bar.last_print_t = 0.0
    predictions = []

    def single(calls, batch, key):
        clock[0] += compile_seconds if calls == 0 else step_seconds
        return calls + 1, {"loss": jnp.zeros(())}

    def after_call(calls, step, metrics, stacked):
        assert bar.n == step  # the bar counts the steps whose call has finished, no more
        if step % 50 == 0:
            bar.set_postfix(loss=f"{step:.3f}")  # as ganjax.train's logging does: must not disturb the rate
        if step % pause_every == 0:
            clock[0] += pause_seconds
        shown = bar.format_dict  # tqdm's rate: its moving average, else the average since the start (smoothing=0)
        rate = shown["rate"] or ((bar.n - bar.initial) / shown["elapsed"] if shown["elapsed"] else None)
        if rate:  # tqdm too shows no ETA before it has a rate
            predictions.append((step, clock[0] + (total - step) / rate))
        return calls, False

    loop.run_steps(0, start_step=start_step, total_steps=total, next_batch=lambda: np.zeros(1),
                   place=lambda batch, stacked: batch, step_keys=lambda steps: steps, single=single,
                   after_call=after_call, bar=bar)
    assert bar.n == total
    return clock[0], predictions


@pytest.mark.parametrize("start_step", [0, 500])
def test_the_eta_holds_steady_through_compilation_and_pauses(start_step):
    total = 2000
    bar = loop.progress_bar(total, initial=start_step, desc="train")
    finish, predictions = _run(total, start_step, bar)
    bar.close()
    # Once a few pauses have been seen, the predicted finish stays within 5% of the real one.
    seen = [predicted / finish for step, predicted in predictions if step > start_step + 300]
    assert min(seen) > 0.95 and max(seen) < 1.05, (min(seen), max(seen))


def test_the_default_tqdm_bar_fails_the_same_check():
    """The check above can fail: tqdm's defaults (smoothing 0.3, compilation on the clock) fail it."""
    total = 2000
    bar = tqdm.auto.tqdm(total=total, desc="train")
    bar.unpause = lambda: None  # run_steps' unpause takes compilation off the clock
    finish, predictions = _run(total, 0, bar)
    bar.close()
    seen = [predicted / finish for step, predicted in predictions if step > 300]
    assert max(seen) > 1.05 or min(seen) < 0.95, (min(seen), max(seen))
