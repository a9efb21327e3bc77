"""Orbax save/restore of GANState, with the config and dataset facts saved beside the weights.

A checkpoint step directory holds two items: 'state' (the arrays) and 'meta' (JSON: the
config, number of classes, image shape, class names, ganjax version), so a checkpoint alone
is enough to rebuild the networks and sample. Orbax writes each step to a temporary
directory and renames it when complete, so a killed job never leaves a half checkpoint.

Resuming checks the saved config against the new one (`check_workdir_config`): only the keys
of `FREE_ON_RESUME` may change, so a workdir's state is never silently reused for another GAN.

Damaged checkpoints (`restore`): a step whose files were overwritten, truncated or deleted, an
empty step directory, or unreadable meta is skipped with a warning naming it, and the newest
readable older step is used instead; with none readable, DamagedCheckpointError (a ValueError:
one line from the command-line programs) names each damaged step and what to do. Orbax's files
carry no checksum of the array bytes (zstd-compressed data with overwritten bytes often reads back
as other numbers, without an error), so `save` records a crc32 of every array in the meta
(STATE_CHECKSUMS) and a restore compares what it read against them. Readers never change the
workdir. Training, the one writer, moves each damaged step it passed over to
checkpoints/damaged-STEP-UTCTIME (`set_aside`) before it saves again: kept whole for inspection,
and, not being named by an integer, invisible to orbax, so neither max_to_keep's rotation nor a
new save of the same step (training resumed from an older step reaches it again) can delete or
overwrite it, and the fallback step stays in orbax's rotation like any other.

A full disk (`disk_full_errors`): orbax writes each step to a temporary directory renamed when
complete, so a save that fails for lack of space leaves the earlier steps intact (the next
writer's manager deletes the temporary directory); the failure becomes one DiskFullError naming
the workdir, its newest checkpoint, and the fix (free space, rerun the same command).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import gc
import inspect
import json
import logging
import os
import re
import sys
import zlib
from typing import Any, Callable, Iterator

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

import ganjax
from ganjax import faults
from ganjax.config import config_differences as differing_keys

CHECKPOINT_DIR = "checkpoints"
DAMAGED_PREFIX = "damaged-"  # checkpoints/damaged-STEP-UTCTIME: a damaged step set aside by training
STATE_CHECKSUMS = "state_crc32"  # the meta's key of {array path: crc32 of its bytes}, written by `save`
META_KEYS = ("config", "num_classes", "image_shape", "class_names")  # what every checkpoint's meta holds
# Config keys (fnmatch patterns) that may differ between a checkpoint and the run resuming it:
# the length of the run, its logging and saving, evaluation, the device layout, and the sections
# that do not concern the GAN. Every other key changes the model, the data or the objective.
FREE_ON_RESUME = (
    "train.steps", "train.log_every", "train.sample_every", "train.checkpoint_every",
    "train.keep_checkpoints", "train.samples_per_class", "train.steps_per_call", "train.tensorboard",
    "train.allow_config_change", "train.nan_retries", "train.nan_lr_factor",  # NaN recovery: ganjax.train
    "eval.*", "parallel.*", "classifier.*", "experiment.*", "semi.*", "repair.*",
    "robust.*", "defense.*",
)

logger = logging.getLogger(__name__)


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


def make_manager(workdir: str, max_to_keep: int | None = None, read_only: bool = False) -> ocp.CheckpointManager:
    # Readers pass read_only=True; it only stops them creating or cleaning directories
    # (orbax's own read_only option logs warnings on every open). They read 'state' with orbax's
    # PyTreeCheckpointHandler (the format StandardCheckpointHandler writes), which can restore part
    # of a checkpoint (`restore`'s partial).
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        create=not read_only,
        cleanup_tmp_directories=not read_only,
    )
    if read_only:
        handlers = {"state": ocp.PyTreeCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    else:
        _quiet_disk_full_tracebacks()
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


def _array_name(path: tuple) -> str:
    return "/".join(str(getattr(key, "key", getattr(key, "idx", key))) for key in path)


def array_checksums(arrays: Any) -> dict[str, int]:
    """{"generator/params/Dense_0/kernel": crc32 of the array's bytes, ...} over the leaves of
    `arrays` (a state dict; replicated jax arrays are read from this process's copy)."""
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(arrays))[0]
    return {
        _array_name(path): zlib.crc32(np.ascontiguousarray(leaf).reshape(-1).view(np.uint8))
        for path, leaf in leaves
    }


def save(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict) -> None:
    """Saves asynchronously; call `manager.wait_until_finished()` before exiting. The saved meta
    adds STATE_CHECKSUMS, the `array_checksums` that `restore` verifies."""
    arrays = serialization.to_state_dict(state)
    faults.maybe_kill("checkpoint_save")
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(arrays),
            meta=ocp.args.JsonSave({**meta, STATE_CHECKSUMS: array_checksums(arrays)}),
        ),
    )
    faults.maybe_kill("checkpoint_async")


