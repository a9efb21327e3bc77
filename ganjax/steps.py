"""Pure update steps: (state, batch, key) -> (state, metrics). No I/O, no globals."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from ganjax import losses
from ganjax.augment import Augmentation, augment, diff_augment, parse_diff_augment
from ganjax.state import GANState, GeneratorSource, ModelState, generator_source
from ganjax.xla_cpu import canonicalize_convs

Batch = dict[str, jnp.ndarray]
Metrics = dict[str, jnp.ndarray]
DIFF_AUGMENT_STREAM = 0x0D1F  # fold_in constant of DiffAugment's keys in the GAN updates


def generate(
    generator_state: ModelState, params: Any, noise: jnp.ndarray, labels: jnp.ndarray, train: bool
) -> tuple[jnp.ndarray, Any]:
    """Images [B, S, S, C] from noise [B, Z] and labels [B], and the updated BatchNorm statistics."""
    variables = {"params": params, "batch_stats": generator_state.batch_stats}
    if not train:
        return generator_state.apply_fn(variables, noise, labels, train=False), generator_state.batch_stats
    images, mutated = generator_state.apply_fn(variables, noise, labels, train=True, mutable=["batch_stats"])
    return images, mutated.get("batch_stats", {})


def ema_decay_at(step: jnp.ndarray, decay: float) -> jnp.ndarray:
    """EMA decay warmed up as in tf.train.ExponentialMovingAverage(num_updates=step)."""
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(average: Any, new: Any, step: jnp.ndarray, decay: float) -> Any:
    """One exponential-moving-average update of the tree `average` towards `new`, with the decay
    warmed up at `step` (`ema_decay_at`)."""
    rate = ema_decay_at(step, decay)
    return jax.tree.map(lambda a, n: rate * a + (1.0 - rate) * n, average, new)


def _discriminator_update(
    config: ml_collections.ConfigDict,
    state: GANState,
    real_images: jnp.ndarray,
    labels: jnp.ndarray,
    key: jax.Array,
    fake_images: jnp.ndarray | None = None,
) -> tuple[ModelState, Metrics]:
    """One D update; fake_images None: made here from the noise of `discriminator_noise(key)`."""
    _, penalty_key = jax.random.split(key)
    # DiffAugment's keys branch off `key` (fold_in), leaving the other streams as without it.
    real_augment_key, fake_augment_key = jax.random.split(jax.random.fold_in(key, DIFF_AUGMENT_STREAM))
    if fake_images is None:
        noise = discriminator_noise(config, key, real_images.shape[0])
        fake_images, _ = generate(state.generator, state.generator.params, noise, labels, train=True)
    fake_images = jax.lax.stop_gradient(fake_images)
    discriminator = state.discriminator
    ops = parse_diff_augment(config.gan.diffaugment)

    def loss_fn(params):
        def scorer(augment_key):
            def score(images):
                images = diff_augment(augment_key, images, ops)
                return discriminator.apply_fn({"params": params}, images, labels)

            return score

        score = scorer(real_augment_key)
        real_logits, fake_logits = score(real_images), scorer(fake_augment_key)(fake_images)
        loss = losses.discriminator_loss(config.gan.loss, real_logits, fake_logits)
        metrics = {
            "d_loss": loss,
            "real_logits": jnp.mean(real_logits),
            "fake_logits": jnp.mean(fake_logits),
        }
        if config.gan.r1_gamma > 0:
            r1 = losses.r1_penalty(score, real_images)
            loss = loss + 0.5 * config.gan.r1_gamma * r1
            metrics["r1"] = r1
        if config.gan.gp_weight > 0:
            gp = losses.gradient_penalty(score, real_images, fake_images, penalty_key)
            loss = loss + config.gan.gp_weight * gp
            metrics["gradient_penalty"] = gp
        return loss, metrics

    grads, metrics = jax.grad(loss_fn, has_aux=True)(discriminator.params)
    return discriminator.apply_gradients(grads=grads), metrics


def discriminator_noise_key(key: jax.Array) -> jax.Array:
    """The key of the noise of the fake images a D update with key `key` makes."""
    return jax.random.split(key)[0]


def discriminator_noise(config: ml_collections.ConfigDict, key: jax.Array, batch_size: int) -> jnp.ndarray:
    """The noise [B, Z] of the fake images a D update with key `key` makes."""
    return jax.random.normal(discriminator_noise_key(key), (batch_size, config.model.noise_dim))


def _generator_loss_of_images(
    config: ml_collections.ConfigDict, discriminator: ModelState, images: jnp.ndarray, labels: jnp.ndarray, key: jax.Array
) -> jnp.ndarray:
    """G's loss for generated `images` as D sees them (after DiffAugment with key fold_in(key, stream))."""
    images = diff_augment(jax.random.fold_in(key, DIFF_AUGMENT_STREAM), images, parse_diff_augment(config.gan.diffaugment))
    fake_logits = discriminator.apply_fn({"params": discriminator.params}, images, labels)
    return losses.generator_loss(config.gan.loss, fake_logits)


