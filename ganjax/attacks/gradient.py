"""Gradient attacks in a norm ball: FGSM and PGD (L-inf and L2), and the geometry and input
checks the other attacks share.

    from ganjax.attacks import classifier_apply_fn, pgd
    apply_fn, params = classifier_apply_fn(state)
    adversarial = pgd(apply_fn, params, images, labels, jax.random.key(0), eps=0.1, steps=40)

Budgets are on the [0, 1] pixel scale. ganjax's images live in [-1, 1], twice that scale
(x_model = 2 x_pixel - 1), so a budget eps on the [0, 1] scale is 2 eps on the images, for
L-inf and L2 alike (an L-inf eps of 0.1 changes each pixel by at most 0.2 in [-1, 1]; an L2
eps of 1.0 allows an L2 change of 2.0). `to_model_scale` does this conversion, once, at each
attack's entry; step sizes given to the attacks are on the [0, 1] scale too. Adversarial
images are clipped to [-1, 1].

Robust accuracy is the fraction of images that every restart fails to misclassify: with
early_stop (the default) an image keeps the first iterate that the model misclassifies,
whichever step or restart found it, images the model already misclassifies are returned
unchanged, and the attack stops when every image is fooled.

The attacks are pure and jit-compiled (apply_fn, norm, loss_fn and early_stop static; params,
eps, step size, steps and restarts traced), and run inside a caller's jit or vmap too, e.g. an
adversarial-training step:
    adversarial = pgd(apply_fn, params, images, labels, key, eps=0.1, steps=10, early_stop=False)
Outside jit they check their inputs (`check_budget`, `check_images_and_labels`); under a
trace only the static settings can be checked, so the caller's edge must check the data.
The returned images carry no gradient (jax.lax.stop_gradient).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ganjax.attacks.wrappers import EOT, ApplyFn, loss_and_logits, loss_logits_and_gradient
from ganjax.names import check_attack_norm

# [-1, 1] model range = 2 * [0, 1] pixel scale - 1.
PIXEL_SCALE = 2.0
MODEL_RANGE = (-1.0, 1.0)
RANGE_TOLERANCE = 1e-5
PGD_STEPS = 40
# Step size = STEP_SIZE_FACTOR * eps / steps, so that any start can reach the ball's far side
# (the rule of thumb of Madry Lab's `robustness` library).
STEP_SIZE_FACTOR = 2.5
TINY = 1e-12

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def to_model_scale(distance):
    """A distance on the [0, 1] pixel scale (eps, a step size) as a distance between images in [-1, 1]."""
    return PIXEL_SCALE * distance


def to_pixel_scale(distance):
    """A distance between images in [-1, 1] on the [0, 1] pixel scale; inverse of `to_model_scale`."""
    return distance / PIXEL_SCALE


def cross_entropy_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-image softmax cross-entropy [B] of logits [B, K] and labels [B] int."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


# --- Norm-ball geometry (on images in [-1, 1]).

def _per_image(values: jax.Array) -> jax.Array:
    """[B] -> [B, 1, 1, ...] to broadcast against images [B, ...]."""
    return values.reshape(values.shape[:1] + (1,) * 3)


def perturbation_norm(delta: jax.Array, norm: str) -> jax.Array:
    """Per-image norm [B] of delta [B, H, W, C]: max |delta| for "linf", Euclidean length for "l2"."""
    flat = delta.reshape(delta.shape[0], -1)
    if norm == "linf":
        return jnp.max(jnp.abs(flat), axis=1)
    return jnp.sqrt(jnp.sum(flat * flat, axis=1))


def perturbation_size(adversarial, images, norm: str) -> np.ndarray:
    """Per-image size [N] of adversarial - images (both in [-1, 1]) on the [0, 1] pixel scale."""
    delta = (np.asarray(adversarial, np.float64) - np.asarray(images, np.float64)).reshape(len(images), -1)
    if check_attack_norm(norm) == "linf":
        return to_pixel_scale(np.abs(delta).max(axis=1, initial=0.0))
    return to_pixel_scale(np.sqrt(np.sum(delta * delta, axis=1)))


def project(delta: jax.Array, eps, norm: str) -> jax.Array:
    """delta [B, H, W, C] moved to the nearest point of the norm ball of radius eps (scalar or [B])."""
    eps = jnp.asarray(eps, delta.dtype)
    if eps.ndim:
        eps = _per_image(eps)
    if norm == "linf":
        return jnp.clip(delta, -eps, eps)
    length = _per_image(perturbation_norm(delta, "l2"))
    return delta * jnp.minimum(1.0, eps / jnp.maximum(length, TINY))


def clip_to_model_range(images: jax.Array) -> jax.Array:
    return jnp.clip(images, *MODEL_RANGE)


def project_and_clip(candidates: jax.Array, images: jax.Array, eps, norm: str) -> jax.Array:
    """The candidates [B, H, W, C] projected onto the ball of radius eps around images, then
    clipped to [-1, 1]. Clipping only shrinks each pixel's change (the clean image is inside
    the range), so the result stays in the ball."""
    return clip_to_model_range(images + project(candidates - images, eps, norm))


def normalize(direction: jax.Array, norm: str) -> jax.Array:
    """Each image's direction [B, ...] scaled to unit norm (`norm`), zero stays zero."""
    return direction / _per_image(jnp.maximum(perturbation_norm(direction, norm), TINY))


