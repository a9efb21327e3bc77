import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax import data, parallel
from ganjax.augment import Augmentation
from ganjax.config import default_config, validate_config
from ganjax.models import SmallCNN
from ganjax.state import GeneratorSource, create_classifier_state
from ganjax.steps import ClassifierStepSpec, make_classifier_step, make_multi_seed_step, synthesize
from ganjax.studies import engine, long_tail

COUNTS = np.array([100, 10, 1])


def test_reweight_weights_on_known_counts():
    beta = 0.9
    raw = (1 - beta) / (1 - beta ** COUNTS.astype(float))  # Cui et al. 2019, eq. 5
    weights = long_tail.class_balanced_weights(COUNTS, "effective_number", beta)
    np.testing.assert_allclose(weights, raw / raw.mean(), rtol=1e-6)
    np.testing.assert_allclose(weights.mean(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(weights, [0.23933, 0.36744, 2.39323], atol=1e-4)
    inverse = long_tail.class_balanced_weights(COUNTS, "inverse_frequency")
    np.testing.assert_allclose(inverse, np.array([0.01, 0.1, 1.0]) / 0.37, rtol=1e-6)
    with pytest.raises(ValueError, match="Reweighting 'focal'"):
        long_tail.class_balanced_weights(COUNTS, "focal")


def test_oversample_gives_near_uniform_classes_deterministically():
    labels = np.repeat(np.arange(5), [500, 200, 50, 10, 2]).astype(np.int32)
    drawn = np.concatenate([data.balanced_sample_indices(labels, 5, 64, step, 3) for step in range(300)])
    frequencies = np.bincount(labels[drawn], minlength=5) / drawn.size
    np.testing.assert_allclose(frequencies, 0.2, atol=0.015)
    np.testing.assert_array_equal(
        data.balanced_sample_indices(labels, 5, 64, 7, 3), data.balanced_sample_indices(labels, 5, 64, 7, 3)
    )
    assert not np.array_equal(
        data.balanced_sample_indices(labels, 5, 64, 7, 3), data.balanced_sample_indices(labels, 5, 64, 8, 3)
    )


def _dummy_source():
    def generator_apply(variables, noise, labels, train):
        return jnp.zeros((labels.shape[0], 16, 16, 1)) + noise[:, :1, None, None] * 0.0

    return GeneratorSource({}, {}, {}, generator_apply, None)


@pytest.mark.parametrize("level", [100, 400])
def test_top_up_batches_are_balanced_and_real_where_classes_have_enough(level):
    counts = np.array([400, 200, 100, 50])
    labels = np.repeat(np.arange(4), counts).astype(np.int32)
    num_real, num_synthetic, real_probs, synthetic_probs = long_tail.top_up_plan(counts, level, 100)
    real_share = np.minimum(1, counts / level)
    assert num_real == round(100 * real_share.mean()) and num_real + num_synthetic == 100
    assert synthetic_probs[counts >= level].sum() == 0  # no synthetic images where real ones suffice
    if level == 400:  # the top level reproduces the balancing share of uniform real batches
        assert (num_real, num_synthetic) == long_tail.split_batch(100, -1, counts)
        np.testing.assert_allclose(real_probs, counts / counts.sum())
        # (up to rounding the share to whole images)
        np.testing.assert_allclose(synthetic_probs, long_tail.synthetic_label_probs(counts, num_real, num_synthetic), atol=1e-3)
    mix = np.zeros(4)
    real_mix = np.zeros(4)
    for step in range(300):
        real = labels[data.balanced_sample_indices(labels, 4, num_real, step, 0, real_probs)]
        real_mix += np.bincount(real, minlength=4)
        synthetic = np.random.default_rng(step).choice(4, num_synthetic, p=synthetic_probs)
        mix += np.bincount(np.concatenate([real, synthetic]), minlength=4)
    np.testing.assert_allclose(mix / mix.sum(), 0.25, atol=0.015)
    np.testing.assert_allclose(real_mix / real_mix.sum(), real_probs, atol=0.015)


def test_gan_on_top_of_classic_rebalancing_and_the_share_0_twin():
    from ganjax.config import load_config

    config = load_config("digits_lt")
    config.experiment.synthetic_fraction = 0.25
    config.experiment.synthetic_weight = 0.5
    counts = np.array([400, 200, 100, 50])
    spec, num_real = long_tail.make_step_spec(long_tail.COMPOSITIONS["gan+oversample"], config, counts)
    # Balanced real batches: the synthetic images add variety, not balance, so their labels are uniform.
    assert spec.synthetic_label_probs == (0.25,) * 4 and spec.synthetic_weight == 0.5
    assert num_real + spec.num_synthetic == config.classifier.batch_size and spec.num_synthetic > 0
    spec, _ = long_tail.make_step_spec(long_tail.COMPOSITIONS["gan+reweight"], config, counts)
    assert spec.synthetic_label_probs[3] > spec.synthetic_label_probs[0]  # uniform real batches: topped up
    assert not np.all(long_tail.strategy_class_weights(long_tail.COMPOSITIONS["gan+reweight"], config, counts) == 1)
    config.experiment.synthetic_fraction = 0.0
    for name, twin in (("gan", "plain"), ("gan+augment", "augment"), ("gan+oversample", "oversample"),
                       ("gan+reweight", "reweight")):
        assert (long_tail.make_step_spec(long_tail.COMPOSITIONS[name], config, counts)
                == long_tail.make_step_spec(long_tail.COMPOSITIONS[twin], config, counts)), name


def test_synthetic_images_weigh_synthetic_weight_in_the_loss():
    from ganjax import losses

    state = create_classifier_state(SmallCNN(num_classes=10, width=4), 1e-2, jax.random.key(0), (16, 16, 1))
    batch = {"images": jnp.zeros((4, 16, 16, 1)), "labels": jnp.arange(4, dtype=jnp.int32), "weights": jnp.ones(4)}
    probs = (0.1,) * 10
    losses_by_weight = {}
    for weight in (1.0, 0.25):
        spec = ClassifierStepSpec(num_synthetic=4, synthetic_label_probs=probs, noise_dim=2, synthetic_weight=weight)
        _, metrics = make_classifier_step(spec)(state, batch, jax.random.key(0), _dummy_source())
        losses_by_weight[weight] = float(metrics["loss"])
    # Same images, labels and keys: the loss is the weighted mean of the real and synthetic parts.
    spec = ClassifierStepSpec(num_synthetic=4, synthetic_label_probs=probs, noise_dim=2)
    synthetic_images, synthetic_labels = synthesize(_dummy_source(), spec, jax.random.split(jax.random.key(0), 3)[1])
    logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                            jnp.concatenate([batch["images"], synthetic_images]), train=True,
                            mutable=["batch_stats"], rngs={"dropout": jax.random.split(jax.random.key(0), 3)[2]})[0]
    labels = jnp.concatenate([batch["labels"], synthetic_labels])
    for weight, loss in losses_by_weight.items():
        weights = jnp.concatenate([jnp.ones(4), jnp.full(4, weight)])
        assert loss == pytest.approx(float(losses.cross_entropy(logits, labels, weights)), rel=1e-5)
    assert losses_by_weight[1.0] != losses_by_weight[0.25]


def test_a_teacher_labels_synthetic_images_with_its_softmax():
    from ganjax import losses

    state = create_classifier_state(SmallCNN(num_classes=10, width=4), 1e-2, jax.random.key(0), (16, 16, 1))
    teacher = create_classifier_state(SmallCNN(num_classes=10, width=4), 1e-2, jax.random.key(1), (16, 16, 1))
    batch = {"images": jnp.zeros((4, 16, 16, 1)), "labels": jnp.arange(4, dtype=jnp.int32), "weights": jnp.ones(4)}
    spec = ClassifierStepSpec(num_synthetic=4, synthetic_label_probs=(0.1,) * 10, noise_dim=2, teacher_labels=True)
    _, metrics = make_classifier_step(spec)(state, batch, jax.random.key(0), _dummy_source(), teacher)
    _, synthetic_key, dropout_key = jax.random.split(jax.random.key(0), 3)
    synthetic_images, _ = synthesize(_dummy_source(), spec, synthetic_key)
    images = jnp.concatenate([batch["images"], synthetic_images])
    logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, images, train=True,
                            mutable=["batch_stats"], rngs={"dropout": dropout_key})[0]
    teacher_probs = jax.nn.softmax(teacher.apply_fn({"params": teacher.params, "batch_stats": teacher.batch_stats},
                                                    synthetic_images, train=False))
    targets = jnp.concatenate([jax.nn.one_hot(batch["labels"], 10), teacher_probs])
    assert float(metrics["loss"]) == pytest.approx(float(losses.soft_cross_entropy(logits, targets)), rel=1e-5)
    # One-hot targets give the integer-label cross-entropy.
    assert float(losses.soft_cross_entropy(logits, jax.nn.one_hot(jnp.arange(8) % 10, 10))) == pytest.approx(
        float(losses.cross_entropy(logits, jnp.arange(8) % 10)), rel=1e-5)


