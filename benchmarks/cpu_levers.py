"""Two CPU levers of issue 23, measured: bfloat16 in XLA:CPU, and other ways to compute a 3x3 conv's weight gradient.

    python benchmarks/cpu_levers.py [--repeats 5] [--steps 10] [--matmul-size 2048] [--matmul-steps 2]
        [--shapes 64x7x64x256,...] [--no-torch] [--step [--step-min-size 14]]

The shapes are the 3x3 stride-1 "SAME" convolutions of the batch-64 main job's GAN step
(configs/fashion_mnist_b64.py, batch 64; read off the compiled step's HLO), as N x size x C_in x C_out:
  64x7x64x256     G's first sub-pixel upsample (7x7, 64 -> 4 * 64 channels);
  64x14x64x128    G's second sub-pixel upsample (14x14, 64 -> 4 * 32 channels);
  64x28x32x1      G's output conv (28x28, 32 -> 1 channel);
  64x7x128x256    D's conv3x3 head (7x7, 128 -> 256; run on real and fake, 64 images each).

1. bf16 against f32. For a square --matmul-size matmul and for each shape's convolution,
   forward and forward + backward (jax.grad of sum(conv(x, w) * upstream) w.r.t. x and w),
   it times f32 and bf16 (x and w cast to bfloat16, preferred_element_type left at its
   default, so XLA computes and returns bf16). speed-up = f32 ms / bf16 ms: > 1 means bf16 pays.
2. The weight gradient dL/dw of the convolution (upstream gradient g [N, H, W, C_out]),
   dw[i, j, c, o] = sum_{n, y, x} x_pad[n, y + i, x + j, c] g[n, y, x, o], four ways:
     xla      jax.vjp of lax.conv_general_dilated w.r.t. the kernel, jitted (what the step runs);
     patches  lax.conv_general_dilated_patches (the 9 * C_in im2col features) and one dot;
     im2col   nine shifted slices of the padded input concatenated on channels, and one dot;
     shifted  nine shifted slices, one dot each (each gives one tap's [C_in, C_out] block), stacked.
   Each is checked against xla (max abs difference printed, asserted below a tolerance);
   vs xla = xla ms / its ms: > 1 means faster than XLA's own. With torch importable (and no
   --no-torch), torch.nn.grad.conv2d_weight at the same shape is timed too, for reference.
3. (--step) The whole GAN step with the shifted-dots weight gradient: the main config's jitted GAN step
   (batch 64, `ganjax.steps.make_gan_train_step`) as it is, and with every 3x3 stride-1 SAME convolution
   of the generator's `Upsample` layers on inputs of at least --step-min-size pixels (default 14: the one
   shape where section 2 found a gain) given a custom VJP whose kernel gradient is `weight_grad_shifted`
   and whose input gradient is XLA's own. Interleaved, --repeats x 20 steps each (after 1 + 20 warm-up);
   it checks first that the custom gradient matches XLA's. Last line then also has `step_speedup=S` (xla ms / shifted ms).

Variants are interleaved within each repeat (A, B, C, A, B, C, ...) after a warm-up call, so they
share the machine's load; each timing is --steps calls (--matmul-steps for the matmul) and the
tables show ms per call, median [min-max] over --repeats. The last line is
`bf16_speedup_max=X weight_grad_best_alternative=Y ...`: the largest bf16 speed-up over every
timed case, and the largest xla / alternative ratio over shapes and the three alternatives.
A default run should take 2-3 minutes on 2 cores. Run it on a quiet machine; under load torch's
OpenMP threads spin at barriers (OMP_WAIT_POLICY=PASSIVE avoids that, see benchmarks/train_step.py).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# (batch, size, C_in, C_out) of the default step's 3x3 SAME convolutions (see the docstring).
SHAPES = ((64, 7, 64, 256), (64, 14, 64, 128), (64, 28, 32, 1), (64, 7, 128, 256))
DIMENSIONS = ("NHWC", "HWIO", "NHWC")
TOLERANCE = 1e-4  # max |alternative - xla| / max |xla| for the f32 weight gradients


def conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x [N, H, W, C_in], kernel [3, 3, C_in, C_out] -> [N, H, W, C_out], stride 1, SAME."""
    return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=DIMENSIONS)


