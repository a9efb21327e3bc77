"""An encoder that inverts the generator, to warm-start generator inversion.

E is a small CNN (ganjax.classify's SmallCNN with Z outputs) trained by regression on the
generator's own samples, E(d(G(z, y))) ~ z, with z ~ N(0, I), y uniform over the classes, G the
EMA generator in inference mode and d the damages the encoder must see through
(`ganjax.repair.damage.damage_mixture`: each image clean with probability clean_fraction, else one
damage). The inversion then starts one restart of every candidate at E(x) instead of a random z
(`inpaint(..., initial_latents=encode(encoder, damaged))`), so that fewer Adam steps reach a good
fit: the "if it pays in quality per second" option of Yeh et al.-style inversion (an encoder warm
start as in Zhu et al. 2016, "Generative Visual Manipulation on the Natural Image Manifold").
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ganjax.repair.damage import damage_mixture
from ganjax.sample import TrainedGenerator
from ganjax.state import GeneratorSource, ModelState, create_classifier_state, generator_source

DEFAULT_STEPS = 2000
DEFAULT_BATCH_SIZE = 64
DEFAULT_WIDTH = 32
DEFAULT_LEARNING_RATE = 1e-3


@functools.partial(jax.jit, static_argnames=("batch_size", "num_classes", "noise_dim", "damages", "clean_fraction"),
                   donate_argnums=(0,))
def _encoder_step(state: ModelState, source: GeneratorSource, key: jax.Array, *, batch_size: int, num_classes: int,
                  noise_dim: int, damages: tuple[str, ...], clean_fraction: float):
    """One regression step of the encoder on a fresh batch of (damaged) generated images: (state, loss)."""
    noise_key, label_key, damage_key = jax.random.split(key, 3)
    latents = jax.random.normal(noise_key, (batch_size, noise_dim), jnp.float32)
    labels = jax.random.randint(label_key, (batch_size,), 0, num_classes)
    variables = {"params": source.generator_params, "batch_stats": source.generator_batch_stats}
    images = source.generator_apply(variables, latents, labels, train=False)
    if damages:
        images = damage_mixture(damage_key, images, damages, clean_fraction)

    def loss_fn(params):
        predicted, mutated = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, images, train=True,
                                            mutable=["batch_stats"])
        return jnp.mean(jnp.square(predicted - latents)), mutated

    (loss, mutated), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads, batch_stats=mutated["batch_stats"]), loss


def train_encoder(generator: TrainedGenerator, key: jax.Array, *, damages: tuple[str, ...] = (),
                  clean_fraction: float = 0.5, steps: int = DEFAULT_STEPS, batch_size: int = DEFAULT_BATCH_SIZE,
                  width: int = DEFAULT_WIDTH, learning_rate: float = DEFAULT_LEARNING_RATE,
                  progress: bool = False) -> tuple[ModelState, np.ndarray]:
    """(the trained encoder's ModelState, its loss [steps]): E trained to map `generator`'s images,
    damaged by `damages` (e.g. ("centre:0.5",)) with probability 1 - clean_fraction, back to their z."""
    from ganjax.classify import build_classifier
    from ganjax.repair.inversion import generator_image_shape

    if int(steps) != steps or steps < 1 or batch_size < 1:
        raise ValueError(f"The encoder needs positive steps and batch_size, got {steps} and {batch_size}.")
    if not 0.0 <= clean_fraction < 1.0:
        raise ValueError(f"clean_fraction must be in [0, 1), got {clean_fraction}.")
    noise_dim = generator.config.model.noise_dim
    module = build_classifier("cnn", noise_dim, width, norm="batch", dropout=0.0)
    init_key, train_key = jax.random.split(key)
    state = create_classifier_state(module, learning_rate, init_key, generator_image_shape(generator),
                                    optimizer="adam", total_steps=int(steps))
    source = generator_source(generator.state, generator.use_ema)
    losses = []
    for step in tqdm(range(int(steps)), desc="encoder", unit="step", disable=not progress, leave=False):
        state, loss = _encoder_step(state, source, jax.random.fold_in(train_key, step), batch_size=int(batch_size),
                                    num_classes=generator.num_classes, noise_dim=noise_dim, damages=tuple(damages),
                                    clean_fraction=float(clean_fraction))
        losses.append(loss)
    return state, np.asarray(jax.device_get(jnp.stack(losses)))


@jax.jit
def _encode_batch(state: ModelState, images: jax.Array) -> jax.Array:
    return state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, images, train=False)


def encode(state: ModelState, images, batch_size: int = 256) -> np.ndarray:
    """Latents [N, Z] the encoder gives images [N, H, W, C] in [-1, 1] (fixed-size chunks, the last padded)."""
    images = np.asarray(images, np.float32)
    count = len(images)
    chunk = min(batch_size, count)
    outputs = []
    for start in range(0, count, chunk):
        rows = np.minimum(np.arange(start, start + chunk), count - 1)
        outputs.append(np.asarray(_encode_batch(state, images[rows]))[: min(chunk, count - start)])
    return np.concatenate(outputs)
