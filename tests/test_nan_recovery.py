"""NaN recovery in ganjax.train (config.train.nan_retries): restore the last good state, lower the
learning rates, go on; the lowered rates survive a resume; spent retries end in a clear error."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax import checkpoint, parallel
from ganjax.config import validate_config
from ganjax.state import create_gan_state, scale_learning_rates
from ganjax.train import NonFiniteLoss, train_and_evaluate


def _inject_faults(monkeypatch, calls, weights=False):
    """Makes the GAN step's call number n (counted over the whole test, from 1) for n in `calls` return
    NaN weights (`weights`) or a NaN d_loss; every other call runs the real step."""
    real_jit_step = parallel.jit_step
    counter = {"calls": 0}

    def faulty_jit_step(step_fn, mesh, batch_axis=0):
        compiled = real_jit_step(step_fn, mesh, batch_axis)

        def call(state, batch, key):
            state, metrics = compiled(state, batch, key)
            counter["calls"] += 1
            if counter["calls"] in calls:
                if weights:
                    state = state.replace(generator=state.generator.replace(
                        params=jax.tree.map(lambda leaf: leaf * jnp.nan, state.generator.params)))
                else:
                    metrics = {**metrics, "d_loss": metrics["d_loss"] * jnp.nan}
            return state, metrics

        return call

    monkeypatch.setattr(parallel, "jit_step", faulty_jit_step)
    return counter


def _records(workdir):
    return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


def _restore(workdir, config):
    return checkpoint.restore_state(workdir, create_gan_state(config, 10, (16, 16, 1), jax.random.key(0)))


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_scaled_rates_scale_the_adam_update(tiny_config):
    state = create_gan_state(tiny_config, 10, (16, 16, 1), jax.random.key(0))
    update = jax.jit(lambda generator: generator.apply_gradients(
        grads=jax.tree.map(jnp.ones_like, generator.params)).params)
    full = update(state.generator)
    half = update(scale_learning_rates(state, tiny_config, 0.5).generator)
    for before, at_full, at_half in zip(*(jax.tree.leaves(tree) for tree in (state.generator.params, full, half))):
        np.testing.assert_allclose(at_half - before, 0.5 * (at_full - before), rtol=0, atol=1e-7)  # float32 rounding
    assert scale_learning_rates(state, tiny_config, 1.0) is state


def test_recovery_restores_the_last_finite_checkpoint_lowers_the_rates_and_a_resume_keeps_them(
        tiny_config, tmp_path, monkeypatch, caplog):
    """NaN weights after step 3 (checkpointed at 3, seen in step 4's logged loss): the run deletes checkpoint
    3, restores 2 at half the rates and finishes; a run stopped after its recovery and resumed ends bitwise
    where the uninterrupted one does; both differ from the run without a fault."""
    tiny_config.train.steps, tiny_config.train.log_every, tiny_config.train.checkpoint_every = 6, 2, 1
    tiny_config.train.sample_every, tiny_config.train.nan_retries = 6, 2
    clean, recovered, resumed = (str(tmp_path / name) for name in ("clean", "recovered", "resumed"))
    train_and_evaluate(tiny_config, clean)
    counter = _inject_faults(monkeypatch, {3}, weights=True)
    with caplog.at_level("WARNING", logger="ganjax"):
        assert train_and_evaluate(tiny_config, recovered)["step"] == 6
    assert "Recovery 1 of at most 2 (train.nan_retries): back to step 2, learning rates at 0.5" in caplog.text
    assert "Checkpoint step 3 in" in caplog.text and "non-finite weights: deleted" in caplog.text
    records = _records(recovered)
    assert [record["step"] for record in records] == [2, 2, 4, 6]
    assert records[1] == {"step": 2, "nan_recovery": 1, "lr_scale": 0.5, "non_finite_at_step": 4,
                          "non_finite": {"d_loss": "nan", "fake_logits": "nan", "g_loss": "nan"}}
    before_fault = {name: value for name, value in records[0].items() if name != "images_per_sec"}
    assert before_fault == {name: value for name, value in _records(clean)[0].items() if name != "images_per_sec"}
    assert all(np.isfinite(value) for record in records[2:] for value in record.values())
    assert checkpoint.restore_meta(recovered)[1]["nan_recovery"] == {"lr_scale": 0.5, "recoveries": 1}

    counter["calls"] = 0
    tiny_config.train.steps = 4
    train_and_evaluate(tiny_config, resumed)
    monkeypatch.undo()  # no fault from here on
    tiny_config.train.steps, tiny_config.train.nan_retries = 6, 5  # nan_retries may change on resume
    train_and_evaluate(tiny_config, resumed)
    (step_clean, state_clean), (step_recovered, state_recovered), (step_resumed, state_resumed) = (
        _restore(workdir, tiny_config) for workdir in (clean, recovered, resumed))
    assert step_clean == step_recovered == step_resumed == 6
    assert _leaves_equal(state_recovered, state_resumed)
    assert not _leaves_equal(state_clean, state_recovered)
    assert [record["step"] for record in _records(resumed)] == [2, 2, 4, 6]


def test_recovery_passes_over_a_damaged_checkpoint_as_a_resume_does(tiny_config, tmp_path, monkeypatch, caplog):
    """NaN weights after step 3 (seen in step 4's logged loss) and checkpoint 2's meta overwritten meanwhile:
    the recovery deletes non-finite 3, sets damaged 2 aside as a resume would, and goes on from step 1;
    orbax then saves step 2 anew."""
    tiny_config.train.steps, tiny_config.train.log_every, tiny_config.train.checkpoint_every = 6, 2, 1
    tiny_config.train.sample_every, tiny_config.train.keep_checkpoints, tiny_config.train.nan_retries = 6, 10, 2
    workdir = str(tmp_path / "run")
    _inject_faults(monkeypatch, {3}, weights=True)
    faulty_jit_step, calls = parallel.jit_step, {"count": 0}

    def damaging_jit_step(step_fn, mesh, batch_axis=0):
        compiled = faulty_jit_step(step_fn, mesh, batch_axis)

        def call(state, batch, key):
            calls["count"] += 1
            if calls["count"] == 4:  # checkpoint 2's save finished before step 3's began
                with open(os.path.join(checkpoint.checkpoint_dir(workdir), "2", "meta", "metadata"), "wb") as stream:
                    stream.write(b"\x00 not json")
            return compiled(state, batch, key)

        return call

    monkeypatch.setattr(parallel, "jit_step", damaging_jit_step)
    with caplog.at_level("WARNING", logger="ganjax"):
        assert train_and_evaluate(tiny_config, workdir)["step"] == 6
    assert f"Checkpoint step 2 in {checkpoint.checkpoint_dir(workdir)} is damaged" in caplog.text
    assert "Recovery 1 of at most 2 (train.nan_retries): back to step 1" in caplog.text
    names = os.listdir(checkpoint.checkpoint_dir(workdir))
    assert sorted(int(name) for name in names if name.isdigit()) == [1, 2, 3, 4, 5, 6]
    assert len([name for name in names if name.startswith(checkpoint.DAMAGED_PREFIX + "2-")]) == 1
    assert [(record["step"], record.get("nan_recovery")) for record in _records(workdir)] == [
        (1, 1), (2, None), (4, None), (6, None)]
    assert checkpoint.restore_meta(workdir, 2)[1]["nan_recovery"] == {"lr_scale": 0.5, "recoveries": 1}


def test_spent_retries_stop_with_a_clear_message(tiny_config, tmp_path, monkeypatch):
    tiny_config.train.steps, tiny_config.train.checkpoint_every, tiny_config.train.nan_retries = 4, 1, 2
    workdir = str(tmp_path / "run")
    _inject_faults(monkeypatch, set(range(2, 100)))
    message = (r"Non-finite training metrics at step 2: \{'d_loss': nan\}, after 2 recoveries "
               r"\(config.train.nan_retries=2; learning rates at 0.25 x config.optim.\*_lr\). Giving up.*"
               r"--config.train.nan_retries=N")
    with pytest.raises(FloatingPointError, match=message):
        train_and_evaluate(tiny_config, workdir)
    records = _records(workdir)
    assert [(record["step"], record.get("nan_recovery"), record.get("lr_scale")) for record in records] == [
        (1, None, None), (1, 1, 0.5), (1, 2, 0.25)]
    assert checkpoint.latest_step(workdir) == 1


def test_recovery_off_stops_at_the_first_non_finite_loss(tiny_config, tmp_path, monkeypatch):
    tiny_config.train.steps, tiny_config.train.checkpoint_every = 4, 1
    workdir = str(tmp_path / "run")
    _inject_faults(monkeypatch, {2})
    with pytest.raises(NonFiniteLoss, match=r"Non-finite training metrics at step 2: \{'d_loss': nan\}.*nan_retries"):
        train_and_evaluate(tiny_config, workdir)
    assert [record["step"] for record in _records(workdir)] == [1]
    assert checkpoint.latest_step(workdir) == 1


@pytest.mark.parametrize("key,value,message", [
    ("nan_retries", -1, r"'train.nan_retries' must be >= 0"),
    ("nan_lr_factor", 0.0, r"'train.nan_lr_factor' must be in \(0, 1\]"),
    ("nan_lr_factor", 1.5, r"'train.nan_lr_factor' must be in \(0, 1\]"),
])
def test_bad_recovery_keys_are_named(tiny_config, key, value, message):
    tiny_config.train[key] = value
    with pytest.raises(ValueError, match=message):
        validate_config(tiny_config)
