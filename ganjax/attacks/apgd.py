"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", Algorithm 1): APGD-CE, untargeted on the cross-entropy,
and APGD-T, targeted on the DLR loss, the two gradient attacks of AutoAttack.

    adversarial = apgd(apply_fn, params, images, labels, key, eps=0.1)              # APGD-CE
    adversarial = apgd_targeted(apply_fn, params, images, labels, key, eps=0.1)     # APGD-T

As in the authors' implementation (fra31/auto-attack, autoattack/autopgd_base.py):
- start: x0 = clip(x + eps * t / ||t||), t uniform in [-1, 1]^d (L-inf) or Gaussian (L2);
- step size eta = 2 eps per image; momentum alpha = 0.75 (none on the first step):
      z = P(x_k + eta sign(g_k)),  x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))
  with P the projection onto the ball and [-1, 1]; g the gradient (L2: g / ||g||_2);
- checkpoints after w_1 = 0.22 N steps, then windows shrinking by 0.03 N down to 0.06 N
  (`apgd_checkpoints`: 22, 41, 57, 70, 80, 87, 93, 99 for N = 100). At a checkpoint an image's
  step size halves, and it restarts from its best point and gradient, if (1) the loss rose in
  at most rho = 0.75 of the window's steps, or (2) its step size was not halved at the last
  checkpoint and its best loss has not improved since;
- restarts, and APGD-T's targets, attack only the images no earlier run has fooled;
- APGD-T targets, for each image, the classes of its 2nd, 3rd, ... (num_target_classes + 1)th
  largest clean logit in turn (AutoAttack: num_target_classes = 9, all other classes of a
  10-class problem), each with `restarts` runs, on the targeted DLR loss
      -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
  (z_pi1 >= z_pi2 >= ... the sorted logits).

Differences from the reference, none of which changes whether an image counts as fooled:
condition (1)'s first window also compares the first step's loss with the start's (the
reference compares it with a not yet written zero); an image keeps its first misclassified
iterate (the reference its last); the run stops when every image is fooled; an image no run
fools gets the highest-loss point of its runs (the reference returns the clean image).
eps, the input checks, the [-1, 1] range and EOT are as in `ganjax.attacks.gradient`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ganjax.attacks.gradient import (
    _misclassified,
    _per_image,
    ascent_direction,
    check_attack_call,
    check_count,
    clip_to_model_range,
    cross_entropy_loss,
    normalize,
    project_and_clip,
    to_model_scale,
)
from ganjax.attacks.wrappers import EOT, ApplyFn, loss_and_logits, loss_logits_and_gradient

APGD_STEPS = 100
APGD_LOSSES = ("ce", "dlr")
RHO = 0.75
MOMENTUM = 0.75
INITIAL_STEP_FACTOR = 2.0
FIRST_WINDOW, WINDOW_DECREASE, MIN_WINDOW = 0.22, 0.03, 0.06
NUM_TARGET_CLASSES = 9
DLR_TINY = 1e-12


def dlr_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Untargeted difference-of-logits-ratio loss [B] (Croce & Hein 2020, eq. 5):
    -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3). Needs at least 3 classes."""
    ordered = jnp.sort(logits, axis=-1)
    true = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    runner_up = jnp.where(jnp.argmax(logits, axis=-1) == labels, ordered[:, -2], ordered[:, -1])
    return -(true - runner_up) / (ordered[:, -1] - ordered[:, -3] + DLR_TINY)


def targeted_dlr_loss(logits: jax.Array, labels: jax.Array, targets: jax.Array) -> jax.Array:
    """Targeted DLR loss [B] (Croce & Hein 2020, eq. 6): -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2).
    Needs at least 4 classes."""
    ordered = jnp.sort(logits, axis=-1)
    true = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    target = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    return -(true - target) / (ordered[:, -1] - 0.5 * (ordered[:, -3] + ordered[:, -4]) + DLR_TINY)


def apgd_checkpoints(steps: int) -> tuple[int, ...]:
    """Step counts (1-based) after which APGD checks its step sizes: w_1 = floor(0.22 N), then
    windows shrinking by floor(0.03 N) to no less than floor(0.06 N) (each at least 1), as
    autopgd_base.py computes the paper's p_j."""
    window = max(int(FIRST_WINDOW * steps), 1)
    decrease, minimum = max(int(WINDOW_DECREASE * steps), 1), max(int(MIN_WINDOW * steps), 1)
    checkpoints, at = [], 0
    while at + window <= steps:
        at += window
        checkpoints.append(at)
        window = max(window - decrease, minimum)
    return tuple(checkpoints)


