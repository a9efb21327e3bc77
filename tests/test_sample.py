"""Sampling's BatchNorm statistics: running averages from training, or standing statistics."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import make_tiny_config
from ganjax import checkpoint, sample
from ganjax.models.layers import make_norm
from ganjax.state import create_gan_state, create_model_state

NOISE_DIM, NUM_CLASSES, HIDDEN, CHANNELS, EPSILON = 3, 4, 5, 2, 1e-5


class TinyGenerator(nn.Module):
    """Embedding + dense, BatchNorm over the batch, ReLU, dense to [B, 2, 2, C], BatchNorm over
    batch and positions: both kinds of reduction the real generator's BatchNorms make."""

    @nn.compact
    def __call__(self, noise, labels, train=True):
        hidden = nn.Dense(HIDDEN)(noise) + nn.Embed(NUM_CLASSES, HIDDEN)(labels)
        hidden = nn.relu(make_norm("batch", train)(hidden))
        images = nn.Dense(4 * CHANNELS)(hidden).reshape(noise.shape[0], 2, 2, CHANNELS)
        return make_norm("batch", train)(images)


def _numpy_batch_statistics(params, noise, labels):
    """Per-layer (mean, biased variance) of one training-mode forward pass, in float64 numpy."""
    params = jax.tree.map(lambda leaf: np.asarray(leaf, np.float64), params)

    def batch_norm(values, layer, axes):
        mean, var = values.mean(axes), values.var(axes)
        scale, bias = params[layer]["scale"], params[layer]["bias"]
        return (values - mean) / np.sqrt(var + EPSILON) * scale + bias, {"mean": mean, "var": var}

    noise = np.asarray(noise, np.float64)
    hidden = noise @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"] + params["Embed_0"]["embedding"][labels]
    hidden, first = batch_norm(hidden, "BatchNorm_0", (0,))
    hidden = np.maximum(hidden, 0)
    images = (hidden @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]).reshape(len(noise), 2, 2, CHANNELS)
    _, second = batch_norm(images, "BatchNorm_1", (0, 1, 2))
    return {"BatchNorm_0": first, "BatchNorm_1": second}


def test_standing_statistics_equal_a_numpy_average_of_batch_statistics():
    noise, labels = jnp.zeros((2, NOISE_DIM)), jnp.zeros((2,), jnp.int32)
    state = create_model_state(TinyGenerator(), optax.sgd(0.1), jax.random.key(0), noise, labels, train=False)
    # Weights unlike the initial ones (BatchNorm scale 1, bias 0), and running stats that differ
    # from the batches' own: the result must not depend on them.
    params = jax.tree.map(lambda leaf: leaf + 0.3 * jax.random.normal(jax.random.key(1), leaf.shape), state.params)
    state = state.replace(batch_stats=jax.tree.map(lambda leaf: leaf + 7.0, state.batch_stats))
    key, num_batches, batch_size = jax.random.key(2), 3, 6

    standing = sample.standing_batch_stats(state, params, key, num_batches, batch_size, NUM_CLASSES, NOISE_DIM)

    per_batch = []
    for batch_key in jax.random.split(key, num_batches):
        noise_key, label_key = jax.random.split(batch_key)
        noise = jax.random.normal(noise_key, (batch_size, NOISE_DIM), jnp.float32)
        labels = np.asarray(jax.random.randint(label_key, (batch_size,), 0, NUM_CLASSES, jnp.int32))
        per_batch.append(_numpy_batch_statistics(params, noise, labels))
    expected = jax.tree.map(lambda *values: np.mean(values, axis=0), *per_batch)
    assert jax.tree.structure(standing) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(standing), jax.tree.leaves(expected)):
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    # The average is over the batches, not one batch's statistics: each batch differs.
    assert not np.allclose(per_batch[0]["BatchNorm_1"]["var"], per_batch[1]["BatchNorm_1"]["var"])


def test_one_standing_batch_is_what_flax_batch_norm_feeds_its_running_average():
    """On the real generator: from zero running averages, one training-mode call leaves
    (1 - momentum) * the batch's statistics (flax.linen.BatchNorm, momentum 0.9)."""
    config = make_tiny_config()
    state = create_gan_state(config, 10, (16, 16, 1), jax.random.key(0))
    key, batch_size = jax.random.key(5), 16
    standing = sample.standing_batch_stats(state.generator, state.generator.params, key, 1, batch_size, 10, 16)
    noise_key, label_key = jax.random.split(jax.random.split(key, 1)[0])
    noise = jax.random.normal(noise_key, (batch_size, 16), jnp.float32)
    labels = jax.random.randint(label_key, (batch_size,), 0, 10, jnp.int32)
    zeros = jax.tree.map(jnp.zeros_like, state.generator.batch_stats)
    _, updated = jax.jit(lambda variables: state.generator.apply_fn(
        variables, noise, labels, train=True, mutable=["batch_stats"]
    ))({"params": state.generator.params, "batch_stats": zeros})
    assert len(standing) == 3  # the dense layer's and both up-samplings' BatchNorms
    for got, fed in zip(jax.tree.leaves(standing), jax.tree.leaves(updated["batch_stats"])):
        np.testing.assert_allclose(np.asarray(got), np.asarray(fed) / (1 - 0.9), rtol=2e-5, atol=1e-6)


