"""TrainState pytrees for the generator, the discriminator and the classifier, and their constructors."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct
from flax.training import train_state

from ganjax.models import Discriminator, Generator


class ModelState(train_state.TrainState):
    """One network: step, params, optimizer state, and BatchNorm statistics (empty if none)."""

    batch_stats: Any = struct.field(default_factory=dict)


@struct.dataclass
class GANState:
    """Everything a GAN train step reads and writes.

    generator_ema: exponential moving average of the generator's params (same tree).
    classifier: a ModelState slot for recognition work that trains alongside the GAN.
    """

    step: jnp.ndarray
    generator: ModelState
    discriminator: ModelState
    generator_ema: Any
    classifier: ModelState | None = None


def build_models(
    config: ml_collections.ConfigDict, num_classes: int, image_shape: tuple[int, int, int]
) -> tuple[Generator, Discriminator]:
    """The generator and discriminator a config describes, for images [S, S, C]."""
    height, width, channels = image_shape
    if height != width:
        raise ValueError(f"Images must be square, got {height}x{width}; set config.data.image_size.")
    generator = Generator(
        num_classes=num_classes,
        image_size=height,
        channels=channels,
        width=config.model.generator_width,
        embed_dim=config.model.embed_dim,
        upsample=config.model.upsample,
        norm=config.model.generator_norm,
    )
    discriminator = Discriminator(
        num_classes=num_classes,
        width=config.model.discriminator_width,
        downsample=config.model.downsample,
    )
    return generator, discriminator


def adam(learning_rate: float, config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    return optax.adam(learning_rate, b1=config.optim.b1, b2=config.optim.b2)


def create_model_state(
    module: nn.Module, tx: optax.GradientTransformation, key: jax.Array, *example_inputs, **kwargs
) -> ModelState:
    variables = module.init(key, *example_inputs, **kwargs)
    state = ModelState.create(
        apply_fn=module.apply,
        params=variables["params"],
        tx=tx,
        batch_stats=variables.get("batch_stats", {}),
    )
    return state.replace(step=jnp.zeros((), jnp.int32))


def create_gan_state(
    config: ml_collections.ConfigDict,
    num_classes: int,
    image_shape: tuple[int, int, int],
    key: jax.Array,
) -> GANState:
    """A freshly initialised GANState; deterministic in `key`."""
    generator, discriminator = build_models(config, num_classes, image_shape)
    generator_key, discriminator_key = jax.random.split(key)
    noise = jnp.zeros((2, config.model.noise_dim), jnp.float32)
    labels = jnp.zeros((2,), jnp.int32)
    images = jnp.zeros((2, *image_shape), jnp.float32)
    generator_state = create_model_state(
        generator, adam(config.optim.generator_lr, config), generator_key, noise, labels, train=False
    )
    discriminator_state = create_model_state(
        discriminator, adam(config.optim.discriminator_lr, config), discriminator_key, images, labels
    )
    return GANState(
        step=jnp.zeros((), jnp.int32),
        generator=generator_state,
        discriminator=discriminator_state,
        generator_ema=jax.tree.map(jnp.copy, generator_state.params),
    )
