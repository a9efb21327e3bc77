"""Adversarial attacks on image classifiers: FGSM, PGD, APGD-CE and APGD-T, pure JAX, plus the
BPDA and EOT wrappers that let them see through pre-processing and randomised defences, and
AdvGAN (a perturbation generator trained against a classifier).

    from ganjax import attacks, classify
    state, meta = classify.load_classifier("classifiers/digits")
    apply_fn, params = attacks.classifier_apply_fn(state)            # inference-mode logits
    adversarial = attacks.pgd(apply_fn, params, images, labels, jax.random.key(0), eps=0.1, steps=40)
    adversarial = attacks.apgd(apply_fn, params, images, labels, key, eps=0.1)          # APGD-CE
    adversarial = attacks.attack("apgd-t", apply_fn, params, images, labels, key, eps=0.1)
    accuracy = attacks.robust_accuracy(apply_fn, params, adversarial, labels)

images: [B, H, W, C] float32 in [-1, 1]; labels: [B] int32. Budgets (eps, step sizes) are on
the [0, 1] pixel scale, i.e. half the distance between images in [-1, 1]
(`ganjax.attacks.gradient`'s docstring). Names: `ganjax.names.ATTACKS`, `ATTACK_NORMS`.
Modules: gradient.py (FGSM, PGD, the norm-ball geometry and the input checks), apgd.py
(Croce & Hein 2020), wrappers.py (classifier_apply_fn, BPDA, EOT), advgan.py (Xiao et al. 2018). From the command line:
`python -m ganjax.attack --classifier DIR --attack apgd-ce --eps 0.1 --out DIR`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ganjax.attacks.advgan import AdvGAN, advgan_attack, margin_loss, train_advgan
from ganjax.attacks.apgd import (
    APGD_LOSSES,
    APGD_STEPS,
    MOMENTUM,
    NUM_TARGET_CLASSES,
    RHO,
    apgd,
    apgd_checkpoints,
    apgd_targeted,
    dlr_loss,
    targeted_dlr_loss,
)
from ganjax.attacks.gradient import (
    MODEL_RANGE,
    PGD_STEPS,
    PIXEL_SCALE,
    STEP_SIZE_FACTOR,
    check_budget,
    check_count,
    check_images_and_labels,
    cross_entropy_loss,
    fgsm,
    perturbation_size,
    pgd,
    pgd_step_size,
    project,
    to_model_scale,
    to_pixel_scale,
)
from ganjax.attacks.wrappers import EOT, InferenceApply, bpda, classifier_apply_fn, loss_and_logits
from ganjax.names import ATTACK_NORMS, ATTACKS, check_attack, check_attack_norm

DEFAULT_STEPS = {"fgsm": 1, "pgd": PGD_STEPS, "apgd-ce": APGD_STEPS, "apgd-t": APGD_STEPS}
BATCH_SIZE = 500


def _settings(name: str, norm: str, steps: int | None, restarts: int) -> tuple[int, int]:
    """(steps, restarts) of attack `name`, defaults filled in, after checking the names and counts."""
    check_attack(name)
    check_attack_norm(norm)
    if steps is not None:
        check_count("steps", steps)
    check_count("restarts", restarts)
    if name == "fgsm":
        if steps not in (None, 1) or restarts != 1:
            raise ValueError(f"fgsm takes one step from the clean image (got steps={steps}, restarts={restarts}); "
                             "use --attack pgd for more steps or restarts.")
        return 1, 1
    return (DEFAULT_STEPS[name] if steps is None else steps), restarts


def attack(
    name: str,
    apply_fn,
    params: Any,
    images,
    labels,
    key: jax.Array,
    *,
    eps: float,
    norm: str = "linf",
    steps: int | None = None,
    restarts: int = 1,
) -> jax.Array:
    """Adversarial images [B, H, W, C] in [-1, 1] by attack `name` (one of ATTACKS) with its
    defaults: fgsm (one step of eps), pgd (`pgd`: DEFAULT_STEPS["pgd"] steps of 2.5 eps / steps,
    random start), apgd-ce (`apgd`, 100 steps), apgd-t (`apgd_targeted`, 9 targets x 100 steps).
    steps None takes DEFAULT_STEPS[name]. Raises ValueError for an unknown name or norm and
    for the inputs `pgd` rejects."""
    steps, restarts = _settings(name, norm, steps, restarts)
    if name == "fgsm":
        return fgsm(apply_fn, params, images, labels, key, eps=eps, norm=norm)
    if name == "pgd":
        return pgd(apply_fn, params, images, labels, key, eps=eps, steps=steps, norm=norm, restarts=restarts)
    if name == "apgd-ce":
        return apgd(apply_fn, params, images, labels, key, eps=eps, steps=steps, norm=norm, restarts=restarts)
    return apgd_targeted(apply_fn, params, images, labels, key, eps=eps, steps=steps, norm=norm, restarts=restarts)


def attack_settings(name: str, *, eps: float, norm: str = "linf", steps: int | None = None, restarts: int = 1,
                    num_classes: int | None = None) -> dict:
    """JSON-able description of what `attack(name, ...)` runs with these arguments."""
    steps, restarts = _settings(name, norm, steps, restarts)
    eps = check_budget(eps, norm)
    settings = {"attack": name, "norm": norm, "eps": eps, "eps_scale": "[0, 1] pixels",
                "eps_on_model_range": to_model_scale(eps), "steps": steps, "restarts": restarts,
                "success": "first misclassified iterate kept per image; robust = every run fails"}
    if name == "fgsm":
        settings.update(step_size=eps, random_start=False, loss="cross-entropy")
    elif name == "pgd":
        settings.update(step_size=pgd_step_size(eps, steps), step_size_rule=f"{STEP_SIZE_FACTOR} eps / steps",
                        random_start="uniform in the L-inf ball" if norm == "linf" else "on the L2 sphere",
                        loss="cross-entropy")
    else:
        settings.update(initial_step_size=2 * eps, momentum=MOMENTUM, rho=RHO,
                        checkpoints=list(apgd_checkpoints(steps)),
                        random_start="eps * t / ||t||, t uniform (L-inf) or Gaussian (L2)",
                        reference="Croce & Hein 2020, fra31/auto-attack autopgd_base.py")
        if name == "apgd-ce":
            settings["loss"] = "cross-entropy"
        else:
            targets = NUM_TARGET_CLASSES if num_classes is None else min(NUM_TARGET_CLASSES, num_classes - 1)
            settings.update(loss="targeted DLR", num_target_classes=targets,
                            targets="2nd .. (num_target_classes + 1)th largest clean logit")
    return settings


def attack_in_batches(name: str, apply_fn, params: Any, images, labels, key: jax.Array, *,
                      batch_size: int = BATCH_SIZE, **settings) -> np.ndarray:
    """`attack(name, ...)` over images [N, H, W, C] in batches of `batch_size` (the last padded by
    repeating its last image, so one program serves all); batch b draws from fold_in(key, b).
    Returns adversarial images [N, H, W, C] float32 in [-1, 1]."""
    images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int32)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    check_images_and_labels(apply_fn, params, images, labels)
    batch_size = min(batch_size, len(images))
    results = []
    for index, begin in enumerate(range(0, len(images), batch_size)):
        chunk, chunk_labels = images[begin:begin + batch_size], labels[begin:begin + batch_size]
        pad = batch_size - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            chunk_labels = np.concatenate([chunk_labels, np.repeat(chunk_labels[-1:], pad)])
        adversarial = attack(name, apply_fn, params, chunk, chunk_labels, jax.random.fold_in(key, index), **settings)
        results.append(np.asarray(adversarial)[:batch_size - pad])
    return np.concatenate(results) if results else np.zeros_like(images)


@functools.partial(jax.jit, static_argnames="apply_fn")
def _predict(apply_fn, params, images):
    _, logits = loss_and_logits(apply_fn, params, images, jax.random.key(0), lambda z: jnp.zeros(z.shape[:1]))
    return jnp.argmax(logits, axis=-1)


def predict_classes(apply_fn, params: Any, images, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Predicted classes [N] int of images [N, H, W, C] in [-1, 1], in batches; for an `EOT`
    model, the class of its mean probabilities over the draws of key(0)."""
    images = np.asarray(images, np.float32)
    return np.concatenate([np.asarray(_predict(apply_fn, params, images[begin:begin + batch_size]))
                           for begin in range(0, len(images), batch_size)] or [np.zeros(0, np.int64)])