def _generator_update(
    config: ml_collections.ConfigDict, state: GANState, labels: jnp.ndarray, key: jax.Array
) -> tuple[ModelState, Metrics]:
    noise = jax.random.normal(key, (labels.shape[0], config.model.noise_dim))
    generator = state.generator

    def loss_fn(params):
        fake_images, batch_stats = generate(generator, params, noise, labels, train=True)
        return _generator_loss_of_images(config, state.discriminator, fake_images, labels, key), batch_stats

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(generator.params)
    return generator.apply_gradients(grads=grads, batch_stats=batch_stats), {"g_loss": loss}


def _shared_forward_update(
    config: ml_collections.ConfigDict, state: GANState, real_images: jnp.ndarray, labels: jnp.ndarray, key: jax.Array
) -> tuple[GANState, Metrics, Metrics]:
    """A D update and then a G update from one generator forward pass (gan.share_generator_forward):
    the fake images made for D (noise `discriminator_noise(key)`, training mode) are scored again
    by the updated D, and G's gradient flows back through that same forward pass (jax.vjp).
    Equal to `_discriminator_update(key)` followed by `_generator_update` with that noise, minus
    one generator forward. Returns (state with new D and G, D metrics, G metrics)."""
    noise = discriminator_noise(config, key, real_images.shape[0])

    def forward(params):
        return generate(state.generator, params, noise, labels, train=True)

    fake_images, generator_vjp, batch_stats = jax.vjp(forward, state.generator.params, has_aux=True)
    discriminator, d_metrics = _discriminator_update(config, state, real_images, labels, key, fake_images)
    loss, image_grads = jax.value_and_grad(
        lambda images: _generator_loss_of_images(config, discriminator, images, labels, discriminator_noise_key(key))
    )(fake_images)
    (grads,) = generator_vjp(image_grads)
    generator = state.generator.apply_gradients(grads=grads, batch_stats=batch_stats)
    return state.replace(discriminator=discriminator, generator=generator), d_metrics, {"g_loss": loss}