def test_top_up_below_the_smallest_class_is_refused():
    with pytest.raises(ValueError, match="synthetic_top_up=50 is at or below the smallest class"):
        long_tail.top_up_plan(np.array([400, 50]), 50, 64)


@pytest.mark.parametrize("synthetic_fraction", [-1.0, 0.5])
def test_synthetic_labels_top_up_to_balance(synthetic_fraction):
    counts = np.array([400, 200, 100, 50])
    labels = np.repeat(np.arange(4), counts).astype(np.int32)
    num_real, num_synthetic = long_tail.split_batch(100, synthetic_fraction, counts)
    probs = long_tail.synthetic_label_probs(counts, num_real, num_synthetic)
    if synthetic_fraction == -1:
        # The balancing share: q_c proportional to n_max - n_c.
        assert num_synthetic == round(100 * (1 - 750 / 1600))
        # (up to rounding the share to whole images)
        np.testing.assert_allclose(probs, (400 - counts) / (400 - counts).sum(), atol=1e-3)
    spec = ClassifierStepSpec(num_synthetic=num_synthetic, synthetic_label_probs=tuple(probs), noise_dim=2)
    mix = np.zeros(4)
    for step in range(200):
        _, synthetic_labels = synthesize(_dummy_source(), spec, jax.random.key(step))
        real = labels[data.batch_indices(len(labels), num_real, step, 0)]
        mix += np.bincount(np.concatenate([real, np.asarray(synthetic_labels)]), minlength=4)
    mix /= mix.sum()
    # Exact balance needs the balancing share (53%); with 50% the tail is topped up but class 0 stays ahead.
    expected = (num_real * counts / counts.sum() + num_synthetic * probs) / 100
    np.testing.assert_allclose(mix, expected, atol=0.01)
    if synthetic_fraction == -1:
        np.testing.assert_allclose(mix, 0.25, atol=0.01)
    else:
        assert abs(mix[1] - mix[2]) < 0.015 and abs(mix[2] - mix[3]) < 0.015


