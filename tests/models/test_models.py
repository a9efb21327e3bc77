import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax.models import Discriminator, Generator, Upsample, depth_to_space, space_to_depth
from ganjax.models.layers import num_upsamplings


def test_depth_to_space_inverts_space_to_depth():
    x = jax.random.normal(jax.random.key(0), (2, 6, 4, 3))
    np.testing.assert_array_equal(depth_to_space(space_to_depth(x)), x)
    assert space_to_depth(x).shape == (2, 3, 2, 12)


def test_depth_to_space_places_channels_as_pixels():
    x = jnp.arange(4.0).reshape(1, 1, 1, 4)
    np.testing.assert_array_equal(depth_to_space(x)[0, :, :, 0], [[0, 1], [2, 3]])


@pytest.mark.parametrize("size,expected", [(16, (2, 4)), (28, (2, 7)), (32, (3, 4)), (64, (4, 4))])
def test_num_upsamplings(size, expected):
    assert num_upsamplings(size) == expected


def test_bad_image_size_raises():
    with pytest.raises(ValueError, match="image_size 7"):
        num_upsamplings(7)


# Every option at 16x16 and the main job's 28x28 with the default option by default; the other pairs slow.
@pytest.mark.parametrize("size,channels,upsample,head", [
    pytest.param(size, channels, upsample, head,
                 marks=() if size == 16 or (size, upsample, head) == (28, "subpixel", "conv3x3") else pytest.mark.slow)
    for upsample, head in [("subpixel", "conv3x3"), ("transpose", "conv3x3"), ("subpixel2x2", "conv3x3"),
                           ("subpixel", "none")]
    for size, channels in [(16, 1), (28, 1), (32, 3)]
])
def test_generator_and_discriminator_shapes(size, channels, upsample, head):
    generator = Generator(num_classes=10, image_size=size, channels=channels, width=8, embed_dim=4, upsample=upsample)
    discriminator = Discriminator(num_classes=10, width=8, head=head)
    noise, labels = jnp.ones((3, 16)), jnp.array([0, 4, 9])
    variables = generator.init(jax.random.key(0), noise, labels, train=False)
    images = generator.apply(variables, noise, labels, train=False)
    assert images.shape == (3, size, size, channels)
    assert float(jnp.max(jnp.abs(images))) <= 1.0
    d_variables = discriminator.init(jax.random.key(1), images, labels)
    assert discriminator.apply(d_variables, images, labels).shape == (3,)


def test_generator_depends_on_label():
    generator = Generator(num_classes=4, image_size=16, channels=1, width=8, norm="group")
    noise = jnp.ones((2, 8))
    variables = generator.init(jax.random.key(0), noise, jnp.array([0, 1]), train=False)
    images = generator.apply(variables, noise, jnp.array([0, 1]), train=False)
    assert float(jnp.max(jnp.abs(images[0] - images[1]))) > 1e-4


def test_projection_discriminator_uses_label():
    discriminator = Discriminator(num_classes=3, width=8)
    images = jnp.ones((2, 16, 16, 1))
    variables = discriminator.init(jax.random.key(0), images, jnp.array([0, 1]))
    logits = discriminator.apply(variables, images, jnp.array([0, 1]))
    assert float(jnp.abs(logits[0] - logits[1])) > 1e-6


def test_unknown_upsample_mode():
    with pytest.raises(ValueError, match="subpixel"):
        Upsample(4, mode="nearest").init(jax.random.key(0), jnp.ones((1, 2, 2, 1)))


def conv_transpose_k4s2p1(x: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """PyTorch's ConvTranspose2d(k=4, s=2, p=1) as a scatter loop, NHWC with w [4, 4, C, F]:
    input pixel (i, j) adds x[i, j] @ w[ky, kx] to output (2i - 1 + ky, 2j - 1 + kx)."""
    batch, height, width, _ = x.shape
    full = np.zeros((batch, 2 * height + 2, 2 * width + 2, w.shape[-1]))  # output index + 1 (the padding)
    for i in range(height):
        for j in range(width):
            full[:, 2 * i:2 * i + 4, 2 * j:2 * j + 4] += np.einsum("bc,klcf->bklf", x[:, i, j], w)
    return full[:, 1:-1, 1:-1] + bias


def subpixel2x2_kernel(w: np.ndarray) -> np.ndarray:
    """A transposed conv's w [4, 4, C, F] as Upsample "subpixel2x2"'s kernel [2, 2, C, 4F]: tap t of
    sub-position a is tap k = 2 - 2t + a; output channels ordered (ay, ax, f) as depth_to_space reads them."""
    taps = np.array([[2 - 2 * t + a for a in (0, 1)] for t in (0, 1)])  # [t, a] -> k
    kernel = w[taps[:, :, None, None], taps[None, None, :, :]]  # [ty, ay, tx, ax, C, F]
    _, _, channels, features = w.shape
    return kernel.transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, channels, 4 * features)


@pytest.mark.parametrize("shape,features", [((2, 7, 7, 3), 5), ((1, 4, 4, 2), 2), ((2, 3, 5, 4), 1)])
def test_subpixel2x2_upsample_is_conv_transpose_k4_s2_p1(shape, features):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    w = rng.normal(size=(4, 4, shape[-1], features)).astype(np.float32)
    bias = rng.normal(size=features).astype(np.float32)
    layer = Upsample(features, mode="subpixel2x2")
    params = layer.init(jax.random.key(0), x)["params"]
    assert jax.tree.map(jnp.shape, params) == {"Conv_0": {"kernel": (2, 2, shape[-1], 4 * features)},
                                               "bias": (features,)}  # as many parameters as w and bias
    params = {"Conv_0": {"kernel": subpixel2x2_kernel(w)}, "bias": bias}
    out = np.asarray(layer.apply({"params": params}, x))
    assert out.shape == (shape[0], 2 * shape[1], 2 * shape[2], features)
    np.testing.assert_allclose(out, conv_transpose_k4s2p1(x, w, bias), atol=1e-5)


def test_unknown_discriminator_head():
    with pytest.raises(ValueError, match="'conv1x1'.*conv3x3"):
        Discriminator(num_classes=3, width=8, head="conv1x1").init(
            jax.random.key(0), jnp.ones((1, 16, 16, 1)), jnp.array([0]))


def test_discriminator_head_none_drops_the_last_conv():
    images, labels = jnp.ones((2, 28, 28, 1)), jnp.array([0, 1])
    params = Discriminator(num_classes=3, width=8, head="none").init(jax.random.key(0), images, labels)["params"]
    assert set(params) == {"Downsample_0", "Downsample_1", "Dense_0", "Embed_0"}
    assert params["Embed_0"]["embedding"].shape == (3, 16)  # width * 2**(num_down - 1)
