"""AdvGAN: a perturbation generator trained against a fixed classifier fools it inside the L-inf ball."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_classifier import digits_classifier

from ganjax import attacks, data


@pytest.fixture(scope="module")
def trained():
    """(apply_fn, params, test images, test labels, AdvGAN) for the tiny digits classifier."""
    state, train_set, test_set = digits_classifier()
    apply_fn, params = attacks.classifier_apply_fn(state)
    advgan = attacks.train_advgan(apply_fn, params, data.to_model_range(train_set.images), train_set.labels,
                                  jax.random.key(0), eps=0.1, steps=300)
    return apply_fn, params, data.to_model_range(test_set.images), test_set.labels, advgan


def test_advgan_fools_the_classifier_inside_the_ball_and_the_pixel_range(trained):
    apply_fn, params, images, labels, advgan = trained
    adversarial = attacks.advgan_attack(advgan, images)
    assert adversarial.shape == images.shape
    assert attacks.perturbation_size(adversarial, images, "linf").max() <= 0.1 + 1e-6
    assert adversarial.min() >= -1.0 and adversarial.max() <= 1.0
    clean = attacks.robust_accuracy(apply_fn, params, images, labels)
    attacked = attacks.robust_accuracy(apply_fn, params, adversarial, labels)
    assert clean > 0.9 and attacked < clean - 0.1, (clean, attacked)
    # A random perturbation of the same size does far less: the generator learnt the classifier's weak spots.
    signs = np.sign(np.asarray(jax.random.normal(jax.random.key(1), images.shape)))
    noisy = np.clip(images + attacks.to_model_scale(0.1) * signs, -1, 1)
    assert attacks.robust_accuracy(apply_fn, params, noisy, labels) > attacked + 0.05
    assert set(advgan.final_losses) == {"adv", "gan", "discriminator"}


def test_margin_loss_is_the_true_logit_minus_the_best_other():
    logits = jnp.array([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
    # kappa 0: a fooled image stops pulling (its loss is clamped at 0); a larger kappa asks for a margin.
    np.testing.assert_allclose(attacks.margin_loss(logits, jnp.array([0, 1])), [2.0, 0.0])
    np.testing.assert_allclose(attacks.margin_loss(logits, jnp.array([0, 1]), kappa=1.0), [2.0, -1.0])
    np.testing.assert_allclose(attacks.margin_loss(logits, jnp.array([0, 1]), kappa=5.0), [2.0, -3.0])


@pytest.mark.parametrize("change, message", [({"eps": -0.1}, "non-negative"), ({"eps": 8.0}, "8/255"),
                                             ({"steps": 0}, "steps")])
def test_bad_settings_are_refused_with_the_fix(change, message):
    state, train_set, _ = digits_classifier()
    apply_fn, params = attacks.classifier_apply_fn(state)
    settings = {"eps": 0.1, "steps": 10, **change}
    with pytest.raises(ValueError, match=message):
        attacks.train_advgan(apply_fn, params, data.to_model_range(train_set.images[:8]), train_set.labels[:8],
                             jax.random.key(0), **settings)