def robust_accuracy(apply_fn, params: Any, adversarial, labels, batch_size: int = BATCH_SIZE) -> float:
    """Fraction of adversarial images [N, ...] the model still classifies as `labels` [N]: the
    robust accuracy when `adversarial` holds each image's first misclassified iterate, as the
    attacks here return."""
    labels = np.asarray(labels)
    return float(np.mean(predict_classes(apply_fn, params, adversarial, batch_size) == labels)) if len(labels) else 0.0


__all__ = [
    "APGD_LOSSES",
    "AdvGAN",
    "APGD_STEPS",
    "ATTACKS",
    "ATTACK_NORMS",
    "BATCH_SIZE",
    "DEFAULT_STEPS",
    "EOT",
    "InferenceApply",
    "MODEL_RANGE",
    "NUM_TARGET_CLASSES",
    "PGD_STEPS",
    "PIXEL_SCALE",
    "RHO",
    "advgan_attack",
    "apgd",
    "apgd_checkpoints",
    "apgd_targeted",
    "attack",
    "attack_in_batches",
    "attack_settings",
    "bpda",
    "check_budget",
    "check_images_and_labels",
    "classifier_apply_fn",
    "cross_entropy_loss",
    "dlr_loss",
    "fgsm",
    "margin_loss",
    "perturbation_size",
    "pgd",
    "pgd_step_size",
    "predict_classes",
    "project",
    "robust_accuracy",
    "targeted_dlr_loss",
    "to_model_scale",
    "to_pixel_scale",
    "train_advgan",
]
