import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax import parallel, steps
from ganjax.state import create_gan_state
from ganjax.steps import gan as gan_steps


def _batch(config, n_critic=1, seed=0):
    rng = np.random.default_rng(seed)
    size = config.data.image_size
    return {
        "images": rng.uniform(-1, 1, (n_critic, config.train.batch_size, size, size, 1)).astype(np.float32),
        "labels": rng.integers(0, 10, (n_critic, config.train.batch_size)).astype(np.int32),
    }


def _state(config, seed=0):
    return create_gan_state(config, 10, (config.data.image_size,) * 2 + (1,), jax.random.key(seed))


@pytest.mark.parametrize("loss", ["non_saturating", "hinge", "least_squares"])
def test_discriminator_updates_reduce_its_loss_on_a_fixed_batch(tiny_config, loss):
    tiny_config.gan.loss = loss
    state = _state(tiny_config)
    batch = _batch(tiny_config)
    update = jax.jit(lambda s: gan_steps._discriminator_update(tiny_config, s, batch["images"][0], batch["labels"][0], jax.random.key(1)))
    _, first = update(state)
    for _ in range(15):
        discriminator, metrics = update(state)
        state = state.replace(discriminator=discriminator)
    assert float(metrics["d_loss"]) < float(first["d_loss"])


def test_generator_updates_reduce_its_loss_against_a_fixed_discriminator(tiny_config):
    state = _state(tiny_config)
    labels = jnp.arange(16) % 10
    update = jax.jit(lambda s: gan_steps._generator_update(tiny_config, s, labels, jax.random.key(2)))
    _, first = update(state)
    for _ in range(15):
        generator, metrics = update(state)
        state = state.replace(generator=generator)
    assert float(metrics["g_loss"]) < float(first["g_loss"])


@pytest.mark.parametrize("n_critic", [1, 2])
def test_train_step_updates_everything_and_compiles_once(tiny_config, n_critic):
    tiny_config.gan.n_critic = n_critic
    tiny_config.gan.r1_gamma = 1.0
    traces = []

    def counted(state, batch, key):
        traces.append(1)
        return steps.make_gan_train_step(tiny_config)(state, batch, key)

    mesh = parallel.make_mesh(jax.devices()[:1])
    train_step = parallel.jit_step(counted, mesh, batch_axis=1)
    state = parallel.replicate(_state(tiny_config), mesh)
    initial = jax.device_get(state)
    for step in range(3):
        batch = parallel.shard_batch(_batch(tiny_config, n_critic, seed=step), mesh, batch_axis=1)
        state, metrics = train_step(state, batch, jax.random.key(step))
    assert len(traces) == 1
    assert int(state.step) == 3
    assert int(state.discriminator.step) == 3 * n_critic
    assert set(metrics) >= {"d_loss", "g_loss", "real_logits", "fake_logits", "r1"}
    for before, after in [(initial.generator.params, state.generator.params),
                          (initial.discriminator.params, state.discriminator.params),
                          (initial.generator.batch_stats, state.generator.batch_stats)]:
        moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), before, after)
        assert max(jax.tree.leaves(moved)) > 0


def test_diff_augment_changes_the_step_and_leaves_the_off_path_unchanged(tiny_config):
    state, batch = _state(tiny_config), _batch(tiny_config)
    key = jax.random.key(7)
    plain_step = jax.jit(steps.make_gan_train_step(tiny_config))
    reference, _ = plain_step(state, batch, key)
    tiny_config.gan.diffaugment = "color,translation,cutout"
    augmented, metrics = jax.jit(steps.make_gan_train_step(tiny_config))(state, batch, key)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), reference.discriminator.params,
                         augmented.discriminator.params)
    assert max(jax.tree.leaves(moved)) > 0
    # DiffAugment's keys branch off: the noise the generator sees is the same with it on or off.
    tiny_config.gan.diffaugment = ""
    again, _ = plain_step(state, batch, key)
    chex.assert_trees_all_equal(reference.generator.params, again.generator.params)


