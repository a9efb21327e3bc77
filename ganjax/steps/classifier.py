"""Classifier steps: plain supervised updates, updates topped up with synthetic images from a
generator (the long-tail study), S seeds at once, and the joint GAN + classifiers step. Pure; no I/O."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from ganjax import losses
from ganjax.augment import Augmentation, augment
from ganjax.names import SYNTHETIC_FILTERS
from ganjax.state import GANState, GeneratorSource, ModelState, generator_source
from ganjax.steps.common import Batch, Metrics, over_seeds
from ganjax.steps.gan import make_gan_train_step

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

class ClassifierStepSpec(NamedTuple):
    """The static part of a recognition classifier step (hashable: one compile per spec).

    augmentation: classic augmentation of every image in the batch, or None.
    num_synthetic: synthetic images per step, generated inside the step (0: real only).
    synthetic_label_probs: [num_classes] probabilities of the synthetic images' labels.
    noise_dim: the generator's noise size.
    synthetic_filter: "none"; "confidence": zero weight for a synthetic image the classifier
      being trained gives p(label) < filter_threshold; "discriminator": keep the
      filter_keep_fraction of each batch's synthetic images with the highest discriminator score.
    synthetic_weight: a synthetic image's weight in the loss (a real image's is its class weight).
    teacher_labels: a synthetic image's target is a teacher classifier's softmax (the step's `teacher`
      argument, in inference mode) instead of the one-hot label it was generated for.
    """

    augmentation: Augmentation | None = None
    num_synthetic: int = 0
    synthetic_label_probs: tuple[float, ...] = ()
    noise_dim: int = 0
    synthetic_filter: str = "none"
    filter_threshold: float = 0.5
    filter_keep_fraction: float = 0.5
    synthetic_weight: float = 1.0
    teacher_labels: bool = False


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
    real and synthetic images; synthetic images weigh spec.synthetic_weight unless filtered out (0).
    With spec.teacher_labels, `teacher` (a ModelState) gives the synthetic images' soft targets.
    """
    if spec.synthetic_filter not in SYNTHETIC_FILTERS:
        raise ValueError(f"Synthetic filter {spec.synthetic_filter!r} is unknown; choose one of {SYNTHETIC_FILTERS}.")

    def step(state: ModelState, batch: Batch, key: jax.Array, source: GeneratorSource | None = None,
             teacher: ModelState | None = None):
        augment_key, synthetic_key, dropout_key = jax.random.split(key, 3)
        images, labels, weights = batch["images"], batch["labels"], batch["weights"]
        num_real = labels.shape[0]
        metrics = {}
        if spec.num_synthetic:
            synthetic_images, synthetic_labels = synthesize(source, spec, synthetic_key)
            synthetic_weights = jnp.full((spec.num_synthetic,), spec.synthetic_weight, jnp.float32)
            if spec.synthetic_filter == "discriminator":
                scores = source.discriminator_apply(
                    {"params": source.discriminator_params}, synthetic_images, synthetic_labels
                )
                keep = max(1, int(round(spec.filter_keep_fraction * spec.num_synthetic)))
                ranks = jnp.argsort(jnp.argsort(-scores))
                synthetic_weights = synthetic_weights * (ranks < keep)
            images = jnp.concatenate([images, synthetic_images])
            labels = jnp.concatenate([labels, synthetic_labels])
            weights = jnp.concatenate([weights, synthetic_weights])
        if spec.augmentation is not None:
            images = augment(augment_key, images, spec.augmentation)
        targets = None
        if spec.num_synthetic and spec.teacher_labels:  # the teacher sees what the student sees
            teacher_probs = jax.nn.softmax(jax.lax.stop_gradient(classifier_eval_step(teacher, images[num_real:])))
            targets = jnp.concatenate([jax.nn.one_hot(labels[:num_real], teacher_probs.shape[-1]), teacher_probs])

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
            if targets is None:
                loss = losses.cross_entropy(logits, labels, example_weights)
            else:
                loss = losses.soft_cross_entropy(logits, targets, example_weights)
            return loss, (logits, mutated.get("batch_stats", {}), example_weights)

        (loss, (logits, batch_stats, example_weights)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        metrics["loss"] = loss
        metrics["accuracy"] = jnp.mean(jnp.argmax(logits[:num_real], axis=-1) == labels[:num_real])
        if spec.num_synthetic:
            metrics["synthetic_kept"] = jnp.mean(example_weights[num_real:] > 0)
        return state.apply_gradients(grads=grads, batch_stats=batch_stats), metrics

    return step

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

