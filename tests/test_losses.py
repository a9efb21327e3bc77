import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax import losses


def test_non_saturating_values_at_zero_logits():
    zeros = jnp.zeros(8)
    np.testing.assert_allclose(losses.discriminator_loss("non_saturating", zeros, zeros), 2 * np.log(2), rtol=1e-6)
    np.testing.assert_allclose(losses.generator_loss("non_saturating", zeros), np.log(2), rtol=1e-6)


def test_hinge_is_zero_beyond_margin_and_linear_inside():
    real, fake = jnp.array([2.0, 1.5]), jnp.array([-3.0, -1.0])
    assert float(losses.discriminator_loss("hinge", real, fake)) == 0.0
    real, fake = jnp.array([0.0]), jnp.array([0.5])
    np.testing.assert_allclose(losses.discriminator_loss("hinge", real, fake), 1.0 + 1.5)
    np.testing.assert_allclose(losses.generator_loss("hinge", jnp.array([0.5, 1.5])), -1.0)


def test_wgan_and_least_squares():
    real, fake = jnp.array([1.0, 3.0]), jnp.array([0.0, -2.0])
    np.testing.assert_allclose(losses.discriminator_loss("wgan", real, fake), -1.0 - 2.0)
    np.testing.assert_allclose(losses.discriminator_loss("least_squares", jnp.ones(3), jnp.zeros(3)), 0.0)
    np.testing.assert_allclose(losses.generator_loss("least_squares", jnp.zeros(3)), 0.5)


def test_unknown_loss_names_choices():
    with pytest.raises(ValueError, match="hinge"):
        losses.discriminator_loss("hinj", jnp.zeros(1), jnp.zeros(1))


def test_r1_penalty_of_linear_critic_is_squared_weight_norm():
    weights = jnp.arange(12.0).reshape(1, 2, 2, 3) / 10

    def score(images):
        return jnp.sum(images * weights, axis=(1, 2, 3))

    images = jax.random.normal(jax.random.key(0), (5, 2, 2, 3))
    np.testing.assert_allclose(losses.r1_penalty(score, images), jnp.sum(weights**2), rtol=1e-5)


def test_gradient_penalty_zero_for_unit_norm_linear_critic():
    weights = jnp.zeros((1, 2, 2, 1)).at[0, 0, 0, 0].set(1.0)

    def score(images):
        return jnp.sum(images * weights, axis=(1, 2, 3))

    real = jax.random.normal(jax.random.key(1), (4, 2, 2, 1))
    fake = jax.random.normal(jax.random.key(2), (4, 2, 2, 1))
    assert float(losses.gradient_penalty(score, real, fake, jax.random.key(3))) < 1e-6
    penalty = losses.gradient_penalty(lambda x: 3 * score(x), real, fake, jax.random.key(3))
    np.testing.assert_allclose(penalty, 4.0, rtol=1e-4)


def test_weighted_cross_entropy_matches_manual():
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    labels = jnp.array([0, 0])
    per_example = -jax.nn.log_softmax(logits)[jnp.arange(2), labels]
    np.testing.assert_allclose(losses.cross_entropy(logits, labels), per_example.mean(), rtol=1e-6)
    weights = jnp.array([1.0, 3.0])
    expected = (per_example[0] + 3 * per_example[1]) / 4
    np.testing.assert_allclose(losses.cross_entropy(logits, labels, weights), expected, rtol=1e-6)