def ascent_direction(gradient: jax.Array, norm: str) -> jax.Array:
    """The steepest-ascent step of unit size for `norm`: sign(g) for L-inf, g / ||g||_2 for L2."""
    return jnp.sign(gradient) if norm == "linf" else normalize(gradient, "l2")


def random_perturbation(key: jax.Array, shape: tuple[int, ...], eps, norm: str) -> jax.Array:
    """A random start in the ball of radius eps: uniform in the L-inf cube (Madry et al. 2018),
    or uniform on the L2 sphere (Gaussian direction)."""
    if norm == "linf":
        return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0) * eps
    return normalize(jax.random.normal(key, shape), "l2") * eps


# --- Checks at the edge (outside jit).

def _is_traced(value) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(value))


def check_budget(eps, norm: str, image_shape: tuple[int, ...] | None = None) -> float:
    """eps (on the [0, 1] pixel scale) as a float, if it is a possible budget for `norm`.

    Raises ValueError for an unknown norm, a negative or non-finite eps, an L-inf eps above 1
    (the whole pixel range) or an L2 eps above sqrt(pixels per image), the L2 diameter of the
    image cube.
    """
    check_attack_norm(norm)
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a number on the [0, 1] pixel scale, got {eps!r}.") from None
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a non-negative number on the [0, 1] pixel scale, got {eps}; "
                         "pass e.g. eps=0.1 (L-inf) or eps=1.0 (L2).")
    if norm == "linf" and eps > 1.0:
        raise ValueError(
            f"L-inf eps {eps} exceeds the [0, 1] pixel range: eps is on the [0, 1] scale whatever the images' "
            f"range, so write 8/255 = {8 / 255:.4f}, not 8; an eps of 1 already allows any image."
        )
    if norm == "l2" and image_shape is not None:
        diameter = math.sqrt(math.prod(image_shape))
        if eps > diameter:
            raise ValueError(
                f"L2 eps {eps} exceeds {diameter:.4g}, the largest L2 distance between two {tuple(image_shape)} "
                "images on the [0, 1] pixel scale; pass a smaller eps (e.g. 1.0)."
            )
    return eps


def check_count(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_images_and_labels(apply_fn: ApplyFn | EOT, params: Any, images, labels) -> int:
    """Number of classes K of the model, after checking images [B, H, W, C] float in [-1, 1]
    and labels [B] int in [0, K). Concrete (non-traced) values only; traced ones are trusted.

    Raises ValueError naming the problem and the fix.
    """
    shape = tuple(np.shape(images))
    if len(shape) != 4:
        raise ValueError(f"Attacks take images [batch, height, width, channels], got shape {shape}.")
    if np.shape(labels) != shape[:1]:
        raise ValueError(f"labels must be one class per image, shape ({shape[0]},), got {np.shape(labels)}.")
    probe = jax.ShapeDtypeStruct((1, *shape[1:]), jnp.float32)
    logits = jax.eval_shape(
        lambda x: loss_and_logits(apply_fn, params, x, jax.random.key(0), lambda z: z[:, 0])[1], probe
    )
    num_classes = int(logits.shape[-1])
    if not _is_traced(images):
        values = np.asarray(images)
        if not np.issubdtype(values.dtype, np.floating):
            raise ValueError(f"Attacks take float images in [-1, 1], got dtype {values.dtype}; convert uint8 "
                             "images with ganjax.data.to_model_range.")
        if values.size and (values.min() < MODEL_RANGE[0] - RANGE_TOLERANCE
                            or values.max() > MODEL_RANGE[1] + RANGE_TOLERANCE):
            raise ValueError(
                f"Attacks take images in [-1, 1] (ganjax's model range), got values in [{values.min():.4g}, "
                f"{values.max():.4g}]; map [0, 1] images with 2 * x - 1, uint8 ones with ganjax.data.to_model_range."
            )
    if not _is_traced(labels):
        values = np.asarray(labels)
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"labels must be integer classes, got dtype {values.dtype}.")
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"labels must be classes in [0, {num_classes}) for a model with {num_classes} logits, got labels "
                f"in [{values.min()}, {values.max()}]; pass the model's own class indices."
            )
    return num_classes


