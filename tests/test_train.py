"""End to end: train, checkpoint, resume, sample — on scikit-learn's digits."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import REPO
from ganjax import checkpoint, sample
from ganjax.cli import enable_compilation_cache
from ganjax.config import validate_config
from ganjax.state import create_gan_state
from ganjax.train import train_and_evaluate

TINY_FLAGS = [
    "--config.model.noise_dim=16", "--config.model.embed_dim=8",
    "--config.model.generator_width=8", "--config.model.discriminator_width=8",
    "--config.train.batch_size=16", "--config.train.log_every=1",
]


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _restore(workdir, config):
    template = create_gan_state(config, 10, (16, 16, 1), jax.random.key(0))
    return checkpoint.restore_state(workdir, template)


def test_training_writes_metrics_samples_and_checkpoints(tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    last = train_and_evaluate(tiny_config, workdir)
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert last["step"] == 4 and np.isfinite(last["d_loss"]) and last["images_per_sec"] > 0
    assert "images_per_sec" not in records[0]  # step 1 is compilation, not throughput
    assert train_and_evaluate(tiny_config, workdir) == last  # a finished run reports its last record
    assert sorted(os.listdir(os.path.join(workdir, "samples"))) == ["step_000002.png", "step_000004.png"]
    assert checkpoint.latest_step(workdir) == 4
    _, meta = checkpoint.restore_meta(workdir)
    assert meta["config"]["model"]["generator_width"] == 8
    assert meta["num_classes"] == 10 and meta["image_shape"] == [16, 16, 1]


def test_resume_equals_uninterrupted(tiny_config, tmp_path):
    straight, interrupted = str(tmp_path / "straight"), str(tmp_path / "interrupted")
    train_and_evaluate(tiny_config, straight)
    tiny_config.train.steps = 2
    train_and_evaluate(tiny_config, interrupted)
    tiny_config.train.steps = 4
    train_and_evaluate(tiny_config, interrupted)
    step_a, state_a = _restore(straight, tiny_config)
    step_b, state_b = _restore(interrupted, tiny_config)
    assert step_a == step_b == 4
    assert _leaves_equal(state_a, state_b)
    steps = [json.loads(line)["step"] for line in open(os.path.join(interrupted, "metrics.jsonl"))]
    assert steps == [1, 2, 3, 4]


def test_checkpoint_that_does_not_match_config_is_named(tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    tiny_config.train.steps = 2
    train_and_evaluate(tiny_config, workdir)
    tiny_config.model.generator_width = 16
    tiny_config.train.allow_config_change = True  # past the config check, to the arrays' shapes
    with pytest.raises(ValueError, match=r"(?s)does not match the model.*generator"):
        train_and_evaluate(tiny_config, workdir)


def test_resume_with_a_changed_objective_refuses_and_names_the_keys(tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    tiny_config.train.steps = 2
    train_and_evaluate(tiny_config, workdir)
    tiny_config.train.steps = 4
    tiny_config.gan.loss = "least_squares"
    tiny_config.model.generator_width = 16
    message = (r"(?s)checkpoint step 2 in .*gan.loss: 'hinge' -> 'least_squares'\n"
               r"  model.generator_width: 8 -> 16\n.*fresh --workdir.*--config.train.allow_config_change=True")
    with pytest.raises(ValueError, match=message):
        train_and_evaluate(tiny_config, workdir)
    assert checkpoint.latest_step(workdir) == 2


def test_resume_with_changed_length_logging_and_other_sections(tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    tiny_config.train.steps = 2
    train_and_evaluate(tiny_config, workdir)
    tiny_config.train.steps = 4
    tiny_config.train.log_every, tiny_config.train.keep_checkpoints = 2, 5
    tiny_config.train.sample_every = tiny_config.train.checkpoint_every = 4
    tiny_config.eval.live_num_samples, tiny_config.classifier.width = 100, 4
    tiny_config.experiment.num_seeds, tiny_config.semi.steps = 2, 7
    assert train_and_evaluate(tiny_config, workdir)["step"] == 4
    assert checkpoint.latest_step(workdir) == 4
    steps = [json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert steps == [1, 2, 4]


def test_allow_config_change_resumes_with_the_new_objective(tiny_config, tmp_path, caplog):
    workdir = str(tmp_path / "run")
    tiny_config.train.steps = 2
    train_and_evaluate(tiny_config, workdir)
    tiny_config.train.steps = 4
    tiny_config.gan.loss = "least_squares"
    tiny_config.train.allow_config_change = True
    with caplog.at_level("WARNING", logger="ganjax.checkpoint"):
        train_and_evaluate(tiny_config, workdir)
    assert "gan.loss: 'hinge' -> 'least_squares'" in caplog.text
    step, meta = checkpoint.restore_meta(workdir)
    assert step == 4 and meta["config"]["gan"]["loss"] == "least_squares"


def test_config_differences_skip_free_keys_and_take_defaults_for_unsaved_ones(tiny_config):
    saved = json.loads(tiny_config.to_json())
    del saved["gan"]["share_generator_forward"]  # a checkpoint written before the key existed
    del saved["train"]["allow_config_change"]
    saved["train"]["steps"], saved["eval"]["live_every"], saved["parallel"]["num_processes"] = 99, 5, 2
    saved["classifier"]["width"], saved["experiment"]["num_seeds"], saved["semi"]["steps"] = 1, 1, 1
    assert checkpoint.config_differences(saved, tiny_config) == {}
    checkpoint.check_resume_config(saved, tiny_config, "a test")
    saved["gan"]["removed_option"] = 1
    tiny_config.gan.share_generator_forward, tiny_config.train.batch_size, tiny_config.data.seed = True, 32, 3
    assert checkpoint.config_differences(saved, tiny_config) == {
        "data.seed": (0, 3),
        "gan.removed_option": (1, "<not in this ganjax>"),
        "gan.share_generator_forward": (False, True),
        "train.batch_size": (16, 32),
    }
    with pytest.raises(ValueError, match=r"(?s)saved with a test.*data.seed: 0 -> 3\n.*train.batch_size: 16 -> 32"):
        checkpoint.check_resume_config(saved, tiny_config, "a test")
    tiny_config.train.allow_config_change = True
    checkpoint.check_resume_config(saved, tiny_config, "a test")


def test_load_generator_samples_without_the_dataset(tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    train_and_evaluate(tiny_config, workdir)
    generator = sample.load_generator(workdir)
    assert generator.step == 4 and generator.num_classes == 10
    images = generator.sample(jax.random.key(0), [0, 1, 2, 9])
    assert images.shape == (4, 16, 16, 1) and images.dtype == np.float32
    assert np.all(np.abs(images) <= 1)
    again = generator.sample(jax.random.key(0), [0, 1, 2, 9])
    np.testing.assert_array_equal(images, again)
    older = sample.load_generator(workdir, step=2).sample(jax.random.key(0), [0, 1, 2, 9])
    assert np.max(np.abs(older - images)) > 0
    with pytest.raises(ValueError, match="Labels must be in"):
        generator.sample(jax.random.key(0), [10])
    with pytest.raises(FileNotFoundError, match="No checkpoint for step 3"):
        sample.load_generator(workdir, step=3)


def test_sample_cli_writes_png_and_npz(tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    train_and_evaluate(tiny_config, workdir)
    out, npz = str(tmp_path / "grid.png"), str(tmp_path / "s.npz")
    assert sample.main(["--workdir", workdir, "--num", "20", "--out", out, "--npz", npz]) == 0
    assert os.path.getsize(out) > 0
    arrays = np.load(npz)
    assert arrays["x"].shape == (20, 16, 16, 1) and arrays["x"].dtype == np.float32
    np.testing.assert_array_equal(np.sort(arrays["y"]), np.sort(np.arange(20) % 10))
    assert sample.main(["--workdir", workdir, "--num", "5", "--label", "3", "--out", out, "--npz", npz]) == 0
    np.testing.assert_array_equal(np.load(npz)["y"], [3] * 5)


def test_sample_without_checkpoint_fails_clearly(tmp_path, capsys):
    assert sample.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "No checkpoint" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="Train first"):
        sample.load_generator(str(tmp_path))


def test_unknown_and_mistyped_config_keys_are_named(tiny_config):
    tiny_config.train.stepz = 3
    with pytest.raises(ValueError, match="'train.stepz' is unknown.*'train.steps'"):
        validate_config(tiny_config)
    del tiny_config.train["stepz"]
    tiny_config.gan.loss = "wasserstein"
    with pytest.raises(ValueError, match="'gan.loss'.*hinge"):
        validate_config(tiny_config)


def _records(workdir):
    """metrics.jsonl without the wall-clock throughput."""
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return [{name: value for name, value in record.items() if name != "images_per_sec"} for record in records]


def test_steps_per_call_equals_one_step_per_call_and_resumes_unaligned(tiny_config, tmp_path):
    """K=4 steps per call: the same state and logged metrics as K=1, bit for bit, with logging
    windows of two calls, and steps 13-14 (train.steps not a multiple of K) one by one; a resume
    from step 2 runs steps 3-4 one by one, then 5-8 in one call, in the same window."""
    enable_compilation_cache()  # the session's cache (conftest): the four runs compile each program once
    tiny_config.train.steps = 14
    tiny_config.train.log_every = tiny_config.train.sample_every = tiny_config.train.checkpoint_every = 8
    one, four, resumed = (str(tmp_path / name) for name in ("one", "four", "resumed"))
    train_and_evaluate(tiny_config, one)
    tiny_config.train.steps_per_call = 4
    assert train_and_evaluate(tiny_config, four)["images_per_sec"] > 0
    tiny_config.train.steps = 2
    train_and_evaluate(tiny_config, resumed)
    tiny_config.train.steps = 14
    train_and_evaluate(tiny_config, resumed)
    (step_one, state_one), (step_four, state_four), (step_resumed, state_resumed) = (
        _restore(workdir, tiny_config) for workdir in (one, four, resumed))
    assert step_one == step_four == step_resumed == 14
    assert _leaves_equal(state_one, state_four) and _leaves_equal(state_one, state_resumed)
    assert [record["step"] for record in _records(four)] == [8, 14]
    assert _records(four) == _records(one)
    assert [record["step"] for record in _records(resumed)] == [2, 8, 14]
    assert _records(resumed)[-1] == _records(one)[-1]  # the window 9-14 alike
    assert sorted(os.listdir(os.path.join(four, "samples"))) == ["step_000008.png", "step_000014.png"]
    saved = sorted(int(name) for name in os.listdir(checkpoint.checkpoint_dir(four)) if name.isdigit())
    assert saved == [8, 14]


@pytest.mark.parametrize("overrides,message", [
    ({"train.steps_per_call": 0}, r"'train.steps_per_call' must be >= 1"),
    ({"train.steps_per_call": 4}, r"'train.log_every': 1.*multiples of 'train.steps_per_call'=4"),
    ({"train.steps_per_call": 2, "train.log_every": 2, "eval.live_every": 3},
     r"\{'eval.live_every': 3\}.*multiples of 'train.steps_per_call'=2"),
])
def test_bad_steps_per_call_is_named(tiny_config, overrides, message):
    for name, value in overrides.items():
        section, key = name.split(".")
        tiny_config[section][key] = value
    with pytest.raises(ValueError, match=message):
        validate_config(tiny_config)


def test_steps_per_call_fits_periods_and_live_off(tiny_config):
    tiny_config.train.steps_per_call, tiny_config.train.log_every = 2, 2  # sample/checkpoint every 2
    tiny_config.eval.live_every = 0  # off: any steps_per_call fits
    validate_config(tiny_config)


def _train_command(workdir, *extra):
    return [sys.executable, "-m", "ganjax.train", "--config", os.path.join(REPO, "configs", "digits.py"),
            "--workdir", workdir, *TINY_FLAGS, *extra]


@pytest.mark.parametrize("flag,expected", [("--config.train.stepz=3", "stepz"), ("--config.train.steps=abc", "steps")])
def test_cli_rejects_bad_overrides(tmp_path, flag, expected):
    result = subprocess.run(_train_command(str(tmp_path), flag), capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode != 0
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_cli_reports_missing_dataset_in_one_line(tmp_path):
    result = subprocess.run(
        _train_command(str(tmp_path), "--config.data.source=idx:/nonexistent/fashion"),
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert result.returncode != 0
    assert "/nonexistent/fashion" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_sigkill_then_same_command_resumes(tmp_path):
    workdir = str(tmp_path / "run")
    command = _train_command(workdir, "--config.train.steps=400", "--config.train.checkpoint_every=25",
                             "--config.train.sample_every=1000")
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and (checkpoint.latest_step(workdir) or 0) < 50:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = checkpoint.latest_step(workdir)
    assert killed_at is not None and 50 <= killed_at < 400, killed_at

    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resuming from checkpoint step {killed_at}" in result.stderr
    assert checkpoint.latest_step(workdir) == 400
    steps = [json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert steps == list(range(1, 401))


def test_sample_many_equals_chunked_sample_calls(tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    tiny_config.train.steps = 2
    train_and_evaluate(tiny_config, workdir)
    generator = sample.load_generator(workdir)
    labels = np.arange(7) % 10
    key = jax.random.key(3)
    many = generator.sample_many(key, labels, batch_size=3)
    assert many.shape == (7, 16, 16, 1)
    expected = np.concatenate([
        generator.sample(jax.random.fold_in(key, 0), labels[0:3]),
        generator.sample(jax.random.fold_in(key, 1), labels[3:6]),
        generator.sample(jax.random.fold_in(key, 2), np.resize(labels[6:], 3))[:1],
    ])
    np.testing.assert_allclose(many, expected, atol=1e-6)
