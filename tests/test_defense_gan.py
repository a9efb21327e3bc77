"""Defense-GAN: the projection lands on the generator's range, BPDA carries the classifier's gradient
through it, and mismatched generators and bad settings are refused."""

import sys
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "attacks"))
from tiny_classifier import digits_classifier  # noqa: E402

from ganjax import attacks, data, defense_gan  # noqa: E402
from ganjax.sample import load_generator  # noqa: E402


@pytest.fixture(scope="module")
def setup(tiny_gan_workdir):
    """(generator, apply_fn, params, defence params, images [8], labels [8])."""
    generator = load_generator(tiny_gan_workdir)
    state, _, test_set = digits_classifier()
    apply_fn, classifier_params = attacks.classifier_apply_fn(state)
    params = defense_gan.defense_params(classifier_params, generator)
    return (generator, apply_fn, classifier_params, params, data.to_model_range(test_set.images[:8]),
            test_set.labels[:8])


def test_the_projection_finds_the_generator_image_it_was_given(setup):
    generator, apply_fn, _, params, _, _ = setup
    labels = np.arange(8, dtype=np.int32)
    made = np.asarray(generator.sample(jax.random.key(5), labels))
    defense = defense_gan.DefenseGAN(apply_fn, steps=60, restarts=2, classes=0, gan_loss=generator.config.gan.loss)
    projected = np.asarray(jax.jit(defense.project)(params, made, jax.random.key(6)))
    others = np.asarray(generator.sample(jax.random.key(7), labels))  # the same classes, other latents
    assert projected.shape == made.shape
    fitted, unfitted = np.abs(projected - made).mean(), np.abs(others - made).mean()
    assert fitted < 0.5 * unfitted, (fitted, unfitted)


def test_bpda_gives_the_classifier_gradient_at_the_projection_and_the_plain_path_none(setup):
    generator, apply_fn, classifier_params, params, images, labels = setup
    defense = defense_gan.DefenseGAN(apply_fn, steps=5, restarts=1, classes=2, gan_loss=generator.config.gan.loss)
    key = jax.random.key(3)

    def loss(model, x):
        return jnp.sum(attacks.cross_entropy_loss(model(params, x, key), labels))

    through, plain = jax.jit(jax.grad(lambda x: loss(defense.straight_through, x)))(images), \
        jax.jit(jax.grad(lambda x: loss(defense, x)))(images)
    projected = jax.jit(defense.project)(params, images, key)
    at_projection = jax.grad(lambda x: jnp.sum(attacks.cross_entropy_loss(apply_fn(classifier_params, x), labels)))(
        projected)
    np.testing.assert_allclose(through, at_projection, rtol=1e-4, atol=1e-6)
    assert np.abs(np.asarray(through)).sum() > 0
    assert np.all(np.asarray(plain) == 0)  # the projection passes no gradient: attacks need BPDA
    np.testing.assert_array_equal(defense.straight_through(params, images, key), defense(params, images, key))


def test_a_bpda_eot_attack_stays_in_the_ball_and_the_pixel_range(setup):
    generator, apply_fn, _, params, images, labels = setup
    defense = defense_gan.DefenseGAN(apply_fn, steps=3, restarts=1, classes=2, gan_loss=generator.config.gan.loss)
    adversarial = attacks.pgd(attacks.EOT(defense.straight_through, draws=2), params, images, labels,
                              jax.random.key(0), eps=0.1, steps=3, early_stop=False)
    assert attacks.perturbation_size(adversarial, images, "linf").max() <= 0.1 + 1e-6
    assert float(np.abs(np.asarray(adversarial) - images).max()) > 0.1  # it moved (to the ball's edge: 0.2 in [-1, 1])
    assert np.asarray(adversarial).min() >= -1 and np.asarray(adversarial).max() <= 1
    predictions = defense_gan.defended_predictions(defense, params, images, jax.random.key(1), batch_size=5)
    assert predictions.shape == labels.shape and predictions.dtype.kind == "i"


def test_candidate_classes_are_the_likeliest_or_all():
    logits = jnp.array([[0.0, 3.0, 1.0, 2.0]])
    np.testing.assert_array_equal(defense_gan.candidate_classes(logits, 2), [[1, 3]])
    np.testing.assert_array_equal(defense_gan.candidate_classes(logits, 0), [[0, 1, 2, 3]])
    np.testing.assert_array_equal(defense_gan.candidate_classes(logits, 9), [[0, 1, 2, 3]])


def test_mismatched_generators_and_bad_settings_are_refused(setup):
    generator, apply_fn, _, _, images, _ = setup
    with pytest.raises(ValueError, match="10 classes but the classifier 7"):
        defense_gan.check_defense(generator, images, num_classes=7)
    with pytest.raises(ValueError, match="shape"):
        defense_gan.check_defense(generator, np.zeros((2, 28, 28, 1), np.float32), num_classes=10)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        defense_gan.DefenseGAN(apply_fn, steps=0)
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        defense_gan.DefenseGAN(apply_fn, learning_rate=0.0)
