import json
import math
import os

import jax
import ml_collections
import numpy as np
import pytest

from ganjax import checkpoint, data, live, metrics
from ganjax.config import config_from_dict, validate_config
from ganjax.data import load_train_and_test
from ganjax.live import AlarmState, collapse_alarms
from ganjax.metrics.features import FeatureExtractor
from ganjax.sample import load_generator
from ganjax.state import create_gan_state
from ganjax.train import METRICS_FILE, train_and_evaluate


def _records(workdir):
    with open(os.path.join(workdir, METRICS_FILE)) as stream:
        return [json.loads(line) for line in stream]


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory):
    """A domain classifier directory shared by the tests (trained on first use, 60 steps)."""
    return str(tmp_path_factory.mktemp("live") / "digits_classifier")


@pytest.fixture
def live_config(tiny_config, classifier_path):
    tiny_config.eval.live_every = 2
    tiny_config.eval.live_num_samples = 100
    tiny_config.eval.live_classifier = classifier_path
    tiny_config.eval.live_classifier_steps = 60
    return tiny_config


def test_collapse_alarms_compare_with_the_best_so_far():
    state, alarms = collapse_alarms(AlarmState(), 1.0, 0.01, coverage_drop=0.2, kl_jump=0.5)
    assert alarms == [] and state == AlarmState(1.0, 0.01)
    state, alarms = collapse_alarms(state, 0.9, 0.3, coverage_drop=0.2, kl_jump=0.5)
    assert alarms == [] and state == AlarmState(1.0, 0.01)
    _, alarms = collapse_alarms(state, 0.7, 0.6, coverage_drop=0.2, kl_jump=0.5)
    assert len(alarms) == 2 and "coverage 0.70" in alarms[0] and "KL 0.600" in alarms[1]


def test_reference_indices_are_a_seeded_class_stratified_sample():
    labels = np.repeat(np.arange(4), [400, 300, 200, 100])
    sample = live.reference_indices(labels, 100, seed=5)
    np.testing.assert_array_equal(np.bincount(labels[sample]), [40, 30, 20, 10])
    assert np.all(np.diff(sample) > 0) and sample.dtype == np.int64
    np.testing.assert_array_equal(sample, live.reference_indices(labels, 100, seed=5))
    assert not np.array_equal(sample, live.reference_indices(labels, 100, seed=6))
    np.testing.assert_array_equal(live.reference_indices(labels, 5000, seed=5), np.arange(1000))
    assert live.reference_seed(0) != 0 and live.reference_seed(0) == live.reference_seed(0)


