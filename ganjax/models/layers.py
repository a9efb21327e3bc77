"""Layers shared by the generator, discriminator and classifier.

XLA:CPU runs transposed (lhs-dilated) convolutions, and the input-gradients of strided
convolutions, on a slow path. Up- and down-sampling here therefore default to sub-pixel
rearrangements (Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using
an Efficient Sub-Pixel Convolutional Neural Network") around stride-1 convolutions.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from ganjax.names import UPSAMPLE_MODES


def depth_to_space(x: jnp.ndarray, block: int = 2) -> jnp.ndarray:
    """[B, H, W, C*block^2] -> [B, H*block, W*block, C]."""
    batch, height, width, channels = x.shape
    out_channels = channels // (block * block)
    x = x.reshape(batch, height, width, block, block, out_channels)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, height * block, width * block, out_channels)


def space_to_depth(x: jnp.ndarray, block: int = 2) -> jnp.ndarray:
    """[B, H, W, C] -> [B, H/block, W/block, C*block^2]; inverse of `depth_to_space`."""
    batch, height, width, channels = x.shape
    x = x.reshape(batch, height // block, block, width // block, block, channels)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, height // block, width // block, block * block * channels)




class Upsample(nn.Module):
    """Doubles height and width and maps to `features` channels.

    mode "subpixel": 3x3 conv to 4*features channels, then depth_to_space (default). Each
      output pixel sees a 3x3 input window: 9/4 the taps, and FLOPs, of "subpixel2x2".
    mode "subpixel2x2": exactly the classic DCGAN layer, a 4x4 stride-2 padding-1 transposed
      conv (PyTorch ConvTranspose2d(k=4, s=2, p=1)), written as a sub-pixel conv so that
      XLA:CPU runs no lhs-dilated conv: pad 1 pixel on each side, 2x2 VALID conv to
      4*features channels, depth_to_space, crop 1 pixel from each border. Same parameters
      (the bias is tied over the 4 sub-positions, as the transposed conv's is) and the same
      FLOPs up to (H+1)^2/H^2.
    mode "transpose": flax's 4x4 stride-2 ConvTranspose ("SAME" padding), the classic layer
      as an lhs-dilated conv, on XLA:CPU's slow path.

    "subpixel2x2" weights from a transposed conv's w [4, 4, C, F] (out[y] = sum_{i,k} in[i] w[k]
    over y = 2i - 1 + k, per axis): window q of the padded input covers input pixels q-1
    (tap t=0) and q (t=1) and yields, after the crop, outputs 2q-1 (sub-position a=0) and 2q
    (a=1), so tap t of sub-position a is the transposed conv's tap k = 2 - 2t + a:
    kernel[ty, tx, c, (ay, ax, f)] = w[2 - 2ty + ay, 2 - 2tx + ax, c, f], with the output
    channel ordered (ay, ax, f) as `depth_to_space` reads it.
    """

    features: int
    mode: str = "subpixel"
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if self.mode == "subpixel":
            x = nn.Conv(4 * self.features, (3, 3), padding="SAME", use_bias=self.use_bias)(x)
            return depth_to_space(x, 2)
        if self.mode == "subpixel2x2":
            # Pad 1 pixel, then a VALID conv, as one pixel of jnp.pad at the top and left and one of the
            # conv's own at the bottom and right (flax's 2x2 "SAME"). The same function, but on XLA:CPU
            # the conv's own padding ((1, 1), (1, 1)) makes the kernel gradient ~15x slower, and jnp.pad
            # on all sides with "VALID" makes the layer's backward 1.3-1.5x slower (batch 64, 7x7 and 14x14).
            x = jnp.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0)))
            x = nn.Conv(4 * self.features, (2, 2), padding=((0, 1), (0, 1)), use_bias=False)(x)
            x = depth_to_space(x, 2)[:, 1:-1, 1:-1, :]
            if self.use_bias:
                x = x + self.param("bias", nn.initializers.zeros_init(), (self.features,))
            return x
        if self.mode == "transpose":
            return nn.ConvTranspose(
                self.features, (4, 4), strides=(2, 2), padding="SAME", use_bias=self.use_bias
            )(x)
        raise ValueError(f"Upsample mode {self.mode!r} is unknown; use one of {UPSAMPLE_MODES}.")


class Downsample(nn.Module):
    """Halves height and width and maps to `features` channels.

    mode "subpixel": space_to_depth then a 2x2 stride-1 conv (default); the same receptive
    field and FLOPs as the classic DCGAN 4x4 stride-2 conv, up to a one-pixel shift.
    mode "strided": a 4x4 stride-2 conv, the classic DCGAN layer.
    """

    features: int
    mode: str = "subpixel"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if self.mode == "subpixel":
            return nn.Conv(self.features, (2, 2), padding="SAME")(space_to_depth(x, 2))
        if self.mode == "strided":
            return nn.Conv(self.features, (4, 4), strides=(2, 2), padding="SAME")(x)
        raise ValueError(f"Downsample mode {self.mode!r} is unknown; use 'subpixel' or 'strided'.")


def make_norm(kind: str, train: bool) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """Normalisation used by the generator and classifier.

    "batch": BatchNorm. Under `jax.jit` on a sharded global batch its statistics are
    computed over the whole global batch, so N devices give the same result as one.
    "group": GroupNorm (32 groups or fewer), which needs no batch statistics at all.
    "none": identity.
    """
    if kind == "batch":
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
    if kind == "group":
        return lambda x: nn.GroupNorm(num_groups=None, group_size=max(1, x.shape[-1] // 32))(x)
    if kind == "none":
        return lambda x: x
    raise ValueError(f"norm {kind!r} is unknown; use 'batch', 'group' or 'none'.")


def num_upsamplings(image_size: int) -> tuple[int, int]:
    """(number of 2x up-samplings, base resolution) for a square image size.

    Halves while the size is even and above 4: 16 -> (2, 4), 28 -> (2, 7), 32 -> (3, 4).
    """
    if image_size < 4:
        raise ValueError(f"image_size {image_size} is too small; use 16, 28, 32 or larger.")
    base, count = image_size, 0
    while base % 2 == 0 and base > 4:
        base //= 2
        count += 1
    if count == 0:
        raise ValueError(
            f"image_size {image_size} cannot be reached by doubling a base resolution; "
            "use a size such as 16, 28, 32 or 64."
        )
    return count, base
