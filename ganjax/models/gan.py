"""Class-conditional DCGAN-style generator and projection discriminator."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ganjax.models.layers import Downsample, Upsample, make_norm, num_upsamplings


class Generator(nn.Module):
    """Maps noise and class labels to images.

    Attributes:
      num_classes: number of conditioning classes.
      image_size: output height = width (16, 28, 32, ...).
      channels: output channels (1 or 3).
      width: channels of the last hidden block; each earlier block doubles it.
      embed_dim: size of the learned class embedding concatenated to the noise.
      upsample: "subpixel" (default, fast on CPU) or "transpose".
      norm: "batch", "group" or "none".
    """

    num_classes: int
    image_size: int
    channels: int
    width: int = 64
    embed_dim: int = 64
    upsample: str = "subpixel"
    norm: str = "batch"

    @nn.compact
    def __call__(self, noise: jnp.ndarray, labels: jnp.ndarray, train: bool = True) -> jnp.ndarray:
        """noise: [B, Z] float32; labels: [B] int32 -> images [B, S, S, channels] in [-1, 1]."""
        num_up, base = num_upsamplings(self.image_size)
        embedding = nn.Embed(self.num_classes, self.embed_dim)(labels)
        h = jnp.concatenate([noise, embedding], axis=-1)
        top_width = self.width * 2 ** (num_up - 1)
        h = nn.Dense(base * base * top_width, use_bias=self.norm == "none")(h)
        h = h.reshape(h.shape[0], base, base, top_width)
        h = nn.relu(make_norm(self.norm, train)(h))
        for level in range(num_up):
            features = self.width * 2 ** (num_up - 1 - level)
            h = Upsample(features, mode=self.upsample, use_bias=self.norm == "none")(h)
            h = nn.relu(make_norm(self.norm, train)(h))
        h = nn.Conv(self.channels, (3, 3), padding="SAME")(h)
        return jnp.tanh(h)


class Discriminator(nn.Module):
    """Projection discriminator (Miyato & Koyama 2018, "cGANs with Projection Discriminator").

    logit(x, y) = psi(phi(x)) + <embed(y), phi(x)>, with phi a convolutional encoder.
    No batch statistics, so the real and fake halves are scored independently.
    """

    num_classes: int
    width: int = 64
    downsample: str = "subpixel"

    @nn.compact
    def __call__(self, images: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
        """images: [B, S, S, C] in [-1, 1]; labels: [B] int32 -> logits [B]."""
        num_down, _ = num_upsamplings(images.shape[1])
        h = images
        for level in range(num_down):
            h = nn.leaky_relu(Downsample(self.width * 2**level, mode=self.downsample)(h), 0.2)
        h = nn.leaky_relu(nn.Conv(self.width * 2**num_down, (3, 3), padding="SAME")(h), 0.2)
        features = jnp.sum(h, axis=(1, 2))
        logits = nn.Dense(1)(features)[:, 0]
        class_embedding = nn.Embed(self.num_classes, features.shape[-1])(labels)
        return logits + jnp.sum(class_embedding * features, axis=-1)
