"""Working around XLA:CPU: convolutions inside loop bodies.

XLA:CPU hands a convolution to its fast kernels (YNNPACK / Eigen) only in "canonical" form:
input [batch, spatial..., feature], kernel [spatial..., in, out], output [batch, spatial...,
feature]. Its ConvCanonicalization pass rewrites other convolutions into that form with
explicit transposes, but it visits only the entry computation. The input- and weight-gradient
convolutions JAX's transpose rules emit are not canonical (dim_labels b01f_01oi->b01f and
f01b_i01o->01bf for an NHWC/HWIO forward convolution), so inside the body of a while loop
(`lax.scan`, `lax.fori_loop`) they stay as they are and are emitted as naive loops: a GAN step
under `lax.scan` ran about 30x slower per step than the same step jitted on its own
(benchmarks/scan_vs_step.py; also jax-ml/jax#12868). `canonicalize_convs` does the pass's
rewrite in JAX, before XLA sees the program.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
from jax import lax
from jax.extend import core as jax_core

# Call-like primitives whose body is inlined so that the convolutions in it are rewritten too,
# by name, with the parameter holding the body. Other higher-order primitives (scan, while,
# cond) are bound unchanged: convolutions nested inside them are left as they are.
_INLINED = {
    "jit": "jaxpr",
    "pjit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
}


def canonical_conv(lhs: jax.Array, rhs: jax.Array, **params: Any) -> jax.Array:
    """`lax.conv_general_dilated_p` with `params`, computed as a canonical convolution between
    transposes: the rewrite XLA:CPU's ConvCanonicalization pass does (bitwise the same result)."""
    dnums = params["dimension_numbers"]
    rank = lhs.ndim
    lhs_order = (dnums.lhs_spec[0], *dnums.lhs_spec[2:], dnums.lhs_spec[1])  # batch, spatial..., feature
    rhs_order = (*dnums.rhs_spec[2:], dnums.rhs_spec[1], dnums.rhs_spec[0])  # spatial..., in, out
    out_order = (dnums.out_spec[0], *dnums.out_spec[2:], dnums.out_spec[1])
    if lhs_order == rhs_order == out_order == tuple(range(rank)):
        return lax.conv_general_dilated_p.bind(lhs, rhs, **params)
    canonical = lax.ConvDimensionNumbers(
        lhs_spec=(0, rank - 1, *range(1, rank - 1)),
        rhs_spec=(rank - 1, rank - 2, *range(rank - 2)),
        out_spec=(0, rank - 1, *range(1, rank - 1)),
    )
    out = lax.conv_general_dilated_p.bind(
        lax.transpose(lhs, lhs_order), lax.transpose(rhs, rhs_order), **{**params, "dimension_numbers": canonical}
    )
    inverse = [0] * rank
    for position, dim in enumerate(out_order):
        inverse[dim] = position
    return lax.transpose(out, tuple(inverse))


def _evaluate(jaxpr: jax_core.Jaxpr, consts: list[Any], *args: Any) -> list[Any]:
    """jax.core.eval_jaxpr, with every convolution canonical and call-like bodies inlined."""
    env: dict[Any, Any] = {}

    def read(var):
        return var.val if isinstance(var, jax_core.Literal) else env[var]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        inputs = [read(var) for var in eqn.invars]
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            outputs = [canonical_conv(*inputs, **eqn.params)]
        elif name in _INLINED and _INLINED[name] in eqn.params:
            body = eqn.params[_INLINED[name]]
            if isinstance(body, jax_core.ClosedJaxpr):
                outputs = _evaluate(body.jaxpr, body.consts, *inputs)
            else:
                outputs = _evaluate(body, [], *inputs)
        else:
            with eqn.ctx.manager:
                outputs = eqn.primitive.bind(*inputs, **eqn.primitive.get_bind_params(eqn.params))
            if not eqn.primitive.multiple_results:
                outputs = [outputs]
        env.update(zip(eqn.outvars, outputs))
    return [read(var) for var in jaxpr.outvars]


def canonicalize_convs(fn: Callable) -> Callable:
    """`fn` with each of its convolutions computed by `canonical_conv`: for a step run inside
    `lax.scan` / `lax.fori_loop` on XLA:CPU, where it gives the same numbers several times faster.

    Apply it to the already-differentiated function (e.g. a whole train step): it traces `fn`
    to a jaxpr and re-evaluates it, inlining jit and custom-derivative calls (their custom rules
    are dropped, so differentiating the result differentiates the primal bodies). Positional
    arguments only; use it under `jax.jit` or a loop, since each call traces `fn` again.
    Convolutions inside control flow nested in `fn` (scan, while, cond) are not rewritten.
    """

    @functools.wraps(fn)
    def canonical_fn(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        outputs = _evaluate(closed.jaxpr, closed.consts, *jax.tree.leaves(args))
        return jax.tree.unflatten(jax.tree.structure(out_shape), outputs)

    return canonical_fn
