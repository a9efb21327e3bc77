"""DCGAN-style generator and projection discriminator, class-conditional unless `conditional` is False."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ganjax.names import DISCRIMINATOR_HEADS
from ganjax.models.layers import Downsample, Upsample, make_norm, num_upsamplings



class Generator(nn.Module):
    """Maps noise and class labels to images.

    Attributes:
      num_classes: number of conditioning classes.
      image_size: output height = width (16, 28, 32, ...).
      channels: output channels (1 or 3).
      width: channels of the last hidden block; each earlier block doubles it.
      embed_dim: size of the learned class embedding concatenated to the noise.
      upsample: an `Upsample` mode: "subpixel" (default), "subpixel2x2" (the classic 4x4
        stride-2 transposed conv as a sub-pixel conv: about 4/9 of "subpixel"'s FLOPs) or "transpose".
      norm: "batch", "group" or "none".
      conditional: False ignores labels and has no embedding (an unconditional generator).
    """

    num_classes: int
    image_size: int
    channels: int
    width: int = 64
    embed_dim: int = 64
    upsample: str = "subpixel"
    norm: str = "batch"
    conditional: bool = True

    @nn.compact
    def __call__(self, noise: jnp.ndarray, labels: jnp.ndarray, train: bool = True) -> jnp.ndarray:
        """noise: [B, Z] float32; labels: [B] int32 -> images [B, S, S, channels] in [-1, 1]."""
        num_up, base = num_upsamplings(self.image_size)
        h = noise
        if self.conditional:
            h = jnp.concatenate([noise, nn.Embed(self.num_classes, self.embed_dim)(labels)], axis=-1)
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

    logit(x, y) = psi(phi(x)) + <embed(y), phi(x)>, with phi a convolutional encoder whose
    output is sum-pooled over positions.
    No batch statistics, so the real and fake halves are scored independently.

    Attributes:
      num_classes: number of conditioning classes.
      width: channels of the first downsample; each later one doubles them.
      downsample: a `Downsample` mode, "subpixel" (default) or "strided".
      head: what phi runs after the last downsample. "conv3x3" (default): a 3x3 conv to
        width * 2**num_down channels (twice the last downsample's), then leaky ReLU; at the
        lowest resolution but the widest, it costs about 2/3 of the discriminator's FLOPs.
        "none": nothing, so phi has width * 2**(num_down - 1) channels, the classic DCGAN
        discriminator's depth.
      conditional: False drops the projection term (and its embedding): logit(x) = psi(phi(x)).
    """

    num_classes: int
    width: int = 64
    downsample: str = "subpixel"
    head: str = "conv3x3"
    conditional: bool = True

    @nn.compact
    def __call__(self, images: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
        """images: [B, S, S, C] in [-1, 1]; labels: [B] int32 -> logits [B]."""
        if self.head not in DISCRIMINATOR_HEADS:
            raise ValueError(f"Discriminator head {self.head!r} is unknown; use one of {DISCRIMINATOR_HEADS}.")
        num_down, _ = num_upsamplings(images.shape[1])
        h = images
        for level in range(num_down):
            h = nn.leaky_relu(Downsample(self.width * 2**level, mode=self.downsample)(h), 0.2)
        if self.head == "conv3x3":
            h = nn.leaky_relu(nn.Conv(self.width * 2**num_down, (3, 3), padding="SAME")(h), 0.2)
        features = jnp.sum(h, axis=(1, 2))
        logits = nn.Dense(1)(features)[:, 0]
        if not self.conditional:
            return logits
        class_embedding = nn.Embed(self.num_classes, features.shape[-1])(labels)
        return logits + jnp.sum(class_embedding * features, axis=-1)
