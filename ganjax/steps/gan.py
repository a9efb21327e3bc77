"""The alternating GAN step: n_critic discriminator updates, then one generator update. Pure; no I/O."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from ganjax import losses
from ganjax.augment import diff_augment, parse_diff_augment
from ganjax.state import GANState, ModelState
from ganjax.steps.common import Batch, Metrics, ema_update, generate

DIFF_AUGMENT_STREAM = 0x0D1F  # fold_in constant of DiffAugment's keys in the GAN updates

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

