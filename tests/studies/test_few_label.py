"""Few labels: K+1 GAN, AC-GAN and VAT losses, networks, steps, the study (ganjax.studies.few_label) and its errors."""

import json
import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax import data, experiment, losses, names, parallel
from ganjax.config import load_config, validate_config
from ganjax.models.semi import MLPGenerator, NoisyConvDiscriminator, NoisyMLPDiscriminator
from ganjax.steps import (
    FewLabelSpec,
    few_label_logits,
    make_acgan_step,
    make_semi_gan_step,
    make_supervised_few_label_step,
)
from ganjax.attacks.gradient import normalize
from ganjax.studies import engine, few_label


def test_semi_supervised_loss_on_known_logits():
    # K = 2 zero logits: LSE = log 2, so D(x) = 2/3; CE = log 2.
    zeros = jnp.zeros((4, 2))
    supervised, unsupervised = losses.semi_supervised_discriminator_loss(
        zeros, jnp.zeros(4, jnp.int32), zeros, zeros, unlabelled_weight=2.0
    )
    np.testing.assert_allclose(supervised, math.log(2), rtol=1e-6)
    # 0.5 [-log(2/3) - log(1/3)] times the weight 2.
    np.testing.assert_allclose(unsupervised, 2.0 * 0.5 * (math.log(1.5) + math.log(3.0)), rtol=1e-6)


def test_unsupervised_loss_rewards_confident_real_and_rejected_fake():
    real, fake = jnp.full((3, 4), 5.0), jnp.full((3, 4), -5.0)
    labels = jnp.zeros(3, jnp.int32)
    _, good = losses.semi_supervised_discriminator_loss(real, labels, real, fake)
    _, bad = losses.semi_supervised_discriminator_loss(real, labels, fake, real)
    assert good < 0.05 and bad > 4.0


def test_feature_matching_is_squared_difference_of_means():
    real = jnp.array([[0.0, 2.0], [2.0, 4.0]])  # means (1, 3)
    fake = jnp.array([[1.0, 0.0], [1.0, 0.0]])  # means (1, 0)
    np.testing.assert_allclose(losses.feature_matching_loss(real, fake), (0.0 + 9.0) / 2)
    assert float(losses.feature_matching_loss(fake + 3.0, fake + 3.0)) == 0.0


def test_pull_away_term_is_zero_for_orthogonal_and_one_for_parallel_features():
    np.testing.assert_allclose(losses.pull_away_term(jnp.eye(4)), 0.0, atol=1e-7)
    parallel = jnp.array([[1.0, 2.0], [2.0, 4.0], [-3.0, -6.0]])
    np.testing.assert_allclose(losses.pull_away_term(parallel), 1.0, rtol=1e-6)
    # Two samples at 60 degrees: cos^2 = 1/4 for each ordered pair.
    np.testing.assert_allclose(losses.pull_away_term(jnp.array([[1.0, 0.0], [0.5, 0.75**0.5]])), 0.25, rtol=1e-6)
    with pytest.raises(ValueError, match="at least 2 samples"):
        losses.pull_away_term(jnp.ones((1, 3)))


def _one_semi_gan_step_per_value(key, values, **fixed):
    """{value: (state, metrics)}: one semi_gan step from the same state, batch and PRNG key with
    config.semi[key] = value (and config.semi[name] = fixed[name])."""
    config = _tiny_config()
    config.semi.update(fixed)
    batch = _batch()
    state = few_label.init_state("semi_gan", config, 3, batch["unlabelled_images"], jax.random.key(0))
    results = {}
    for value in values:
        config.semi[key] = value
        step = jax.jit(make_semi_gan_step(few_label.step_spec("semi_gan", config)))
        results[value] = step(state, batch, jax.random.key(1))
    return results


def _max_difference(a, b) -> float:
    return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a, b)))


def test_pull_away_weight_enters_only_the_generator_update():
    (plain, plain_metrics), (pulled, pulled_metrics) = _one_semi_gan_step_per_value(
        "pull_away_weight", (0.0, 5.0)).values()
    assert "g_pull_away" not in plain_metrics and 0.0 <= float(pulled_metrics["g_pull_away"]) <= 1.0
    chex.assert_trees_all_close(plain.discriminator.params, pulled.discriminator.params)
    assert _max_difference(plain.generator.params, pulled.generator.params) > 1e-6


def test_manifold_smoothness_is_the_squared_step_over_epsilon():
    logits = jnp.array([[1.0, 2.0], [0.0, 0.0]])
    moved = logits + jnp.array([[0.5, 0.0], [0.3, -0.4]])  # squared norms 0.25 and 0.25
    np.testing.assert_allclose(losses.manifold_smoothness(logits, moved, 0.5), 0.25 / 0.25, rtol=1e-6)
    assert float(losses.manifold_smoothness(logits, logits, 0.1)) == 0.0
    with pytest.raises(ValueError, match="positive epsilon"):
        losses.manifold_smoothness(logits, moved, 0.0)


