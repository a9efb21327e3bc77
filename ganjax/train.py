"""Train a GAN, class-conditional unless config.model.conditional is False.

    python -m ganjax.train --config configs/digits.py --workdir workdirs/digits \
        [--config.train.steps=200 ...]

Rerunning the same command resumes from the newest checkpoint in the workdir.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from ganjax import checkpoint, data, faults, live, lock, loop, parallel, tensorboard, visualize
from ganjax.config import validate_config
from ganjax.sample import generate_images, sample_grid
from ganjax.state import GANState, create_gan_state, scale_learning_rates
from ganjax.steps import Metrics, make_gan_train_step, make_multi_step

METRICS_FILE = "metrics.jsonl"
NAN_RECOVERY = "nan_recovery"  # the checkpoint meta's key (and the metrics record's) of the NaN recoveries
logger = logging.getLogger("ganjax")


def _append_metrics(path: str, record: dict) -> None:
    # In two halves around the testing hook (ganjax.faults), which kills with half a record on disk, as a
    # real kill or a full disk can leave one: `_read_metrics` drops it.
    line = json.dumps(record) + "\n"
    with open(path, "a") as stream:
        stream.write(line[: len(line) // 2])
        faults.maybe_kill("metrics_append", flush=stream)
        stream.write(line[len(line) // 2 :])


def _read_metrics(path: str) -> list[tuple[str, dict]]:
    """[(line, record)] of metrics.jsonl. A last line without its newline is a record cut short by a run
    killed while appending it (`_append_metrics` writes nothing after it): left out, with a warning."""
    with open(path) as stream:
        lines = stream.readlines()
    if lines and not lines[-1].endswith("\n"):
        logger.warning("%s: dropped the partial last record %r, left by a run killed while writing it.",
                       path, lines.pop()[:60])
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append((line, json.loads(line)))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} line {number} is not a JSON record ({error}): {line[:80]!r}. Delete that "
                             "line and rerun.") from None
    return records


def _truncate_metrics(path: str, last_step: int) -> None:
    """Drops records past `last_step`, left by a run that died after its last checkpoint (and a partial last
    record, `_read_metrics`)."""
    if not os.path.exists(path):
        return
    kept = [line for line, record in _read_metrics(path) if record["step"] <= last_step]
    with open(path + ".tmp", "w") as stream:
        stream.writelines(kept)
    faults.maybe_kill("metrics_truncate")
    os.replace(path + ".tmp", path)


def _last_record(path: str, step: int) -> dict[str, Any]:
    """The metrics logged at `step` (e.g. when resuming a finished run), else just the step."""
    if os.path.exists(path):
        for _, record in _read_metrics(path):
            if record["step"] == step:
                return record
    return {"step": step}


class NonFiniteLoss(FloatingPointError):
    """A logged training metric is NaN or infinite: `metrics` holds the offending values at `step`."""

    def __init__(self, step: int, metrics: dict[str, float]):
        super().__init__(
            f"Non-finite training metrics at step {step}: {metrics}. Lower config.optim.*_lr, "
            "or add config.gan.r1_gamma, and restart from the last checkpoint (or set "
            "config.train.nan_retries to recover automatically)."
        )
        self.step, self.metrics = step, metrics


def _check_finite(metrics: dict[str, float], step: int) -> None:
    bad = {name: value for name, value in metrics.items() if not math.isfinite(value)}
    if bad:
        raise NonFiniteLoss(step, bad)


def _give_up(error: NonFiniteLoss, recovery: dict, config: ml_collections.ConfigDict) -> FloatingPointError:
    return FloatingPointError(
        f"Non-finite training metrics at step {error.step}: {error.metrics}, after {recovery['recoveries']} "
        f"recoveries (config.train.nan_retries={config.train.nan_retries}; learning rates at "
        f"{recovery['lr_scale']:g} x config.optim.*_lr). Giving up. Rerunning the command resumes from the last "
        "checkpoint: allow more recoveries with --config.train.nan_retries=N (free on resume), or lower "
        "config.optim.*_lr or add config.gan.r1_gamma (with --config.train.allow_config_change=True, or in a "
        "fresh --workdir)."
    )


def _recovery_of(meta: dict) -> dict:
    """The NaN recoveries a checkpoint's meta records: {"lr_scale": the factor of config.optim.*_lr,
    "recoveries": how many so far}; none in checkpoints of runs that never recovered."""
    return dict(meta.get(NAN_RECOVERY, {"lr_scale": 1.0, "recoveries": 0}))


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [leaf for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


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
) -> tuple[GANState, int, dict]:
    """(state, step, recovery): the newest readable checkpoint in workdir if any, else a fresh initialisation,
    with the learning rates its NaN recoveries lowered (`recovery`, from its meta: `_recovery_of`). Damaged
    newer checkpoints are passed over with a warning and moved aside (`checkpoint.restore`, set_aside_damaged).

    Raises:
      ValueError if the checkpoint was saved with a config that differs from `config` in a key
      outside checkpoint.FREE_ON_RESUME (unless config.train.allow_config_change);
      checkpoint.DamagedCheckpointError (a ValueError) if every checkpoint is damaged.
    """
    template = _fresh_state(config, train_set)
    if checkpoint.latest_step(workdir) is None:
        return parallel.replicate(template, mesh), 0, _recovery_of({})
    step, meta, state = checkpoint.restore(
        workdir, lambda meta: scale_learning_rates(template, config, _recovery_of(meta)["lr_scale"]),
        sharding=parallel.replicated(mesh), resume_config=config, set_aside_damaged=True,
    )
    logger.info("Resuming from checkpoint step %d in %s", step, workdir)
    return state, step, _recovery_of(meta)


def _fresh_state(config: ml_collections.ConfigDict, train_set: data.Dataset) -> GANState:
    """The initialisation every run of `config` starts from."""
    init_key = jax.random.fold_in(jax.random.key(config.seed), 0)
    return create_gan_state(config, train_set.num_classes, train_set.image_shape, init_key)


def _restore_finite(
    config: ml_collections.ConfigDict, train_set: data.Dataset, workdir: str, manager, mesh: jax.sharding.Mesh,
    lr_scale: float,
) -> tuple[GANState, int]:
    """(state, step) of the newest readable checkpoint in workdir whose arrays are all finite, else the
    initialisation (step 0), with learning rates at `lr_scale` x config.optim.*_lr. Deletes the non-finite
    checkpoints passed over (saved after the loss went bad but before a logged step showed it): orbax would
    otherwise skip every save up to their steps, as it saves no step below its latest. Damaged ones are passed
    over and set aside as at start-up (`checkpoint.restore`); DamagedCheckpointError if every one left is."""
    manager.wait_until_finished()
    template = scale_learning_rates(_fresh_state(config, train_set), config, lr_scale)
    while manager.all_steps():
        step, _, state = checkpoint.restore(workdir, lambda meta: template, sharding=parallel.replicated(mesh),
                                            set_aside_damaged=True)
        manager.reload()  # forgets the damaged steps set aside, which it would otherwise not save again
        if _all_finite(state):
            return state, step
        logger.warning("Checkpoint step %d in %s holds non-finite weights: deleted.", step, workdir)
        manager.delete(step)
    return parallel.replicate(template, mesh), 0


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains the GAN of `config` in `workdir`; returns the last logged metrics.

    It does not score the generator, despite the name it takes from the Flax examples:
    `ganjax.train_gan(config, workdir, evaluate="fid,classes")` trains, then scores (ganjax.api).

    Writes workdir/metrics.jsonl, workdir/samples/step_*.png (one row per class, or a plain
    grid for an unconditional GAN; fixed noise), TensorBoard event files of both beside them
    (ganjax.tensorboard; config.train.tensorboard) and orbax checkpoints (with the config) under
    workdir/checkpoints. Holds the workdir's lock (ganjax.lock) throughout, so a second writer of
    the workdir refuses to start.

    A non-finite logged loss stops training (FloatingPointError), or with config.train.nan_retries > 0 restores
    the last good state (`_restore_finite`) at config.train.nan_lr_factor times the learning rates and goes on;
    metrics.jsonl then loses the records past that state's step and gains {"step": that step, "nan_recovery":
    count, "lr_scale", "non_finite_at_step", "non_finite"}, and the checkpoints' meta carries the scale.
    """
    validate_config(config)
    parallel.initialize_distributed(config)
    os.makedirs(workdir, exist_ok=True)
    with checkpoint.disk_full_errors(workdir), lock.workdir_lock(workdir):  # ENOSPC: one DiskFullError
        return _train(config, workdir)


