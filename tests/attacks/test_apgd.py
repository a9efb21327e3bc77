"""APGD-CE and APGD-T (Croce & Hein 2020): the authors' checkpoint schedule and losses, attacks that
fool a trained classifier inside the ball, targets that are hit, restarts that never weaken."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_classifier import digits_classifier

from ganjax import attacks, data

NUM_IMAGES = 200
EPS = {"linf": 0.06, "l2": 0.75}


@pytest.fixture(scope="module")
def classifier():
    """(apply_fn, params, images, labels): the tiny digits classifier and NUM_IMAGES test images in [-1, 1]."""
    state, _, test_set = digits_classifier()
    apply_fn, params = attacks.classifier_apply_fn(state)
    return apply_fn, params, data.to_model_range(test_set.images[:NUM_IMAGES]), test_set.labels[:NUM_IMAGES]


def test_checkpoints_follow_the_papers_schedule():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06): w_j = p_j * 100.
    assert attacks.apgd_checkpoints(100) == (22, 41, 57, 70, 80, 87, 93, 99)
    # autopgd_base.py with n_iter=10: windows of max(int(2.2), 1) = 2, then 1 each.
    assert attacks.apgd_checkpoints(10) == (2, 3, 4, 5, 6, 7, 8, 9, 10)
    assert attacks.apgd_checkpoints(1) == (1,)


def test_dlr_losses_on_known_logits():
    logits = jnp.array([[3.0, 1.0, 2.0, 0.0], [0.0, 4.0, 1.0, 2.0]])
    labels = jnp.array([0, 2])
    # Image 0 is right: -(3 - 2) / (3 - 1); image 1 is wrong: -(1 - 4) / (4 - 1).
    np.testing.assert_allclose(attacks.dlr_loss(logits, labels), [-0.5, 1.0], rtol=1e-6)
    targets = jnp.array([1, 3])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2): -(3 - 1) / (3 - 0.5) and -(1 - 2) / (4 - 0.5).
    np.testing.assert_allclose(attacks.targeted_dlr_loss(logits, labels, targets), [-0.8, 1 / 3.5], rtol=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_ce_fools_the_classifier_inside_the_ball(classifier, norm):
    apply_fn, params, images, labels = classifier
    eps = EPS[norm]
    adversarial = attacks.apgd(apply_fn, params, images, labels, jax.random.key(0), eps=eps, steps=30, norm=norm)
    adversarial = np.asarray(adversarial)
    assert adversarial.min() >= -1.0 and adversarial.max() <= 1.0
    size = attacks.perturbation_size(adversarial, images, norm)
    assert size.max() <= eps * (1 + 1e-5) + 1e-6, (norm, size.max(), eps)
    clean = attacks.robust_accuracy(apply_fn, params, images, labels)
    robust = attacks.robust_accuracy(apply_fn, params, adversarial, labels)
    # FGSM at these budgets leaves about 67% (linf) and 57% (l2) of the images correct.
    assert clean > 0.95 and robust < clean - 0.3, (clean, robust)


def test_apgd_t_hits_its_targets_and_fools_inside_the_ball(classifier):
    apply_fn, params, images, labels = classifier
    eps = EPS["linf"]
    clean_logits = np.asarray(apply_fn(params, images))
    runner_up = np.argsort(clean_logits, axis=1)[:, -2]
    # One target, the runner-up class, as APGD-T's first run attacks.
    adversarial = attacks.apgd_targeted(apply_fn, params, images, labels, jax.random.key(1), eps=eps, steps=30,
                                        num_target_classes=1)
    predictions = attacks.predict_classes(apply_fn, params, adversarial)
    fooled = predictions != labels
    assert fooled.mean() > 0.2
    assert np.mean(predictions[fooled] == runner_up[fooled]) > 0.8
    assert attacks.perturbation_size(adversarial, images, "linf").max() <= eps + 1e-6
    # More targets never weaken: every target's runs attack the images the earlier ones left.
    all_targets = attacks.apgd_targeted(apply_fn, params, images, labels, jax.random.key(1), eps=eps, steps=30,
                                        num_target_classes=3)
    fooled_all = attacks.predict_classes(apply_fn, params, all_targets) != labels
    assert np.all(fooled_all[fooled]) and fooled_all.sum() > fooled.sum()


def test_restarts_never_weaken(classifier):
    apply_fn, params, images, labels = classifier
    settings = dict(eps=0.04, steps=30)
    one = attacks.apgd(apply_fn, params, images, labels, jax.random.key(2), restarts=1, **settings)
    three = attacks.apgd(apply_fn, params, images, labels, jax.random.key(2), restarts=3, **settings)
    fooled_one = attacks.predict_classes(apply_fn, params, one) != labels
    fooled_three = attacks.predict_classes(apply_fn, params, three) != labels
    assert np.all(fooled_three[fooled_one]) and fooled_three.sum() >= fooled_one.sum()


def test_bad_settings_are_refused(classifier):
    apply_fn, params, images, labels = classifier
    images, labels = images[:4], labels[:4]
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="APGD loss 'hinge' is unknown"):
        attacks.apgd(apply_fn, params, images, labels, key, eps=0.1, loss="hinge")
    with pytest.raises(ValueError, match="rho must be in \\(0, 1\\]"):
        attacks.apgd(apply_fn, params, images, labels, key, eps=0.1, rho=1.5)
    with pytest.raises(ValueError, match="non-negative"):
        attacks.apgd_targeted(apply_fn, params, images, labels, key, eps=-0.1)
    with pytest.raises(ValueError, match="labels must be classes in \\[0, 10\\)"):
        attacks.apgd(apply_fn, params, images, labels + 10, key, eps=0.1)

    def three_classes(params, images):
        return images.reshape(images.shape[0], -1)[:, :3]

    with pytest.raises(ValueError, match="at least 4 classes"):
        attacks.apgd_targeted(three_classes, None, images, labels % 3, key, eps=0.1)
