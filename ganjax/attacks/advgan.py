"""AdvGAN (Xiao et al. 2018, "Generating Adversarial Examples with Adversarial Networks", IJCAI): a
perturbation generator trained against a fixed classifier, then an attack in one forward pass.

    advgan = attacks.train_advgan(apply_fn, params, train_images, train_labels, key, eps=0.1, steps=1000)
    adversarial = attacks.advgan_attack(advgan, images)

x' = clip(x + eps * tanh(G(x))) (the model's [-1, 1] range; eps on the [0, 1] pixel scale as every ganjax
attack, so the L-inf ball holds by construction, as the authors' code clamps the perturbation). G is
trained with Adam on batches of (x, y) to minimise (eq. 4, the weights of the authors' code)

    L_G = L_GAN + ADV_WEIGHT * L_adv,
    L_adv = mean max(Z(x')_y - max_{i != y} Z(x')_i, -kappa)        (C&W's f, untargeted, kappa = 0)
    L_GAN = mean (D(x') - 1)^2                                        (least squares, as their code)

while a discriminator D learns to tell x from x' (least squares: mean (D(x) - 1)^2 + mean D(x')^2).
The paper's hinge on the perturbation's L2 norm only keeps it small; the L-inf bound does that here,
so it is left out. The classifier runs in inference mode and is not trained (the static setting).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ganjax.attacks.gradient import check_attack_call, check_count, clip_to_model_range, to_model_scale

ADV_WEIGHT = 10.0
KAPPA = 0.0
STEPS = 1000
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
WIDTH = 16  # 32 ran 3.9x slower per step on 2 CPU cores (285 vs 73 ms at batch 64, 28x28)


class PerturbationGenerator(nn.Module):
    """x [B, H, W, C] -> a perturbation direction in (-1, 1) of x's shape (conv, down, up, conv)."""

    width: int = WIDTH

    @nn.compact
    def __call__(self, images):
        channels = images.shape[-1]
        hidden = nn.relu(nn.Conv(self.width, (3, 3))(images))
        hidden = nn.relu(nn.Conv(2 * self.width, (4, 4), strides=(2, 2))(hidden))
        hidden = nn.relu(nn.ConvTranspose(self.width, (4, 4), strides=(2, 2))(hidden))
        hidden = hidden[:, : images.shape[1], : images.shape[2]]
        return jnp.tanh(nn.Conv(channels, (3, 3))(hidden))


class PatchDiscriminator(nn.Module):
    """x [B, H, W, C] -> a realness score [B]."""

    width: int = WIDTH

    @nn.compact
    def __call__(self, images):
        hidden = nn.leaky_relu(nn.Conv(self.width, (4, 4), strides=(2, 2))(images), 0.2)
        hidden = nn.leaky_relu(nn.Conv(2 * self.width, (4, 4), strides=(2, 2))(hidden), 0.2)
        return nn.Dense(1)(hidden.reshape(hidden.shape[0], -1))[:, 0]


class AdvGAN(NamedTuple):
    """A trained AdvGAN: the generator's params, its eps on the [0, 1] scale, its width, and the
    mean training losses of its last 100 steps (L_adv, L_GAN, D's)."""

    params: Any
    eps: float
    width: int
    final_losses: dict


def perturbed(generator_params, images, eps_model, width: int = WIDTH):
    """clip(x + eps * tanh(G(x))) with eps in the model's units."""
    direction = PerturbationGenerator(width).apply(generator_params, images)
    return clip_to_model_range(images + eps_model * direction)


def margin_loss(logits: jax.Array, labels: jax.Array, kappa: float = KAPPA) -> jax.Array:
    """C&W's untargeted f [B]: max(Z_y - max_{i != y} Z_i, -kappa); it falls as the attack succeeds."""
    true = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    others = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return jnp.maximum(true - jnp.max(others, axis=1), -kappa)


