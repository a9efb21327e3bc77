"""FGSM and PGD: they fool a trained classifier inside their norm ball and the pixel range, more
steps, restarts and early stopping never weaken them, they run inside jit, and bad input is refused."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tiny_classifier import digits_classifier

from ganjax import attacks, data, losses

NUM_IMAGES = 200


@pytest.fixture(scope="module")
def classifier():
    """(apply_fn, params, images, labels): the tiny digits classifier and NUM_IMAGES test images in [-1, 1]."""
    state, _, test_set = digits_classifier()
    apply_fn, params = attacks.classifier_apply_fn(state)
    return apply_fn, params, data.to_model_range(test_set.images[:NUM_IMAGES]), test_set.labels[:NUM_IMAGES]


def _fooled(classifier, adversarial):
    apply_fn, params, _, labels = classifier
    return attacks.predict_classes(apply_fn, params, adversarial) != labels


def _check_ball_and_range(adversarial, images, eps, norm):
    adversarial = np.asarray(adversarial)
    assert adversarial.min() >= -1.0 and adversarial.max() <= 1.0, "left the [-1, 1] pixel range"
    size = attacks.perturbation_size(adversarial, images, norm)
    assert size.max() <= eps * (1 + 1e-5) + 1e-6, f"{norm} perturbation {size.max()} exceeds eps {eps}"


@pytest.mark.parametrize("norm, eps", [("linf", 0.08), ("l2", 1.0)])
def test_fgsm_and_pgd_fool_the_classifier_inside_the_ball(classifier, norm, eps):
    apply_fn, params, images, labels = classifier
    clean = attacks.robust_accuracy(apply_fn, params, images, labels)
    one_step = attacks.fgsm(apply_fn, params, images, labels, eps=eps, norm=norm)
    projected = attacks.pgd(apply_fn, params, images, labels, jax.random.key(0), eps=eps, steps=20, norm=norm)
    for adversarial in (one_step, projected):
        _check_ball_and_range(adversarial, images, eps, norm)
    fgsm_accuracy = attacks.robust_accuracy(apply_fn, params, one_step, labels)
    pgd_accuracy = attacks.robust_accuracy(apply_fn, params, projected, labels)
    assert clean > 0.95
    assert fgsm_accuracy < clean - 0.2, (clean, fgsm_accuracy)
    assert pgd_accuracy < fgsm_accuracy - 0.1, (fgsm_accuracy, pgd_accuracy)


def test_eps_is_on_the_zero_one_scale_and_pgd_reaches_the_ball_edge(classifier):
    apply_fn, params, images, labels = classifier
    assert attacks.to_model_scale(0.1) == pytest.approx(0.2)
    adversarial = attacks.pgd(apply_fn, params, images, labels, jax.random.key(1), eps=0.1, steps=10)
    delta = np.abs(np.asarray(adversarial) - images).max()
    # On [-1, 1] images an eps of 0.1 is a change of 0.2, reached by sign steps that overshoot the ball.
    assert delta == pytest.approx(0.2, abs=1e-6)


def test_more_steps_of_the_same_size_keep_every_success(classifier):
    apply_fn, params, images, labels = classifier
    settings = dict(eps=0.05, step_size=0.01)
    short = attacks.pgd(apply_fn, params, images, labels, jax.random.key(2), steps=3, **settings)
    longer = attacks.pgd(apply_fn, params, images, labels, jax.random.key(2), steps=12, **settings)
    fooled_short, fooled_longer = _fooled(classifier, short), _fooled(classifier, longer)
    # Same start and step size: the longer run extends the shorter run's path.
    assert np.all(fooled_longer[fooled_short])
    assert fooled_longer.sum() > fooled_short.sum()


def test_restarts_never_weaken(classifier):
    apply_fn, params, images, labels = classifier
    settings = dict(eps=0.05, steps=1)
    one = attacks.pgd(apply_fn, params, images, labels, jax.random.key(3), restarts=1, **settings)
    many = attacks.pgd(apply_fn, params, images, labels, jax.random.key(3), restarts=8, **settings)
    fooled_one, fooled_many = _fooled(classifier, one), _fooled(classifier, many)
    assert np.all(fooled_many[fooled_one])
    assert fooled_many.sum() > fooled_one.sum()
    _check_ball_and_range(many, images, 0.05, "linf")


def test_early_stop_keeps_successful_examples(classifier):
    apply_fn, params, images, labels = classifier
    # A large step makes the iterates jump across the decision boundary and back.
    settings = dict(eps=0.06, steps=10, step_size=0.06)
    stopped = attacks.pgd(apply_fn, params, images, labels, jax.random.key(4), early_stop=True, **settings)
    last = attacks.pgd(apply_fn, params, images, labels, jax.random.key(4), early_stop=False, **settings)
    fooled_stopped, fooled_last = _fooled(classifier, stopped), _fooled(classifier, last)
    assert np.all(fooled_stopped[fooled_last])
    assert fooled_stopped.sum() > fooled_last.sum()


def test_images_already_misclassified_are_returned_unchanged(classifier):
    apply_fn, params, images, labels = classifier
    wrong = labels.copy()
    wrong[:5] = (labels[:5] + 1) % 10
    adversarial = np.asarray(attacks.pgd(apply_fn, params, images, wrong, jax.random.key(5), eps=0.05, steps=3))
    np.testing.assert_array_equal(adversarial[:5], images[:5])
    assert np.any(adversarial[5:] != images[5:])


def test_pgd_inside_a_jitted_adversarial_training_loss(classifier):
    apply_fn, params, images, labels = classifier
    # The settings of test_early_stop_keeps_successful_examples's early_stop=False run: its program is compiled.
    settings = dict(eps=0.06, steps=10, step_size=0.06, early_stop=False)

    @jax.jit
    def adversarial_loss(params, images, labels, key):
        adversarial = attacks.pgd(apply_fn, params, images, labels, key, **settings)
        return losses.cross_entropy(apply_fn(params, adversarial), labels), adversarial

    (loss, adversarial), grads = jax.value_and_grad(adversarial_loss, has_aux=True)(
        params, images, labels, jax.random.key(4))
    eager = attacks.pgd(apply_fn, params, images, labels, jax.random.key(4), **settings)
    np.testing.assert_allclose(np.asarray(adversarial), np.asarray(eager), atol=1e-6)
    _check_ball_and_range(adversarial, images, 0.06, "linf")
    assert loss > losses.cross_entropy(apply_fn(params, images), labels)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grads))
    assert float(jnp.abs(grads["params"]["Dense_0"]["kernel"]).sum()) > 0


@pytest.mark.parametrize("change, message", [
    (dict(eps=-0.1), "non-negative"),
    (dict(eps=2.0), "exceeds the \\[0, 1\\] pixel range"),
    (dict(eps=17.0, norm="l2"), "largest L2 distance"),
    (dict(norm="l1"), "norm 'l1' is unknown"),
    (dict(steps=0), "steps must be an integer >= 1"),
    (dict(restarts=0), "restarts must be an integer >= 1"),
    (dict(labels=10), "labels must be classes in \\[0, 10\\)"),
    (dict(labels=-1), "labels must be classes in \\[0, 10\\)"),
    (dict(images=0.5), "images in \\[-1, 1\\]"),
    (dict(images="uint8"), "float images"),
])
def test_bad_input_is_refused_with_the_fix(classifier, change, message):
    apply_fn, params, images, labels = classifier
    images, labels = images[:4].copy(), labels[:4].copy()
    if "labels" in change:
        labels[0] = change.pop("labels")
    if change.get("images") == "uint8":
        images = data.to_uint8(images)
        change.pop("images")
    elif "images" in change:
        images = images + change.pop("images") + 1.0
    arguments = dict(eps=0.1, steps=2, norm="linf", restarts=1)
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        attacks.pgd(apply_fn, params, images, labels, jax.random.key(0), **arguments)


def test_attack_by_name_refuses_unknown_names(classifier):
    apply_fn, params, images, labels = classifier
    with pytest.raises(ValueError, match="Attack 'cw' is unknown; choose one of fgsm, pgd, apgd-ce, apgd-t"):
        attacks.attack("cw", apply_fn, params, images[:4], labels[:4], jax.random.key(0), eps=0.1)
    with pytest.raises(ValueError, match="fgsm takes one step"):
        attacks.attack("fgsm", apply_fn, params, images[:4], labels[:4], jax.random.key(0), eps=0.1, steps=5)
    assert math.isclose(attacks.check_budget(1.0, "linf"), 1.0)