def latest_step(workdir: str) -> int | None:
    """The newest complete checkpoint step directory in `workdir` (readable or not: `restore`
    finds the newest readable one), or None."""
    directory = checkpoint_dir(workdir)
    if not os.path.isdir(directory):
        return None
    with make_manager(workdir, read_only=True) as manager:
        return manager.latest_step()


class DamagedCheckpointError(ValueError):
    """A checkpoint that cannot be read back as saved: a file overwritten, truncated or missing, an
    empty step directory, unreadable meta. A ValueError, so the command-line programs print it as
    one line."""


def _damaged(workdir: str, step: int, problem: str) -> DamagedCheckpointError:
    error = DamagedCheckpointError(f"Checkpoint step {step} in {checkpoint_dir(workdir)} is damaged: {problem}")
    error.problem = problem
    return error


def _short(error: BaseException, limit: int = 240) -> str:
    """One line about `error`. TensorStore's messages run to a hundred lines of JSON spec: only
    their first line and the array they name are kept."""
    text = str(error).strip()
    line = (text.splitlines() or [""])[0].split(" See full TensorStore details")[0]
    array = re.search(r"'path': '([A-Za-z_][\w.]*)/'", text)
    if array:
        line += f" (array {array.group(1)})"
    line = f"{type(error).__name__}: {line}"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _candidate_steps(manager: ocp.CheckpointManager, workdir: str, step: int | None) -> list[int]:
    """[step], or with step None every step, newest first. FileNotFoundError if there is none."""
    steps = manager.all_steps()
    if not steps:
        raise FileNotFoundError(
            f"No checkpoint in {checkpoint_dir(workdir)}. Train first: "
            f"python -m ganjax.train --config configs/digits.py --workdir {workdir}"
        )
    if step is None:
        return sorted(steps, reverse=True)
    if step not in steps:
        raise FileNotFoundError(f"No checkpoint for step {step} in {checkpoint_dir(workdir)}; available: {sorted(steps)}.")
    return [step]


def _is_failed_read_report(unraisable: Any) -> bool:
    return inspect.iscoroutine(unraisable.object) or (
        isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value))


class _FailedReadReports(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("exception was never retrieved" in message and "TensorStore" in message)


def _drop_failed_read_reports() -> None:
    """Orbax reads arrays in concurrent asyncio tasks and stops at the first failure; Python then
    reports each other task's error (a ~50-line TensorStore spec) when it collects it, and
    TensorStore each read still in flight ("Event loop is closed"), some after the fallback has
    finished. The failure is reported once (`_attempt`); from the first one on, those reports of
    failed reads are dropped (other unraisable errors and asyncio logs still show)."""
    report_unraisable = sys.unraisablehook
    if getattr(report_unraisable, "drops_failed_reads", False):
        return

    def report(unraisable: Any) -> None:
        if not _is_failed_read_report(unraisable):
            report_unraisable(unraisable)

    report.drops_failed_reads = True
    sys.unraisablehook = report
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(existing, _FailedReadReports) for existing in asyncio_logger.filters):
        asyncio_logger.addFilter(_FailedReadReports())