@functools.partial(jax.jit, static_argnames=("apply_fn", "width", "optimizer"))
def _advgan_step(state, classifier_params, images, labels, eps_model, *, apply_fn, width, optimizer):
    generator_params, discriminator_params, generator_opt, discriminator_opt = state
    discriminator = PatchDiscriminator(width)

    def generator_loss(params):
        adversarial = perturbed(params, images, eps_model, width)
        adv = jnp.mean(margin_loss(apply_fn(classifier_params, adversarial), labels))
        gan = jnp.mean((discriminator.apply(discriminator_params, adversarial) - 1.0) ** 2)
        return gan + ADV_WEIGHT * adv, (adversarial, adv, gan)

    (_, (adversarial, adv, gan)), grads = jax.value_and_grad(generator_loss, has_aux=True)(generator_params)
    updates, generator_opt = optimizer.update(grads, generator_opt, generator_params)
    generator_params = optax.apply_updates(generator_params, updates)

    def discriminator_loss(params):
        real = discriminator.apply(params, images)
        fake = discriminator.apply(params, jax.lax.stop_gradient(adversarial))
        return jnp.mean((real - 1.0) ** 2) + jnp.mean(fake**2)

    d_loss, grads = jax.value_and_grad(discriminator_loss)(discriminator_params)
    updates, discriminator_opt = optimizer.update(grads, discriminator_opt, discriminator_params)
    discriminator_params = optax.apply_updates(discriminator_params, updates)
    return (generator_params, discriminator_params, generator_opt, discriminator_opt), {"adv": adv, "gan": gan,
                                                                                       "discriminator": d_loss}


def train_advgan(apply_fn, params: Any, images, labels, key: jax.Array, *, eps: float, steps: int = STEPS,
                 batch_size: int = BATCH_SIZE, learning_rate: float = LEARNING_RATE, width: int = WIDTH) -> AdvGAN:
    """Trains an AdvGAN against the fixed classifier apply_fn(params, x) on images [N, H, W, C] in
    [-1, 1] with labels [N] (batches drawn with replacement by `key`), L-inf budget eps on the
    [0, 1] pixel scale. Raises ValueError for a bad budget, images or labels (as every attack)."""
    eps, _ = check_attack_call(apply_fn, params, images[:1], labels[:1], eps, "linf")
    steps, batch_size = check_count("steps", steps), check_count("batch_size", batch_size)
    images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int32)
    init_key, draw_key = jax.random.split(key)
    generator_key, discriminator_key = jax.random.split(init_key)
    probe = jnp.zeros((1, *images.shape[1:]), jnp.float32)
    generator_params = PerturbationGenerator(width).init(generator_key, probe)
    discriminator_params = PatchDiscriminator(width).init(discriminator_key, probe)
    optimizer = optax.adam(learning_rate, b1=0.5)
    state = (generator_params, discriminator_params, optimizer.init(generator_params),
             optimizer.init(discriminator_params))
    rows = np.asarray(jax.random.randint(draw_key, (steps, batch_size), 0, len(images)))
    eps_model = jnp.float32(to_model_scale(eps))
    history = []
    for step in range(steps):
        state, losses = _advgan_step(state, params, images[rows[step]], labels[rows[step]], eps_model,
                                     apply_fn=apply_fn, width=width, optimizer=optimizer)
        if step >= steps - 100:
            history.append(losses)
    final = {name: float(np.mean([float(entry[name]) for entry in history])) for name in history[0]}
    return AdvGAN(state[0], eps, width, final)


@functools.partial(jax.jit, static_argnames=("width",))
def _advgan_apply(generator_params, images, eps_model, width):
    return perturbed(generator_params, images, eps_model, width)


def advgan_attack(advgan: AdvGAN, images, batch_size: int = 500) -> np.ndarray:
    """AdvGAN's adversarial images [N, H, W, C] of images [N, H, W, C] in [-1, 1] (one forward each)."""
    images = np.asarray(images, np.float32)
    eps_model = jnp.float32(to_model_scale(advgan.eps))
    return np.concatenate([np.asarray(_advgan_apply(advgan.params, images[i:i + batch_size], eps_model, advgan.width))
                           for i in range(0, len(images), batch_size)]) if len(images) else images
