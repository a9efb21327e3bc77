"""The seed example's GAN (model.architecture="seed_mlp"): an MLP generator and a two-layer
strided-convolution discriminator, the design ganjax grew from (configs/seed_mnist.py).

For MNIST (28x28x1) the generator is noise -> 128 -> 128 -> 784, tanh; the discriminator two
4x4 stride-2 convolutions (28 -> 14 -> 7), flattened, then one linear logit. With
`conditional` (the default, as ganjax's other GANs) the generator also takes a class embedding
and the discriminator adds a projection term (Miyato & Koyama 2018); without it neither has a
label parameter and both ignore their labels.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ganjax.models.layers import Downsample, make_norm

SEED_DOWNSAMPLINGS = 2  # the seed discriminator's two strided convolutions


class SeedGenerator(nn.Module):
    """Maps noise (and class labels, if `conditional`) to images through two hidden dense layers.

    Attributes:
      num_classes: number of conditioning classes (unused if not `conditional`).
      image_size: output height = width.
      channels: output channels (1 or 3).
      width: units of each of the two hidden layers (the seed's 128).
      embed_dim: size of the class embedding concatenated to the noise (if `conditional`).
      norm: "batch", "group" or "none" after each hidden layer (the seed's: "none").
      conditional: False ignores labels and has no embedding.
    """

    num_classes: int
    image_size: int
    channels: int
    width: int = 128
    embed_dim: int = 64
    norm: str = "none"
    conditional: bool = True

    @nn.compact
    def __call__(self, noise: jnp.ndarray, labels: jnp.ndarray, train: bool = True) -> jnp.ndarray:
        """noise: [B, Z] float32; labels: [B] int32 -> images [B, S, S, channels] in [-1, 1]."""
        h = noise
        if self.conditional:
            h = jnp.concatenate([noise, nn.Embed(self.num_classes, self.embed_dim)(labels)], axis=-1)
        for _ in range(2):
            h = nn.relu(make_norm(self.norm, train)(nn.Dense(self.width, use_bias=self.norm == "none")(h)))
        h = nn.Dense(self.image_size * self.image_size * self.channels)(h)
        return jnp.tanh(h).reshape(h.shape[0], self.image_size, self.image_size, self.channels)


class SeedDiscriminator(nn.Module):
    """Two strided convolutions (width, then 2 * width channels; leaky ReLU 0.2), flattened, one logit;
    plus, if `conditional`, the projection <embed(y), features> of ganjax's `Discriminator`.

    Attributes:
      num_classes: number of conditioning classes (unused if not `conditional`).
      width: channels of the first convolution.
      downsample: a `Downsample` mode: "strided" (the seed's 4x4 stride-2 conv) or "subpixel".
      conditional: False ignores labels and has no embedding.
    """

    num_classes: int
    width: int = 32
    downsample: str = "strided"
    conditional: bool = True

    @nn.compact
    def __call__(self, images: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
        """images: [B, S, S, C] in [-1, 1]; labels: [B] int32 -> logits [B]."""
        size = images.shape[1]
        if self.downsample == "subpixel" and size % 2**SEED_DOWNSAMPLINGS:
            raise ValueError(
                f"The seed discriminator's subpixel downsampling needs an image size divisible by "
                f"{2**SEED_DOWNSAMPLINGS}, got {size}; set model.downsample='strided' or data.image_size."
            )
        h = images
        for level in range(SEED_DOWNSAMPLINGS):
            h = nn.leaky_relu(Downsample(self.width * 2**level, mode=self.downsample)(h), 0.2)
        features = h.reshape(h.shape[0], -1)
        logits = nn.Dense(1)(features)[:, 0]
        if not self.conditional:
            return logits
        class_embedding = nn.Embed(self.num_classes, features.shape[-1])(labels)
        return logits + jnp.sum(class_embedding * features, axis=-1)
