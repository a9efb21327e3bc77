"""Would Winograd convolutions speed up the GAN step on XLA:CPU? A lever of issue 4, measured.

    python benchmarks/winograd_conv.py [--repeats 3] [--steps 20]

About 85% of the default GAN step's FLOPs are 3x3 stride-1 "SAME" convolutions at 7x7 and
14x14 (the generator's sub-pixel convolutions, the discriminator's head). Winograd's
F(2x2, 3x3) algorithm (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural
Networks") computes them with 16 multiplications per 2x2 output tile instead of 36: a batched
matmul of 16 [tiles, C_in] x [C_in, C_out] products between cheap input and output transforms.
The same function as the convolution, so the PyTorch twin would stay "the same architecture".

For the three layer shapes of the default step (batch 64), this times, interleaved, the
forward pass and forward + backward (both gradients) of XLA's convolution and of two JAX
Winograd formulations, plus the batched matmul alone (the part whose FLOPs Winograd saves):
  slices   transforms written as sums of strided slices (XLA fuses them elementwise);
  kron     transforms as one [16, 16] / [4, 16] matrix product over the stacked tiles.
It checks that every formulation equals the convolution (max abs error printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# F(2x2, 3x3): Y = A^T [(G g G^T) * (B^T d B)] A (Lavin & Gray 2016, eq. 8-10).
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)

# (batch, size, C_in, C_out): G's sub-pixel convs at 7x7 and 14x14, D's head on real + fake.
LAYERS = ((64, 7, 64, 256), (64, 14, 64, 128), (128, 7, 128, 256))


def xla_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x [N, H, W, C_in], kernel [3, 3, C_in, C_out] -> [N, H, W, C_out], stride 1, SAME."""
    return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _tiles(x: jax.Array) -> tuple[list[list[jax.Array]], int, int]:
    """The 4x4 input tiles (stride 2) of x padded for SAME, as d[i][j]: [N, TH, TW, C]."""
    _, height, width, _ = x.shape
    tiles_h, tiles_w = -(-height // 2), -(-width // 2)
    padded = jnp.pad(x, ((0, 0), (1, 1 + 2 * tiles_h - height), (1, 1 + 2 * tiles_w - width), (0, 0)))
    d = [[padded[:, i : i + 2 * tiles_h : 2, j : j + 2 * tiles_w : 2, :] for j in range(4)] for i in range(4)]
    return d, tiles_h, tiles_w


def _combine(coefficients: np.ndarray, terms: list[jax.Array]) -> jax.Array:
    """sum_k coefficients[k] * terms[k], skipping zeros (the transforms are sparse, mostly +-1)."""
    out = None
    for c, term in zip(coefficients, terms):
        if c != 0:
            term = term if c == 1 else -term if c == -1 else float(c) * term
            out = term if out is None else out + term
    return out


def _kernel_transform(kernel: jax.Array) -> jax.Array:
    """[3, 3, C_in, C_out] -> U = G g G^T as [16, C_in, C_out]."""
    return jnp.einsum("ai,ijco,bj->abco", G, kernel, G).reshape(16, kernel.shape[2], kernel.shape[3])


def tile_products(v: jax.Array, u: jax.Array) -> jax.Array:
    """The 16 [tiles, C_in] x [C_in, C_out] products: v [16, P, C_in], u [16, C_in, C_out]."""
    return jnp.einsum("tpc,tco->tpo", v, u)


def _untile(y: jax.Array, n: int, height: int, width: int) -> jax.Array:
    """[2, 2, N, TH, TW, C] output tiles -> [N, H, W, C]."""
    tiles_h, tiles_w = y.shape[3], y.shape[4]
    y = y.transpose(2, 3, 0, 4, 1, 5).reshape(n, 2 * tiles_h, 2 * tiles_w, -1)
    return y[:, :height, :width]


def winograd_slices(x: jax.Array, kernel: jax.Array) -> jax.Array:
    n, height, width, channels = x.shape
    d, tiles_h, tiles_w = _tiles(x)
    rows = [[_combine(B_T[a], [d[i][j] for i in range(4)]) for j in range(4)] for a in range(4)]
    v = jnp.stack([_combine(B_T[b], rows[a]) for a in range(4) for b in range(4)])
    m = tile_products(v.reshape(16, -1, channels), _kernel_transform(kernel))
    m = m.reshape(4, 4, n, tiles_h, tiles_w, -1)
    y = jnp.stack([jnp.stack([_combine(A_T[r], [_combine(A_T[s], [m[a][b] for b in range(4)]) for a in range(4)])
                              for s in range(2)]) for r in range(2)])
    return _untile(y, n, height, width)


def winograd_kron(x: jax.Array, kernel: jax.Array) -> jax.Array:
    n, height, width, channels = x.shape
    d, tiles_h, tiles_w = _tiles(x)
    stacked = jnp.stack([d[i][j] for i in range(4) for j in range(4)])
    v = jnp.tensordot(np.kron(B_T, B_T), stacked, 1).reshape(16, -1, channels)
    m = tile_products(v, _kernel_transform(kernel))
    y = jnp.tensordot(np.kron(A_T, A_T), m, 1).reshape(2, 2, n, tiles_h, tiles_w, -1)
    return _untile(y, n, height, width)


CONVS = {"xla": xla_conv, "winograd_slices": winograd_slices, "winograd_kron": winograd_kron}


def forward_backward(conv, upstream: jax.Array):
    def loss(x, kernel):
        return jnp.sum(conv(x, kernel) * upstream)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def time_ms(fn, args, steps: int) -> float:
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(steps):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="calls per timing")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, jax {jax.__version__}, load average {os.getloadavg()[0]:.1f}")
    print("ms per call, median [min-max] of the repeats; speed-up = xla / winograd")
    for n, size, c_in, c_out in LAYERS:
        keys = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(keys[0], (n, size, size, c_in))
        kernel = 0.05 * jax.random.normal(keys[1], (3, 3, c_in, c_out))
        upstream = jax.random.normal(keys[2], (n, size, size, c_out))
        tiles = (-(-size // 2)) ** 2 * n
        v, u = jnp.ones((16, tiles, c_in)), jnp.ones((16, c_in, c_out))
        reference = xla_conv(x, kernel)
        errors = {name: float(jnp.max(jnp.abs(jax.jit(conv)(x, kernel) - reference))) for name, conv in CONVS.items()}
        timed = {f"{name} fwd": (jax.jit(conv), (x, kernel)) for name, conv in CONVS.items()}
        timed |= {f"{name} fwd+bwd": (forward_backward(conv, upstream), (x, kernel)) for name, conv in CONVS.items()}
        timed["batched matmul alone"] = (jax.jit(tile_products), (v, u))
        times = {name: [] for name in timed}
        for _ in range(args.repeats):
            for name, (fn, fn_args) in timed.items():
                times[name].append(time_ms(fn, fn_args, args.steps))
        flops = 2 * n * size * size * 9 * c_in * c_out
        print(f"\nlayer x [{n}, {size}, {size}, {c_in}] -> {c_out} channels: direct {flops / 1e9:.2f} GFLOP, "
              f"Winograd matmul {2 * 16 * tiles * c_in * c_out / 1e9:.2f} GFLOP; "
              f"max |winograd - xla| {max(errors.values()):.1e} (|xla| max {float(jnp.max(jnp.abs(reference))):.1f})")
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, values in times.items():
            line = f"  {name:28s} {medians[name]:8.2f} [{min(values):.2f}-{max(values):.2f}]"
            kind = name.split(" ", 1)[-1]
            if name.startswith("winograd"):
                line += f"   speed-up {medians['xla ' + kind] / medians[name]:.2f}x"
            print(line)


if __name__ == "__main__":
    main()