def make_gan_train_step(
    config: ml_collections.ConfigDict,
) -> Callable[[GANState, Batch, jax.Array], tuple[GANState, Metrics]]:
    """The alternating GAN step: `config.gan.n_critic` D updates, then one G update (which, with
    gan.share_generator_forward, reuses the last D update's generator forward pass).

    batch: images [n_critic, B, S, S, C] float32 in [-1, 1], labels [n_critic, B] int32;
    D update i sees real batch i; the G update conditions on the last batch's labels.
    """

    n_critic, share = config.gan.n_critic, config.gan.share_generator_forward

    def train_step(state: GANState, batch: Batch, key: jax.Array) -> tuple[GANState, Metrics]:
        d_metrics = []
        for critic_step in range(n_critic - 1 if share else n_critic):
            discriminator, metrics = _discriminator_update(
                config,
                state,
                batch["images"][critic_step],
                batch["labels"][critic_step],
                jax.random.fold_in(key, critic_step),
            )
            state = state.replace(discriminator=discriminator)
            d_metrics.append(metrics)
        if share:
            state, metrics, g_metrics = _shared_forward_update(
                config, state, batch["images"][-1], batch["labels"][-1], jax.random.fold_in(key, n_critic - 1)
            )
            d_metrics.append(metrics)
        else:
            generator, g_metrics = _generator_update(config, state, batch["labels"][-1], jax.random.fold_in(key, n_critic))
            state = state.replace(generator=generator)
        generator_ema = ema_update(state.generator_ema, state.generator.params, state.step, config.gan.ema_decay)
        state = state.replace(step=state.step + 1, generator_ema=generator_ema)
        metrics = jax.tree.map(lambda *values: jnp.mean(jnp.stack(values)), *d_metrics)
        return state, {**metrics, **g_metrics}

    return train_step


def classifier_train_step(state: ModelState, batch: Batch, key: jax.Array) -> tuple[ModelState, Metrics]:
    """One optimizer step on the (optionally weighted) softmax cross-entropy.

    batch: images [B, H, W, C] float32 in [-1, 1], labels [B] int32, and optionally
    weights [B] float32 (per-example loss weights, e.g. class-balanced).
    key: the dropout rng for this step.
    BatchNorm statistics (if any) are updated from the batch.
    """

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        logits, mutated = state.apply_fn(
            variables, batch["images"], train=True, mutable=["batch_stats"], rngs={"dropout": key}
        )
        loss = losses.cross_entropy(logits, batch["labels"], batch.get("weights"))
        return loss, (logits, mutated.get("batch_stats", {}))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == batch["labels"])
    return state.apply_gradients(grads=grads, batch_stats=batch_stats), {"loss": loss, "accuracy": accuracy}


def classifier_eval_step(state: ModelState, images: jnp.ndarray) -> jnp.ndarray:
    """Inference-mode logits [B, K] for images [B, H, W, C] float32 in [-1, 1] (running BatchNorm statistics)."""
    return state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, images, train=False)


# --- Recognition: classifier steps on real (+ synthetic) images, seed-vmapped, joint with the GAN.


SYNTHETIC_FILTERS = ("none", "confidence", "discriminator")


class ClassifierStepSpec(NamedTuple):
    """The static part of a recognition classifier step (hashable: one compile per spec).

    augmentation: classic augmentation of every image in the batch, or None.
    num_synthetic: synthetic images per step, generated inside the step (0: real only).
    synthetic_label_probs: [num_classes] probabilities of the synthetic images' labels.
    noise_dim: the generator's noise size.
    synthetic_filter: "none"; "confidence": zero weight for a synthetic image the classifier
      being trained gives p(label) < filter_threshold; "discriminator": keep the
      filter_keep_fraction of each batch's synthetic images with the highest discriminator score.
    """

    augmentation: Augmentation | None = None
    num_synthetic: int = 0
    synthetic_label_probs: tuple[float, ...] = ()
    noise_dim: int = 0
    synthetic_filter: str = "none"
    filter_threshold: float = 0.5
    filter_keep_fraction: float = 0.5


