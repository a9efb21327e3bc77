"""GAN and classification losses and penalties: pure functions of arrays.

Every discriminator loss takes logits on real and generated images, [B] float32, and
returns a scalar; every generator loss takes the logits on generated images.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from ganjax.names import GAN_LOSSES



def discriminator_loss(kind: str, real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> jnp.ndarray:
    """Scalar loss the discriminator minimises."""
    if kind == "non_saturating":
        # Goodfellow et al. 2014, eq. 1: -log D(x) - log(1 - D(G(z))).
        return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))
    if kind == "hinge":
        # Lim & Ye 2017; Miyato et al. 2018, eq. 17.
        return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
    if kind == "wgan":
        # Arjovsky et al. 2017; pair with `gradient_penalty` (Gulrajani et al. 2017).
        return jnp.mean(fake_logits) - jnp.mean(real_logits)
    if kind == "least_squares":
        # Mao et al. 2017, eq. 2 with a=0, b=c=1.
        return 0.5 * jnp.mean((real_logits - 1.0) ** 2) + 0.5 * jnp.mean(fake_logits**2)
    raise ValueError(f"GAN loss {kind!r} is unknown; choose one of {GAN_LOSSES}.")


def generator_loss(kind: str, fake_logits: jnp.ndarray) -> jnp.ndarray:
    """Scalar loss the generator minimises."""
    if kind == "non_saturating":
        return jnp.mean(jax.nn.softplus(-fake_logits))
    if kind in ("hinge", "wgan"):
        return -jnp.mean(fake_logits)
    if kind == "least_squares":
        return 0.5 * jnp.mean((fake_logits - 1.0) ** 2)
    raise ValueError(f"GAN loss {kind!r} is unknown; choose one of {GAN_LOSSES}.")


def r1_penalty(score_fn: Callable[[jnp.ndarray], jnp.ndarray], real_images: jnp.ndarray) -> jnp.ndarray:
    """Mescheder et al. 2018, eq. 9 without the gamma/2 factor: E ||grad_x D(x)||^2 on reals."""
    gradients = jax.grad(lambda images: jnp.sum(score_fn(images)))(real_images)
    return jnp.mean(jnp.sum(gradients.reshape(gradients.shape[0], -1) ** 2, axis=-1))


def gradient_penalty(
    score_fn: Callable[[jnp.ndarray], jnp.ndarray],
    real_images: jnp.ndarray,
    fake_images: jnp.ndarray,
    key: jax.Array,
) -> jnp.ndarray:
    """Gulrajani et al. 2017, eq. 3: E (||grad D(x_hat)|| - 1)^2 on random interpolates."""
    mix = jax.random.uniform(key, (real_images.shape[0], 1, 1, 1), dtype=real_images.dtype)
    interpolates = mix * real_images + (1.0 - mix) * fake_images
    gradients = jax.grad(lambda images: jnp.sum(score_fn(images)))(interpolates)
    norms = jnp.sqrt(jnp.sum(gradients.reshape(gradients.shape[0], -1) ** 2, axis=-1) + 1e-12)
    return jnp.mean((norms - 1.0) ** 2)


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray, weights: jnp.ndarray | None = None) -> jnp.ndarray:
    """Mean softmax cross-entropy; logits [B, K], labels [B] int; optional per-example weights [B]."""
    return weighted_mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels), weights)


def weighted_mean(per_example: jnp.ndarray, weights: jnp.ndarray | None = None) -> jnp.ndarray:
    """The mean of per-example losses [B], weighted by `weights` [B] when given (sum w l / sum w)."""
    if weights is None:
        return jnp.mean(per_example)
    return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1e-12)


def soft_cross_entropy(logits: jnp.ndarray, targets: jnp.ndarray, weights: jnp.ndarray | None = None) -> jnp.ndarray:
    """Mean softmax cross-entropy against target distributions [B, K] (one-hot rows give `cross_entropy`);
    optional per-example weights [B]."""
    return weighted_mean(optax.softmax_cross_entropy(logits, targets), weights)


def semi_supervised_discriminator_loss(
    labelled_logits: jnp.ndarray,
    labels: jnp.ndarray,
    unlabelled_logits: jnp.ndarray,
    fake_logits: jnp.ndarray,
    unlabelled_weight: float = 1.0,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(supervised loss, unsupervised loss) of the K+1 semi-supervised discriminator.

    Salimans et al. 2016, Sec. 5, with the (K+1)th "fake" logit fixed at 0 (their eq. after 5):
    for class logits l(x) [B, K], D(x) = Z(x) / (Z(x) + 1) with Z(x) = sum_k exp l_k(x), so
    log D(x) = -softplus(-LSE l(x)) and log(1 - D(x)) = -softplus(LSE l(x)).
    L_supervised = cross-entropy of the labelled images over the K real classes;
    L_unsupervised = 1/2 [-log D(x_unlabelled) - log(1 - D(G(z)))] (the 1/2 as in the
    authors' code), weighted by unlabelled_weight.
    """
    supervised = cross_entropy(labelled_logits, labels)
    real_energy = jax.nn.logsumexp(unlabelled_logits, axis=-1)
    fake_energy = jax.nn.logsumexp(fake_logits, axis=-1)
    unsupervised = 0.5 * (jnp.mean(jax.nn.softplus(-real_energy)) + jnp.mean(jax.nn.softplus(fake_energy)))
    return supervised, unlabelled_weight * unsupervised


