"""Train a class-conditional GAN.

    python -m ganjax.train --config configs/digits.py --workdir workdirs/digits \
        [--config.train.steps=200 ...]

Rerunning the same command resumes from the newest checkpoint in the workdir.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any

import jax
import ml_collections
from tqdm import tqdm

from ganjax import checkpoint, data, live, loop, parallel, visualize
from ganjax.config import validate_config
from ganjax.sample import class_grid_labels, generate_images
from ganjax.state import GANState, create_gan_state
from ganjax.steps import Metrics, make_gan_train_step, make_multi_step

METRICS_FILE = "metrics.jsonl"
logger = logging.getLogger("ganjax")


def _append_metrics(path: str, record: dict) -> None:
    with open(path, "a") as stream:
        stream.write(json.dumps(record) + "\n")


def _truncate_metrics(path: str, last_step: int) -> None:
    """Drops records past `last_step`, left by a run that died after its last checkpoint."""
    if not os.path.exists(path):
        return
    with open(path) as stream:
        kept = [line for line in stream if line.strip() and json.loads(line)["step"] <= last_step]
    with open(path + ".tmp", "w") as stream:
        stream.writelines(kept)
    os.replace(path + ".tmp", path)


def _last_record(path: str, step: int) -> dict[str, Any]:
    """The metrics logged at `step` (e.g. when resuming a finished run), else just the step."""
    if os.path.exists(path):
        with open(path) as stream:
            for line in stream:
                record = json.loads(line)
                if record["step"] == step:
                    return record
    return {"step": step}


def _check_finite(metrics: dict[str, float], step: int) -> None:
    bad = {name: value for name, value in metrics.items() if not math.isfinite(value)}
    if bad:
        raise FloatingPointError(
            f"Non-finite training metrics at step {step}: {bad}. Lower config.optim.*_lr, "
            "or add config.gan.r1_gamma, and restart from the last checkpoint."
        )


@jax.jit
def _add_steps(sums: Metrics | None, stacked: Metrics) -> Metrics:
    """Adds per-step metrics stacked on axis 0 to `sums` one step at a time (None: from the
    first), in the order the per-step loop adds them, so window averages come out the same."""
    for index in range(len(next(iter(stacked.values())))):
        metrics = {name: value[index] for name, value in stacked.items()}
        sums = metrics if sums is None else jax.tree.map(jax.numpy.add, sums, metrics)
    return sums


def _initial_state(
    config: ml_collections.ConfigDict, train_set: data.Dataset, workdir: str, mesh: jax.sharding.Mesh
) -> tuple[GANState, int]:
    """(state, step): the newest checkpoint in workdir if any, else a fresh initialisation.

    Raises:
      ValueError if the checkpoint was saved with a config that differs from `config` in a key
      outside checkpoint.FREE_ON_RESUME (unless config.train.allow_config_change).
    """
    init_key = jax.random.fold_in(jax.random.key(config.seed), 0)
    template = create_gan_state(config, train_set.num_classes, train_set.image_shape, init_key)
    step = checkpoint.check_workdir_config(workdir, config)
    if step is None:
        return parallel.replicate(template, mesh), 0
    step, state = checkpoint.restore_state(workdir, template, step=step, sharding=parallel.replicated(mesh))
    logger.info("Resuming from checkpoint step %d in %s", step, workdir)
    return state, step


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains the GAN of `config` in `workdir`; returns the last logged metrics.

    Writes workdir/metrics.jsonl, workdir/samples/step_*.png (one row per class, fixed
    noise) and orbax checkpoints (with the config) under workdir/checkpoints.
    """
    validate_config(config)
    parallel.initialize_distributed(config)
    is_chief = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)

    train_set, _ = data.load_train_and_test(config.data, workdir=workdir)
    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.train.batch_size, mesh)
    state, start_step = _initial_state(config, train_set, workdir, mesh)
    meta = checkpoint.make_meta(config, train_set.num_classes, train_set.image_shape, train_set.class_names)

    train_step = parallel.jit_step(make_gan_train_step(config), mesh, batch_axis=1)
    # train.steps_per_call = K > 1: K steps per call on K-aligned steps, batches [K, n_critic, B, ...];
    # steps before the first aligned one (a resume) and after the last (the tail) run one by one.
    steps_per_call = config.train.steps_per_call
    multi_step = None
    if steps_per_call > 1:
        multi_step = parallel.jit_step(make_multi_step(make_gan_train_step(config)), mesh, batch_axis=2)
    n_critic = config.gan.n_critic
    batches = data.iterate_batches(
        train_set,
        config.train.batch_size,
        seed=config.data.seed,
        start_step=start_step,
        leading_shape=(n_critic,),
        class_balanced=config.train.class_balanced,
    )
    step_key = jax.random.fold_in(jax.random.key(config.seed), 1)
    grid_labels = class_grid_labels(train_set.num_classes, config.train.samples_per_class)
    grid_noise = jax.random.normal(
        jax.random.fold_in(jax.random.key(config.seed), 2), (grid_labels.size, config.model.noise_dim)
    )

    metrics_path = os.path.join(workdir, METRICS_FILE)
    if is_chief:
        _truncate_metrics(metrics_path, start_step)
    manager = checkpoint.make_manager(workdir, max_to_keep=config.train.keep_checkpoints)
    monitor = live.make_monitor(config, workdir, meta)  # None unless config.eval.live_every > 0
    total = config.train.steps
    images_per_step = config.train.batch_size * n_critic
    last_record = _last_record(metrics_path, start_step)
    progress = tqdm(total=total, initial=start_step, desc="train", unit="step", disable=not is_chief)
    window = {"sums": None, "steps": 0, "timer": None, "timed": 0}  # the logging window's metrics and timing
    compiled = set()  # throughput excludes each step function's first call (compilation)

    def after_call(state: GANState, step: int, metrics: dict, stacked: bool) -> tuple[GANState, bool]:
        nonlocal last_record
        num_steps = steps_per_call if stacked else 1
        # Summed on device without blocking; averaged over the window when logged.
        if stacked:
            window["sums"] = _add_steps(window["sums"], metrics)
        else:
            window["sums"] = metrics if window["sums"] is None else jax.tree.map(jax.numpy.add, window["sums"], metrics)
        window["steps"] += num_steps
        window["timed"] += num_steps
        if stacked not in compiled:
            compiled.add(stacked)
            jax.block_until_ready(metrics)
            window["timer"], window["timed"] = time.perf_counter(), 0

        if step % config.train.log_every == 0 or step == total:
            values = {name: float(value) / window["steps"] for name, value in jax.device_get(window["sums"]).items()}
            _check_finite(values, step)
            last_record = {"step": step, **values}
            if window["timed"]:
                elapsed = time.perf_counter() - window["timer"]
                last_record["images_per_sec"] = window["timed"] * images_per_step / elapsed
                window["timer"], window["timed"] = time.perf_counter(), 0
            window["sums"], window["steps"] = None, 0
            progress.set_postfix(
                d=f"{values['d_loss']:.3f}", g=f"{values['g_loss']:.3f}",
                img_s=f"{last_record.get('images_per_sec', 0):.0f}",
            )
            if is_chief:
                _append_metrics(metrics_path, last_record)

        if step % config.train.sample_every == 0 or step == total:
            # Every process runs the (replicated) computation; process 0 writes the file.
            images = jax.device_get(generate_images(state, grid_noise, grid_labels))
            if is_chief:
                path = os.path.join(workdir, "samples", f"step_{step:06d}.png")
                visualize.save_image_grid(images, train_set.num_classes, path)

        stop = False
        if monitor is not None and step % config.eval.live_every == 0:
            live_record, action = monitor(step, state)
            if is_chief:
                _append_metrics(metrics_path, live_record)
            stop = action == "stop"
            if action == "rollback":
                state = monitor.restore_best(state)

        if step % config.train.checkpoint_every == 0 or step == total or stop:
            checkpoint.save(manager, step, state, meta)
        return state, stop

    try:
        # Step s + 1 (batch index s) draws its randomness from fold_in(step_key, s + 1).
        loop.run_steps(
            state, start_step=start_step, total_steps=total, next_batch=lambda: next(batches),
            place=lambda batch, stacked: parallel.shard_global_batch(batch, mesh, batch_axis=2 if stacked else 1),
            step_keys=lambda steps: loop.fold_in_steps(step_key, steps + 1),
            single=train_step, multi=multi_step, steps_per_call=steps_per_call, after_call=after_call, bar=progress,
        )
    finally:
        if monitor is not None:
            monitor.close()
        manager.wait_until_finished()
        manager.close()
        progress.close()
        batches.close()
    return last_record


if __name__ == "__main__":
    from ganjax.cli import run_config_program

    run_config_program("train", train_and_evaluate, "Directory for checkpoints, metrics and samples.")
