"""How the attacks see a model: a plain `apply_fn`, a defence's pre-processing made
differentiable by BPDA, and a randomised defence averaged by EOT.

A model is `apply_fn(params, images) -> logits [B, K]` for images [B, H, W, C] in [-1, 1],
each image's logits independent of the others (BatchNorm in inference mode):
`classifier_apply_fn(state)` makes one from a ganjax classifier. Attacks query it through
`loss_and_logits`, the one place that also understands `EOT`.

Defences that attacks must see through (Athalye, Carlini & Wagner 2018, "Obfuscated Gradients
Give a False Sense of Security"):
  BPDA  `bpda(preprocess)` runs a non-differentiable or iterative pre-processing (quantisation,
        JPEG, a GAN projection) forward and a differentiable approximation of it backward,
        by default the identity (the straight-through estimator):
            defended = lambda params, images: apply_fn(params, bpda(quantise)(images))
  EOT   `EOT(random_apply_fn, draws)` turns a randomised defence
        `random_apply_fn(params, images, key) -> logits` into a model the attacks average
        over: each gradient is the mean of `draws` per-draw loss gradients, with fresh draws
        at every attack step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ganjax.xla_cpu import canonicalize_convs

ApplyFn = Callable[[Any, jax.Array], jax.Array]
LossOfLogits = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class InferenceApply:
    """`module.apply(variables, images, train=False)`: a classifier in inference mode.

    Hashable by the module's fields, so the jitted attacks compile once per architecture
    rather than once per loaded classifier.
    """

    module: Any

    def __call__(self, variables: Any, images: jax.Array) -> jax.Array:
        return self.module.apply(variables, images, train=False)


def classifier_apply_fn(state) -> tuple[InferenceApply, dict]:
    """(apply_fn, params) of a ganjax classifier ModelState for the attacks: apply_fn(params,
    images) is the inference-mode network (running BatchNorm statistics, no dropout), params
    its {"params", "batch_stats"}."""
    module = getattr(state.apply_fn, "__self__", None)
    if module is None:
        raise ValueError("classifier_apply_fn needs a ModelState whose apply_fn is a Flax module's apply "
                         "(as ganjax.classify.train_classifier / load_classifier make).")
    return InferenceApply(module), {"params": state.params, "batch_stats": state.batch_stats}


@dataclasses.dataclass(frozen=True)
class EOT:
    """Expectation over transformation (Athalye et al. 2018, sec. 4.3) of a randomised defence.

    random_apply_fn(params, images, key) -> logits [B, K]: one draw of the defended model.
    draws: draws averaged per query. The loss (and so its gradient) is the mean over the
      draws of the per-draw loss; the logits are log of the mean class probabilities, so
      an attack counts an image as fooled when the defence's average prediction is wrong.
    Draw d of a query with key k uses `jax.random.split(k, draws)[d]`.
    """

    random_apply_fn: Callable[[Any, jax.Array, jax.Array], jax.Array]
    draws: int = 8

    def __post_init__(self):
        if int(self.draws) < 1:
            raise ValueError(f"EOT draws must be at least 1, got {self.draws}.")

    def loss_and_logits(self, params: Any, images: jax.Array, key: jax.Array,
                        loss_of_logits: LossOfLogits) -> tuple[jax.Array, jax.Array]:
        def one_draw(draw_key):
            logits = self.random_apply_fn(params, images, draw_key)
            return loss_of_logits(logits), jax.nn.log_softmax(logits)

        losses, log_probs = jax.vmap(one_draw)(jax.random.split(key, self.draws))
        mean_log_probs = jax.nn.logsumexp(log_probs, axis=0) - jnp.log(self.draws)
        return jnp.mean(losses, axis=0), mean_log_probs


def loss_and_logits(apply_fn: ApplyFn | EOT, params: Any, images: jax.Array, key: jax.Array,
                    loss_of_logits: LossOfLogits) -> tuple[jax.Array, jax.Array]:
    """(loss [B], logits [B, K]) of the model at `images`; `key` feeds an EOT model's draws
    (a plain apply_fn ignores it)."""
    if isinstance(apply_fn, EOT):
        return apply_fn.loss_and_logits(params, images, key, loss_of_logits)
    logits = apply_fn(params, images)
    return loss_of_logits(logits), logits


def loss_logits_and_gradient(apply_fn: ApplyFn | EOT, params: Any, images: jax.Array, key: jax.Array,
                             loss_of_logits: LossOfLogits) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(loss [B], logits [B, K], d loss_b / d images_b [B, H, W, C]): one forward and backward.

    The per-image gradients come from the gradient of the summed loss, which is exact because
    each image's loss depends on that image only. Call it under jit (on CPU it re-traces).
    """

    def total(images):
        losses, logits = loss_and_logits(apply_fn, params, images, key, loss_of_logits)
        return jnp.sum(losses), (losses, logits)

    def losses_logits_and_gradient(images):
        (_, (losses, logits)), gradient = jax.value_and_grad(total, has_aux=True)(images)
        return losses, logits, gradient

    if jax.default_backend() == "cpu":
        # The attacks call this inside while loops, where XLA:CPU runs the gradient's convolutions
        # on a naive path unless they are rewritten (ganjax.xla_cpu).
        losses_logits_and_gradient = canonicalize_convs(losses_logits_and_gradient)
    return losses_logits_and_gradient(images)


def _zero_cotangent(value):
    value = jnp.asarray(value) if not isinstance(value, jax.Array) else value
    if jnp.issubdtype(value.dtype, jnp.inexact):
        return jnp.zeros_like(value)
    # Integer and key arrays (e.g. a defence's PRNG key) take float0 cotangents.
    return np.zeros(value.shape, dtype=jax.dtypes.float0)


def bpda(preprocess: Callable[..., jax.Array], approximation: Callable[..., jax.Array] | None = None
         ) -> Callable[..., jax.Array]:
    """Backward pass differentiable approximation (Athalye et al. 2018, sec. 4.1) of `preprocess`.

    Returns f(images, *args) equal to preprocess(images, *args) forward, whose gradient with
    respect to `images` is that of approximation(images, *args) at the same point; default
    None: the identity (straight-through: the incoming gradient passes unchanged, which
    needs preprocess(images) to have images' shape and to be close to images). `args` (e.g. a
    key or the parameters of an iterative defence) get zero gradients.
    """

    @jax.custom_vjp
    def wrapped(images, *args):
        return preprocess(images, *args)

    def forward(images, *args):
        return preprocess(images, *args), (images, args)

    def backward(residuals, cotangent):
        images, args = residuals
        if approximation is None:
            images_cotangent = cotangent
        else:
            _, vjp = jax.vjp(lambda x: approximation(x, *args), images)
            (images_cotangent,) = vjp(cotangent)
        return (images_cotangent, *jax.tree.map(_zero_cotangent, args))

    wrapped.defvjp(forward, backward)
    return wrapped