def conv_forward_backward(x: jax.Array, kernel: jax.Array, upstream: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(dL/dx, dL/dkernel) of L = sum(conv(x, kernel) * upstream), in x's and kernel's dtype.
    upstream stays f32: the cotangent is cast to the conv's dtype, so a bf16 conv runs bf16 backward too."""

    def loss(x, kernel):
        return jnp.sum(conv(x, kernel).astype(jnp.float32) * upstream)

    return jax.grad(loss, argnums=(0, 1))(x, kernel)


# The weight gradient dL/dkernel of conv(x, kernel) given the upstream gradient g [N, H, W, C_out].

def weight_grad_xla(x: jax.Array, kernel: jax.Array, g: jax.Array) -> jax.Array:
    """XLA's own: the transpose of the convolution w.r.t. its kernel."""
    _, pullback = jax.vjp(lambda k: conv(x, k), kernel)
    return pullback(g)[0]


def _contract(columns: jax.Array, g: jax.Array) -> jax.Array:
    """[N, H, W, K] x [N, H, W, C_out] -> [K, C_out], contracting the N, H, W positions in one dot."""
    return lax.dot_general(columns.reshape(-1, columns.shape[-1]), g.reshape(-1, g.shape[-1]), (((0,), (0,)), ((), ())))


def _shifted(x: jax.Array) -> list[jax.Array]:
    """The nine [N, H, W, C_in] windows of x zero-padded by one pixel, tap (i, j) at index 3 * i + j."""
    _, height, width, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return [padded[:, i : i + height, j : j + width, :] for i in range(3) for j in range(3)]


def weight_grad_patches(x: jax.Array, kernel: jax.Array, g: jax.Array) -> jax.Array:
    """lax.conv_general_dilated_patches: features ordered (C_in, i, j), then one dot."""
    c_in, c_out = x.shape[-1], g.shape[-1]
    patches = lax.conv_general_dilated_patches(x, (3, 3), (1, 1), "SAME", dimension_numbers=("NHWC", "OIHW", "NHWC"))
    return _contract(patches, g).reshape(c_in, 3, 3, c_out).transpose(1, 2, 0, 3)


def weight_grad_im2col(x: jax.Array, kernel: jax.Array, g: jax.Array) -> jax.Array:
    """Nine shifted slices concatenated, features ordered (i, j, C_in), then one dot."""
    c_in, c_out = x.shape[-1], g.shape[-1]
    return _contract(jnp.concatenate(_shifted(x), axis=-1), g).reshape(3, 3, c_in, c_out)


def weight_grad_shifted(x: jax.Array, kernel: jax.Array, g: jax.Array) -> jax.Array:
    """One dot per shifted slice, each tap's [C_in, C_out] block, stacked."""
    c_in, c_out = x.shape[-1], g.shape[-1]
    return jnp.stack([_contract(window, g) for window in _shifted(x)]).reshape(3, 3, c_in, c_out)


WEIGHT_GRADS: dict[str, Callable] = {
    "xla": weight_grad_xla, "patches": weight_grad_patches, "im2col": weight_grad_im2col,
    "shifted": weight_grad_shifted,
}


def conv_inputs(n: int, size: int, c_in: int, c_out: int, seed: int = 0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(x, kernel, upstream gradient), f32, of unit-ish scale."""
    keys = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(keys[0], (n, size, size, c_in))
    kernel = jax.random.normal(keys[1], (3, 3, c_in, c_out)) / np.sqrt(9 * c_in)
    upstream = jax.random.normal(keys[2], (n, size, size, c_out))
    return x, kernel, upstream


def check_weight_grads(x: jax.Array, kernel: jax.Array, g: jax.Array, tolerance: float = TOLERANCE) -> dict[str, float]:
    """Max |variant - xla| for every jitted weight-gradient variant; raises AssertionError above
    tolerance * max |xla| (f32 sums over N * H * W positions, accumulated in different orders)."""
    reference = jax.jit(weight_grad_xla)(x, kernel, g)
    assert reference.shape == kernel.shape, (reference.shape, kernel.shape)
    scale = float(jnp.max(jnp.abs(reference)))
    errors = {}
    for name, fn in WEIGHT_GRADS.items():
        value = jax.jit(fn)(x, kernel, g)
        assert value.shape == kernel.shape and value.dtype == reference.dtype, (name, value.shape, value.dtype)
        errors[name] = float(jnp.max(jnp.abs(value - reference)))
        assert errors[name] <= tolerance * scale, (f"weight gradient {name!r} differs from XLA's by {errors[name]:.3g} "
                                                   f"(max |xla| {scale:.3g}, tolerance {tolerance:g} of it)")
    return errors


def torch_weight_grad(n: int, size: int, c_in: int, c_out: int) -> Callable[[], object] | None:
    """A call of torch.nn.grad.conv2d_weight at the shape (NCHW), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, c_in, size, size, generator=generator)
    g = torch.randn(n, c_out, size, size, generator=generator)

    def run():
        with torch.no_grad():
            return torch.nn.grad.conv2d_weight(x, (c_out, c_in, 3, 3), g, padding=1)

    return run


def time_ms(fn: Callable, args: tuple, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / steps * 1e3


def time_interleaved(timed: dict[str, tuple[Callable, tuple, int]], repeats: int) -> dict[str, list[float]]:
    """{name: (fn, args, steps)} -> {name: ms per call of each repeat}, after one warm-up call each."""
    for fn, fn_args, _ in timed.values():
        jax.block_until_ready(fn(*fn_args))
    times = {name: [] for name in timed}
    for _ in range(repeats):
        for name, (fn, fn_args, steps) in timed.items():
            times[name].append(time_ms(fn, fn_args, steps))
    return times


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def shape_name(shape: tuple[int, int, int, int]) -> str:
    n, size, c_in, c_out = shape
    return f"{n}x{size}x{size}, {c_in}->{c_out}"


def parse_shapes(text: str) -> tuple[tuple[int, int, int, int], ...]:
    shapes = tuple(tuple(int(v) for v in item.split("x")) for item in text.split(",") if item)
    if not shapes or any(len(shape) != 4 or min(shape) < 1 for shape in shapes):
        raise ValueError(f"--shapes {text!r}: expected comma-separated NxSIZExC_INxC_OUT, e.g. 64x7x64x256.")
    return shapes


def bf16_section(shapes, matmul_size: int, repeats: int, steps: int, matmul_steps: int) -> list[float]:
    """Prints the bf16 vs f32 table; returns the speed-ups (f32 ms / bf16 ms)."""
    print("\n## 1. bf16 vs f32 on XLA:CPU\n")
    print("ms per call, median [min-max]; speed-up = f32 ms / bf16 ms (> 1: bf16 faster); "
          "bf16 error = max |bf16 - f32| / max |f32| of the output\n")
    print("| case | GFLOP | f32 ms | bf16 ms | speed-up | bf16 error |")
    print("|---|---:|---:|---:|---:|---:|")
    speedups = []
    cases = []
    keys = jax.random.split(jax.random.key(1), 2)
    a = jax.random.normal(keys[0], (matmul_size, matmul_size))
    b = jax.random.normal(keys[1], (matmul_size, matmul_size))
    cases.append((f"matmul {matmul_size}x{matmul_size}", 2.0 * matmul_size**3, jax.jit(jnp.matmul), (a, b), (0, 1),
                  matmul_steps))
    for shape in shapes:
        n, size, c_in, c_out = shape
        x, kernel, upstream = conv_inputs(*shape)
        flops = 2.0 * n * size * size * 9 * c_in * c_out
        cases.append((f"conv {shape_name(shape)} fwd", flops, jax.jit(conv), (x, kernel), (0, 1), steps))
        cases.append((f"conv {shape_name(shape)} fwd+bwd", 3 * flops, jax.jit(conv_forward_backward),
                      (x, kernel, upstream), (0, 1), steps))
    for name, flops, fn, args, cast, case_steps in cases:
        low = tuple(arg.astype(jnp.bfloat16) if i in cast else arg for i, arg in enumerate(args))
        reference, value = fn(*args), fn(*low)
        assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(value)), name
        error = max(float(jnp.max(jnp.abs(v.astype(jnp.float32) - r)) / jnp.max(jnp.abs(r)))
                    for v, r in zip(jax.tree.leaves(value), jax.tree.leaves(reference)))
        times = time_interleaved({"f32": (fn, args, case_steps), "bf16": (fn, low, case_steps)}, repeats)
        speedup = statistics.median(times["f32"]) / statistics.median(times["bf16"])
        speedups.append(speedup)
        print(f"| {name} | {flops / 1e9:.2f} | {cell(times['f32'])} | {cell(times['bf16'])} | {speedup:.2f}x "
              f"| {error:.1e} |", flush=True)
    return speedups


def weight_grad_section(shapes, repeats: int, steps: int, use_torch: bool) -> tuple[float, str, dict[str, float]]:
    """Prints the weight-gradient table; returns (best xla / alternative ratio, where, torch ratios)."""
    print("\n## 2. Weight gradient of the 3x3 SAME convolution (f32)\n")
    print("ms per call, median [min-max]; vs xla = xla ms / variant ms (> 1: faster than XLA's own); "
          "max |diff| against xla\n")
    print("| shape | variant | ms | vs xla | max abs diff |")
    print("|---|---|---:|---:|---:|")
    best, where, torch_ratios = 0.0, "", {}
    for shape in shapes:
        x, kernel, g = conv_inputs(*shape)
        errors = check_weight_grads(x, kernel, g)
        timed = {name: (jax.jit(fn), (x, kernel, g), steps) for name, fn in WEIGHT_GRADS.items()}
        torch_run = torch_weight_grad(*shape) if use_torch else None
        if torch_run is not None:
            timed["torch conv2d_weight"] = (torch_run, (), steps)
        times = time_interleaved(timed, repeats)
        xla_ms = statistics.median(times["xla"])
        for name, values in times.items():
            ratio = xla_ms / statistics.median(values)
            diff = f"{errors[name]:.1e}" if name in errors else "-"
            print(f"| {shape_name(shape)} | {name} | {cell(values)} | {ratio:.2f}x | {diff} |", flush=True)
            if name in WEIGHT_GRADS and name != "xla" and ratio > best:
                best, where = ratio, f"{name}@{shape[0]}x{shape[1]}x{shape[2]}x{shape[3]}"
            if name.startswith("torch"):
                torch_ratios[shape_name(shape)] = ratio
    return best, where, torch_ratios


@jax.custom_vjp
def conv_shifted_grad(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`conv` (3x3, stride 1, SAME, NHWC/HWIO) whose kernel gradient is `weight_grad_shifted`."""
    return conv(x, kernel)


def _conv_shifted_forward(x, kernel):
    return conv(x, kernel), (x, kernel)


def _conv_shifted_backward(residuals, g):
    x, kernel = residuals
    (dx,) = jax.vjp(lambda inputs: conv(inputs, kernel), x)[1](g)
    return dx, weight_grad_shifted(x, kernel, g)


conv_shifted_grad.defvjp(_conv_shifted_forward, _conv_shifted_backward)


def shifted_conv_general_dilated(min_size: int) -> Callable:
    """A drop-in for flax's `conv_general_dilated` that routes 3x3 stride-1 SAME convolutions on NHWC inputs of
    at least `min_size` pixels to `conv_shifted_grad` and everything else to lax.conv_general_dilated."""

    def conv_general_dilated(inputs, kernel, strides, padding, lhs_dilation=None, rhs_dilation=None,
                             dimension_numbers=None, feature_group_count=1, precision=None):
        same = padding == "SAME" or (not isinstance(padding, str) and tuple(map(tuple, padding)) == ((1, 1), (1, 1)))
        plain = all(d in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
        if (inputs.ndim == 4 and kernel.shape[:2] == (3, 3) and tuple(strides) == (1, 1) and same and plain
                and feature_group_count == 1 and inputs.shape[1] >= min_size):
            return conv_shifted_grad(inputs, kernel)
        return lax.conv_general_dilated(inputs, kernel, strides, padding, lhs_dilation=lhs_dilation,
                                        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                        feature_group_count=feature_group_count, precision=precision)

    return conv_general_dilated


def gan_step_runner(config, conv_general_dilated: Callable | None) -> Callable[[int], None]:
    """`run(n)`: n jitted GAN steps of `config` at its train.batch_size on random data, built and compiled by
    benchmarks/train_step.py's helpers; with `conv_general_dilated`, the generator's Upsample convolutions use
    it (ganjax.models.layers' `nn.Conv`, swapped while the step is traced)."""
    import flax.linen as nn
    import train_step as step_benchmark  # beside this script (it imports torch)

    from ganjax import parallel
    from ganjax.models import layers
    from ganjax.steps import make_gan_train_step

    namespace = type("nn", (), {name: getattr(nn, name) for name in dir(nn) if not name.startswith("__")})
    if conv_general_dilated is not None:
        namespace.Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
    original, layers.nn = layers.nn, namespace
    try:
        k = config.gan.n_critic
        batch_size = config.train.batch_size
        mesh, state, batch = step_benchmark._gan_inputs(config, batch_size, (28, 28, 1), 10, (k,))
        step = parallel.jit_step(make_gan_train_step(config), mesh, batch_axis=1)
        # Its first step compiles, while the swapped layer is in place.
        timed, _ = step_benchmark._timed_jax_step("GAN step", step, state, batch, batch_size * k, seed=1)
    finally:
        layers.nn = original
    return timed.run


def step_section(repeats: int, min_size: int) -> float:
    """Section 3: the batch-64 main job's GAN step, XLA's weight gradients against shifted dots (module docstring)."""
    from ganjax.config import load_config

    x, kernel, g = conv_inputs(8, 14, 16, 32)
    ours = jax.vjp(conv_shifted_grad, x, kernel)[1](g)
    xla = jax.vjp(conv, x, kernel)[1](g)
    error = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(ours, xla))
    assert error < TOLERANCE, f"the custom VJP's gradient differs from XLA's by {error:.1e}"
    config = load_config(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                                      "fashion_mnist_b64.py"))
    runs = {"xla": gan_step_runner(config, None), "shifted": gan_step_runner(config, shifted_conv_general_dilated(min_size))}
    steps = 20
    per_call = time_interleaved({name: (run, (steps,), 1) for name, run in runs.items()}, repeats)
    times = {name: [ms / steps for ms in values] for name, values in per_call.items()}
    print(f"\n## 3. The whole GAN step (configs/fashion_mnist_b64.py, batch 64), {repeats} x {steps} steps each\n")
    print(f"gradient check: max relative |shifted - xla| {error:.1e}; shifted dots at G's Upsample convs on >= {min_size} pixels\n")
    print("| step | ms per step |\n|---|---:|")
    for name, values in times.items():
        print(f"| {name} | {cell(values)} |")
    return statistics.median(times["xla"]) / statistics.median(times["shifted"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="calls per timing of a convolution")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--matmul-steps", type=int, default=2, help="calls per timing of the matmul")
    parser.add_argument("--shapes", default=",".join("x".join(map(str, shape)) for shape in SHAPES),
                        help="comma-separated NxSIZExC_INxC_OUT 3x3 SAME convolutions (default: the GAN step's)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch's weight gradient")
    parser.add_argument("--step", action="store_true", help="also section 3: the whole GAN step with shifted dots")
    parser.add_argument("--step-min-size", type=int, default=14, help="section 3: smallest input size routed to shifted dots")
    parser.add_argument("--step-only", action="store_true", help="section 3 alone")
    args = parser.parse_args(argv)
    if min(args.repeats, args.steps, args.matmul_size, args.matmul_steps) < 1:
        raise ValueError("--repeats, --steps, --matmul-size and --matmul-steps must be positive.")
    shapes = parse_shapes(args.shapes)
    use_torch = not args.no_torch
    torch_note = "not requested"
    if use_torch:
        try:
            import torch

            torch.set_num_threads(os.cpu_count() or 1)
            torch_note = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
        except ImportError:
            torch_note = "torch not importable"
    print(f"machine: {os.cpu_count()} cores, jax {jax.__version__} (devices {jax.devices()}), {torch_note}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, load average {os.getloadavg()[0]:.1f}")
    print(f"repeats {args.repeats} x {args.steps} calls per convolution timing, {args.matmul_steps} per matmul "
          f"timing, after one warm-up call; shapes N x HxW, C_in->C_out: {', '.join(map(shape_name, shapes))}")
    line = ""
    if not args.step_only:
        speedups = bf16_section(shapes, args.matmul_size, args.repeats, args.steps, args.matmul_steps)
        best, where, torch_ratios = weight_grad_section(shapes, args.repeats, args.steps, use_torch)
        line = f"bf16_speedup_max={max(speedups):.2f} weight_grad_best_alternative={best:.2f} weight_grad_best_at={where}"
        if torch_ratios:
            line += f" torch_weight_grad_vs_xla_max={max(torch_ratios.values()):.2f}"
    if args.step or args.step_only:
        line = f"{line} step_speedup={step_section(args.repeats, args.step_min_size):.3f}".strip()
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
