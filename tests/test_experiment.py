import json
import os

import jax
import numpy as np
import pytest

from ganjax import checkpoint, experiment, names
from ganjax.config import load_config
from ganjax.state import create_gan_state
from ganjax.studies import engine


def _digits_lt(**overrides):
    config = load_config("digits_lt")
    config.train.steps = 20
    config.classifier.steps = 20
    config.experiment.num_seeds = 2
    for name, value in overrides.items():
        section, key = name.split("__")
        config[section][key] = value
    return config


@pytest.mark.slow
def test_digits_lt_end_to_end_writes_every_strategy(tmp_path):
    workdir = os.fspath(tmp_path / "run")
    result = experiment.run_experiment(_digits_lt(), workdir, progress=False)
    saved = json.loads(open(os.path.join(workdir, "report.json")).read())
    assert set(saved) == set(names.LONG_TAIL_STRATEGIES) | {"meta"}
    for strategy in names.LONG_TAIL_STRATEGIES:
        for metric in names.LONG_TAIL_METRICS:
            entry = saved[strategy][metric]
            assert len(entry["per_seed"]) == 2
            assert all(0.0 <= value <= 1.0 for value in entry["per_seed"]), (strategy, metric, entry)
        assert len(saved[strategy]["per_class_recall"]["mean"]) == 10
    assert saved["meta"]["class_counts"]["train"][0] > saved["meta"]["class_counts"]["train"][-1]
    assert result["meta"]["batch_split"]["gan"] == {"real": 16, "synthetic": 16}
    for name in ("report.md", "confusion_matrix.png", "per_class_recall.png", "gan/checkpoints"):
        assert os.path.exists(os.path.join(workdir, name)), name
    # The GAN trained on the training part only: its subset excludes the validation images.
    gan_indices = json.loads(open(os.path.join(workdir, "gan", "subset_indices.json")).read())["indices"]
    all_indices = json.loads(open(os.path.join(workdir, "subset_indices.json")).read())["indices"]
    assert len(gan_indices) == sum(saved["meta"]["class_counts"]["train"]) < len(all_indices)
    # The study, its validation means and the strategy they choose; the report is titled by the study.
    meta = saved["meta"]
    assert meta["study"] == "long_tail" and set(meta["validation_mean"]) == set(names.LONG_TAIL_STRATEGIES)
    means = meta["validation_mean"]
    assert meta["best_on_validation"] == max(means, key=lambda name: means[name]["balanced_accuracy"])
    assert meta["wall_seconds"]["total_this_run"] > 0 and meta["wall_seconds"]["gan_training"] > 0
    markdown = open(os.path.join(workdir, "report.md")).read()
    assert markdown.startswith("# Recognition on long-tailed data: digits (long_tail)")
    for strategy in names.LONG_TAIL_STRATEGIES:
        record = json.loads(open(engine.record_path(workdir, strategy)).read())
        assert [seed["accuracy"] for seed in record["per_seed"]] == saved[strategy]["accuracy"]["per_seed"]
        assert len(record["validation"]) == 2
    # Rerunning reuses the finished strategy's record.
    again = experiment.run_experiment(_digits_lt(experiment__strategies="gan"), workdir, progress=False)
    assert again["gan"]["accuracy"]["per_seed"] == saved["gan"]["accuracy"]["per_seed"]
    # Without the record, the classifiers train again on the trained GAN (resume semantics of ganjax.train).
    gan_step = checkpoint.latest_step(os.path.join(workdir, "gan"))
    os.remove(engine.record_path(workdir, "gan"))
    again = experiment.run_experiment(_digits_lt(experiment__strategies="gan"), workdir, progress=False)
    assert again["gan"]["accuracy"]["per_seed"] == saved["gan"]["accuracy"]["per_seed"]
    assert checkpoint.latest_step(os.path.join(workdir, "gan")) == gan_step


@pytest.mark.slow
def test_joint_mode_runs_gan_and_classifiers_in_one_step(tmp_path):
    config = _digits_lt(experiment__strategies="plain,gan", experiment__gan_mode="joint")
    result = experiment.run_experiment(config, os.fspath(tmp_path), progress=False)
    assert result["meta"]["budget"]["gan_mode"] == "joint"
    assert not os.path.exists(tmp_path / "gan")
    assert all(0 <= v <= 1 for v in result["gan"]["balanced_accuracy"]["per_seed"])


def test_generator_with_other_class_count_raises(tmp_path):
    config = _digits_lt(experiment__strategies="gan")
    gan_workdir = os.fspath(tmp_path / "other_gan")
    state = create_gan_state(config, 4, (16, 16, 1), jax.random.key(0))
    manager = checkpoint.make_manager(gan_workdir)
    checkpoint.save(manager, 1, state, checkpoint.make_meta(config, 4, (16, 16, 1), ("a", "b", "c", "d")))
    manager.wait_until_finished()
    manager.close()
    config.experiment.generator_workdir = gan_workdir
    with pytest.raises(ValueError, match="has 4 classes but the dataset has 10.*generator_workdir"):
        experiment.run_experiment(config, os.fspath(tmp_path / "run"), progress=False)


def test_a_reused_generator_made_with_other_gan_settings_is_refused(tmp_path):
    config = _digits_lt(experiment__strategies="gan")
    gan_workdir = os.fspath(tmp_path / "other_gan")
    saved = _digits_lt(experiment__strategies="gan", gan__loss="wgan")
    state = create_gan_state(saved, 10, (16, 16, 1), jax.random.key(0))
    manager = checkpoint.make_manager(gan_workdir)
    checkpoint.save(manager, 1, state, checkpoint.make_meta(saved, 10, (16, 16, 1), tuple("abcdefghij")))
    manager.wait_until_finished()
    manager.close()
    config.experiment.generator_workdir = gan_workdir
    with pytest.raises(ValueError, match="gan.loss: 'wgan' -> 'hinge'"):
        experiment.run_experiment(config, os.fspath(tmp_path / "run"), progress=False)
    assert not os.path.exists(tmp_path / "run" / "strategies" / "gan.json")


def test_a_class_with_zero_images_raises(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([0] * 30 + [1] * 20 + [3] * 10)  # class 2 has no training image
    path = tmp_path / "data.npz"
    np.savez(
        path, x=rng.integers(0, 255, (60, 16, 16, 1), dtype=np.uint8), y=labels,
        x_test=rng.integers(0, 255, (8, 16, 16, 1), dtype=np.uint8), y_test=np.arange(8) % 4,
        class_names=np.array(["a", "b", "c", "d"]),
    )
    config = _digits_lt(data__source=f"npz:{path}", data__subset="none", experiment__strategies="plain")
    with pytest.raises(ValueError, match=r"Class 2 \(c\) of npz:.*data.npz split 'train' has no image"):
        experiment.run_experiment(config, os.fspath(tmp_path / "run"), progress=False)


def test_cli_reports_bad_input_in_one_line(tmp_path):
    from conftest import run_python

    code = (
        "import sys; from ganjax.experiment import *; import runpy; sys.argv=['x','--config','configs/digits_lt.py',"
        f"'--workdir','{tmp_path}','--config.experiment.strategies=plain,mixup'];"
        "runpy.run_module('ganjax.experiment', run_name='__main__')"
    )
    result = run_python(code)
    assert result.returncode != 0
    assert "ganjax.experiment: error: " in result.stderr and "mixup" in result.stderr
