import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax import steps
from ganjax.state import create_gan_state
from ganjax.xla_cpu import canonicalize_convs

CANONICAL = re.compile(r"dim_labels=b(0\d*)f_(0\d*)io->b(0\d*)f")

# (input shape, kernel shape, dimension numbers, conv keyword arguments)
CONVS = [
    ((4, 9, 9, 3), (3, 3, 3, 5), ("NHWC", "HWIO", "NHWC"), dict(window_strides=(1, 1), padding="SAME")),
    ((4, 9, 9, 3), (4, 4, 3, 5), ("NHWC", "HWIO", "NHWC"), dict(window_strides=(2, 2), padding="SAME")),
    ((4, 3, 9, 9), (5, 3, 3, 3), ("NCHW", "OIHW", "NCHW"), dict(window_strides=(1, 2), padding="VALID")),
    ((4, 9, 9, 4), (3, 3, 2, 6), ("NHWC", "HWIO", "NHWC"),
     dict(window_strides=(1, 1), padding="SAME", rhs_dilation=(2, 2), feature_group_count=2)),
    ((4, 12, 3), (3, 3, 5), ("NWC", "WIO", "NWC"), dict(window_strides=(1,), padding=((1, 2),), lhs_dilation=(2,))),
]


def _conv_loss(dimension_numbers, kwargs):
    def loss(x, w):
        y = jax.lax.conv_general_dilated(x, w, dimension_numbers=dimension_numbers, **kwargs)
        return jnp.sum(jnp.tanh(y) ** 2)

    return loss


def _scan(step, length):
    return jax.jit(lambda carry, xs: jax.lax.scan(step, carry, xs, length=length))


def _labels(hlo_text):
    return re.findall(r"dim_labels=[^,\s]+", hlo_text)


@pytest.mark.parametrize("x_shape,w_shape,dimension_numbers,kwargs", CONVS)
def test_canonical_convs_give_the_same_values_and_gradients(x_shape, w_shape, dimension_numbers, kwargs):
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=x_shape).astype(np.float32), rng.normal(size=w_shape).astype(np.float32)
    fn = jax.value_and_grad(_conv_loss(dimension_numbers, kwargs), argnums=(0, 1))
    chex.assert_trees_all_close(jax.jit(canonicalize_convs(fn))(x, w), jax.jit(fn)(x, w), rtol=1e-5, atol=1e-5)


def test_per_seed_weight_gradients_vmapped_stay_equal():
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(3, 4, 8, 8, 2)).astype(np.float32), rng.normal(size=(3, 3, 3, 2, 4)).astype(np.float32)
    fn = jax.vmap(jax.grad(_conv_loss(("NHWC", "HWIO", "NHWC"), dict(window_strides=(1, 1), padding="SAME")), 1))
    chex.assert_trees_all_close(jax.jit(canonicalize_convs(fn))(x, w), jax.jit(fn)(x, w), rtol=1e-5, atol=1e-5)


def test_scanned_gradient_convolutions_are_canonical():
    """The regression: inside lax.scan XLA:CPU leaves the gradient convolutions non-canonical."""
    loss = _conv_loss(("NHWC", "HWIO", "NHWC"), dict(window_strides=(1, 1), padding="SAME"))

    def step(w, x):
        dx, dw = jax.grad(loss, argnums=(0, 1))(x, w)
        return w - 1e-3 * dw + 1e-3 * jnp.mean(dx), None

    w, xs = jnp.ones((3, 3, 4, 8)), jnp.ones((2, 4, 8, 8, 4))
    text = _scan(canonicalize_convs(step), 2).lower(w, xs).compile().as_text()
    labels = _labels(text)
    assert labels and all(CANONICAL.fullmatch(label) for label in labels), labels


def test_scanned_canonical_gan_step_equals_per_step_calls(tiny_config):
    size = tiny_config.data.image_size
    state = create_gan_state(tiny_config, 10, (size, size, 1), jax.random.key(0))
    train_step = steps.make_gan_train_step(tiny_config)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (3, 1, tiny_config.train.batch_size, size, size, 1)).astype(np.float32)
    labels = rng.integers(0, 10, (3, 1, tiny_config.train.batch_size)).astype(np.int32)
    key = jax.random.key(1)

    def body(state, inputs):
        index, step_images, step_labels = inputs
        return train_step(state, {"images": step_images, "labels": step_labels}, jax.random.fold_in(key, index))

    scanned_state, scanned_metrics = _scan(canonicalize_convs(body), 3)(state, (jnp.arange(3), images, labels))
    per_step = jax.jit(body)
    expected_metrics = []
    for index in range(3):
        state, metrics = per_step(state, (index, images[index], labels[index]))
        expected_metrics.append(metrics)
    chex.assert_trees_all_close(scanned_state, state, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(scanned_metrics, jax.tree.map(lambda *v: jnp.stack(v), *expected_metrics),
                                rtol=1e-5, atol=1e-6)