def test_manifold_weight_adds_its_own_term_to_the_discriminator_loss():
    (plain, plain_metrics), (smooth, smooth_metrics) = _one_semi_gan_step_per_value(
        "manifold_weight", (0.0, 5.0)).values()
    assert "d_manifold" not in plain_metrics and float(smooth_metrics["d_manifold"]) > 0.0
    assert _max_difference(plain.discriminator.params, smooth.discriminator.params) > 1e-6
    for name in ("d_supervised", "d_unsupervised"):  # the other terms are untouched
        np.testing.assert_allclose(plain_metrics[name], smooth_metrics[name], rtol=1e-6)


def test_manifold_smoothness_is_a_derivative_not_a_raw_difference():
    """At small latent steps d_manifold estimates a squared directional derivative: about the
    same at two epsilons, because the finite difference is divided by epsilon."""
    results = _one_semi_gan_step_per_value("manifold_epsilon", (1e-2, 2e-2), manifold_weight=1.0)
    small, large = (float(metrics["d_manifold"]) for _, metrics in results.values())
    assert small > 0.0
    np.testing.assert_allclose(small, large, rtol=0.1)


def test_mean_entropy_is_log_k_when_uniform_and_zero_when_certain():
    np.testing.assert_allclose(losses.mean_entropy(jnp.zeros((3, 4))), math.log(4), rtol=1e-6)
    certain = jnp.array([[50.0, 0.0, 0.0], [0.0, 0.0, 50.0]])
    assert float(losses.mean_entropy(certain)) < 1e-6


def test_entropy_weight_enters_the_discriminator_update():
    (plain, plain_metrics), (entropic, entropic_metrics) = _one_semi_gan_step_per_value(
        "entropy_weight", (0.0, 5.0)).values()
    for metrics in (plain_metrics, entropic_metrics):
        assert 0.0 <= float(metrics["d_entropy"]) <= math.log(3) + 1e-6
    assert _max_difference(plain.discriminator.params, entropic.discriminator.params) > 1e-6


