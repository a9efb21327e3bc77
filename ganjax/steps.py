"""Pure update steps: (state, batch, key) -> (state, metrics). No I/O, no globals."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from ganjax import losses
from ganjax.state import GANState, ModelState

Batch = dict[str, jnp.ndarray]
Metrics = dict[str, jnp.ndarray]


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


def _discriminator_update(
    config: ml_collections.ConfigDict,
    state: GANState,
    real_images: jnp.ndarray,
    labels: jnp.ndarray,
    key: jax.Array,
) -> tuple[ModelState, Metrics]:
    noise_key, penalty_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, (real_images.shape[0], config.model.noise_dim))
    fake_images, _ = generate(state.generator, state.generator.params, noise, labels, train=True)
    fake_images = jax.lax.stop_gradient(fake_images)
    discriminator = state.discriminator

    def loss_fn(params):
        def score(images):
            return discriminator.apply_fn({"params": params}, images, labels)

        real_logits, fake_logits = score(real_images), score(fake_images)
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


def _generator_update(
    config: ml_collections.ConfigDict, state: GANState, labels: jnp.ndarray, key: jax.Array
) -> tuple[ModelState, Metrics]:
    noise = jax.random.normal(key, (labels.shape[0], config.model.noise_dim))
    generator, discriminator = state.generator, state.discriminator

    def loss_fn(params):
        fake_images, batch_stats = generate(generator, params, noise, labels, train=True)
        fake_logits = discriminator.apply_fn({"params": discriminator.params}, fake_images, labels)
        return losses.generator_loss(config.gan.loss, fake_logits), batch_stats

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(generator.params)
    return generator.apply_gradients(grads=grads, batch_stats=batch_stats), {"g_loss": loss}


def make_gan_train_step(
    config: ml_collections.ConfigDict,
) -> Callable[[GANState, Batch, jax.Array], tuple[GANState, Metrics]]:
    """The alternating GAN step: `config.gan.n_critic` D updates, then one G update.

    batch: images [n_critic, B, S, S, C] float32 in [-1, 1], labels [n_critic, B] int32;
    D update i sees real batch i; the G update conditions on the last batch's labels.
    """

    def train_step(state: GANState, batch: Batch, key: jax.Array) -> tuple[GANState, Metrics]:
        d_metrics = []
        for critic_step in range(config.gan.n_critic):
            discriminator, metrics = _discriminator_update(
                config,
                state,
                batch["images"][critic_step],
                batch["labels"][critic_step],
                jax.random.fold_in(key, critic_step),
            )
            state = state.replace(discriminator=discriminator)
            d_metrics.append(metrics)
        generator, g_metrics = _generator_update(
            config, state, batch["labels"][-1], jax.random.fold_in(key, config.gan.n_critic)
        )
        decay = ema_decay_at(state.step, config.gan.ema_decay)
        generator_ema = jax.tree.map(
            lambda ema, new: decay * ema + (1.0 - decay) * new, state.generator_ema, generator.params
        )
        state = state.replace(step=state.step + 1, generator=generator, generator_ema=generator_ema)
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
