"""benchmarks/cpu_levers.py's rewritten weight gradients and the convolution its whole-step section swaps in."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import cpu_levers


def test_every_weight_gradient_variant_matches_xlas():
    x, kernel, g = cpu_levers.conv_inputs(2, 6, 3, 5, seed=1)
    differences = cpu_levers.check_weight_grads(x, kernel, g)
    assert set(differences) >= {"patches", "im2col", "shifted"}
    assert max(differences.values()) < 1e-4


def test_custom_vjp_conv_gives_xlas_gradients_through_a_loss():
    x, kernel, _ = cpu_levers.conv_inputs(3, 14, 4, 6, seed=2)

    def loss(conv, inputs, weights):
        return jnp.sum(jnp.tanh(conv(inputs, weights)) ** 2)

    ours = jax.grad(lambda a, b: loss(cpu_levers.conv_shifted_grad, a, b), argnums=(0, 1))(x, kernel)
    xla = jax.grad(lambda a, b: loss(cpu_levers.conv, a, b), argnums=(0, 1))(x, kernel)
    for mine, reference in zip(ours, xla):
        np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-5)


def test_swapped_conv_routes_only_large_3x3_same_convolutions_to_shifted_dots():
    swapped = cpu_levers.shifted_conv_general_dilated(min_size=14)
    numbers = lax.conv_dimension_numbers((1, 14, 14, 4), (3, 3, 4, 6), ("NHWC", "HWIO", "NHWC"))

    def routed(shape, kernel_shape, padding="SAME", strides=(1, 1)):
        x, w = jnp.ones(shape), jnp.ones(kernel_shape)
        jaxpr = str(jax.make_jaxpr(lambda a, b: swapped(a, b, strides, padding, dimension_numbers=numbers))(x, w))
        return "custom_vjp" in jaxpr

    assert routed((2, 14, 14, 4), (3, 3, 4, 6))
    assert routed((2, 14, 14, 4), (3, 3, 4, 6), padding=((1, 1), (1, 1)))
    assert not routed((2, 7, 7, 4), (3, 3, 4, 6))  # below min_size
    assert not routed((2, 14, 14, 4), (2, 2, 4, 6))  # not 3x3
    assert not routed((2, 14, 14, 4), (3, 3, 4, 6), padding="VALID")
    assert not routed((2, 14, 14, 4), (3, 3, 4, 6), strides=(2, 2))
    x, w = cpu_levers.conv_inputs(2, 14, 4, 6)[:2]
    np.testing.assert_allclose(swapped(x, w, (1, 1), "SAME", dimension_numbers=numbers), cpu_levers.conv(x, w),
                               rtol=1e-5, atol=1e-5)