def _train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """train_and_evaluate's work, under the workdir's lock."""
    is_chief = jax.process_index() == 0
    train_set, _ = data.load_train_and_test(config.data, workdir=workdir)
    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.train.batch_size, mesh)
    state, start_step, recovery = _initial_state(config, train_set, workdir, mesh)
    meta = checkpoint.make_meta(config, train_set.num_classes, train_set.image_shape, train_set.class_names)
    if recovery["recoveries"]:
        meta[NAN_RECOVERY] = recovery

    train_step = parallel.jit_step(make_gan_train_step(config), mesh, batch_axis=1)
    # train.steps_per_call = K > 1: K steps per call on K-aligned steps, batches [K, n_critic, B, ...];
    # steps before the first aligned one (a resume) and after the last (the tail) run one by one.
    steps_per_call = config.train.steps_per_call
    multi_step = None
    if steps_per_call > 1:
        multi_step = parallel.jit_step(make_multi_step(make_gan_train_step(config)), mesh, batch_axis=2)
    n_critic = config.gan.n_critic
    batches_from = functools.partial(
        data.iterate_batches,
        train_set,
        config.train.batch_size,
        seed=config.data.seed,
        leading_shape=(n_critic,),
        class_balanced=config.train.class_balanced,
    )
    batches = batches_from(start_step=start_step)
    step_key = jax.random.fold_in(jax.random.key(config.seed), 1)
    grid_labels, grid_rows = sample_grid(train_set.num_classes, config.train.samples_per_class, config.model.conditional)
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
    progress = loop.progress_bar(total, initial=start_step, desc="train", disable=not is_chief)
    # Process 0 writes; rerunning a finished run (nothing to train) adds no event file.
    events = (tensorboard.EventWriter(workdir, resume_step=start_step)
              if is_chief and config.train.tensorboard and start_step < total else None)

    def log(record: dict) -> None:
        """Appends `record` to metrics.jsonl and its values to TensorBoard (process 0 only)."""
        _append_metrics(metrics_path, record)
        if events is not None:
            events.write_record(record)

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
                log(last_record)

        if step % config.train.sample_every == 0 or step == total:
            # Every process runs the (replicated) computation; process 0 writes the file.
            images = jax.device_get(generate_images(state, grid_noise, grid_labels))
            if is_chief:
                path = os.path.join(workdir, "samples", f"step_{step:06d}.png")
                visualize.save_image_grid(images, grid_rows, path)
                if events is not None:
                    events.write_samples(step, visualize.image_grid(images, grid_rows))

        stop = False
        if monitor is not None and step % config.eval.live_every == 0:
            live_record, action = monitor(step, state)
            if is_chief:
                log(live_record)
            stop = action == "stop"
            if action == "rollback":
                state = monitor.restore_best(state)

        if step % config.train.checkpoint_every == 0 or step == total or stop:
            checkpoint.save(manager, step, state, meta)
        return state, stop

    def recover(error: NonFiniteLoss) -> tuple[GANState, int]:
        """(state, step) to go on from after `error`: the last good state at lowered learning rates, with the
        batches, metrics log and logging window rewound to its step; re-raises when recovery is off."""
        nonlocal batches, meta, recovery
        if not config.train.nan_retries:
            raise error
        if recovery["recoveries"] >= config.train.nan_retries:
            raise _give_up(error, recovery, config) from error
        recovery = {"lr_scale": recovery["lr_scale"] * config.train.nan_lr_factor,
                    "recoveries": recovery["recoveries"] + 1}
        meta = {**meta, NAN_RECOVERY: recovery}  # saved with every later checkpoint: a resume keeps the rates
        state, step = _restore_finite(config, train_set, workdir, manager, mesh, recovery["lr_scale"])
        logger.warning("Non-finite training metrics at step %d: %s. Recovery %d of at most %d "
                       "(train.nan_retries): back to step %d, learning rates at %g x config.optim.*_lr.",
                       error.step, error.metrics, recovery["recoveries"], config.train.nan_retries, step,
                       recovery["lr_scale"])
        if is_chief:
            _truncate_metrics(metrics_path, step)
            if events is not None:
                events.purge_after(step)
            log({
                "step": step, NAN_RECOVERY: recovery["recoveries"], "lr_scale": recovery["lr_scale"],
                "non_finite_at_step": error.step,
                "non_finite": {name: str(value) for name, value in error.metrics.items()},
            })
        batches.close()
        batches = batches_from(start_step=step)
        window.update(sums=None, steps=0, timer=None, timed=0)
        compiled.clear()  # the rebuilt optimizers compile the steps again: not throughput
        progress.update(step - progress.n)  # a negative update: tqdm keeps its rate's bookkeeping consistent
        return state, step

    def save_on_interrupt(state: GANState, step: int) -> str:
        """Ctrl-C: saves the step reached (unless after_call just did) for a rerun to resume from."""
        if manager.latest_step() != step:
            checkpoint.save(manager, step, state, meta)
        return f"checkpoint step {step} in {checkpoint.checkpoint_dir(workdir)}"

    try:
        while True:  # once, and again from each NaN recovery's step
            try:
                # Step s + 1 (batch index s) draws its randomness from fold_in(step_key, s + 1).
                loop.run_steps(
                    state, start_step=start_step, total_steps=total, next_batch=lambda: next(batches),
                    place=lambda batch, stacked: parallel.shard_global_batch(
                        batch, mesh, batch_axis=2 if stacked else 1),
                    step_keys=lambda steps: loop.fold_in_steps(step_key, steps + 1),
                    single=train_step, multi=multi_step, steps_per_call=steps_per_call, after_call=after_call,
                    bar=progress,
                    # One process only: a save is collective, and Ctrl-C may reach some processes and not others.
                    on_interrupt=save_on_interrupt if jax.process_count() == 1 else None,
                )
                break
            except NonFiniteLoss as error:
                state, start_step = recover(error)
    finally:
        if monitor is not None:
            monitor.close()
        progress.close()
        if events is not None:
            events.close()
        batches.close()
        manager.wait_until_finished()  # last: raises the error of a failed save (e.g. a full disk)
        manager.close()
    return last_record


if __name__ == "__main__":
    from ganjax.cli import run_config_program

    run_config_program("train", train_and_evaluate, "Directory for checkpoints, metrics and samples.")