def synthesize(
    source: GeneratorSource, spec: ClassifierStepSpec, key: jax.Array
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """spec.num_synthetic inference-mode images [N, H, W, C] in [-1, 1] and their labels [N] int32,
    labels drawn from spec.synthetic_label_probs."""
    label_key, noise_key = jax.random.split(key)
    log_probs = jnp.log(jnp.asarray(spec.synthetic_label_probs, jnp.float32))
    labels = jax.random.categorical(label_key, log_probs, shape=(spec.num_synthetic,)).astype(jnp.int32)
    noise = jax.random.normal(noise_key, (spec.num_synthetic, spec.noise_dim))
    variables = {"params": source.generator_params, "batch_stats": source.generator_batch_stats}
    images = source.generator_apply(variables, noise, labels, train=False)
    return jax.lax.stop_gradient(images), labels


def make_classifier_step(
    spec: ClassifierStepSpec,
) -> Callable[[ModelState, Batch, jax.Array, GeneratorSource | None], tuple[ModelState, Metrics]]:
    """One classifier update on a real batch, topped up with synthetic images if spec says so.

    batch: images [B_real, H, W, C] float32 in [-1, 1], labels [B_real] int32, weights
    [B_real] float32 (class-balanced loss weights, or ones). `source` holds the generator
    (None when spec.num_synthetic == 0). The loss is the weighted mean cross-entropy over
    real and synthetic images; synthetic images weigh 1 unless filtered out (weight 0).
    """
    if spec.synthetic_filter not in SYNTHETIC_FILTERS:
        raise ValueError(f"Synthetic filter {spec.synthetic_filter!r} is unknown; choose one of {SYNTHETIC_FILTERS}.")

    def step(state: ModelState, batch: Batch, key: jax.Array, source: GeneratorSource | None = None):
        augment_key, synthetic_key, dropout_key = jax.random.split(key, 3)
        images, labels, weights = batch["images"], batch["labels"], batch["weights"]
        num_real = labels.shape[0]
        metrics = {}
        if spec.num_synthetic:
            synthetic_images, synthetic_labels = synthesize(source, spec, synthetic_key)
            synthetic_weights = jnp.ones((spec.num_synthetic,), jnp.float32)
            if spec.synthetic_filter == "discriminator":
                scores = source.discriminator_apply(
                    {"params": source.discriminator_params}, synthetic_images, synthetic_labels
                )
                keep = max(1, int(round(spec.filter_keep_fraction * spec.num_synthetic)))
                ranks = jnp.argsort(jnp.argsort(-scores))
                synthetic_weights = (ranks < keep).astype(jnp.float32)
            images = jnp.concatenate([images, synthetic_images])
            labels = jnp.concatenate([labels, synthetic_labels])
            weights = jnp.concatenate([weights, synthetic_weights])
        if spec.augmentation is not None:
            images = augment(augment_key, images, spec.augmentation)

        def loss_fn(params):
            variables = {"params": params, "batch_stats": state.batch_stats}
            logits, mutated = state.apply_fn(
                variables, images, train=True, mutable=["batch_stats"], rngs={"dropout": dropout_key}
            )
            example_weights = weights
            if spec.num_synthetic and spec.synthetic_filter == "confidence":
                probs = jax.nn.softmax(jax.lax.stop_gradient(logits[num_real:]))
                label_probs = jnp.take_along_axis(probs, labels[num_real:, None], axis=1)[:, 0]
                confident = (label_probs >= spec.filter_threshold).astype(jnp.float32)
                example_weights = weights.at[num_real:].multiply(confident)
            loss = losses.cross_entropy(logits, labels, example_weights)
            return loss, (logits, mutated.get("batch_stats", {}), example_weights)

        (loss, (logits, batch_stats, example_weights)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        metrics["loss"] = loss
        metrics["accuracy"] = jnp.mean(jnp.argmax(logits[:num_real], axis=-1) == labels[:num_real])
        if spec.num_synthetic:
            metrics["synthetic_kept"] = jnp.mean(example_weights[num_real:])
        return state.apply_gradients(grads=grads, batch_stats=batch_stats), metrics

    return step


def over_seeds(fn: Callable, in_axes: tuple[int | None, ...], vectorize: bool = False) -> Callable:
    """`fn` over S independent seeds in one compiled program, like `jax.vmap(fn, in_axes)`
    (in_axes: 0 for an argument stacked over seeds, None for one shared by all), by default as
    S unrolled calls on the slices; `vectorize` uses jax.vmap itself.

    Why unrolled: batching a convolution over per-seed weights turns it into a grouped
    convolution, which XLA:CPU runs several times slower than S plain ones (SmallCNN
    classifier step, 5 seeds: 3.3x; DCGAN-generator semi-supervised step, 3 seeds: 3.0x;
    benchmarks/seed_loop.py). Networks of dense layers only batch well: vectorize them.
    """
    if vectorize:
        return jax.vmap(fn, in_axes=in_axes)

    def mapped(*args):
        num_seeds = next(jax.tree.leaves(arg)[0].shape[0] for arg, axis in zip(args, in_axes) if axis == 0)
        outputs = []
        for seed in range(num_seeds):
            seed_args = [jax.tree.map(lambda x: x[seed], arg) if axis == 0 else arg for arg, axis in zip(args, in_axes)]
            outputs.append(fn(*seed_args))
        return jax.tree.map(lambda *values: jnp.stack(values), *outputs)

    return mapped


def make_multi_seed_step(spec: ClassifierStepSpec) -> Callable:
    """`make_classifier_step(spec)` over S independent classifiers at once (`over_seeds`).

    (states [S, ...], batch with leading [S], keys [S], source shared) -> (states, metrics [S]).
    """
    return over_seeds(make_classifier_step(spec), in_axes=(0, 0, 0, None))


def make_joint_train_step(
    config: ml_collections.ConfigDict, spec: ClassifierStepSpec, num_seeds: int
) -> Callable[[GANState, Batch, jax.Array], tuple[GANState, Metrics]]:
    """GAN and classifiers in one compiled step: the alternating D/G step, then S classifier
    updates on real + synthetic images from the just-updated generator's raw params.

    state.classifier holds the S stacked classifier ModelStates. batch: {"gan": the GAN
    step's batch ([n_critic, B, ...]), "classifier": [S, B_real, ...] images, labels, weights}.
    """
    gan_step = make_gan_train_step(config)
    multi_seed_step = make_multi_seed_step(spec)

    def joint_step(state: GANState, batch: Batch, key: jax.Array) -> tuple[GANState, Metrics]:
        gan_key, classifier_key = jax.random.split(key)
        state, gan_metrics = gan_step(state, batch["gan"], gan_key)
        keys = jax.random.split(classifier_key, num_seeds)
        classifier, classifier_metrics = multi_seed_step(
            state.classifier, batch["classifier"], keys, generator_source(state, use_ema=False)
        )
        classifier_metrics = {f"classifier_{name}": jnp.mean(value) for name, value in classifier_metrics.items()}
        return state.replace(classifier=classifier), {**gan_metrics, **classifier_metrics}

    return joint_step


# --- Few labels: the semi-supervised K+1 GAN, AC-GAN and the supervised baseline.
# Networks: ganjax.models.semi (the discriminator returns class logits, an optional real/fake
# logit and its last hidden features; its Gaussian noise draws from the "noise" rng).


class FewLabelSpec(NamedTuple):
    """The static part of a few-label step (hashable: one compile per spec).

    noise_dim: generator noise size; unlabelled_weight: weight of the K+1 GAN's unsupervised
    loss; entropy_weight: weight of the K+1 GAN's entropy term on the unlabelled images
    (`losses.mean_entropy`, 0 = none); class_weight: weight of AC-GAN's auxiliary
    classification losses; augmentation: classic augmentation of the labelled images
    (supervised baseline), or None; pull_away_weight: weight of the pull-away term on the
    generated images' features in the K+1 GAN's generator loss (`losses.pull_away_term`, 0 = none);
    manifold_weight, manifold_epsilon: weight and latent step of the K+1 discriminator's manifold
    regulariser (`losses.manifold_smoothness`, 0 = none).
    """

    noise_dim: int = 100
    unlabelled_weight: float = 1.0
    entropy_weight: float = 0.0
    class_weight: float = 1.0
    augmentation: Augmentation | None = None
    pull_away_weight: float = 0.0
    manifold_weight: float = 0.0
    manifold_epsilon: float = 1.0


def _discriminate(state: ModelState, params: Any, images: jnp.ndarray, key: jax.Array | None):
    """(class logits [B, K], real/fake logit [B] or None, features [B, F]); training-mode
    noise from `key`, inference mode when key is None."""
    if key is None:
        return state.apply_fn({"params": params}, images, train=False)
    return state.apply_fn({"params": params}, images, train=True, rngs={"noise": key})


def _labels_and_noise(key: jax.Array, batch_size: int, num_classes: int, noise_dim: int):
    """Uniform conditioning labels [B] int32 and standard normal noise [B, Z] for the generator."""
    label_key, noise_key = jax.random.split(key)
    labels = jax.random.randint(label_key, (batch_size,), 0, num_classes)
    return labels, jax.random.normal(noise_key, (batch_size, noise_dim))


def make_semi_gan_step(spec: FewLabelSpec) -> Callable[[GANState, Batch, jax.Array], tuple[GANState, Metrics]]:
    """Salimans et al. 2016's semi-supervised GAN step: one D update, then one G update.

    batch: labelled_images [B_l, H, W, C], labels [B_l], unlabelled_images [B_u, H, W, C]
    (float32 in [-1, 1]), optionally matching_images [B_u, H, W, C]. D minimises cross-entropy
    on the labelled images plus the K+1 real/fake loss on the unlabelled images and B_u
    generated ones (`losses.semi_supervised_discriminator_loss`), plus spec.entropy_weight x
    the entropy of its class prediction on the unlabelled images; G minimises feature matching
    (`losses.feature_matching_loss`) at D's feature layer between generated images and the
    matching_images (default: the unlabelled_images), plus spec.pull_away_weight x the
    pull-away term of the generated images' features. With spec.manifold_weight, D also
    minimises that weight x `losses.manifold_smoothness` of its noise-free class logits between
    the generated images and images generated from noise moved spec.manifold_epsilon along a
    random unit direction (Lecouat et al. 2018).
    """

    def step(state: GANState, batch: Batch, key: jax.Array) -> tuple[GANState, Metrics]:
        d_fake_key, d_noise_key, g_fake_key, g_noise_key = jax.random.split(key, 4)
        labelled, unlabelled = batch["labelled_images"], batch["unlabelled_images"]
        num_labelled, num_unlabelled = labelled.shape[0], unlabelled.shape[0]
        fake_labels, noise = _labels_and_noise(d_fake_key, num_unlabelled, 1, spec.noise_dim)  # all 0: unconditional G
        fakes, _ = generate(state.generator, state.generator.params, noise, fake_labels, train=True)
        fakes = jax.lax.stop_gradient(fakes)
        discriminator = state.discriminator
        if spec.manifold_weight:
            direction = jax.random.normal(jax.random.fold_in(d_fake_key, 2), noise.shape)
            direction = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
            moved, _ = generate(state.generator, state.generator.params, noise + spec.manifold_epsilon * direction,
                                fake_labels, train=True)
            fake_pair = jax.lax.stop_gradient(jnp.concatenate([fakes, moved]))

        def d_loss_fn(params):
            # One forward pass over the three groups (one matmul per layer, not three).
            logits, _, _ = _discriminate(discriminator, params, jnp.concatenate([labelled, unlabelled, fakes]), d_noise_key)
            labelled_logits = logits[:num_labelled]
            unlabelled_logits = logits[num_labelled : num_labelled + num_unlabelled]
            supervised, unsupervised = losses.semi_supervised_discriminator_loss(
                labelled_logits, batch["labels"], unlabelled_logits, logits[num_labelled + num_unlabelled :],
                spec.unlabelled_weight,
            )
            entropy = losses.mean_entropy(unlabelled_logits)
            accuracy = jnp.mean(jnp.argmax(labelled_logits, axis=-1) == batch["labels"])
            loss = supervised + unsupervised + spec.entropy_weight * entropy
            metrics = {"d_supervised": supervised, "d_unsupervised": unsupervised, "d_entropy": entropy,
                       "labelled_accuracy": accuracy}
            if spec.manifold_weight:
                pair_logits, _, _ = _discriminate(discriminator, params, fake_pair, None)
                smoothness = losses.manifold_smoothness(pair_logits[:num_unlabelled], pair_logits[num_unlabelled:],
                                                        spec.manifold_epsilon)
                loss, metrics["d_manifold"] = loss + spec.manifold_weight * smoothness, smoothness
            return loss, metrics

        d_grads, d_metrics = jax.grad(d_loss_fn, has_aux=True)(discriminator.params)
        discriminator = discriminator.apply_gradients(grads=d_grads)
        matching_images = batch.get("matching_images", unlabelled)  # a second unlabelled batch if given
        real_features = jax.lax.stop_gradient(
            _discriminate(discriminator, discriminator.params, matching_images, g_noise_key)[2]
        )
        g_labels, g_noise = _labels_and_noise(g_fake_key, num_unlabelled, 1, spec.noise_dim)
        generator = state.generator

        def g_loss_fn(params):
            images, batch_stats = generate(generator, params, g_noise, g_labels, train=True)
            _, _, fake_features = _discriminate(discriminator, discriminator.params, images, jax.random.fold_in(g_noise_key, 1))
            matching = losses.feature_matching_loss(real_features, fake_features)
            pull_away = losses.pull_away_term(fake_features) if spec.pull_away_weight else jnp.zeros(())
            return matching + spec.pull_away_weight * pull_away, (batch_stats, matching, pull_away)

        (_, (batch_stats, matching, pull_away)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(generator.params)
        generator = generator.apply_gradients(grads=g_grads, batch_stats=batch_stats)
        state = state.replace(step=state.step + 1, generator=generator, discriminator=discriminator)
        metrics = {**d_metrics, "g_feature_matching": matching}
        if spec.pull_away_weight:
            metrics["g_pull_away"] = pull_away
        return state, metrics

    return step


def make_acgan_step(spec: FewLabelSpec, num_classes: int) -> Callable[[GANState, Batch, jax.Array], tuple[GANState, Metrics]]:
    """AC-GAN (Odena et al. 2017) with few labels: one D update, then one G update.

    batch as in `make_semi_gan_step`. D has a real/fake head and a K-class head. D minimises
    the non-saturating real/fake loss (unlabelled real vs generated) + class_weight x
    (cross-entropy of the labelled images + cross-entropy of the generated images with their
    conditioning labels), eq. 2-3 of the paper with the real class term on labelled images only;
    G minimises the non-saturating loss + class_weight x cross-entropy of its images.
    """

    def step(state: GANState, batch: Batch, key: jax.Array) -> tuple[GANState, Metrics]:
        d_fake_key, d_noise_key, g_fake_key, g_noise_key = jax.random.split(key, 4)
        labelled, unlabelled = batch["labelled_images"], batch["unlabelled_images"]
        num_labelled, num_unlabelled = labelled.shape[0], unlabelled.shape[0]
        fake_labels, noise = _labels_and_noise(d_fake_key, num_unlabelled, num_classes, spec.noise_dim)
        fakes, _ = generate(state.generator, state.generator.params, noise, fake_labels, train=True)
        fakes = jax.lax.stop_gradient(fakes)
        discriminator = state.discriminator

        def d_loss_fn(params):
            class_logits, adversarial, _ = _discriminate(
                discriminator, params, jnp.concatenate([labelled, unlabelled, fakes]), d_noise_key
            )
            real_adversarial = adversarial[num_labelled : num_labelled + num_unlabelled]
            fake_adversarial = adversarial[num_labelled + num_unlabelled :]
            adversarial_loss = losses.discriminator_loss("non_saturating", real_adversarial, fake_adversarial)
            labelled_logits = class_logits[:num_labelled]
            class_loss = losses.cross_entropy(labelled_logits, batch["labels"]) + losses.cross_entropy(
                class_logits[num_labelled + num_unlabelled :], fake_labels
            )
            accuracy = jnp.mean(jnp.argmax(labelled_logits, axis=-1) == batch["labels"])
            return adversarial_loss + spec.class_weight * class_loss, {
                "d_adversarial": adversarial_loss, "d_class": class_loss, "labelled_accuracy": accuracy}

        d_grads, d_metrics = jax.grad(d_loss_fn, has_aux=True)(discriminator.params)
        discriminator = discriminator.apply_gradients(grads=d_grads)
        g_labels, g_noise = _labels_and_noise(g_fake_key, num_unlabelled, num_classes, spec.noise_dim)
        generator = state.generator

        def g_loss_fn(params):
            images, batch_stats = generate(generator, params, g_noise, g_labels, train=True)
            class_logits, adversarial, _ = _discriminate(discriminator, discriminator.params, images, g_noise_key)
            loss = losses.generator_loss("non_saturating", adversarial)
            class_loss = losses.cross_entropy(class_logits, g_labels)
            return loss + spec.class_weight * class_loss, (batch_stats, loss, class_loss)

        (_, (batch_stats, g_adversarial, g_class)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
            generator.params
        )
        generator = generator.apply_gradients(grads=g_grads, batch_stats=batch_stats)
        state = state.replace(step=state.step + 1, generator=generator, discriminator=discriminator)
        return state, {**d_metrics, "g_adversarial": g_adversarial, "g_class": g_class}

    return step


def make_supervised_few_label_step(spec: FewLabelSpec) -> Callable[[ModelState, Batch, jax.Array], tuple[ModelState, Metrics]]:
    """The baseline: the same discriminator network trained by cross-entropy on the labelled
    images only (batch: labelled_images, labels; unlabelled images, if present, are ignored),
    with classic augmentation when spec.augmentation is set."""

    def step(state: ModelState, batch: Batch, key: jax.Array) -> tuple[ModelState, Metrics]:
        augment_key, noise_key = jax.random.split(key)
        images = batch["labelled_images"]
        if spec.augmentation is not None:
            images = augment(augment_key, images, spec.augmentation)

        def loss_fn(params):
            logits, _, _ = _discriminate(state, params, images, noise_key)
            return losses.cross_entropy(logits, batch["labels"]), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == batch["labels"])
        return state.apply_gradients(grads=grads), {"d_supervised": loss, "labelled_accuracy": accuracy}

    return step


def few_label_logits(discriminator: ModelState, images: jnp.ndarray) -> jnp.ndarray:
    """Inference-mode class logits [B, K] of a few-label discriminator (no noise)."""
    return _discriminate(discriminator, discriminator.params, images, None)[0]


def make_multi_step(train_step: Callable[[Any, Batch, jax.Array], tuple[Any, Metrics]]) -> Callable:
    """`train_step` over K stacked batches in one `lax.scan`: (state, batches, keys) -> (state,
    metrics), with every batch and key leaf stacked on a new leading axis K (e.g. GAN batches
    [K, n_critic, B, ...] and keys [K]) and each metric [K, ...], step by step.

    On CPU the scanned body is `canonicalize_convs(train_step)`: convolutions inside a loop body
    stay non-canonical on XLA:CPU and run several times slower (ganjax/xla_cpu.py), and
    canonicalize_convs does not reach into a scan it is given, so it wraps the step, not the scan.
    """
    # On GPU / TPU XLA lays convolutions out itself, inside loops too: the step is scanned as it is.
    canonical_step = canonicalize_convs(train_step) if jax.default_backend() == "cpu" else train_step

    def multi_step(state: Any, batches: Batch, keys: jax.Array) -> tuple[Any, Metrics]:
        def body(state, inputs):
            batch, key = inputs
            return canonical_step(state, batch, key)

        return jax.lax.scan(body, state, (batches, keys))

    return multi_step
