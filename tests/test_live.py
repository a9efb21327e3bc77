import json
import math
import os

import pytest

from ganjax import checkpoint, live
from ganjax.live import AlarmState, collapse_alarms
from ganjax.sample import load_generator
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


def test_live_metrics_are_logged_and_the_best_checkpoint_is_kept(live_config, tmp_path):
    workdir = str(tmp_path / "run")
    train_and_evaluate(live_config, workdir)
    live_records = [record for record in _records(workdir) if "live_fid" in record]
    assert [record["step"] for record in live_records] == [2, 4]
    for record in live_records:
        assert math.isfinite(record["live_fid"]) and 0 <= record["live_class_coverage"] <= 1
        assert 0 <= record["live_classes_covered"] <= 10 and record["live_class_kl"] >= 0
    best = min(live_records, key=lambda record: record["live_fid"])
    assert live.best_fid(workdir) == pytest.approx(best["live_fid"])
    best_workdir = os.path.join(workdir, live.BEST_DIR)
    assert checkpoint.latest_step(best_workdir) == best["step"]
    assert load_generator(best_workdir).step == best["step"]


def test_an_alarm_stops_training_after_a_checkpoint(live_config, tmp_path, monkeypatch):
    live_config.train.steps = 8
    live_config.train.checkpoint_every = 8
    live_config.eval.live_stop_on_alarm = True
    live_config.eval.keep_best = False
    coverages = iter([1.0, 0.5, 0.5, 0.5])  # collapses at the second check (step 4)
    monkeypatch.setattr(
        live.LiveMonitor, "measure",
        lambda self, state: {"live_fid": 1.0, "live_class_coverage": next(coverages), "live_classes_covered": 5,
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