def _attempt(read: Callable[[], Any]) -> tuple[Any, str | None]:
    """(read(), None), or (None, `_short` of the error it raised). The error is dropped here: it
    holds the failed read's asyncio tasks, which `_first_readable` then collects."""
    try:
        return read(), None
    except Exception as error:  # orbax, TensorStore and json each raise their own types
        _drop_failed_read_reports()
        return None, _short(error)


def _first_readable(
    workdir: str, step: int | None, read: Callable[[ocp.CheckpointManager, int], Any]
) -> tuple[int, Any, list[int]]:
    """(step, read(manager, step), [damaged steps passed over, newest first]) for checkpoint `step`,
    or with step None the newest one that `read` does not find damaged (DamagedCheckpointError):
    each damaged one is logged as a warning. Raises DamagedCheckpointError if `step`, or with step
    None every checkpoint, is damaged."""
    directory = checkpoint_dir(workdir)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"No checkpoint directory {directory}. Train first: "
            f"python -m ganjax.train --config configs/digits.py --workdir {workdir}"
        )
    damaged, found = [], None
    with make_manager(workdir, read_only=True) as manager:
        for candidate in _candidate_steps(manager, workdir, step):
            try:
                found = candidate, read(manager, candidate)
                break
            except DamagedCheckpointError as error:
                gc.collect()  # the failed read's left-over tasks report now (`_drop_failed_read_reports`)
                if step is not None:
                    raise DamagedCheckpointError(
                        f"{error}. Its directory is kept as it is. Restore it from a backup, or pick another "
                        "step (leave the step out to use the newest readable checkpoint)."
                    ) from None
                logger.warning("%s. Trying the next older checkpoint; the damaged one is kept.", error)
                damaged.append((candidate, error.problem))
    if found is None:
        reasons = "; ".join(f"step {candidate}: {problem}" for candidate, problem in damaged)
        raise DamagedCheckpointError(
            f"No readable checkpoint in {directory}: every one is damaged ({reasons}). The directories are kept as "
            f"they are. Restore them from a backup, or delete {directory} (or use a fresh --workdir) to start from "
            "scratch."
        )
    return (*found, [candidate for candidate, _ in damaged])


def _read_meta(manager: ocp.CheckpointManager, workdir: str, step: int) -> tuple[dict, dict | None]:
    """(meta, its STATE_CHECKSUMS or None for checkpoints saved before them) of checkpoint `step`;
    DamagedCheckpointError if it cannot be read or lacks any of META_KEYS."""
    meta, failure = _attempt(lambda: manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
    if failure:
        raise _damaged(workdir, step, f"its meta cannot be read ({failure})")
    missing = [key for key in META_KEYS if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise _damaged(workdir, step, f"its meta lacks {missing}")
    meta = dict(meta)
    return meta, meta.pop(STATE_CHECKSUMS, None)


def _shape_mismatches(expected: Any, saved: Any, partial: bool = False) -> list[str]:
    """Problems with restoring `saved` (array metadata) into `expected`; with `partial`, arrays of the
    checkpoint that `expected` leaves out are none."""
    expected_flat = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
    saved_flat = dict(jax.tree_util.tree_flatten_with_path(saved)[0])
    problems = []
    for path, leaf in expected_flat.items():
        name = jax.tree_util.keystr(path)
        if path not in saved_flat:
            problems.append(f"{name}: missing from the checkpoint")
        elif tuple(saved_flat[path].shape) != tuple(np.shape(leaf)):
            problems.append(f"{name}: checkpoint {tuple(saved_flat[path].shape)} vs config {tuple(np.shape(leaf))}")
    if not partial:
        problems += [
            f"{jax.tree_util.keystr(p)}: in the checkpoint, not in the model" for p in saved_flat if p not in expected_flat
        ]
    return problems


def _read_arrays(
    manager: ocp.CheckpointManager, workdir: str, step: int, template: Any, sharding: Any, partial: bool,
    checksums: dict | None,
) -> Any:
    """The state dict of checkpoint `step` in the structure of `template`, each array verified
    against `checksums`. DamagedCheckpointError if a file cannot be read or an array differs from
    its checksum; ValueError if the saved shapes do not fit the template (another config)."""
    target = serialization.to_state_dict(template)
    saved, failure = _attempt(lambda: manager.item_metadata(step)["state"])
    if failure or saved is None:
        raise _damaged(workdir, step, f"its array metadata cannot be read ({failure or 'state/ is missing or empty'})")
    problems = _shape_mismatches(target, saved, partial)
    if problems:
        shown = "\n  ".join(problems[:10])
        raise ValueError(
            f"Checkpoint step {step} in {checkpoint_dir(workdir)} does not match the model built from "
            f"the config ({len(problems)} arrays differ):\n  {shown}\n"
            "Use the config saved with the checkpoint, or a fresh --workdir for a new config."
        )
    abstract = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), target)
    args = ocp.args.PyTreeRestore(
        item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract), partial_restore=partial
    )
    arrays, failure = _attempt(lambda: manager.restore(step, args=ocp.args.Composite(state=args))["state"])
    if failure:
        raise _damaged(workdir, step, f"its arrays cannot be read ({failure})")
    if checksums is not None:
        differing = [name for name, crc in array_checksums(arrays).items() if checksums.get(name, crc) != crc]
        if differing:
            raise _damaged(
                workdir, step, f"{len(differing)} arrays differ from the crc32 saved with them "
                f"({', '.join(differing[:3])}{', ...' if len(differing) > 3 else ''}): a file changed after the save",
            )
    return arrays


