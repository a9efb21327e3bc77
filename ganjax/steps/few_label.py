"""Few labels: the semi-supervised K+1 GAN, AC-GAN, the supervised baseline, and the classic
semi-supervised alternatives (virtual adversarial training, confidence-thresholded pseudo-labels) steps.
Pure; no I/O.

Networks: ganjax.models.semi (the discriminator returns class logits, an optional real/fake
logit and its last hidden features; its Gaussian noise draws from the "noise" rng).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from ganjax import losses
from ganjax.augment import Augmentation, augment
from ganjax.state import GANState, ModelState
from ganjax.steps.common import Batch, Metrics, generate

class FewLabelSpec(NamedTuple):
    """The static part of a few-label step (hashable: one compile per spec).

    noise_dim: generator noise size; unlabelled_weight: weight of the K+1 GAN's unsupervised
    loss; entropy_weight: weight of the K+1 GAN's entropy term on the unlabelled images
    (`losses.mean_entropy`, 0 = none); class_weight: weight of AC-GAN's auxiliary
    classification losses; augmentation: classic augmentation of the labelled images
    (supervised baseline), or None; pull_away_weight: weight of the pull-away term on the
    generated images' features in the K+1 GAN's generator loss (`losses.pull_away_term`, 0 = none);
    manifold_weight, manifold_epsilon: weight and latent step of the K+1 discriminator's manifold
    regulariser (`losses.manifold_smoothness`, 0 = none); vat_epsilon, vat_xi, vat_iterations, vat_weight:
    virtual adversarial training's perturbation norm, finite-difference step, power iterations and loss
    weight (`make_vat_step`); pseudo_label_threshold, pseudo_label_weight: the teacher confidence above which
    an unlabelled image takes its pseudo-label, and that loss's weight (`make_pseudo_label_step`).
    """

    noise_dim: int = 100
    unlabelled_weight: float = 1.0
    entropy_weight: float = 0.0
    class_weight: float = 1.0
    augmentation: Augmentation | None = None
    pull_away_weight: float = 0.0
    manifold_weight: float = 0.0
    manifold_epsilon: float = 1.0
    vat_epsilon: float = 3.0
    vat_xi: float = 0.1
    vat_iterations: int = 1
    vat_weight: float = 1.0
    pseudo_label_threshold: float = 0.95
    pseudo_label_weight: float = 1.0


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


def make_vat_step(spec: FewLabelSpec) -> Callable[[ModelState, Batch, jax.Array], tuple[ModelState, Metrics]]:
    """Virtual adversarial training (Miyato et al. 2018), the classic semi-supervised alternative to the
    K+1 GAN on the same network: cross-entropy on the labelled images + spec.vat_weight x KL(p(x) || p(x +
    r_adv)) on the unlabelled images, r_adv of L2 norm spec.vat_epsilon per image found by power iteration
    (`losses.virtual_adversarial_perturbation`), + spec.entropy_weight x the entropy of p on the unlabelled
    images (VAT + EntMin; 0 = none). Every pass over the unlabelled images draws the same training noise, so
    the divergence measures r alone; p(x) is a constant target (no gradient), as in the paper.
    batch: as in `make_semi_gan_step` (matching_images unused)."""

    def step(state: ModelState, batch: Batch, key: jax.Array) -> tuple[ModelState, Metrics]:
        labelled_key, unlabelled_key, direction_key = jax.random.split(key, 3)
        unlabelled = batch["unlabelled_images"]

        def unlabelled_logits(params, images):
            return _discriminate(state, params, images, unlabelled_key)[0]

        clean = jax.lax.stop_gradient(unlabelled_logits(state.params, unlabelled))
        perturbation = losses.virtual_adversarial_perturbation(
            lambda images: unlabelled_logits(state.params, images), unlabelled, clean, direction_key,
            spec.vat_epsilon, spec.vat_xi, spec.vat_iterations)

        def loss_fn(params):
            logits, _, _ = _discriminate(state, params, batch["labelled_images"], labelled_key)
            supervised = losses.cross_entropy(logits, batch["labels"])
            virtual_adversarial = losses.kl_divergence_logits(clean, unlabelled_logits(params, unlabelled + perturbation))
            loss = supervised + spec.vat_weight * virtual_adversarial
            metrics = {"d_supervised": supervised, "vat_divergence": virtual_adversarial,
                       "labelled_accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == batch["labels"])}
            if spec.entropy_weight:
                entropy = losses.mean_entropy(unlabelled_logits(params, unlabelled))
                loss, metrics["d_entropy"] = loss + spec.entropy_weight * entropy, entropy
            return loss, metrics

        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads), metrics

    return step


def make_pseudo_label_step(spec: FewLabelSpec) -> Callable[[ModelState, Batch, jax.Array], tuple[ModelState, Metrics]]:
    """Confidence-thresholded pseudo-labels, FixMatch's rule (Sohn et al. 2020) on the noisy network: cross-entropy
    on the labelled images + spec.pseudo_label_weight x `losses.pseudo_label_loss` on the unlabelled images, whose
    teacher is the network's own noise-free prediction (the weak view, no gradient) and whose student is its
    training-mode prediction (the strong view: the network's input and hidden noise; no image augmentation,
    which lowered the supervised baseline on Fashion-MNIST). An image counts once the teacher is
    spec.pseudo_label_threshold confident. batch: as in `make_semi_gan_step` (matching_images unused)."""

    def step(state: ModelState, batch: Batch, key: jax.Array) -> tuple[ModelState, Metrics]:
        labelled_key, unlabelled_key = jax.random.split(key)
        unlabelled = batch["unlabelled_images"]
        teacher = few_label_logits(state, unlabelled)  # outside loss_fn: no gradient

        def loss_fn(params):
            logits, _, _ = _discriminate(state, params, batch["labelled_images"], labelled_key)
            supervised = losses.cross_entropy(logits, batch["labels"])
            student = _discriminate(state, params, unlabelled, unlabelled_key)[0]
            pseudo, kept = losses.pseudo_label_loss(teacher, student, spec.pseudo_label_threshold)
            metrics = {"d_supervised": supervised, "pseudo_label_loss": pseudo, "pseudo_label_kept": kept,
                       "labelled_accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == batch["labels"])}
            return supervised + spec.pseudo_label_weight * pseudo, metrics

        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads), metrics

    return step


def few_label_logits(discriminator: ModelState, images: jnp.ndarray) -> jnp.ndarray:
    """Inference-mode class logits [B, K] of a few-label discriminator (no noise)."""
    return _discriminate(discriminator, discriminator.params, images, None)[0]