class _UnreadableSplit:
    """Stands in for the test split: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the live monitor read the test split ({name})")

    def __len__(self):
        raise AssertionError("the live monitor read the test split (len)")


def _pixel_extractor(*args, **kwargs):
    """A stand-in for the domain classifier: 4x4-pooled pixels of 16x16 images as features."""

    def apply_batch(images):
        pooled = images.reshape(images.shape[0], 4, 4, 4, 4).mean(axis=(2, 4))
        return pooled.reshape(images.shape[0], 16), jax.numpy.zeros((images.shape[0], 10))

    return FeatureExtractor("pixels", jax.jit(apply_batch), (16, 16, 1), {"name": "pixels"})


@pytest.mark.parametrize("reference_size", [200, live.LIVE_REFERENCE_SIZE])
def test_the_live_fid_reference_is_training_data_and_never_the_test_split(
        tiny_config, tmp_path, monkeypatch, reference_size):
    tiny_config.eval.live_every = 2
    tiny_config.eval.live_num_samples = 20
    tiny_config.data.subset = "long_tail"  # the reference ignores the GAN's subset
    tiny_config.data.imbalance_ratio = 10.0
    full_data = ml_collections.ConfigDict(dict(tiny_config.data.to_dict(), subset="none"))
    train_set, test_set = data.load_train_and_test(full_data)
    test_images = data.to_model_range(test_set.images)

    def train_only(data_config, workdir=None):
        assert data_config.subset == "none"
        return train_set, _UnreadableSplit()

    load_source = data.load_source

    def no_test_split(source, split="train", image_size=None):
        if split != "train":
            raise AssertionError(f"the live monitor loaded the {split!r} split of {source}")
        return load_source(source, split, image_size)

    monkeypatch.setattr(data, "load_train_and_test", train_only)
    monkeypatch.setattr(data, "load_source", no_test_split)
    monkeypatch.setattr(data.pipeline, "load_source", no_test_split)
    monkeypatch.setattr(live.feature_extractors, "domain_feature_extractor", _pixel_extractor)
    monkeypatch.setattr(live, "LIVE_REFERENCE_SIZE", reference_size)
    monitor = live.LiveMonitor(tiny_config, str(tmp_path), {"num_classes": 10})

    indices = live.reference_indices(train_set.labels, reference_size, live.reference_seed(tiny_config.data.seed))
    expected_size = min(reference_size, len(train_set))
    assert abs(len(indices) - expected_size) <= 10 and monitor.reference_provenance["num_images"] == len(indices)
    assert monitor.reference_provenance["split"] == "train"
    extractor = _pixel_extractor()
    expected = metrics.feature_statistics(extractor.extract(data.to_model_range(train_set.images[indices]))[0])
    for actual, wanted in zip(monitor.reference_statistics, expected):
        np.testing.assert_allclose(actual, wanted, rtol=1e-6, atol=1e-8)
    test_mean = metrics.feature_statistics(extractor.extract(test_images)[0])[0]
    assert not np.allclose(monitor.reference_statistics[0], test_mean, rtol=1e-4, atol=1e-6)


def test_live_metrics_are_logged_and_the_best_checkpoint_is_kept(live_config, tmp_path):
    workdir = str(tmp_path / "run")
    train_and_evaluate(live_config, workdir)
    live_records = [record for record in _records(workdir) if live.LIVE_FID in record]
    assert [record["step"] for record in live_records] == [2, 4]
    for record in live_records:
        assert math.isfinite(record[live.LIVE_FID]) and 0 <= record["live_class_coverage"] <= 1
        assert 0 <= record["live_classes_covered"] <= 10 and record["live_class_kl"] >= 0
    best = min(live_records, key=lambda record: record[live.LIVE_FID])
    assert live.best_fid(workdir) == pytest.approx(best[live.LIVE_FID])
    best_workdir = os.path.join(workdir, live.BEST_DIR)
    assert checkpoint.latest_step(best_workdir) == best["step"]
    assert load_generator(best_workdir).step == best["step"]
    reference = checkpoint.restore_meta(best_workdir)[1]["live_reference"]
    assert reference["split"] == "train" and reference["num_images"] == reference["num_train"]  # digits: < 10,000


def test_an_alarm_stops_training_after_a_checkpoint(live_config, tmp_path, monkeypatch):
    live_config.train.steps = 8
    live_config.train.checkpoint_every = 8
    live_config.eval.live_stop_on_alarm = True
    live_config.eval.keep_best = False
    coverages = iter([1.0, 0.5, 0.5, 0.5])  # collapses at the second check (step 4)
    monkeypatch.setattr(
        live.LiveMonitor, "measure",
        lambda self, state: {live.LIVE_FID: 1.0, "live_class_coverage": next(coverages), "live_classes_covered": 5,
                             "live_class_kl": 0.0},
    )
    workdir = str(tmp_path / "run")
    train_and_evaluate(live_config, workdir)
    records = _records(workdir)
    assert "live_alarm" in records[-1] and records[-1]["step"] == 4
    assert checkpoint.latest_step(workdir) == 4
    assert not os.path.exists(os.path.join(workdir, live.BEST_DIR))


def test_live_monitoring_is_off_by_default(tiny_config):
    assert tiny_config.eval.live_every == 0
    assert live.make_monitor(tiny_config, "unused", {}) is None


def test_an_alarm_rolls_back_to_the_best_checkpoint(live_config, tmp_path, monkeypatch):
    live_config.train.steps = 8
    live_config.eval.live_rollback_on_alarm = True
    live_config.eval.live_max_rollbacks = 1
    # Step 2 is the best (lowest FID); coverage collapses at steps 4 and 6.
    checks = iter([(1.0, 1.0), (2.0, 0.5), (3.0, 0.5), (3.0, 0.5)])

    def measure(self, state):
        fid, coverage = next(checks)
        return {live.LIVE_FID: fid, "live_class_coverage": coverage, "live_classes_covered": 5, "live_class_kl": 0.0}

    monkeypatch.setattr(live.LiveMonitor, "measure", measure)
    restored_at = []
    restore_best = live.LiveMonitor.restore_best

    def recording_restore_best(self, state):
        restored = restore_best(self, state)
        restored_at.append(int(restored.step))
        return restored

    monkeypatch.setattr(live.LiveMonitor, "restore_best", recording_restore_best)
    workdir = str(tmp_path / "run")
    train_and_evaluate(live_config, workdir)
    live_records = {record["step"]: record for record in _records(workdir) if live.LIVE_FID in record}
    assert live_records[4]["live_rollback_to"] == 2 and restored_at == [2]
    # One roll-back allowed: the second alarm only warns, and training runs to the end.
    assert "live_alarm" in live_records[6] and "live_rollback_to" not in live_records[6]
    assert checkpoint.latest_step(workdir) == 8
    # After the roll-back the state counts on from step 2's: 2 + 4 steps trained since.
    assert load_generator(workdir).step == 8 and int(_restored_step(workdir)) == 6


def _restored_step(workdir):
    """The GAN state's own step counter in the newest checkpoint."""
    _, meta = checkpoint.restore_meta(workdir)
    config = config_from_dict(meta["config"])
    train_set, _ = load_train_and_test(config.data)
    template = create_gan_state(config, train_set.num_classes, train_set.image_shape, jax.random.key(0))
    return checkpoint.restore_state(workdir, template)[1].step


def test_roll_back_needs_keep_best(live_config):
    live_config.eval.live_rollback_on_alarm = True
    live_config.eval.keep_best = False
    with pytest.raises(ValueError, match="live_rollback_on_alarm' needs eval.keep_best"):
        validate_config(live_config)