def mean_entropy(logits: jnp.ndarray) -> jnp.ndarray:
    """Mean entropy (nats) of the softmax of logits [B, K]; minimised on unlabelled images it
    pushes a classifier's decision boundaries away from them (Grandvalet & Bengio 2005; used
    with the K+1 GAN by Dai et al. 2017)."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1))


def kl_divergence_logits(p_logits: jnp.ndarray, q_logits: jnp.ndarray) -> jnp.ndarray:
    """Mean over the batch of KL(softmax(p_logits) || softmax(q_logits)) in nats; logits [B, K]."""
    return jnp.mean(optax.losses.kl_divergence_with_log_targets(jax.nn.log_softmax(q_logits, axis=-1),
                                                                jax.nn.log_softmax(p_logits, axis=-1)))


def virtual_adversarial_perturbation(logits_fn: Callable[[jnp.ndarray], jnp.ndarray], images: jnp.ndarray,
                                     clean_logits: jnp.ndarray, key: jax.Array, epsilon: float, xi: float,
                                     iterations: int = 1) -> jnp.ndarray:
    """Miyato et al. 2018 (VAT), eq. 12-14: the perturbation [B, ...] of L2 norm `epsilon` per image that most
    changes the prediction, KL(p(x) || p(x + r)) with p(x) = softmax(clean_logits) [B, K], found by `iterations`
    power iterations from a random direction (each a gradient of that KL at r = xi x the unit direction, which
    at small xi points along the divergence's dominant curvature). `logits_fn` maps images to logits; it must
    draw the same training noise as clean_logits did, so that only r changes the prediction. No gradient flows
    out of the result."""
    from ganjax.attacks.gradient import normalize  # each image's direction to unit L2 norm

    clean_logits = jax.lax.stop_gradient(clean_logits)

    def divergence(perturbation):
        return kl_divergence_logits(clean_logits, logits_fn(images + perturbation))

    direction = normalize(jax.random.normal(key, images.shape, images.dtype), "l2")
    for _ in range(iterations):
        direction = normalize(jax.grad(divergence)(xi * direction), "l2")
    return jax.lax.stop_gradient(epsilon * direction)


def pseudo_label_loss(teacher_logits: jnp.ndarray, student_logits: jnp.ndarray,
                      threshold: float) -> tuple[jnp.ndarray, jnp.ndarray]:
    """FixMatch's unlabelled loss (Sohn et al. 2020, eq. 4): each image whose teacher prediction (logits [B, K],
    no gradient) is at least `threshold` confident takes its argmax as a hard label for the student's logits
    [B, K] (another view of the same images); the cross-entropy summed over those images is divided by the
    whole batch B. Returns (loss, the share of the batch kept)."""
    probabilities = jax.nn.softmax(jax.lax.stop_gradient(teacher_logits), axis=-1)
    kept = (jnp.max(probabilities, axis=-1) >= threshold).astype(student_logits.dtype)
    per_image = optax.softmax_cross_entropy_with_integer_labels(student_logits, jnp.argmax(probabilities, axis=-1))
    return jnp.mean(kept * per_image), jnp.mean(kept)


def feature_matching_loss(real_features: jnp.ndarray, fake_features: jnp.ndarray) -> jnp.ndarray:
    """Salimans et al. 2016, Sec. 3.1: || E f(x) - E f(G(z)) ||^2 over a batch, as the mean over
    features of the squared difference of batch means; features [B, F]."""
    return jnp.mean((jnp.mean(real_features, axis=0) - jnp.mean(fake_features, axis=0)) ** 2)


def pull_away_term(features: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """Zhao et al. 2017 (EBGAN), used on the generator by Dai et al. 2017 (Bad GAN): the mean
    squared cosine similarity between the features [B, F] of distinct samples, in [0, 1].
    Minimised by a generator, it spreads its samples apart (a proxy for the generator's entropy).
    Needs B >= 2."""
    batch = features.shape[0]
    if batch < 2:
        raise ValueError(f"pull_away_term needs at least 2 samples, got a batch of {batch}.")
    unit = features / (jnp.linalg.norm(features, axis=-1, keepdims=True) + eps)
    cosine = unit @ unit.T
    off_diagonal = jnp.sum(cosine**2) - jnp.sum(jnp.diagonal(cosine) ** 2)
    return off_diagonal / (batch * (batch - 1))


def manifold_smoothness(logits: jnp.ndarray, perturbed_logits: jnp.ndarray, epsilon: float) -> jnp.ndarray:
    """Lecouat et al. 2018's manifold regulariser as a finite difference: the mean over the batch
    of || (f(G(z + epsilon d)) - f(G(z))) / epsilon ||^2, with d a random unit direction in the
    generator's noise space and f the class logits [B, K]. As epsilon -> 0 it estimates
    ||J_z f(G(z))||_F^2 / dim(z), the classifier's change along the generator's manifold;
    dividing by epsilon^2 keeps its weight comparable across epsilons."""
    if epsilon <= 0:
        raise ValueError(f"manifold_smoothness needs a positive epsilon, got {epsilon}.")
    return jnp.mean(jnp.sum(((perturbed_logits - logits) / epsilon) ** 2, axis=-1))
