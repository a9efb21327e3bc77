"""BPDA carries the gradient through a pre-processing whose own gradient is zero, EOT averages the
gradients of a randomised defence, and classifier_apply_fn is the classifier in inference mode."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_classifier import digits_classifier

from ganjax import attacks, classify, data
from ganjax.attacks.wrappers import loss_logits_and_gradient

NUM_IMAGES = 200
LEVELS = 8  # quantisation levels above black: a step of 1/8 on the [0, 1] scale
NOISE_STD = 0.3  # the randomised defence's Gaussian noise, on the [-1, 1] images


@pytest.fixture(scope="module")
def classifier():
    """(apply_fn, params, images, labels): the tiny digits classifier and NUM_IMAGES test images in [-1, 1]."""
    state, _, test_set = digits_classifier()
    apply_fn, params = attacks.classifier_apply_fn(state)
    return apply_fn, params, data.to_model_range(test_set.images[:NUM_IMAGES]), test_set.labels[:NUM_IMAGES]


def quantise(images):
    """Rounds [-1, 1] images to LEVELS + 1 grey levels: gradient zero almost everywhere."""
    return jnp.round((images + 1) / 2 * LEVELS) / LEVELS * 2 - 1


def cross_entropy(apply_fn, params, images, labels):
    return jnp.sum(attacks.cross_entropy_loss(apply_fn(params, images), labels))


def test_bpda_passes_the_gradient_that_quantisation_blocks(classifier):
    apply_fn, params, images, labels = classifier
    images, labels = images[:16], labels[:16]
    straight_through = attacks.bpda(quantise)
    np.testing.assert_array_equal(straight_through(images), quantise(images))

    def blocked(params, images):
        return apply_fn(params, quantise(images))

    def through(params, images):
        return apply_fn(params, straight_through(images))

    doubled = attacks.bpda(quantise, approximation=lambda images: 2 * images)

    @jax.jit
    def gradients(params, images, labels):
        gradient = jax.grad(cross_entropy, argnums=2)
        return (gradient(blocked, params, images, labels), gradient(through, params, images, labels),
                gradient(apply_fn, params, quantise(images), labels),
                gradient(lambda p, x: apply_fn(p, doubled(x)), params, images, labels))

    plain, bpda, at_quantised, twice = (np.asarray(value) for value in gradients(params, images, labels))
    assert np.all(plain == 0)
    assert np.abs(bpda).sum() > 0
    np.testing.assert_allclose(bpda, at_quantised, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(twice, 2 * at_quantised, rtol=1e-5, atol=1e-7)


def test_pgd_through_bpda_fools_a_quantising_defence_that_blocks_plain_pgd(classifier):
    apply_fn, params, images, labels = classifier

    def blocked(params, images):
        return apply_fn(params, quantise(images))

    straight_through = attacks.bpda(quantise)

    def through(params, images):
        return apply_fn(params, straight_through(images))

    # Plain PGD from the clean images cannot move: the quantiser's gradient is zero (test above).
    defended_clean = attacks.robust_accuracy(blocked, params, images, labels)
    adversarial = attacks.pgd(through, params, images, labels, jax.random.key(0), eps=0.1, steps=10,
                              random_start=False)
    robust = attacks.robust_accuracy(blocked, params, adversarial, labels)
    assert attacks.perturbation_size(adversarial, images, "linf").max() <= 0.1 + 1e-6
    assert defended_clean > 0.9 and robust < defended_clean - 0.3, (defended_clean, robust)


def test_bpda_gives_extra_arguments_such_as_a_key_zero_gradient(classifier):
    apply_fn, params, images, labels = classifier
    images, labels = images[:8], labels[:8]

    def noisy_quantise(images, key):
        return quantise(images + 0.05 * jax.random.normal(key, images.shape))

    wrapped = attacks.bpda(noisy_quantise)

    @jax.jit
    def gradients(images, key):
        through = jax.grad(lambda x: cross_entropy(apply_fn, params, wrapped(x, key), labels))(images)
        return through, jax.grad(cross_entropy, argnums=2)(apply_fn, params, noisy_quantise(images, key), labels)

    gradient, expected = gradients(images, jax.random.key(1))
    assert np.abs(np.asarray(gradient)).sum() > 0
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-7)


def _noise_defence(apply_fn):
    def random_apply(params, images, key):
        return apply_fn(params, jnp.clip(images + NOISE_STD * jax.random.normal(key, images.shape), -1, 1))

    return random_apply


def test_eot_gradient_is_the_mean_of_per_draw_gradients_and_varies_less(classifier):
    apply_fn, params, images, labels = classifier
    images, labels = jnp.asarray(images[:32]), jnp.asarray(labels[:32])
    random_apply = _noise_defence(apply_fn)

    def loss_of_logits(logits):
        return attacks.cross_entropy_loss(logits, labels)

    @functools.partial(jax.jit, static_argnums=0)
    def gradient(model, key):
        return loss_logits_and_gradient(model, params, images, key, loss_of_logits)[2]

    @jax.jit
    def one_draw_gradient(key):
        return gradient(lambda params, images: random_apply(params, images, key), jax.random.key(0))

    # EOT over 16 draws is the mean of the 16 one-draw gradients with split(key, 16)'s keys.
    key = jax.random.key(2)
    per_draw = np.stack([one_draw_gradient(draw_key) for draw_key in jax.random.split(key, 16)])
    np.testing.assert_allclose(gradient(attacks.EOT(random_apply, 16), key), per_draw.mean(axis=0),
                               rtol=1e-4, atol=1e-6)
    # Over fresh keys it varies about 16 times less than one draw does.
    sixteen = np.stack([gradient(attacks.EOT(random_apply, 16), k) for k in jax.random.split(jax.random.key(3), 8)])
    variance_one, variance_sixteen = per_draw.var(axis=0).mean(), sixteen.var(axis=0).mean()
    assert variance_sixteen < variance_one / 4, (variance_one, variance_sixteen)


def test_pgd_with_eot_fools_the_randomised_defence_inside_the_ball(classifier):
    apply_fn, params, images, labels = classifier
    images, labels = images[:64], labels[:64]
    defence = attacks.EOT(_noise_defence(apply_fn), draws=2)
    adversarial = attacks.pgd(defence, params, images, labels, jax.random.key(4), eps=0.1, steps=10)
    assert attacks.perturbation_size(adversarial, images, "linf").max() <= 0.1 + 1e-6
    clean = attacks.robust_accuracy(defence, params, images, labels)
    robust = attacks.robust_accuracy(defence, params, adversarial, labels)
    assert clean > 0.8 and robust < clean - 0.3, (clean, robust)
    with pytest.raises(ValueError, match="EOT draws must be at least 1"):
        attacks.EOT(_noise_defence(apply_fn), draws=0)


def test_classifier_apply_fn_is_the_inference_mode_classifier(classifier):
    state, _, _ = digits_classifier()
    apply_fn, params, images, _ = classifier
    np.testing.assert_allclose(apply_fn(params, images), classify.predict(state, images), rtol=1e-5, atol=1e-5)
    # Equal for equal architectures: the jitted attacks compile once per architecture.
    rebuilt = attacks.InferenceApply(classify.build_classifier("cnn", 10, 8))
    assert rebuilt == apply_fn and hash(rebuilt) == hash(apply_fn)
    with pytest.raises(ValueError, match="Flax module's apply"):
        attacks.classifier_apply_fn(state.replace(apply_fn=lambda *args: None))