def set_aside(workdir: str, step: int) -> str:
    """Renames checkpoint `step` of `workdir` to checkpoints/damaged-STEP-UTCTIME and returns that
    path (module docstring: orbax no longer sees it, so nothing deletes or overwrites it)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = os.path.join(checkpoint_dir(workdir), f"{DAMAGED_PREFIX}{step}-{stamp}")
    os.rename(os.path.join(checkpoint_dir(workdir), str(step)), target)
    return target


def restore(
    workdir: str,
    template_for: Callable[[dict], Any],
    step: int | None = None,
    *,
    sharding: Any = None,
    partial: bool = False,
    resume_config: ml_collections.ConfigDict | None = None,
    set_aside_damaged: bool = False,
) -> tuple[int, dict, Any]:
    """(step, meta, state) of checkpoint `step`, default the newest readable one in `workdir`.

    template_for(meta) -> the state to restore into (arrays or ShapeDtypeStructs), given the
      checkpoint's meta (e.g. built from its config). An error it raises is not damage: it
      propagates.
    sharding: where to place every array (e.g. replicated over a mesh); default: the first local
      device, so a checkpoint written by many hosts can be sampled on a laptop.
    partial: the template holds only some of the saved arrays (None in place of the subtrees
      it does not want, e.g. optimizer states): only those are read (orbax's partial restore),
      verified and returned.
    resume_config: the config of a run resuming from the checkpoint: checked against the saved
      one (`check_resume_config`).
    set_aside_damaged: for the workdir's writer (training) only: `set_aside` the damaged steps
      passed over (process 0 of a multi-host run), so that its saves cannot collide with them.

    A damaged checkpoint (module docstring) is logged as a warning naming it and passed over for
    the next older one; returned meta has no STATE_CHECKSUMS.

    Raises:
      FileNotFoundError if there is no checkpoint (or none for `step`); DamagedCheckpointError if
      `step` or every checkpoint is damaged; ValueError naming every array whose saved shape
      differs from the template's, or the config keys that differ from `resume_config`'s.
    """
    if sharding is None:
        # Restore onto this machine, whatever topology the checkpoint was written on.
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def read(manager: ocp.CheckpointManager, candidate: int) -> tuple[dict, Any]:
        meta, checksums = _read_meta(manager, workdir, candidate)
        if resume_config is not None:
            check_resume_config(meta["config"], resume_config, f"checkpoint step {candidate} in {checkpoint_dir(workdir)}")
        template = template_for(meta)
        arrays = _read_arrays(manager, workdir, candidate, template, sharding, partial, checksums)
        return meta, serialization.from_state_dict(template, arrays)

    step, (meta, state), damaged = _first_readable(workdir, step, read)
    if set_aside_damaged and damaged:
        if jax.process_index() == 0:
            for damaged_step in damaged:
                logger.warning("Moved damaged checkpoint step %d to %s (kept; delete it when no longer needed).",
                               damaged_step, set_aside(workdir, damaged_step))
        if jax.process_count() > 1:  # no process saves before the damaged steps are out of orbax's sight
            ocp.multihost.sync_global_processes("ganjax_set_aside_damaged_checkpoints")
    return step, meta, state


def restore_meta(workdir: str, step: int | None = None) -> tuple[int, dict]:
    """(step, meta) of checkpoint `step`, default the newest one with readable meta (damaged ones
    passed over with a warning, as `restore`), without reading the arrays."""
    step, (meta, _), _ = _first_readable(workdir, step, lambda manager, candidate: _read_meta(manager, workdir, candidate))
    return step, meta


def restore_state(workdir: str, template: Any, step: int | None = None, sharding: Any = None) -> tuple[int, Any]:
    """(step, state) of checkpoint `step` (default: the newest readable) restored into the
    structure of `template` (arrays or ShapeDtypeStructs): `restore` with that template."""
    step, _, state = restore(workdir, lambda meta: template, step, sharding=sharding)
    return step, state


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
    """Checks `config` against the config saved with the newest checkpoint in `workdir` with
    readable meta (`restore_meta`, `check_resume_config`); returns that checkpoint's step, or None
    if there is none."""
    if latest_step(workdir) is None:
        return None
    step, meta = restore_meta(workdir)
    check_resume_config(meta["config"], config, f"checkpoint step {step} in {checkpoint_dir(workdir)}")
    return step


class DiskFullError(OSError):
    """A write in a workdir failed for lack of disk space (errno ENOSPC). The message names the
    workdir, the checkpoint a rerun resumes from and the fix."""

    def __init__(self, message: str):
        super().__init__(message)
        self.errno = errno.ENOSPC


def is_disk_full(error: BaseException | None) -> bool:
    """Whether `error`, or one it was raised from, is a write failing for lack of space: an OSError
    with errno ENOSPC, or TensorStore's ValueError naming it ("... [os_error_code='28']")."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if os.strerror(errno.ENOSPC) in str(error) or f"os_error_code='{errno.ENOSPC}'" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def disk_full_errors(workdir: str) -> Iterator[None]:
    """Turns a write failing for lack of space inside (`is_disk_full`) into a DiskFullError naming
    `workdir`, its newest checkpoint (intact: module docstring) and the fix."""
    try:
        yield
    except Exception as error:
        if isinstance(error, DiskFullError) or not is_disk_full(error):
            raise
        step = latest_step(workdir)
        resume = (f"a rerun resumes from its newest checkpoint, step {step}, which is intact" if step is not None
                  else "no checkpoint was saved yet, so a rerun starts from the beginning")
        raise DiskFullError(
            f"Disk full: a write in {os.path.abspath(workdir)} failed ({_short(error, 160)}). Free space on its disk "
            f"(or move the workdir to a larger one) and rerun the same command: {resume}."
        ) from error


class _DiskFullTracebacks(logging.Filter):
    """Drops orbax's log records of a save that failed for lack of space: orbax logs the error with
    its traceback from each thread it passes through (~300 lines), and `disk_full_errors` says it
    in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and is_disk_full(record.exc_info[1]))


def _quiet_disk_full_tracebacks() -> None:
    absl_logger = logging.getLogger("absl")  # orbax logs through absl.logging
    if not any(isinstance(existing, _DiskFullTracebacks) for existing in absl_logger.filters):
        absl_logger.addFilter(_DiskFullTracebacks())