@pytest.mark.parametrize("diffaugment", ["", pytest.param("translation,cutout", marks=pytest.mark.slow)])
def test_shared_generator_forward_equals_the_two_updates_with_the_same_noise(tiny_config, diffaugment):
    tiny_config.gan.diffaugment = diffaugment
    state, batch = _state(tiny_config), _batch(tiny_config)
    images, labels, key = batch["images"][0], batch["labels"][0], jax.random.key(3)
    shared, d_metrics, g_metrics = jax.jit(lambda s: gan_steps._shared_forward_update(tiny_config, s, images, labels, key))(state)
    # Reference: the D update with `key`, then a G update whose noise (and DiffAugment key) is D's.
    discriminator, reference_d = gan_steps._discriminator_update(tiny_config, state, images, labels, key)
    generator, reference_g = gan_steps._generator_update(
        tiny_config, state.replace(discriminator=discriminator), labels, steps.discriminator_noise_key(key))
    chex.assert_trees_all_close(shared.discriminator.params, discriminator.params, atol=1e-5)
    chex.assert_trees_all_close(shared.generator.params, generator.params, atol=1e-5)
    chex.assert_trees_all_close(shared.generator.batch_stats, generator.batch_stats, atol=1e-5)
    np.testing.assert_allclose(g_metrics["g_loss"], reference_g["g_loss"], rtol=1e-5)
    np.testing.assert_allclose(d_metrics["d_loss"], reference_d["d_loss"], rtol=1e-5)


def test_shared_generator_forward_in_the_train_step(tiny_config):
    tiny_config.gan.n_critic = 2
    state, batch = _state(tiny_config), _batch(tiny_config, n_critic=2)
    plain, _ = jax.jit(steps.make_gan_train_step(tiny_config))(state, batch, jax.random.key(0))
    tiny_config.gan.share_generator_forward = True
    shared, metrics = jax.jit(steps.make_gan_train_step(tiny_config))(state, batch, jax.random.key(0))
    assert int(shared.step) == 1 and int(shared.discriminator.step) == 2 and int(shared.generator.step) == 1
    assert set(metrics) >= {"d_loss", "g_loss"}
    # The first D update is the same; the G update differs (other noise) but moves G.
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state.generator.params, shared.generator.params)
    assert max(jax.tree.leaves(moved)) > 0
    differs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), plain.generator.params, shared.generator.params)
    assert max(jax.tree.leaves(differs)) > 0


def test_ema_lags_behind_the_generator(tiny_config):
    tiny_config.gan.ema_decay = 0.99
    step_fn = jax.jit(steps.make_gan_train_step(tiny_config))
    state = _state(tiny_config)
    initial = state.generator.params
    for step in range(30):
        state, _ = step_fn(state, _batch(tiny_config, seed=step), jax.random.key(step))
    distance = lambda a, b: sum(float(jnp.sum((x - y) ** 2)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    ema_moved, raw_moved = distance(state.generator_ema, initial), distance(state.generator.params, initial)
    assert 0 < ema_moved < raw_moved


def test_ema_decay_warms_up():
    np.testing.assert_allclose(steps.ema_decay_at(jnp.array(0.0), 0.999), 0.1)
    np.testing.assert_allclose(steps.ema_decay_at(jnp.array(1e6), 0.999), 0.999)


def test_over_seeds_equals_vmap():
    from ganjax.steps import over_seeds

    def step(params, batch, shared):
        return params * batch["x"] + shared, {"sum": jnp.sum(batch["x"])}

    params = jnp.arange(3.0)
    batch = {"x": jnp.arange(12.0).reshape(3, 4)}
    unrolled = jax.jit(over_seeds(step, in_axes=(0, 0, None)))(params, batch, 1.5)
    vectorized = jax.jit(over_seeds(step, in_axes=(0, 0, None), vectorize=True))(params, batch, 1.5)
    expected = jax.vmap(step, in_axes=(0, 0, None))(params, batch, 1.5)
    chex.assert_trees_all_close(unrolled, expected)
    chex.assert_trees_all_close(vectorized, expected)
    chex.assert_shape(unrolled[0], (3, 4))