def _tiny_states(num_seeds):
    module = SmallCNN(num_classes=3, width=4)
    keys = jax.random.split(jax.random.key(0), num_seeds)
    create = lambda key: create_classifier_state(module, 1e-2, key, (16, 16, 1))  # noqa: E731
    return create, keys


@pytest.mark.slow  # two compiles; ~10 s idle, up to ~45 s on a busy 2-core machine
def test_vmapped_seeds_equal_separate_runs():
    num_seeds, steps = 3, 3
    create, init_keys = _tiny_states(num_seeds)
    spec = ClassifierStepSpec(augmentation=Augmentation(2, True, "reflect"))
    rng = np.random.default_rng(0)
    batches = [
        {
            "images": rng.uniform(-1, 1, (num_seeds, 8, 16, 16, 1)).astype(np.float32),
            "labels": rng.integers(0, 3, (num_seeds, 8)).astype(np.int32),
            "weights": rng.uniform(0.5, 2, (num_seeds, 8)).astype(np.float32),
        }
        for _ in range(steps)
    ]
    step_keys = jax.random.split(jax.random.key(1), num_seeds)
    multi = jax.jit(make_multi_seed_step(spec))
    states = jax.vmap(create)(init_keys)
    for t, batch in enumerate(batches):
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(step_keys, t)
        states, _ = multi(states, batch, keys, None)
    single = jax.jit(make_classifier_step(spec))
    for seed in range(num_seeds):
        state = create(init_keys[seed])
        for t, batch in enumerate(batches):
            seed_batch = {name: value[seed] for name, value in batch.items()}
            state, _ = single(state, seed_batch, jax.random.fold_in(step_keys[seed], t), None)
        vmapped = jax.tree.map(lambda leaf: leaf[seed], (states.params, states.batch_stats))
        for a, b in zip(jax.tree.leaves(vmapped), jax.tree.leaves((state.params, state.batch_stats))):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def _context(config, counts, tmp_path, mesh) -> engine.StudyContext:
    """A long-tail StudyContext on random 16x16 images with `counts` images per class."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int32)
    images = rng.integers(0, 256, (len(labels), 16, 16, 1), dtype=np.uint8)
    train_set = data.Dataset(images, labels, tuple("abcdefghij"[: len(counts)]))
    return engine.StudyContext(
        study="long_tail", config=config, workdir=str(tmp_path), mesh=mesh, train_set=train_set,
        validation_set=None, test_set=train_set, rare_classes=long_tail.rarest_classes(counts, 1), progress=False,
    )


@pytest.mark.slow  # compiles a GAN + 2 classifiers step; ~30 s on a busy 2-core machine
def test_gan_strategy_step_compiles_once(tmp_path):
    from ganjax.sample import TrainedGenerator
    from ganjax.state import create_gan_state

    config = default_config()
    config.model.noise_dim, config.model.generator_width, config.model.discriminator_width = 8, 4, 4
    config.classifier.width, config.classifier.batch_size, config.experiment.num_seeds = 4, 8, 2
    config.experiment.filter = "discriminator"
    config.experiment.strategies = "gan+augment"
    counts = np.array([20, 10, 5])
    spec, num_real = long_tail.make_step_spec(long_tail.COMPOSITIONS["gan+augment"], config, counts)
    assert (num_real, spec.num_synthetic) == (4, 4)
    mesh = parallel.make_mesh(jax.devices()[:1])
    context = _context(config, counts, tmp_path, mesh)
    # The two-stage generator, as if trained: the strategy reads it from the context, built once per run.
    context.resources["generator"] = TrainedGenerator(
        create_gan_state(config, 3, (16, 16, 1), jax.random.key(0)), config, 3, context.train_set.class_names, 0)
    strategy = engine.build_strategy("gan+augment", context)
    assert strategy.stream == long_tail.CLASSIFIER_STREAM and strategy.step_key == ("classifier", spec)
    init_keys, step_keys = engine.seed_keys(config.seed, 2, long_tail.CLASSIFIER_STREAM)
    # Placed as engine.train places them, so the first call sees what later calls see.
    states = parallel.replicate(strategy.init(init_keys), mesh)
    source = parallel.replicate(strategy.shared, mesh)
    train_step = engine.compiled_step(strategy, mesh, 1)
    for step in range(3):
        batch = strategy.batches(step)
        assert batch["images"].shape == (2, num_real, 16, 16, 1)
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(step_keys, step)
        states, metrics = train_step(states, parallel.shard_batch(batch, mesh, 1), keys, source)
    assert train_step._cache_size() == 1
    # The discriminator filter keeps half of each seed's synthetic images.
    np.testing.assert_allclose(metrics["synthetic_kept"], 0.5)
    assert np.asarray(states.step).tolist() == [3, 3]


def test_evaluate_logits_on_a_known_input():
    labels = np.array([0, 0, 1, 1, 2, 2])
    predictions = np.array([0, 0, 1, 0, 0, 2])
    logits = np.eye(3)[predictions] * 10.0
    rare = long_tail.rarest_classes(np.array([50, 5, 5]), 2)
    np.testing.assert_array_equal(rare, [1, 2])
    result = engine.evaluate_logits(logits, labels, rare, ece_bins=10)
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["balanced_accuracy"] == pytest.approx(4 / 6)
    assert result["rare_class_accuracy"] == pytest.approx(2 / 4)
    np.testing.assert_allclose(result["per_class_recall"], [1.0, 0.5, 0.5])
    assert 0 <= result["ece"] <= 1


def test_unknown_strategy_and_bad_config_values_raise():
    config = default_config()
    config.experiment.strategies = "plain,mixup"
    with pytest.raises(ValueError, match="unknown strategy 'mixup'.*plain"):
        validate_config(config)
    with pytest.raises(ValueError, match="Strategy 'mixup' is unknown.*plain"):
        engine.build_strategy("mixup", None)
    config = default_config()
    config.experiment.strategies = "plain,gan+agument"
    with pytest.raises(ValueError, match="unknown strategy 'gan\\+agument'"):
        validate_config(config)
    config = default_config()
    config.data.subset = "long_tail"
    config.data.imbalance_ratio = 1.0
    with pytest.raises(ValueError, match="imbalance_ratio' must be > 1.*got 1.0"):
        validate_config(config)
    config = default_config()
    config.experiment.synthetic_fraction = 1.5
    with pytest.raises(ValueError, match="synthetic_fraction"):
        validate_config(config)


def test_a_class_without_images_raises():
    with pytest.raises(ValueError, match=r"Classes \['2 \(c\)'\] have no images"):
        long_tail.check_class_counts(np.array([5, 3, 0]), ("a", "b", "c"), "the training set")
