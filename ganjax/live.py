"""Live sample-quality monitoring during GAN training: FID with domain features, class
coverage and a mode-collapse alarm, and the best checkpoint by FID.

`ganjax.train` calls a `LiveMonitor` every `config.eval.live_every` steps (0, the default,
turns it off). Each check generates `config.eval.live_num_samples` images from fixed
noise with balanced labels, and measures

  live_fid              FID (domain classifier features) against the real test split,
  live_class_coverage   fraction of classes the domain classifier finds among the samples
                        (at least 10% of the expected count), and live_classes_covered,
  live_class_kl         KL(generated class histogram || conditioning labels),

logged as one record of metrics.jsonl. An alarm (a warning and `live_alarm` in the record)
fires when coverage falls more than `live_coverage_drop` below its best so far or the class
KL rises more than `live_kl_jump` above its best. What follows an alarm:
`config.eval.live_rollback_on_alarm` restores the best checkpoint (below) and training goes
on from the current step with fresh batches and noise (`live_rollback_to` in the record), at
most `live_max_rollbacks` times in a run; otherwise `config.eval.live_stop_on_alarm` stops
training after a checkpoint; otherwise training goes on.
With `config.eval.keep_best`, the checkpoint of the lowest FID is kept in
WORKDIR/best/ (its own checkpoint directory with one step, not subject to the regular
checkpoints' max_to_keep), so `ganjax.load_generator(WORKDIR + "/best")` and
`python -m ganjax.evaluate --workdir WORKDIR/best` read it directly.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from ganjax import checkpoint, data, metrics
from ganjax.metrics import features as feature_extractors
from ganjax.sample import generate_images

BEST_DIR = "best"
logger = logging.getLogger("ganjax")


@dataclasses.dataclass
class AlarmState:
    """Best values seen so far, against which the alarm compares each check."""

    best_coverage: float = -math.inf
    best_class_kl: float = math.inf


def collapse_alarms(
    alarm_state: AlarmState, class_coverage: float, class_kl: float, coverage_drop: float, kl_jump: float
) -> tuple[AlarmState, list[str]]:
    """(updated best values, alarm messages) for one check; no alarm on the first check."""
    alarms = []
    if class_coverage < alarm_state.best_coverage - coverage_drop:
        alarms.append(f"class coverage {class_coverage:.2f} fell below its best {alarm_state.best_coverage:.2f} "
                      f"by more than {coverage_drop}")
    if class_kl > alarm_state.best_class_kl + kl_jump:
        alarms.append(f"class KL {class_kl:.3f} rose above its best {alarm_state.best_class_kl:.3f} by more than {kl_jump}")
    updated = AlarmState(max(alarm_state.best_coverage, class_coverage), min(alarm_state.best_class_kl, class_kl))
    return updated, alarms


def best_fid(workdir: str) -> float:
    """The live FID of the best checkpoint kept in WORKDIR/best, or inf if none."""
    best_workdir = os.path.join(workdir, BEST_DIR)
    if checkpoint.latest_step(best_workdir) is None:
        return math.inf
    _, meta = checkpoint.restore_meta(best_workdir)
    return float(meta.get("live", {}).get("live_fid", math.inf))


class LiveMonitor:
    """Called as `monitor(step, state) -> (record, stop)` by the training loop; `close()` at the end.

    Every process runs the same (replicated) generation and the same host computation, so
    they agree on when to save the best checkpoint (which every process must join).
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str, meta: dict, progress: bool = False):
        self.config = config.eval
        self.workdir = workdir
        self.meta = meta
        self.extractor = feature_extractors.domain_feature_extractor(
            config.data, config.eval.live_classifier or None, steps=config.eval.live_classifier_steps,
            seed=config.seed, progress=progress,
        )
        reference_data = ml_collections.ConfigDict(dict(config.data.to_dict(), subset="none"))
        _, test_set = data.load_train_and_test(reference_data)
        reference_features, _ = self.extractor.extract(data.to_model_range(test_set.images))
        self.reference_statistics = metrics.feature_statistics(reference_features)
        self.num_classes = int(meta["num_classes"])
        self.labels = (np.arange(config.eval.live_num_samples) % self.num_classes).astype(np.int32)
        # Fixed noise: successive checks differ only through the generator.
        self.noise = jax.random.normal(
            jax.random.fold_in(jax.random.key(config.seed), 3), (len(self.labels), config.model.noise_dim)
        )
        self.alarm_state = AlarmState()
        self.best_fid = best_fid(workdir) if config.eval.keep_best else math.inf
        self.best_step = checkpoint.latest_step(os.path.join(workdir, BEST_DIR)) if config.eval.keep_best else None
        self.rollbacks = 0
        self._best_manager = None

    def measure(self, state: Any) -> dict[str, Any]:
        """The live metrics of the generator in `state` (no side effects)."""
        images = np.asarray(jax.device_get(generate_images(state, self.noise, self.labels)))
        features, logits = self.extractor.extract(images)
        fid = metrics.frechet_distance(*self.reference_statistics, *metrics.feature_statistics(features))
        histogram = metrics.class_histogram_metrics(logits.argmax(axis=-1), self.labels, self.num_classes)
        return {
            "live_fid": fid,
            "live_class_coverage": histogram["class_coverage"],
            "live_classes_covered": histogram["classes_covered"],
            "live_class_kl": histogram["class_kl"],
        }

    def __call__(self, step: int, state: Any) -> tuple[dict[str, Any], str]:
        """(the check's metrics.jsonl record, action): action is "continue", "stop" or
        "rollback" (the caller then replaces its state with `restore_best(state)`)."""
        record = {"step": step, **self.measure(state)}
        self.alarm_state, alarms = collapse_alarms(
            self.alarm_state, record["live_class_coverage"], record["live_class_kl"],
            self.config.live_coverage_drop, self.config.live_kl_jump,
        )
        if alarms:
            record["live_alarm"] = "; ".join(alarms)
            logger.warning("Possible mode collapse at step %d: %s", step, record["live_alarm"])
        if self.config.keep_best and record["live_fid"] < self.best_fid:
            self.best_fid = record["live_fid"]
            record["live_best"] = True
            if self._best_manager is None:
                self._best_manager = checkpoint.make_manager(os.path.join(self.workdir, BEST_DIR), max_to_keep=1)
            checkpoint.save(self._best_manager, step, state, {**self.meta, "live": record})
            self.best_step = step
        if not alarms:
            return record, "continue"
        if self._can_roll_back(step):
            self.rollbacks += 1
            record["live_rollback_to"] = self.best_step
            logger.warning("Rolling back to the best checkpoint (step %d, live FID %.4g), roll-back %d of at most %d.",
                           self.best_step, self.best_fid, self.rollbacks, self.config.live_max_rollbacks)
            return record, "rollback"
        if self.config.live_stop_on_alarm:
            logger.warning("Stopping at step %d (config.eval.live_stop_on_alarm).", step)
            return record, "stop"
        return record, "continue"

    def _can_roll_back(self, step: int) -> bool:
        """A roll-back is asked for, allowed once more, and has an earlier best checkpoint to go to."""
        return (self.config.live_rollback_on_alarm and self.rollbacks < self.config.live_max_rollbacks
                and self.best_step is not None and self.best_step < step)

    def restore_best(self, state: Any) -> Any:
        """The best checkpoint's state, placed like `state` (the template; replicated in training)."""
        if self._best_manager is not None:
            self._best_manager.wait_until_finished()
        sharding = jax.tree.leaves(state)[0].sharding
        _, restored = checkpoint.restore_state(os.path.join(self.workdir, BEST_DIR), state, sharding=sharding)
        return restored

    def close(self) -> None:
        if self._best_manager is not None:
            self._best_manager.wait_until_finished()
            self._best_manager.close()
            self._best_manager = None


def make_monitor(config: ml_collections.ConfigDict, workdir: str, meta: dict) -> LiveMonitor | None:
    """A LiveMonitor if `config.eval.live_every` > 0, else None."""
    if config.eval.live_every <= 0:
        return None
    return LiveMonitor(config, workdir, meta)