def _window_lengths(steps: int) -> np.ndarray:
    """[steps] int32: at 0-based step i, the length of the window that ends there, else 0."""
    lengths = np.zeros(steps, np.int32)
    previous = 0
    for checkpoint in apgd_checkpoints(steps):
        lengths[checkpoint - 1] = checkpoint - previous
        previous = checkpoint
    return lengths


def _apgd_run(apply_fn, params, images, labels, key, eps, steps, loss_of_logits, found, *, windows, num_classes, norm,
              rho):
    """One APGD run in [-1, 1] units -> (first misclassified iterate, fooled [B], best point,
    best loss [B], logits at the start [B, K]).

    Evaluation i (0..steps) scores x_i, the point step i - 1 reached (x_0 the start), keeps the
    best point, applies the checkpoint that closes with step i - 1 (if any), then takes step i.
    steps 0 with eps 0 evaluates the clean images.
    The model is evaluated in one place, so XLA compiles it (and an EOT defence's sampling)
    once per program.
    """
    start_key, query_key = jax.random.split(key)
    if norm == "linf":
        direction = jax.random.uniform(start_key, images.shape, minval=-1.0, maxval=1.0)
    else:
        direction = jax.random.normal(start_key, images.shape)
    start = clip_to_model_range(images + eps * normalize(direction, norm))
    per_image = labels.shape
    no_image, zeros = jnp.zeros(per_image, bool), jnp.zeros(per_image, images.dtype)
    carry = {
        "evaluation": jnp.asarray(0),
        "iterate": start, "previous": start,
        "step_size": jnp.full(per_image, INITIAL_STEP_FACTOR, images.dtype) * eps,
        "best": start, "best_gradient": jnp.zeros_like(images), "best_loss": zeros - jnp.inf,
        "adversarial": start, "fooled": no_image,
        "last_loss": zeros + jnp.inf, "increases": jnp.zeros(per_image, jnp.int32),
        "best_loss_at_check": zeros, "reduced_at_check": ~no_image,
        "start_logits": jnp.zeros(per_image + (num_classes,), images.dtype),
    }

    def keep_going(carry):
        return jnp.logical_and(carry["evaluation"] <= steps, ~jnp.all(carry["fooled"] | found))

    def evaluate_and_step(carry):
        evaluation, iterate = carry["evaluation"], carry["iterate"]
        loss, logits, gradient = loss_logits_and_gradient(
            apply_fn, params, iterate, jax.random.fold_in(query_key, evaluation), loss_of_logits)
        misclassified = _misclassified(logits, labels)
        first = misclassified & ~carry["fooled"]
        improved = loss > carry["best_loss"]
        best = jnp.where(_per_image(improved), iterate, carry["best"])
        best_gradient = jnp.where(_per_image(improved), gradient, carry["best_gradient"])
        best_loss = jnp.where(improved, loss, carry["best_loss"])
        increases = carry["increases"] + (loss > carry["last_loss"]).astype(jnp.int32)

        # The checkpoint after step evaluation - 1: Algorithm 1's conditions (1) and (2).
        window = jnp.where(evaluation > 0, windows[jnp.maximum(evaluation - 1, 0)], 0)
        at_checkpoint = window > 0
        oscillating = increases <= window * rho
        stalled = ~carry["reduced_at_check"] & (carry["best_loss_at_check"] >= best_loss)
        reduce = at_checkpoint & (oscillating | stalled)
        step_size = jnp.where(reduce, carry["step_size"] / 2, carry["step_size"])
        point = jnp.where(_per_image(reduce), best, iterate)
        direction = jnp.where(_per_image(reduce), best_gradient, gradient)

        # Step `evaluation` with momentum (none on the first step).
        momentum = jnp.where(evaluation > 0, MOMENTUM, 1.0)
        target = project_and_clip(point + _per_image(step_size) * ascent_direction(direction, norm), images, eps, norm)
        candidate = project_and_clip(
            point + momentum * (target - point) + (1.0 - momentum) * (point - carry["previous"]), images, eps, norm)
        return {
            "evaluation": evaluation + 1,
            "iterate": candidate, "previous": point,
            "step_size": step_size,
            "best": best, "best_gradient": best_gradient, "best_loss": best_loss,
            "adversarial": jnp.where(_per_image(first), iterate, carry["adversarial"]),
            "fooled": carry["fooled"] | misclassified,
            "last_loss": loss,
            "increases": jnp.where(at_checkpoint, 0, increases),
            "best_loss_at_check": jnp.where(at_checkpoint | (evaluation == 0), best_loss, carry["best_loss_at_check"]),
            "reduced_at_check": jnp.where(at_checkpoint, reduce, carry["reduced_at_check"]),
            "start_logits": jnp.where(evaluation == 0, logits, carry["start_logits"]),
        }

    carry = jax.lax.while_loop(keep_going, evaluate_and_step, carry)
    return carry["adversarial"], carry["fooled"], carry["best"], carry["best_loss"], carry["start_logits"]