def test_running_statistics_reproduce_todays_samples_bitwise(tiny_gan_workdir):
    config = make_tiny_config()
    template = create_gan_state(config, 10, (16, 16, 1), jax.random.key(0))
    _, state = checkpoint.restore_state(tiny_gan_workdir, template)
    labels = np.array([0, 3, 9, 9, 1], np.int32)
    noise = jax.random.normal(jax.random.key(4), (len(labels), config.model.noise_dim), jnp.float32)
    # What sampling computed before the option existed: EMA params with the raw generator's
    # running stats, in inference mode, jitted (eager dispatch rounds differently).
    today = np.asarray(jax.jit(lambda variables, noise, labels: state.generator.apply_fn(
        variables, noise, labels, train=False
    ))({"params": state.generator_ema, "batch_stats": state.generator.batch_stats}, noise, labels))
    generator = sample.load_generator(tiny_gan_workdir, bn_statistics="running")
    assert generator.bn_statistics == "running" and generator.standing is None
    np.testing.assert_array_equal(generator.sample(jax.random.key(4), labels), today)


def test_sampling_defaults_to_standing_statistics(tiny_gan_workdir):
    # Chosen on a training-split FID of the main job (BENCHMARKS.md, "BatchNorm statistics for sampling").
    assert sample.DEFAULT_BN_STATISTICS == "standing"
    default = sample.load_generator(tiny_gan_workdir, standing_num_batches=3)
    explicit = sample.load_generator(tiny_gan_workdir, bn_statistics="standing", standing_num_batches=3)
    assert default.bn_statistics == "standing" and default.standing is not None
    np.testing.assert_array_equal(default.sample(jax.random.key(4), [0, 5]), explicit.sample(jax.random.key(4), [0, 5]))


def test_standing_statistics_are_computed_on_first_use_not_at_load(tiny_gan_workdir, monkeypatch):
    calls = []
    real = sample.standing_batch_stats
    monkeypatch.setattr(sample, "standing_batch_stats", lambda *args: calls.append(1) or real(*args))
    generator = sample.load_generator(tiny_gan_workdir, standing_num_batches=2)
    assert generator.step == 4 and calls == []  # reading the step or config costs no forward pass
    first = generator.state
    assert calls == [1] and generator.state is first  # computed once, then kept
    running = generator.checkpoint_state.generator.batch_stats
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(running),
                                                        jax.tree.leaves(first.generator.batch_stats)))


def test_standing_statistics_fit_the_ema_weights_when_running_ones_are_stale(tiny_gan_workdir):
    running = sample.load_generator(tiny_gan_workdir, bn_statistics="running")
    standing = sample.load_generator(tiny_gan_workdir, bn_statistics="standing", standing_num_batches=20)
    assert standing.use_ema and standing.standing == {"num_batches": 20, "batch_size": 16, "seed": 0, "labels": "uniform"}
    labels = np.arange(400) % 10
    key = jax.random.key(0)
    running_images, standing_images = running.sample(key, labels), standing.sample(key, labels)
    assert np.max(np.abs(standing_images - running_images)) > 0.1
    # A training-mode pass of the EMA weights on this big batch normalises with its own
    # statistics; standing statistics estimate exactly those, the stale running ones do not.
    state = running.state
    noise = jax.random.normal(key, (len(labels), running.config.model.noise_dim), jnp.float32)
    own_statistics, _ = state.generator.apply_fn(
        {"params": state.generator_ema, "batch_stats": state.generator.batch_stats}, noise, labels,
        train=True, mutable=["batch_stats"],
    )
    standing_error = np.mean(np.abs(standing_images - np.asarray(own_statistics)))
    running_error = np.mean(np.abs(running_images - np.asarray(own_statistics)))
    assert standing_error < 0.2 * running_error, (standing_error, running_error)
    # Deterministic in its seed, and another seed gives (slightly) other statistics.
    again = sample.load_generator(tiny_gan_workdir, bn_statistics="standing", standing_num_batches=20)
    np.testing.assert_array_equal(again.sample(key, labels[:10]), standing_images[:10])
    other = sample.load_generator(tiny_gan_workdir, bn_statistics="standing", standing_num_batches=20, standing_seed=1)
    assert np.max(np.abs(other.sample(key, labels[:10]) - standing_images[:10])) > 0


def test_standing_statistics_leave_the_checkpoint_alone(tiny_gan_workdir):
    before = sample.load_generator(tiny_gan_workdir, bn_statistics="running").state.generator.batch_stats
    sample.load_generator(tiny_gan_workdir, bn_statistics="standing", standing_num_batches=2)
    after = sample.load_generator(tiny_gan_workdir, bn_statistics="running").state.generator.batch_stats
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_an_unknown_bn_statistics_raises_naming_the_choices(tiny_gan_workdir, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"'ema'.*'running', 'standing'"):
        sample.load_generator(tiny_gan_workdir, bn_statistics="ema")
    with pytest.raises(SystemExit):
        sample.main(["--workdir", tiny_gan_workdir, "--bn-statistics", "ema", "--out", str(tmp_path / "x.png")])
    assert "running" in capsys.readouterr().err


def test_sample_cli_with_standing_statistics(tiny_gan_workdir, tmp_path):
    out, npz = str(tmp_path / "grid.png"), str(tmp_path / "s.npz")
    args = ["--workdir", tiny_gan_workdir, "--num", "20", "--out", out, "--npz", npz]
    assert sample.main(args + ["--bn-statistics", "running"]) == 0
    running = np.load(npz)["x"]
    assert sample.main(args) == 0  # standing is the default
    standing = np.load(npz)["x"]
    assert standing.shape == running.shape and np.max(np.abs(standing - running)) > 0
    expected = sample.load_generator(tiny_gan_workdir, bn_statistics="standing").sample(
        jax.random.key(0), np.arange(20) % 10
    )
    np.testing.assert_array_equal(np.sort(standing.ravel()), np.sort(expected.ravel()))
