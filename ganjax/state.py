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

from ganjax.models import Discriminator, Generator, SeedDiscriminator, SeedGenerator
from ganjax.names import OPTIMIZERS as CLASSIFIER_OPTIMIZERS


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
) -> tuple[nn.Module, nn.Module]:
    """The generator and discriminator a config describes (model.architecture, model.conditional),
    for images [S, S, C]."""
    height, width, channels = image_shape
    if height != width:
        raise ValueError(f"Images must be square, got {height}x{width}; set config.data.image_size.")
    conditional = config.model.conditional
    if config.model.architecture == "seed_mlp":
        generator = SeedGenerator(
            num_classes=num_classes, image_size=height, channels=channels, width=config.model.generator_width,
            embed_dim=config.model.embed_dim, norm=config.model.generator_norm, conditional=conditional,
        )
        discriminator = SeedDiscriminator(
            num_classes=num_classes, width=config.model.discriminator_width, downsample=config.model.downsample,
            conditional=conditional,
        )
        return generator, discriminator
    generator = Generator(
        num_classes=num_classes,
        image_size=height,
        channels=channels,
        width=config.model.generator_width,
        embed_dim=config.model.embed_dim,
        upsample=config.model.upsample,
        norm=config.model.generator_norm,
        conditional=conditional,
    )
    discriminator = Discriminator(
        num_classes=num_classes,
        width=config.model.discriminator_width,
        downsample=config.model.downsample,
        head=config.model.discriminator_head,
        conditional=conditional,
    )
    return generator, discriminator


def adam(learning_rate: float, config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    return optax.adam(learning_rate, b1=config.optim.b1, b2=config.optim.b2)


def create_model_state(
    module: nn.Module, tx: optax.GradientTransformation, key: jax.Array, *example_inputs, **kwargs
) -> ModelState:
    """`module`'s variables and `tx`'s state, initialised from `key` and example inputs
    (kwargs: static arguments of module.__call__, such as train=False).

    Compiled as one program: run eagerly, Flax's init dispatches (and XLA compiles) every
    initialiser op on its own, ~14 s of start-up for the default GAN on 2 CPU cores.
    """

    def create(key, *inputs):
        variables = module.init(key, *inputs, **kwargs)
        state = ModelState.create(
            apply_fn=module.apply,
            params=variables["params"],
            tx=tx,
            batch_stats=variables.get("batch_stats", {}),
        )
        return state.replace(step=jnp.zeros((), jnp.int32))

    return jax.jit(create)(key, *example_inputs)


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


def scale_learning_rates(state: GANState, config: ml_collections.ConfigDict, scale: float) -> GANState:
    """`state` with G's and D's Adam at `scale` x config.optim.*_lr (ganjax.train's NaN recovery).

    Only the optimizers, static fields, are rebuilt (the next step compiles once more): Adam's state
    (count, moments) has the same arrays at any rate, so checkpoints restore into either, and a rate
    injected as an array (optax.inject_hyperparams) would change every checkpoint's layout instead.
    """
    if scale == 1.0:
        return state
    return state.replace(
        generator=state.generator.replace(tx=adam(config.optim.generator_lr * scale, config)),
        discriminator=state.discriminator.replace(tx=adam(config.optim.discriminator_lr * scale, config)),
    )



def classifier_optimizer(
    kind: str,
    learning_rate: float,
    total_steps: int | None = None,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """Adam, or SGD with Nesterov momentum, for a classifier.

    With `total_steps` the learning rate follows a cosine decay to zero over that many
    steps (Loshchilov & Hutter 2017, SGDR, without restarts); otherwise it is constant.
    Weight decay (decoupled for Adam, i.e. AdamW; added to the gradient for SGD) applies to
    kernels only, not to biases or norm scales.
    """
    if kind not in CLASSIFIER_OPTIMIZERS:
        raise ValueError(f"Classifier optimizer {kind!r} is unknown; choose one of {CLASSIFIER_OPTIMIZERS}.")
    if learning_rate < 0 or (total_steps is not None and total_steps <= 0):
        raise ValueError(
            f"Classifier learning_rate={learning_rate} must be >= 0 and total_steps={total_steps} positive or None."
        )
    schedule = optax.cosine_decay_schedule(learning_rate, total_steps) if total_steps else learning_rate

    def kernels_only(params):
        return jax.tree.map(lambda p: p.ndim > 1, params)

    if kind == "adam":
        if weight_decay:
            return optax.adamw(schedule, weight_decay=weight_decay, mask=kernels_only)
        return optax.adam(schedule)
    sgd = optax.sgd(schedule, momentum=momentum, nesterov=True)
    if weight_decay:
        # Classic SGD weight decay: wd * params added to the gradient before momentum.
        return optax.chain(optax.add_decayed_weights(weight_decay, mask=kernels_only), sgd)
    return sgd


def create_classifier_state(
    module: nn.Module,
    learning_rate: float,
    key: jax.Array,
    image_shape: tuple[int, int, int],
    *,
    optimizer: str = "adam",
    total_steps: int | None = None,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> ModelState:
    """A freshly initialised classifier ModelState for images [H, W, C]; deterministic in `key`.

    `module(images, train)` maps images [B, H, W, C] to logits [B, K] (e.g. SmallCNN, ResNet).
    See `classifier_optimizer` for the optimizer arguments.
    """
    tx = classifier_optimizer(optimizer, learning_rate, total_steps, momentum, weight_decay)
    images = jnp.zeros((2, *image_shape), jnp.float32)
    return create_model_state(module, tx, key, images, train=False)


@struct.dataclass
class GeneratorSource:
    """What a classifier step needs to make synthetic images (and score them) inside jit.

    generator_params / generator_batch_stats: the generator's weights (usually its EMA) and
    running BatchNorm statistics; discriminator_params: for filtering by discriminator score.
    The apply functions are static (part of the compiled program, not its inputs).
    """

    generator_params: Any
    generator_batch_stats: Any
    discriminator_params: Any
    generator_apply: Any = struct.field(pytree_node=False)
    discriminator_apply: Any = struct.field(pytree_node=False)


def generator_source(state: GANState, use_ema: bool = True) -> GeneratorSource:
    """The GeneratorSource of a GANState: its EMA generator (or its raw params) and its discriminator."""
    return GeneratorSource(
        generator_params=state.generator_ema if use_ema else state.generator.params,
        generator_batch_stats=state.generator.batch_stats,
        discriminator_params=state.discriminator.params,
        generator_apply=state.generator.apply_fn,
        discriminator_apply=state.discriminator.apply_fn,
    )
