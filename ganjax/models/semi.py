"""Networks for learning from few labels: the noisy MLP discriminator / classifier and the MLP
generator of Salimans et al. 2016 ("Improved Techniques for Training GANs", Sec. 5 and the
authors' MNIST code), used by the semi-supervised K+1 GAN, AC-GAN and the supervised baselines.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class WeightNormDense(nn.Module):
    """y = g (x . v / ||v||) + b, weight normalisation (Salimans & Kingma 2016, Sec. 2).

    With `data_init`, the batch given to `init` sets g and b so that every unit's
    pre-activation has mean 0 and standard deviation `init_scale` over it (their Sec. 3);
    initialise with real data then, not zeros. Otherwise g = init_scale and b = 0.
    With `train_scale` False, g stays at its initial value (no gradient reaches it), as in
    the hidden layers of Salimans et al.'s MNIST code; v and b still train.
    """

    features: int
    init_scale: float = 1.0
    data_init: bool = False
    train_scale: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        direction = self.param("direction", nn.initializers.normal(0.05), (x.shape[-1], self.features))
        projected = x @ (direction / jnp.linalg.norm(direction, axis=0, keepdims=True))
        def from_data(kind):
            def init(_):
                if not self.data_init:
                    ones = jnp.ones((self.features,), projected.dtype)
                    return self.init_scale * ones if kind == "scale" else 0.0 * ones
                mean, std = jnp.mean(projected, axis=0), jnp.sqrt(jnp.var(projected, axis=0) + 1e-6)
                return self.init_scale / std if kind == "scale" else -mean * self.init_scale / std

            return init

        scale = self.param("scale", from_data("scale"))
        if not self.train_scale:
            scale = jax.lax.stop_gradient(scale)
        bias = self.param("bias", from_data("bias"))
        return scale * projected + bias


def _dense(features: int, weight_norm: bool, data_init: bool = False, train_scale: bool = True) -> nn.Module:
    """A dense layer, weight-normalised (optionally with data-dependent init and a fixed
    scale) when asked."""
    if not weight_norm:
        return nn.Dense(features)
    return WeightNormDense(features, data_init=data_init, train_scale=train_scale)


class NoisyMLPDiscriminator(nn.Module):
    """Images -> (class logits [B, K], real/fake logit [B] or None, features [B, F]).

    Gaussian noise (std input_noise on the pixels, hidden_noise after every hidden layer) is
    added in training only, as in Salimans et al.'s MNIST discriminator; it is the network's
    regulariser. `features` is hidden layer `feature_layer` (Python indexing; -1, the last, is
    the paper's), the one feature matching compares, taken before its noise.
    With weight norm and `train_hidden_scale` False, the hidden layers' scales g stay fixed
    (the authors' code); the output layers' always train.

    With `adversarial_head` False (the K+1 semi-supervised GAN, the supervised baselines) the
    real/fake decision is implicit in the K logits (Salimans et al. eq. 4-5); with True
    (AC-GAN) a separate linear head gives it.
    """

    num_classes: int
    hidden: Sequence[int] = (1000, 500, 250, 250, 250)
    input_noise: float = 0.3
    hidden_noise: float = 0.5
    weight_norm: bool = True
    data_init: bool = False
    train_hidden_scale: bool = True
    feature_layer: int = -1
    adversarial_head: bool = False

    @nn.compact
    def __call__(self, images: jnp.ndarray, train: bool = False):
        dense = functools.partial(_dense, weight_norm=self.weight_norm, data_init=self.data_init)
        x = images.reshape(images.shape[0], -1)
        if train and self.input_noise > 0:
            x = x + self.input_noise * jax.random.normal(self.make_rng("noise"), x.shape)
        feature_layer = self.feature_layer % len(self.hidden)
        for index, width in enumerate(self.hidden):
            x = nn.relu(dense(width, train_scale=self.train_hidden_scale)(x))
            if index == feature_layer:
                features = x
            if train and self.hidden_noise > 0:
                x = x + self.hidden_noise * jax.random.normal(self.make_rng("noise"), x.shape)
        class_logits = dense(self.num_classes)(x)
        adversarial_logit = dense(1)(x)[:, 0] if self.adversarial_head else None
        return class_logits, adversarial_logit, features


class NoisyConvDiscriminator(nn.Module):
    """The convolutional variant, Salimans et al.'s CIFAR-10 discriminator scaled down for
    28x28 / 32x32 grey images: dropout (rate input_dropout) on the pixels, then three stages of
    3x3 convolutions with leaky ReLU (width, 2 width, 2 width channels; stride 2 at the end of
    the first two, dropout 0.5 after them), a 1x1 "network in network" layer, global mean
    pooling -> features, and the linear heads. Same outputs as NoisyMLPDiscriminator.
    """

    num_classes: int
    width: int = 32
    input_dropout: float = 0.2
    dropout: float = 0.5
    weight_norm: bool = True
    adversarial_head: bool = False

    @nn.compact
    def __call__(self, images: jnp.ndarray, train: bool = False):
        def drop(x, rate):
            if not train or rate <= 0:
                return x
            keep = jax.random.bernoulli(self.make_rng("noise"), 1.0 - rate, x.shape)
            return jnp.where(keep, x / (1.0 - rate), 0.0)

        def conv(x, features, stride=1, kernel=3):
            layer = nn.Conv(features, (kernel, kernel), strides=stride, padding="SAME")
            return nn.leaky_relu(nn.WeightNorm(layer)(x) if self.weight_norm else layer(x), 0.2)

        x = drop(images, self.input_dropout)
        x = conv(conv(x, self.width), self.width, stride=2)
        x = drop(x, self.dropout)
        x = conv(conv(x, 2 * self.width), 2 * self.width, stride=2)
        x = drop(x, self.dropout)
        x = conv(conv(x, 2 * self.width), 2 * self.width, kernel=1)
        features = jnp.mean(x, axis=(1, 2))
        class_logits = _dense(self.num_classes, self.weight_norm)(features)
        adversarial_logit = _dense(1, self.weight_norm)(features)[:, 0] if self.adversarial_head else None
        return class_logits, adversarial_logit, features


class MLPGenerator(nn.Module):
    """Noise [B, Z] (and labels [B] when conditional) -> images [B, H, W, C] in [-1, 1].

    Salimans et al.'s MNIST generator: two softplus layers with BatchNorm, then a linear map
    to the pixels; tanh instead of their sigmoid because ganjax images live in [-1, 1].
    A conditional generator (AC-GAN) feeds the one-hot label next to the noise.
    """

    image_shape: tuple[int, int, int]
    num_classes: int = 0  # 0: unconditional
    hidden: int = 500

    @nn.compact
    def __call__(self, noise: jnp.ndarray, labels: jnp.ndarray | None = None, train: bool = False):
        x = noise
        if self.num_classes:
            x = jnp.concatenate([x, jax.nn.one_hot(labels, self.num_classes, dtype=x.dtype)], axis=-1)
        for _ in range(2):
            x = nn.Dense(self.hidden, use_bias=False)(x)
            x = nn.softplus(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        height, width, channels = self.image_shape
        x = nn.tanh(nn.Dense(height * width * channels)(x))
        return x.reshape(x.shape[0], height, width, channels)