def check_attack_call(apply_fn, params, images, labels, eps, norm: str) -> tuple[float, int]:
    """(eps as a float, number of classes) after the checks shared by every attack's entry."""
    eps = check_budget(eps, norm, tuple(np.shape(images))[1:])
    return eps, check_images_and_labels(apply_fn, params, images, labels)


# --- PGD.

def _misclassified(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.argmax(logits, axis=-1) != labels


def _pgd_run(apply_fn, params, images, labels, key, eps, step_size, steps, random_start, found, *, norm, loss_fn,
             early_stop):
    """One PGD run in [-1, 1] units -> (iterate [B, ...], fooled [B], its loss [B]).

    The run evaluates the model at steps + 1 points, each with one forward and backward pass
    (the last gradient unused): XLA then compiles the model, and an EOT defence's sampling,
    once per program. With early_stop, an image misclassified at some point keeps the first
    such point and stops moving, as do images already `found`; otherwise the iterate is the
    last point.
    """
    start_key, query_key = jax.random.split(key)
    start = clip_to_model_range(images + random_start * random_perturbation(start_key, images.shape, eps, norm))

    def loss_of_logits(logits):
        return loss_fn(logits, labels)

    def keep_going(carry):
        step, _, fooled, _ = carry
        more = step <= steps
        return jnp.logical_and(more, ~jnp.all(fooled | found)) if early_stop else more

    def evaluate_and_step(carry):
        step, iterate, fooled, _ = carry
        loss, logits, gradient = loss_logits_and_gradient(
            apply_fn, params, iterate, jax.random.fold_in(query_key, step), loss_of_logits)
        misclassified = _misclassified(logits, labels)
        fooled = fooled | misclassified if early_stop else misclassified
        moving = step < steps
        if early_stop:
            moving = moving & ~(fooled | found)
        candidate = project_and_clip(iterate + step_size * ascent_direction(gradient, norm), images, eps, norm)
        return step + 1, jnp.where(_per_image(moving), candidate, iterate), fooled, loss

    initial = (jnp.asarray(0), start, jnp.zeros(labels.shape, bool), jnp.zeros(labels.shape, images.dtype))
    _, iterate, fooled, loss = jax.lax.while_loop(keep_going, evaluate_and_step, initial)
    return iterate, fooled, loss


# steps, restarts and random_start are traced, so FGSM and PGD of any length share one program.
@functools.partial(jax.jit, static_argnames=("apply_fn", "norm", "loss_fn", "early_stop"))
def _pgd(apply_fn, params, images, labels, key, eps, step_size, steps, restarts, random_start, *, norm, loss_fn,
         early_stop):
    """Runs 1..restarts are the restarts (run r draws from fold_in(key, r)); with early_stop,
    run 0 evaluates the clean images (zero steps, no random start) so that images already
    misclassified count as found and are returned unchanged."""

    def more_runs(carry):
        run, _, found, _ = carry
        more = run <= restarts
        return jnp.logical_and(more, ~jnp.all(found)) if early_stop else more

    def attack_run(carry):
        run, adversarial, found, best_loss = carry
        clean = run == 0
        iterate, fooled, loss = _pgd_run(
            apply_fn, params, images, labels, jax.random.fold_in(key, run), eps, step_size,
            jnp.where(clean, 0, steps), jnp.where(clean, 0.0, random_start), found, norm=norm, loss_fn=loss_fn,
            early_stop=early_stop)
        if early_stop:
            # The first success is kept; otherwise the point with the highest loss.
            take = ~found & (fooled | (loss > best_loss))
            found = found | fooled
        else:
            take = loss > best_loss
        adversarial = jnp.where(_per_image(take), iterate, adversarial)
        return run + 1, adversarial, found, jnp.where(take, loss, best_loss)

    initial = (jnp.asarray(0 if early_stop else 1), images, jnp.zeros(labels.shape, bool),
               jnp.full(labels.shape, -jnp.inf, images.dtype))
    _, adversarial, _, _ = jax.lax.while_loop(more_runs, attack_run, initial)
    return jax.lax.stop_gradient(adversarial)


def pgd_step_size(eps: float, steps: int) -> float:
    """Default PGD step size on the [0, 1] scale: STEP_SIZE_FACTOR * eps / steps."""
    return STEP_SIZE_FACTOR * eps / steps


def pgd(
    apply_fn: ApplyFn | EOT,
    params: Any,
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    *,
    eps: float,
    steps: int = PGD_STEPS,
    step_size: float | None = None,
    norm: str = "linf",
    restarts: int = 1,
    random_start: bool = True,
    loss_fn: LossFn = cross_entropy_loss,
    early_stop: bool = True,
) -> jax.Array:
    """Projected gradient ascent of the loss in the `norm` ball of radius eps (Madry et al. 2018,
    "Towards Deep Learning Models Resistant to Adversarial Attacks").

    Each step: x <- clip(P_eps(x + step_size * d)), d = sign(grad) (linf) or grad / ||grad||_2
    (l2), P_eps the projection onto the ball around the clean image, clip to [-1, 1].

    Args:
      apply_fn: the model, apply_fn(params, images) -> logits [B, K], or an `EOT`.
      images: [B, H, W, C] float32 in [-1, 1]; labels: [B] int32 true classes.
      key: the random starts and any EOT draws; restart r (1, 2, ...) draws from
        fold_in(key, r), so adding restarts keeps the earlier ones.
      eps: the budget on the [0, 1] pixel scale (module docstring).
      steps: gradient steps per restart.
      step_size: on the [0, 1] scale; default `pgd_step_size(eps, steps)` = 2.5 eps / steps.
      restarts: independent random starts; an image counts as robust only if all fail.
      random_start: start uniformly in the ball (else at the clean image).
      loss_fn: per-image loss (logits [B, K], labels [B]) -> [B] to maximise (default
        cross-entropy); a closure over per-image data in batch order (e.g. TRADES's clean
        probabilities) also works.
      early_stop: keep each image's first misclassified iterate and stop it there (for
        evaluation); False runs every step and returns, per image, the last iterate of the
        restart with the highest loss (for adversarial training).

    Returns:
      adversarial images [B, H, W, C] float32 in [-1, 1], within eps of `images`.
    """
    eps, _ = check_attack_call(apply_fn, params, images, labels, eps, norm)
    steps, restarts = check_count("steps", steps), check_count("restarts", restarts)
    step_size = pgd_step_size(eps, steps) if step_size is None else float(step_size)
    if not step_size >= 0:
        raise ValueError(f"step_size must be a non-negative number on the [0, 1] pixel scale, got {step_size}.")
    return _pgd(apply_fn, params, jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32), key,
                to_model_scale(eps), to_model_scale(step_size), jnp.asarray(steps, jnp.int32),
                jnp.asarray(restarts, jnp.int32), jnp.asarray(float(bool(random_start)), jnp.float32), norm=norm,
                loss_fn=loss_fn, early_stop=bool(early_stop))


def fgsm(
    apply_fn: ApplyFn | EOT,
    params: Any,
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array | None = None,
    *,
    eps: float,
    norm: str = "linf",
    loss_fn: LossFn = cross_entropy_loss,
) -> jax.Array:
    """The fast gradient sign method (Goodfellow et al. 2015, "Explaining and Harnessing
    Adversarial Examples"): one step of size eps along sign(grad) from the clean image; for
    norm "l2" the fast gradient method, along grad / ||grad||_2. Arguments as `pgd`'s; `key`
    only feeds an EOT model (default key(0)). Images the model misclassifies stay unchanged.
    """
    key = jax.random.key(0) if key is None else key
    return pgd(apply_fn, params, images, labels, key, eps=eps, steps=1, step_size=eps, norm=norm, restarts=1,
               random_start=False, loss_fn=loss_fn, early_stop=True)
