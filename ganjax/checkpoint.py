"""Orbax save/restore of GANState, with the config and dataset facts saved beside the weights.

A checkpoint step directory holds two items: 'state' (the arrays) and 'meta' (JSON: the
config, number of classes, image shape, class names, ganjax version), so a checkpoint alone
is enough to rebuild the networks and sample. Orbax writes each step to a temporary
directory and renames it when complete, so a killed job never leaves a half checkpoint.

Resuming checks the saved config against the new one (`check_workdir_config`): only the keys
of `FREE_ON_RESUME` may change, so a workdir's state is never silently reused for another GAN.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

import ganjax
from ganjax.config import config_differences as differing_keys

CHECKPOINT_DIR = "checkpoints"
# Config keys (fnmatch patterns) that may differ between a checkpoint and the run resuming it:
# the length of the run, its logging and saving, evaluation, the device layout, and the sections
# that do not concern the GAN. Every other key changes the model, the data or the objective.
FREE_ON_RESUME = (
    "train.steps", "train.log_every", "train.sample_every", "train.checkpoint_every",
    "train.keep_checkpoints", "train.samples_per_class", "train.steps_per_call",
    "train.allow_config_change", "eval.*", "parallel.*", "classifier.*", "experiment.*", "semi.*", "repair.*",
    "robust.*", "defense.*",
)

logger = logging.getLogger(__name__)


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


def make_manager(workdir: str, max_to_keep: int | None = None, read_only: bool = False) -> ocp.CheckpointManager:
    # Readers pass read_only=True; it only stops them creating or cleaning directories
    # (orbax's own read_only option logs warnings on every open).
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        create=not read_only,
        cleanup_tmp_directories=not read_only,
    )
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_handlers=handlers)


def make_meta(
    config: ml_collections.ConfigDict, num_classes: int, image_shape: tuple[int, ...], class_names: tuple[str, ...]
) -> dict:
    return {
        "config": json.loads(config.to_json()),
        "num_classes": int(num_classes),
        "image_shape": [int(d) for d in image_shape],
        "class_names": [str(name) for name in class_names],
        "ganjax_version": ganjax.__version__,
    }


def save(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict) -> None:
    """Saves asynchronously; call `manager.wait_until_finished()` before exiting."""
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(serialization.to_state_dict(state)),
            meta=ocp.args.JsonSave(meta),
        ),
    )


def latest_step(workdir: str) -> int | None:
    """The newest complete checkpoint step in `workdir`, or None."""
    directory = checkpoint_dir(workdir)
    if not os.path.isdir(directory):
        return None
    with make_manager(workdir, read_only=True) as manager:
        return manager.latest_step()


def _resolve_step(manager: ocp.CheckpointManager, workdir: str, step: int | None) -> int:
    steps = manager.all_steps()
    if not steps:
        raise FileNotFoundError(
            f"No checkpoint in {checkpoint_dir(workdir)}. Train first: "
            f"python -m ganjax.train --config configs/digits.py --workdir {workdir}"
        )
    if step is None:
        return max(steps)
    if step not in steps:
        raise FileNotFoundError(f"No checkpoint for step {step} in {checkpoint_dir(workdir)}; available: {sorted(steps)}.")
    return step


def restore_meta(workdir: str, step: int | None = None) -> tuple[int, dict]:
    """(step, meta) of checkpoint `step` (default: latest) without touching the arrays."""
    if not os.path.isdir(checkpoint_dir(workdir)):
        raise FileNotFoundError(
            f"No checkpoint directory {checkpoint_dir(workdir)}. Train first: "
            f"python -m ganjax.train --config configs/digits.py --workdir {workdir}"
        )
    with make_manager(workdir, read_only=True) as manager:
        step = _resolve_step(manager, workdir, step)
        restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return step, restored["meta"]


def _shape_mismatches(expected: Any, saved: Any) -> list[str]:
    expected_flat = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
    saved_flat = dict(jax.tree_util.tree_flatten_with_path(saved)[0])
    problems = []
    for path, leaf in expected_flat.items():
        name = jax.tree_util.keystr(path)
        if path not in saved_flat:
            problems.append(f"{name}: missing from the checkpoint")
        elif tuple(saved_flat[path].shape) != tuple(np.shape(leaf)):
            problems.append(f"{name}: checkpoint {tuple(saved_flat[path].shape)} vs config {tuple(np.shape(leaf))}")
    problems += [f"{jax.tree_util.keystr(p)}: in the checkpoint, not in the model" for p in saved_flat if p not in expected_flat]
    return problems


def restore_state(workdir: str, template: Any, step: int | None = None, sharding: Any = None) -> tuple[int, Any]:
    """(step, state) restored into the structure of `template` (arrays or ShapeDtypeStructs).

    sharding: where to place every array (e.g. replicated over a mesh); default: the first
    local device, so a checkpoint written by many hosts can be sampled on a laptop.

    Raises:
      FileNotFoundError if there is no checkpoint; ValueError naming every array whose
      saved shape differs from the template's (the config does not match the checkpoint).
    """
    with make_manager(workdir, read_only=True) as manager:
        step = _resolve_step(manager, workdir, step)
        target = serialization.to_state_dict(template)
        saved = manager.item_metadata(step)["state"]
        problems = _shape_mismatches(target, saved)
        if problems:
            shown = "\n  ".join(problems[:10])
            raise ValueError(
                f"Checkpoint step {step} in {checkpoint_dir(workdir)} does not match the model built from "
                f"the config ({len(problems)} arrays differ):\n  {shown}\n"
                "Use the config saved with the checkpoint, or a fresh --workdir for a new config."
            )
        if sharding is None:
            # Restore onto this machine, whatever topology the checkpoint was written on.
            sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), target
        )
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return step, serialization.from_state_dict(template, restored["state"])


def config_differences(saved: dict, config: ml_collections.ConfigDict) -> dict[str, tuple[Any, Any]]:
    """{key: (saved value, new value)} over the keys outside FREE_ON_RESUME where they differ
    (`ganjax.config.config_differences`)."""
    return differing_keys(saved, config, FREE_ON_RESUME)


def check_resume_config(saved: dict, config: ml_collections.ConfigDict, where: str) -> None:
    """Raises ValueError listing `config_differences(saved, config)`, if any, unless
    config.train.allow_config_change (then it only logs them).

    where: what holds the saved config, for the message (e.g. "checkpoint step 200 in DIR").
    """
    differences = config_differences(saved, config)
    if not differences:
        return
    listed = "\n  ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in differences.items())
    if config.train.allow_config_change:
        logger.warning("Resuming %s with config changes (train.allow_config_change):\n  %s", where, listed)
        return
    raise ValueError(
        f"The config differs from the one saved with {where} in keys that change the model, the data "
        f"or the objective (saved -> new):\n  {listed}\n"
        "Resuming would continue the old run's state under other settings. Use a fresh --workdir for "
        "the new config, set these keys back to the saved values, or pass "
        "--config.train.allow_config_change=True to resume with the new values anyway. "
        f"Keys that may change on resume: {', '.join(FREE_ON_RESUME)}."
    )


def check_workdir_config(workdir: str, config: ml_collections.ConfigDict) -> int | None:
    """Checks `config` against the config saved with the newest checkpoint in `workdir`
    (`check_resume_config`); returns that checkpoint's step, or None if there is none."""
    step = latest_step(workdir)
    if step is None:
        return None
    _, meta = restore_meta(workdir, step)
    check_resume_config(meta["config"], config, f"checkpoint step {step} in {checkpoint_dir(workdir)}")
    return step