# steps fixes the checkpoint schedule, so it is static; restarts and num_targets are traced.
@functools.partial(jax.jit, static_argnames=("apply_fn", "steps", "norm", "loss", "rho"))
def _apgd(apply_fn, params, images, labels, key, eps, restarts, num_targets, *, steps, norm, loss, rho):
    """loss "ce" or "dlr": untargeted (num_targets ignored); "targeted_dlr": APGD-T over num_targets targets.

    Run 0 evaluates the clean images (no steps, no perturbation): images already misclassified
    count as found and are returned unchanged, and its logits rank APGD-T's target classes.
    Runs 1, 2, ... are the attack's (run r draws from fold_in(key, r)); run r targets the
    ((r - 1) // restarts + 2)-th largest clean logit.
    """
    windows = jnp.asarray(_window_lengths(steps))
    num_runs = restarts * num_targets if loss == "targeted_dlr" else restarts
    num_classes = jax.eval_shape(
        lambda x: loss_and_logits(apply_fn, params, x, key, lambda z: jnp.zeros(z.shape[:1]))[1], images).shape[-1]

    def more_runs(carry):
        run, _, found, _, _ = carry
        return jnp.logical_and(run <= num_runs, ~jnp.all(found))

    def attack_run(carry):
        run, adversarial, found, best_loss, classes_by_logit = carry
        clean = run == 0
        if loss == "targeted_dlr":
            rank = jnp.clip(num_classes - 2 - (run - 1) // restarts, 0, num_classes - 1)
            targets = jnp.take(classes_by_logit, rank, axis=-1)

            def loss_of_logits(logits):
                return targeted_dlr_loss(logits, labels, targets)
        else:
            untargeted = cross_entropy_loss if loss == "ce" else dlr_loss

            def loss_of_logits(logits):
                return untargeted(logits, labels)

        first, fooled, best, loss_best, start_logits = _apgd_run(
            apply_fn, params, images, labels, jax.random.fold_in(key, run), jnp.where(clean, 0.0, eps),
            jnp.where(clean, 0, steps), loss_of_logits, found, windows=windows, num_classes=num_classes, norm=norm,
            rho=rho)
        newly = ~found & fooled
        # An image no run fools keeps the highest-loss point of runs 1, 2, ... (run 0 scores the
        # clean image, for APGD-T against placeholder targets).
        higher = ~found & ~fooled & (loss_best > best_loss) & ~clean
        adversarial = jnp.where(_per_image(newly), first, jnp.where(_per_image(higher), best, adversarial))
        classes_by_logit = jnp.where(clean, jnp.argsort(start_logits, axis=-1), classes_by_logit)
        return run + 1, adversarial, found | fooled, jnp.where(higher, loss_best, best_loss), classes_by_logit

    initial = (jnp.asarray(0), images, jnp.zeros(labels.shape, bool), jnp.full(labels.shape, -jnp.inf, images.dtype),
               jnp.zeros(labels.shape + (num_classes,), jnp.int32))
    _, adversarial, _, _, _ = jax.lax.while_loop(more_runs, attack_run, initial)
    return jax.lax.stop_gradient(adversarial)


def _check_apgd(apply_fn, params, images, labels, eps, norm, steps, restarts, rho, minimum_classes, name):
    eps, num_classes = check_attack_call(apply_fn, params, images, labels, eps, norm)
    if num_classes < minimum_classes:
        raise ValueError(f"{name} needs a model with at least {minimum_classes} classes, got {num_classes}; "
                         "use apgd(..., loss='ce') or pgd.")
    if not 0.0 < float(rho) <= 1.0:
        raise ValueError(f"rho must be in (0, 1], got {rho}; the authors use {RHO}.")
    return eps, num_classes, check_count("steps", steps), check_count("restarts", restarts)


def apgd(
    apply_fn: ApplyFn | EOT,
    params: Any,
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    *,
    eps: float,
    steps: int = APGD_STEPS,
    norm: str = "linf",
    restarts: int = 1,
    loss: str = "ce",
    rho: float = RHO,
) -> jax.Array:
    """Untargeted APGD (module docstring) on `loss`: "ce" (APGD-CE) or "dlr" (APGD-DLR).

    Arguments as `ganjax.attacks.pgd`'s: images [B, H, W, C] float32 in [-1, 1], labels [B]
    int32, eps on the [0, 1] pixel scale; restart r (1, 2, ...) draws from fold_in(key, r).
    Returns adversarial images [B, H, W, C] in [-1, 1] within eps of `images`.
    """
    if loss not in APGD_LOSSES:
        raise ValueError(f"APGD loss {loss!r} is unknown; choose one of {', '.join(APGD_LOSSES)} "
                         "(targeted DLR is apgd_targeted).")
    eps, _, steps, restarts = _check_apgd(apply_fn, params, images, labels, eps, norm, steps, restarts, rho,
                                          3 if loss == "dlr" else 2, f"APGD on the {loss} loss")
    return _apgd(apply_fn, params, jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32), key,
                 to_model_scale(eps), jnp.asarray(restarts, jnp.int32), jnp.asarray(0, jnp.int32), steps=steps,
                 norm=norm, loss=loss, rho=float(rho))


