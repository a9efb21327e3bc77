"""Live sample-quality monitoring during GAN training: FID with domain features, class
coverage and a mode-collapse alarm, and the best checkpoint by FID.

`ganjax.train` calls a `LiveMonitor` every `config.eval.live_every` steps (0, the default,
turns it off). Each check generates `config.eval.live_num_samples` images from fixed
noise with balanced labels, and measures

  live_fid_domain       FID (domain classifier features: `features.score_key`) against a
                        reference carved from the real training split (below), never the test split,
  live_class_coverage   fraction of classes the domain classifier finds among the samples
                        (at least 10% of the expected count), and live_classes_covered,
  live_class_kl         KL(generated class histogram || conditioning labels)
                        (an unconditional generator, model.conditional=False, ignores the
                        labels: its KL is against a uniform histogram, a mode-collapse
                        measure on class-balanced data),

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

The live FID chooses checkpoints (keep_best, roll-back), so its reference holds no test
image: it is a class-stratified sample of the whole training split (no subset applied),
`reference_indices(train labels, LIVE_REFERENCE_SIZE, reference_seed(config.data.seed))`:
about 10,000 images (every class contributing in proportion to its count), or the whole
split if it is smaller; the same for every training seed of a dataset and data seed. The
domain classifier behind the features was trained on that split too, so the live FID ranks
checkpoints of a run and is not comparable with `ganjax.evaluate`'s FID against test.
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
LIVE_REFERENCE_SIZE = 10_000  # real training images in the live-FID reference (as many as Fashion-MNIST's test split)
# Draws the reference from its own stream of config.data.seed: the subsets (long_tail, ...)
# choose per-class images with the data seed itself, and the reference should not follow them.
_REFERENCE_SEED_STREAM = 7
LIVE_FID = "live_" + feature_extractors.score_key("fid", "domain")
LEGACY_LIVE_FID = "live_fid"  # the key in the meta of best checkpoints saved before keys named their features
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
    record = meta.get("live", {})
    return float(record.get(LIVE_FID, record.get(LEGACY_LIVE_FID, math.inf)))


def reference_seed(data_seed: int) -> int:
    """The seed of the live-FID reference sample, derived from config.data.seed."""
    return int(np.random.SeedSequence([int(data_seed), _REFERENCE_SEED_STREAM]).generate_state(1)[0])


def reference_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted int64 indices of a class-stratified sample of about `size` of `labels` [N]:
    each class gives round(size / N * its count) examples (`data.stratified_split_indices`),
    so the sample keeps the split's class proportions; all N if size >= N."""
    if size <= 0:
        raise ValueError(f"The live-FID reference needs a positive size, got {size}.")
    if size >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    _, sample = data.stratified_split_indices(labels, size / len(labels), seed)
    return sample


def reference_images(data_config: ml_collections.ConfigDict) -> tuple[np.ndarray, dict]:
    """(uint8 images [N, H, W, C], provenance): the live-FID reference, drawn from the real
    training split of `data_config.source` with no subset; the test split is not used."""
    full_data = ml_collections.ConfigDict(dict(data_config.to_dict(), subset="none"))
    # load_train_and_test also loads the test split (a source without one has it carved out
    # of train, and that part must stay out of the reference); only train is used.
    train_set, _ = data.load_train_and_test(full_data)
    seed = reference_seed(data_config.seed)
    indices = reference_indices(train_set.labels, LIVE_REFERENCE_SIZE, seed)
    provenance = {
        "split": "train", "sampling": "class-stratified", "num_images": int(len(indices)),
        "num_train": int(len(train_set)), "seed": seed, "data_seed": int(data_config.seed),
    }
    return train_set.images[indices], provenance


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
        reference, self.reference_provenance = reference_images(config.data)
        logger.info("Live FID reference: %d of the %d training images (class-stratified, seed %d).",
                    self.reference_provenance["num_images"], self.reference_provenance["num_train"],
                    self.reference_provenance["seed"])
        reference_features, _ = self.extractor.extract(data.to_model_range(reference))
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
            LIVE_FID: fid,
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
        if self.config.keep_best and record[LIVE_FID] < self.best_fid:
            self.best_fid = record[LIVE_FID]
            record["live_best"] = True
            if self._best_manager is None:
                self._best_manager = checkpoint.make_manager(os.path.join(self.workdir, BEST_DIR), max_to_keep=1)
            checkpoint.save(self._best_manager, step, state,
                            {**self.meta, "live": record, "live_reference": self.reference_provenance})
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