def test_kl_divergence_of_logits_is_zero_for_equal_and_matches_the_sum():
    p_logits = jnp.array([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
    np.testing.assert_allclose(losses.kl_divergence_logits(p_logits, p_logits + 3.0), 0.0, atol=1e-6)
    q_logits = jnp.array([[0.0, 2.0, 0.0], [1.0, -1.0, 0.0]])
    p, q = jax.nn.softmax(p_logits), jax.nn.softmax(q_logits)
    expected = np.mean(np.sum(p * np.log(p / q), axis=-1))
    np.testing.assert_allclose(losses.kl_divergence_logits(p_logits, q_logits), expected, rtol=1e-5)


def test_virtual_adversarial_direction_is_the_divergences_top_curvature():
    # A linear softmax model, logits = x W: the KL's Hessian in r at r = 0 is W (diag(p) - p p^T) W^T per image,
    # and power iteration must find its top eigenvector (up to sign), with the requested norm.
    rng = np.random.default_rng(0)
    weights = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
    images = jnp.asarray(rng.normal(size=(4, 2, 3, 1)), jnp.float32)

    def logits_fn(x):
        return x.reshape(len(x), -1) @ weights

    perturbation = losses.virtual_adversarial_perturbation(
        logits_fn, images, logits_fn(images), jax.random.key(0), epsilon=2.5, xi=1e-2, iterations=30)
    chex.assert_shape(perturbation, images.shape)
    flat = np.asarray(perturbation).reshape(4, -1)
    np.testing.assert_allclose(np.linalg.norm(flat, axis=1), 2.5, rtol=1e-5)
    for image, found in zip(np.asarray(images).reshape(4, -1), flat):
        p = np.asarray(jax.nn.softmax(image @ np.asarray(weights)))
        hessian = np.asarray(weights) @ (np.diag(p) - np.outer(p, p)) @ np.asarray(weights).T
        top = np.linalg.eigh(hessian)[1][:, -1]
        assert abs(float(top @ found / 2.5)) > 0.99
    # One iteration already beats a random direction of the same norm at raising the divergence.
    one = losses.virtual_adversarial_perturbation(logits_fn, images, logits_fn(images), jax.random.key(1), 2.5, 1e-2)
    random = 2.5 * normalize(jax.random.normal(jax.random.key(2), images.shape), "l2")
    clean = logits_fn(images)
    assert float(losses.kl_divergence_logits(clean, logits_fn(images + one))) > float(
        losses.kl_divergence_logits(clean, logits_fn(images + random)))


def test_pseudo_label_loss_keeps_only_confident_teacher_predictions():
    # Image 0: the teacher is 0.99 sure of class 2; image 1: unsure (uniform). Only image 0 counts, its hard
    # label is 2, and the sum is divided by the whole batch (FixMatch's eq. 4).
    teacher = jnp.array([[0.0, 0.0, jnp.log(99.0 * 2)], [0.0, 0.0, 0.0]])
    student = jnp.array([[1.0, 0.5, -1.0], [3.0, 0.0, 0.0]])
    loss, kept = losses.pseudo_label_loss(teacher, student, 0.95)
    expected = -float(jax.nn.log_softmax(student[0])[2]) / 2
    assert abs(float(loss) - expected) < 1e-6 and float(kept) == 0.5
    assert float(losses.pseudo_label_loss(teacher, student, 0.995)[1]) == 0.0
    # No gradient reaches the teacher: only the student is trained toward its pseudo-labels.
    teacher_grad = jax.grad(lambda t: losses.pseudo_label_loss(t, student, 0.95)[0])(teacher)
    assert float(jnp.max(jnp.abs(teacher_grad))) == 0.0


@pytest.mark.parametrize("strategy,weight_key,settings,metric", [
    ("vat", "vat_weight", {}, "vat_divergence"),
    # Every image kept (threshold 0), so the unlabelled batch reaches the loss.
    ("pseudo_label", "pseudo_label_weight", {"pseudo_label_threshold": 0.0}, "pseudo_label_loss"),
])
def test_classic_semi_supervised_steps_learn_from_the_unlabelled_images(strategy, weight_key, settings, metric):
    # Unlike the supervised step, their update depends on the unlabelled batch, and with weight 0 it does not.
    config = _tiny_config()
    config.semi.update(settings)
    batch = _batch()
    state = few_label.init_state(strategy, config, 3, batch["unlabelled_images"], jax.random.key(0))
    other = dict(batch, unlabelled_images=np.asarray(batch["unlabelled_images"])[::-1] * 0.5)
    for weight, differ in ((1.0, True), (0.0, False)):
        config.semi[weight_key] = weight
        step = jax.jit(few_label.make_step(strategy, few_label.step_spec(strategy, config), 3))
        (a, metrics), (b, _) = step(state, batch, jax.random.key(1)), step(state, other, jax.random.key(1))
        assert float(metrics[metric]) > 0.0
        if strategy == "pseudo_label":
            assert float(metrics["pseudo_label_kept"]) == 1.0
        assert (_max_difference(a.params, b.params) > 1e-7) == differ, weight


def test_polyak_average_follows_the_params():
    config = _tiny_config()
    batch = _batch()
    spec = few_label.step_spec("supervised", config)
    state = few_label.init_state("supervised", config, 3, batch["unlabelled_images"], jax.random.key(0))
    step = jax.jit(few_label.make_step("supervised", spec, 3))
    averaged_step = jax.jit(few_label.with_average(few_label.make_step("supervised", spec, 3), 0.9))
    carry = (state, jax.tree.map(jnp.copy, state.params))
    expected = state.params
    for index in range(5):
        key = jax.random.key(index)
        state, _ = step(state, batch, key)
        carry, _ = averaged_step(carry, batch, key)
        rate = min(0.9, (1.0 + index + 1) / (10.0 + index + 1))  # steps.ema_decay_at after update index + 1
        expected = jax.tree.map(lambda a, p: rate * a + (1 - rate) * p, expected, state.params)
    chex.assert_trees_all_close(carry[0].params, state.params)
    chex.assert_trees_all_close(carry[1], expected, rtol=1e-5, atol=1e-6)
    gap = jax.tree.map(lambda a, p: float(jnp.max(jnp.abs(a - p))), carry[1], state.params)
    assert max(jax.tree.leaves(gap)) > 1e-4  # an average, not a copy of the last params


@pytest.mark.parametrize("module", [
    NoisyMLPDiscriminator(num_classes=3, hidden=(16, 8)),
    NoisyConvDiscriminator(num_classes=3, width=4),
])
def test_discriminator_outputs_and_noise_only_in_training(module):
    images = jax.random.uniform(jax.random.key(0), (5, 16, 16, 1), minval=-1, maxval=1)
    variables = module.init(jax.random.key(1), images)
    logits, adversarial, features = module.apply(variables, images)
    chex.assert_shape(logits, (5, 3))
    assert adversarial is None and features.shape[0] == 5
    again, _, _ = module.apply(variables, images)
    np.testing.assert_array_equal(logits, again)  # inference: deterministic
    noisy_a, _, _ = module.apply(variables, images, train=True, rngs={"noise": jax.random.key(2)})
    noisy_b, _, _ = module.apply(variables, images, train=True, rngs={"noise": jax.random.key(3)})
    assert float(jnp.max(jnp.abs(noisy_a - noisy_b))) > 1e-4
    with_head = module.clone(adversarial_head=True)
    _, adversarial, _ = with_head.apply(with_head.init(jax.random.key(1), images), images)
    chex.assert_shape(adversarial, (5,))


def test_weight_norm_dense_initialises_from_the_data():
    from ganjax.models.semi import WeightNormDense

    data_batch = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (256, 20))
    layer = WeightNormDense(7, init_scale=0.5, data_init=True)
    variables = layer.init(jax.random.key(1), data_batch)
    outputs = layer.apply(variables, data_batch)
    np.testing.assert_allclose(jnp.mean(outputs, axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(jnp.std(outputs, axis=0), 0.5, rtol=1e-3)
    # Afterwards it is an ordinary layer: other inputs do not change it.
    shifted = layer.apply(variables, data_batch + 1.0)
    assert float(jnp.max(jnp.abs(jnp.mean(shifted, axis=0)))) > 1e-2


def test_fixed_hidden_scales_get_no_gradient():
    images = jax.random.normal(jax.random.key(0), (4, 6, 6, 1))
    module = NoisyMLPDiscriminator(num_classes=3, hidden=(8, 5), train_hidden_scale=False)
    params = module.init(jax.random.key(1), images)["params"]
    grads = jax.grad(lambda p: jnp.sum(module.apply({"params": p}, images)[0] ** 2))(params)
    hidden, output = ["WeightNormDense_0", "WeightNormDense_1"], "WeightNormDense_2"
    for name in hidden:
        np.testing.assert_array_equal(grads[name]["scale"], 0.0)
        assert float(jnp.max(jnp.abs(grads[name]["direction"]))) > 0.0
    assert float(jnp.max(jnp.abs(grads[output]["scale"]))) > 0.0  # the class layer's scale trains
    trained = module.clone(train_hidden_scale=True)
    grads = jax.grad(lambda p: jnp.sum(trained.apply({"params": p}, images)[0] ** 2))(params)
    assert float(jnp.max(jnp.abs(grads[hidden[0]]["scale"]))) > 0.0


def test_feature_layer_picks_the_hidden_layer_feature_matching_compares():
    images = jax.random.normal(jax.random.key(0), (4, 6, 6, 1))
    module = NoisyMLPDiscriminator(num_classes=3, hidden=(9, 7, 5))
    variables = module.init(jax.random.key(1), images)
    assert module.apply(variables, images)[2].shape == (4, 5)  # -1: the last, the paper's
    assert module.clone(feature_layer=0).apply(variables, images)[2].shape == (4, 9)
    assert module.clone(feature_layer=-2).apply(variables, images)[2].shape == (4, 7)
    config = load_config("configs/digits_semi.py")
    config.semi.hidden, config.semi.feature_layer = "9,7,5", 3
    with pytest.raises(ValueError, match="semi.feature_layer"):
        validate_config(config)


def test_conditional_generator_uses_the_label():
    generator = MLPGenerator(image_shape=(8, 8, 1), num_classes=4, hidden=16)
    noise = jnp.zeros((2, 6))
    variables = generator.init(jax.random.key(0), noise, jnp.zeros(2, jnp.int32))
    images = generator.apply(variables, noise, jnp.array([0, 3]))
    chex.assert_shape(images, (2, 8, 8, 1))
    assert float(jnp.max(jnp.abs(images))) <= 1.0
    assert float(jnp.max(jnp.abs(images[0] - images[1]))) > 1e-4


def _tiny_config(strategy_steps=10):
    config = load_config("digits_semi")
    config.semi.steps = strategy_steps
    return config


def _batch(seed=0, labelled=8, unlabelled=8, classes=3):
    rng = np.random.default_rng(seed)
    labels = (np.arange(labelled) % classes).astype(np.int32)
    brightness = np.linspace(-0.7, 0.7, classes)[labels][:, None, None, None]  # learnable, even shifted
    return {
        "labelled_images": (brightness + rng.uniform(-0.3, 0.3, (labelled, 16, 16, 1))).astype(np.float32),
        "labels": labels,
        "unlabelled_images": rng.uniform(-1, 1, (unlabelled, 16, 16, 1)).astype(np.float32),
    }


@pytest.mark.parametrize("strategy", names.FEW_LABEL_STRATEGIES)
def test_steps_learn_the_labelled_batch_and_compile_once(strategy):
    chex.clear_trace_counter()  # supervised and supervised_augment share the step's code
    config = _tiny_config()
    config.semi.learning_rate = 1e-2
    config.semi.input_noise = config.semi.hidden_noise = 0.1  # 30 steps of a tiny net
    state = few_label.init_state(strategy, config, 3, _batch()["unlabelled_images"], jax.random.key(0))
    spec = few_label.step_spec(strategy, config)
    step = jax.jit(chex.assert_max_traces(few_label.make_step(strategy, spec, 3), n=1))
    batch = _batch()
    before = few_label.classifier_of(state).params
    first_loss = None
    for index in range(30):
        state, metrics = step(state, batch, jax.random.key(index))
        loss = metrics["d_class"] if strategy == "acgan" else metrics["d_supervised"]
        first_loss = float(loss) if first_loss is None else first_loss
    assert float(loss) < first_loss
    assert int(few_label.classifier_of(state).step) == 30
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, few_label.classifier_of(state).params)
    assert all(jax.tree.leaves(changed))
    if strategy in few_label.GAN_STRATEGIES:
        assert "g_feature_matching" in metrics or "g_adversarial" in metrics
    logits = few_label_logits(few_label.classifier_of(state), batch["labelled_images"])
    assert float(jnp.mean(jnp.argmax(logits, -1) == batch["labels"])) >= 0.75


def test_supervised_step_ignores_unlabelled_images():
    config = _tiny_config()
    state = few_label.init_state("supervised", config, 3, _batch()["unlabelled_images"], jax.random.key(0))
    step = jax.jit(make_supervised_few_label_step(FewLabelSpec()))
    batch = _batch()
    other = dict(batch, unlabelled_images=np.zeros_like(batch["unlabelled_images"]))
    a, _ = step(state, batch, jax.random.key(1))
    b, _ = step(state, other, jax.random.key(1))
    chex.assert_trees_all_equal(a.params, b.params)


def test_semi_gan_generator_step_reduces_feature_matching():
    # The step updates D, then G against the updated D: with that D fixed, the new generator's
    # features must match the real ones better than the old generator's did.
    config = _tiny_config()
    config.semi.input_noise = config.semi.hidden_noise = 0.0  # compare without the training noise
    config.semi.learning_rate = 1e-3
    batch = _batch()
    state = few_label.init_state("semi_gan", config, 3, batch["unlabelled_images"], jax.random.key(0))
    new_state, _ = jax.jit(make_semi_gan_step(few_label.step_spec("semi_gan", config)))(state, batch, jax.random.key(1))
    discriminator = new_state.discriminator
    real = discriminator.apply_fn({"params": discriminator.params}, batch["unlabelled_images"])[2]
    noise = jax.random.normal(jax.random.key(2), (256, config.semi.noise_dim))

    def matching(generator):
        variables = {"params": generator.params, "batch_stats": generator.batch_stats}
        images, _ = generator.apply_fn(variables, noise, None, train=True, mutable=["batch_stats"])
        fake = discriminator.apply_fn({"params": discriminator.params}, images)[2]
        return float(losses.feature_matching_loss(real, fake))

    assert matching(new_state.generator) < matching(state.generator)


@pytest.mark.parametrize("strategy", [strategy if strategy == "semi_gan" else pytest.param(strategy, marks=pytest.mark.slow)
                                      for strategy in few_label.GAN_STRATEGIES])
def test_dcgan_generator_option(strategy):
    config = _tiny_config()
    config.semi.generator = "dcgan"
    config.model.generator_width, config.model.embed_dim = 8, 4
    state = few_label.init_state(strategy, config, 3, _batch()["unlabelled_images"], jax.random.key(0))
    assert state.generator.apply_fn.__self__.num_classes == (3 if strategy == "acgan" else 1)
    step = jax.jit(few_label.make_step(strategy, few_label.step_spec(strategy, config), 3))
    state, metrics = step(state, _batch(), jax.random.key(0))
    assert all(np.isfinite(float(value)) for value in metrics.values())
    images = few_label.sample_images(jax.tree.map(lambda x: x[None], state), strategy, np.arange(6) % 3, 16,
                                jax.random.key(1))
    chex.assert_shape(images, (1, 6, 16, 16, 1))


def test_acgan_step_needs_classes_for_its_generator():
    config = _tiny_config()
    state = few_label.init_state("acgan", config, 3, _batch()["unlabelled_images"], jax.random.key(0))
    assert state.generator.apply_fn.__self__.num_classes == 3
    step = jax.jit(make_acgan_step(few_label.step_spec("acgan", config), 3))
    _, metrics = step(state, _batch(), jax.random.key(0))
    assert set(metrics) >= {"d_adversarial", "d_class", "g_adversarial", "g_class", "labelled_accuracy"}


@pytest.mark.slow
def test_digits_semi_end_to_end_and_rerun_skips_finished(tmp_path, monkeypatch):
    workdir = os.fspath(tmp_path / "run")
    config = _tiny_config(strategy_steps=40)
    config.semi.average_decay = 0.9
    config.semi.validation_per_class = 3
    result = experiment.run_experiment(config, workdir, progress=False)
    saved = json.loads(open(os.path.join(workdir, "report.json")).read())
    assert set(saved) == set(names.FEW_LABEL_STRATEGIES) | {"meta"}
    for strategy in names.FEW_LABEL_STRATEGIES:
        for metric in names.FEW_LABEL_METRICS:
            entry = saved[strategy][metric]
            assert len(entry["per_seed"]) == 2
            assert all(0.0 <= value <= 1.0 for value in entry["per_seed"]), (strategy, metric, entry)
        # Chance is 10%: every strategy has learnt something from 5 labels per class.
        assert saved[strategy]["accuracy"]["mean"] > 0.3, (strategy, saved[strategy]["accuracy"])
    assert saved["meta"]["labelled_class_counts"] == [5] * 10
    for name in ("report.md", "confusion_matrix.png", "per_class_recall.png", "samples_semi_gan.png",
                 "samples_acgan.png", "subset_indices.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    markdown = open(os.path.join(workdir, "report.md")).read()
    assert "| semi_gan |" in markdown and "Polyak" in markdown
    last_iterate = saved["meta"]["last_iterate_accuracy"]
    assert all(len(last_iterate[strategy]) == 2 for strategy in names.FEW_LABEL_STRATEGIES)
    validation = saved["meta"]["validation"]
    assert validation["num_images"] == 30 and validation["per_class"] == 3
    for strategy in names.FEW_LABEL_STRATEGIES:
        assert len(validation["accuracy"][strategy]) == 2
        # 30 images: every accuracy is a multiple of 1/30, and the classifiers beat chance.
        assert all(abs(30 * value - round(30 * value)) < 1e-6 for value in validation["accuracy"][strategy])
        assert np.mean(validation["accuracy"][strategy]) > 0.2, (strategy, validation["accuracy"][strategy])
    assert "- Validation: 30 more labelled training images" in markdown
    assert os.path.exists(os.path.join(workdir, engine.VALIDATION_INDICES_FILE))
    # The engine's record of each finished strategy, its validation means and its choice.
    assert saved["meta"]["study"] == "few_label"
    assert markdown.startswith("# Recognition with few labels: digits (few_label)")
    means = saved["meta"]["validation_mean"]
    for strategy in names.FEW_LABEL_STRATEGIES:
        record = json.loads(open(engine.record_path(workdir, strategy)).read())
        assert [seed["accuracy"] for seed in record["validation"]] == validation["accuracy"][strategy]
        assert record["last_iterate_accuracy"] == last_iterate[strategy]
        assert means[strategy]["accuracy"] == pytest.approx(np.mean(validation["accuracy"][strategy]))
        assert ("generator" in record) == (strategy in few_label.GAN_STRATEGIES)
    assert saved["meta"]["best_on_validation"] == max(means, key=lambda name: means[name]["accuracy"])

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished strategy was trained again")

    monkeypatch.setattr(engine, "train", must_not_train)
    again = experiment.run_experiment(config, workdir, progress=False)
    assert again["semi_gan"]["accuracy"] == result["semi_gan"]["accuracy"]


@pytest.mark.parametrize("strategy, separate_matching_batch", [
    ("semi_gan", False), pytest.param("semi_gan", True, marks=pytest.mark.slow), ("supervised", False)])
def test_steps_per_call_trains_exactly_as_one_step_per_call(strategy, separate_matching_batch, tmp_path):
    config = _tiny_config(strategy_steps=7)  # two calls of 3 steps, then one single step
    config.semi.separate_matching_batch = separate_matching_batch
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    context = few_label.prepare(config, os.fspath(tmp_path), mesh, progress=False)
    per_step = engine.train(engine.build_strategy(strategy, context), config, mesh, progress=False)
    config.semi.steps_per_call = 3
    scanning = engine.build_strategy(strategy, context)
    assert scanning.steps_per_call == 3
    scanned = engine.train(scanning, config, mesh, progress=False)
    # Every array (params, optimiser and BatchNorm state, step) alike; the static fields are functions.
    chex.assert_trees_all_equal(jax.tree.leaves(scanned), jax.tree.leaves(per_step))
    assert int(few_label.classifier_of(scanned).step[0]) == 7


def test_labelled_subset_is_fixed_and_saved(tmp_path):
    config = _tiny_config()
    train_set, _ = data.load_train_and_test(config.data, workdir=tmp_path)
    first = few_label.labelled_indices(os.fspath(tmp_path), train_set, config)
    assert len(first) == 50
    np.testing.assert_array_equal(data.class_counts(train_set.labels[first], 10), [5] * 10)
    data.load_train_and_test(config.data, workdir=tmp_path)
    np.testing.assert_array_equal(few_label.labelled_indices(os.fspath(tmp_path), train_set, config), first)


def _validation_indices(context) -> np.ndarray:
    """The validation split few_label.prepare carved, as indices into the train split."""
    return data.load_indices(os.path.join(context.workdir, engine.VALIDATION_INDICES_FILE), len(context.train_set))


def test_validation_images_are_outside_the_labelled_subset_fixed_and_saved(tmp_path):
    config = _tiny_config()
    workdir = os.fspath(tmp_path)
    mesh = parallel.make_mesh(jax.devices()[:1])
    context = few_label.prepare(config, workdir, mesh, progress=False)
    labelled = context.labelled
    assert context.validation_set is None  # off by default
    assert not os.path.exists(os.path.join(workdir, engine.VALIDATION_INDICES_FILE))
    config.semi.validation_per_class = 4
    context = few_label.prepare(config, workdir, mesh, progress=False)
    held_out = _validation_indices(context)
    assert len(held_out) == 40 and not np.intersect1d(held_out, labelled).size
    np.testing.assert_array_equal(data.class_counts(context.train_set.labels[held_out], 10), [4] * 10)
    np.testing.assert_array_equal(context.validation_set.labels, context.train_set.labels[held_out])
    np.testing.assert_array_equal(context.validation_set.images, context.train_set.images[held_out])
    again = few_label.prepare(config, workdir, mesh, progress=False)
    np.testing.assert_array_equal(_validation_indices(again), held_out)
    np.testing.assert_array_equal(again.validation_set.labels, context.validation_set.labels)
    # A saved file made with another size, or overlapping the labelled subset, is refused.
    config.semi.validation_per_class = 5
    with pytest.raises(ValueError, match="holds another validation split") as error:
        few_label.prepare(config, workdir, mesh, progress=False)
    assert "too large" not in str(error.value)  # a changed size is not mistaken for too large a one
    labels = context.train_set.labels
    outside_held_out = np.setdiff1d(np.arange(len(labels)), held_out)  # as if the labelled subset were held_out
    with pytest.raises(ValueError, match="holds another validation split"):
        engine.carve_validation(workdir, labels, outside_held_out, np.full(10, 4), config.data.seed + 1, {})


def test_too_many_validation_images_are_named(tmp_path):
    config = _tiny_config()
    config.semi.validation_per_class = 10**6
    mesh = parallel.make_mesh(jax.devices()[:1])
    with pytest.raises(ValueError, match="semi.validation_per_class' = 1000000 is too large"):
        few_label.prepare(config, os.fspath(tmp_path), mesh, progress=False)


def test_batches_hold_labelled_images_only_in_the_labelled_part():
    config = _tiny_config()
    train_set, _ = data.load_train_and_test(config.data)
    labelled = np.arange(0, 50)
    batch = few_label.FewLabelBatches(train_set, labelled, config)(3)
    chex.assert_shape(batch["labelled_images"], (2, 20, 16, 16, 1))
    chex.assert_shape(batch["unlabelled_images"], (2, 20, 16, 16, 1))
    assert set(np.unique(batch["labels"])) <= set(train_set.labels[labelled])
    np.testing.assert_array_equal(batch["labels"], few_label.FewLabelBatches(train_set, labelled, config)(3)["labels"])


def test_separate_matching_batch_is_a_second_shuffle_for_the_k_plus_1_gan_only():
    config = _tiny_config()
    train_set, _ = data.load_train_and_test(config.data)
    labelled = np.arange(0, 50)
    assert "matching_images" not in few_label.FewLabelBatches(train_set, labelled, config)(3)
    config.semi.separate_matching_batch = True
    batch = few_label.FewLabelBatches(train_set, labelled, config)(3)
    chex.assert_equal_shape([batch["matching_images"], batch["unlabelled_images"]])
    assert float(np.max(np.abs(batch["matching_images"] - batch["unlabelled_images"]))) > 0.1
    assert "matching_images" not in few_label.FewLabelBatches(train_set, labelled, config, "supervised")(3)


def test_feature_matching_compares_against_the_matching_images_when_given():
    config = _tiny_config()
    batch = _batch()
    state = few_label.init_state("semi_gan", config, 3, batch["unlabelled_images"], jax.random.key(0))
    step = jax.jit(make_semi_gan_step(few_label.step_spec("semi_gan", config)))
    same, same_metrics = step(state, {**batch, "matching_images": batch["unlabelled_images"]}, jax.random.key(1))
    default, default_metrics = step(state, batch, jax.random.key(1))
    np.testing.assert_allclose(same_metrics["g_feature_matching"], default_metrics["g_feature_matching"], rtol=1e-6)
    other, other_metrics = step(state, {**batch, "matching_images": -batch["unlabelled_images"]}, jax.random.key(1))
    chex.assert_trees_all_close(other.discriminator.params, default.discriminator.params)  # D sees no matching images
    assert abs(float(other_metrics["g_feature_matching"]) - float(default_metrics["g_feature_matching"])) > 1e-6


# --- Bad input.


def test_more_labels_per_class_than_exist_is_named(tmp_path):
    config = _tiny_config()
    config.data.labels_per_class = 1000
    with pytest.raises(ValueError, match="labels_per_class"):
        experiment.run_experiment(config, os.fspath(tmp_path), progress=False)


def test_zero_labels_is_rejected_by_the_config():
    config = _tiny_config()
    config.data.labels_per_class = 0
    with pytest.raises(ValueError, match="labels_per_class"):
        validate_config(config)


def test_label_file_of_another_dataset_is_rejected(tmp_path):
    config = _tiny_config()
    data.save_indices(tmp_path / data.SUBSET_INDICES_FILE, np.arange(10), {"subset": "few_label", "num_examples": 70000})
    with pytest.raises(ValueError, match="70000 examples"):
        experiment.run_experiment(config, os.fspath(tmp_path), progress=False)


def test_label_file_missing_a_class_is_rejected(tmp_path):
    config = _tiny_config()
    train_set, _ = data.load_train_and_test(config.data, workdir=tmp_path)
    only_zeros = np.flatnonzero(train_set.labels == 0)[:5]
    data.save_indices(tmp_path / data.SUBSET_INDICES_FILE, only_zeros, {"num_examples": len(train_set)})
    with pytest.raises(ValueError, match="every class needs at least one label"):
        few_label.labelled_indices(os.fspath(tmp_path), train_set, config)


def test_label_file_listing_an_image_twice_is_rejected(tmp_path):
    config = _tiny_config()
    train_set, _ = data.load_train_and_test(config.data, workdir=tmp_path)
    labelled = few_label.labelled_indices(os.fspath(tmp_path), train_set, config)
    data.save_indices(tmp_path / data.SUBSET_INDICES_FILE, np.concatenate([labelled, labelled[:1]]),
                      {"num_examples": len(train_set)})
    with pytest.raises(ValueError, match="lists some image twice"):
        few_label.labelled_indices(os.fspath(tmp_path), train_set, config)


def test_strategy_of_the_other_experiment_is_named():
    config = _tiny_config()
    config.experiment.strategies = "semi_gan,oversample"
    with pytest.raises(ValueError, match="'oversample'.*long-tailed"):
        validate_config(config)
    config = load_config("digits_lt")
    config.experiment.strategies = "plain,semi_gan"
    with pytest.raises(ValueError, match="'semi_gan'.*few labels"):
        validate_config(config)


@pytest.mark.parametrize("key, value, message", [
    ("hidden", "100,zero", "semi.hidden"),
    ("steps", 0, "semi.steps"),
    ("input_noise", -0.1, "semi.input_noise"),
    ("learning_rate", 0.0, "semi.learning_rate"),
    ("generator_learning_rate", -1e-3, "semi.generator_learning_rate"),
    ("entropy_weight", -1.0, "semi.entropy_weight"),
    ("pull_away_weight", -0.5, "semi.pull_away_weight"),
    ("manifold_weight", -1.0, "semi.manifold_weight"),
    ("manifold_epsilon", 0.0, "semi.manifold_epsilon"),
    ("average_decay", 1.0, "semi.average_decay"),
    ("validation_per_class", -1, "semi.validation_per_class"),
    ("steps_per_call", 0, "semi.steps_per_call"),
    ("vat_epsilon", 0.0, "semi.vat_epsilon"),
    ("vat_iterations", 0, "semi.vat_iterations"),
    ("vat_weight", -1.0, "semi.vat_weight"),
    ("pseudo_label_threshold", 1.5, "semi.pseudo_label_threshold"),
    ("pseudo_label_weight", -1.0, "semi.pseudo_label_weight"),
])
def test_bad_semi_settings_are_named(key, value, message):
    config = _tiny_config()
    config.semi[key] = value
    with pytest.raises(ValueError, match=message):
        validate_config(config)


def test_batch_that_does_not_split_over_devices_is_named(tmp_path):
    config = _tiny_config()
    config.semi.batch_size = 3

    class FakeMesh:
        size = 2

    context = few_label.prepare(config, os.fspath(tmp_path), FakeMesh(), progress=False)
    with pytest.raises(ValueError, match="semi.batch_size"):
        engine.build_strategy("supervised", context)


def test_finished_strategy_reused_when_only_the_strategy_list_changes(tmp_path):
    config = _tiny_config()
    workdir = os.fspath(tmp_path)
    record = {"per_seed": [{"accuracy": 0.5}], "validation": None, "generator": {}, "train_seconds": 1.0,
              "wall_seconds": 1.0, "config": config.to_dict()}
    engine.save_record(engine.record_path(workdir, "semi_gan"), record)
    config.experiment.strategies = "semi_gan,supervised"  # a later run that adds a strategy
    assert engine.load_finished(workdir, "semi_gan", config, few_label.SECTIONS)["per_seed"] == [{"accuracy": 0.5}]
    assert engine.load_finished(workdir, "supervised", config, few_label.SECTIONS) is None
    older = json.loads(json.dumps(record))
    del older["config"]["semi"]["pull_away_weight"]  # a record from before the key existed
    engine.save_record(engine.record_path(workdir, "semi_gan"), older)
    assert engine.load_finished(workdir, "semi_gan", config, few_label.SECTIONS)["per_seed"] == [{"accuracy": 0.5}]
    config.semi.pull_away_weight = 0.5  # the key's default no longer matches
    with pytest.raises(ValueError, match=r"another config \(semi.pull_away_weight: 0.0 -> 0.5\)"):
        engine.load_finished(workdir, "semi_gan", config, few_label.SECTIONS)
    config.semi.pull_away_weight = 0.0
    config.semi.steps += 1
    with pytest.raises(ValueError, match=r"another config \(semi.steps: 10 -> 11\)"):
        engine.load_finished(workdir, "semi_gan", config, few_label.SECTIONS)


def test_generator_learning_rate_sets_only_the_generators_adam():
    """Adam's first step moves each parameter by ~ its peak rate: the generator's is
    semi.generator_learning_rate when set, semi.learning_rate otherwise; D keeps its own."""
    config = _tiny_config()
    config.semi.learning_rate = 3e-3
    params = {"w": jnp.zeros((4,))}
    grads = {"w": jnp.ones((4,))}

    def first_move(generator):
        transform = few_label.optimizer(config, generator=generator)
        updates, _ = transform.update(grads, transform.init(params), params)
        return float(-updates["w"][0])

    assert first_move(True) == pytest.approx(3e-3, rel=1e-3)
    config.semi.generator_learning_rate = 5e-4
    assert first_move(True) == pytest.approx(5e-4, rel=1e-3)
    assert first_move(False) == pytest.approx(3e-3, rel=1e-3)