def apgd_targeted(
    apply_fn: ApplyFn | EOT,
    params: Any,
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    *,
    eps: float,
    steps: int = APGD_STEPS,
    norm: str = "linf",
    restarts: int = 1,
    num_target_classes: int = NUM_TARGET_CLASSES,
    rho: float = RHO,
) -> jax.Array:
    """APGD-T (module docstring): targeted APGD on the DLR loss, over the num_target_classes
    classes with the largest clean logits after the top one (default 9, AutoAttack's; capped
    at K - 1), `restarts` runs each, i.e. up to num_target_classes * restarts runs of `steps`.
    Run r (1, 2, ...; target (r - 1) // restarts) draws from fold_in(key, r). Needs K >= 4 classes.
    Arguments and result as `apgd`'s.
    """
    eps, num_classes, steps, restarts = _check_apgd(apply_fn, params, images, labels, eps, norm, steps, restarts,
                                                    rho, 4, "APGD-T (targeted DLR)")
    num_targets = min(check_count("num_target_classes", num_target_classes), num_classes - 1)
    return _apgd(apply_fn, params, jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32), key,
                 to_model_scale(eps), jnp.asarray(restarts, jnp.int32), jnp.asarray(num_targets, jnp.int32),
                 steps=steps, norm=norm, loss="targeted_dlr", rho=float(rho))
