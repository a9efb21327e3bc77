"""Sample-quality metrics of a generator from features [N, D] of real and generated images.

Every function takes plain arrays (numpy or JAX) and returns Python floats, so the same
code scores Inception pool3 features, a domain classifier's features or anything else.
Statistics that need float64 (covariances, matrix square roots, kernel sums) run in
numpy; nearest-neighbour distance matrices run in JAX, in row chunks, in float32.

References:
  FID:  Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule ...", eq. (6).
  KID:  Binkowski et al. 2018, "Demystifying MMD GANs", sec. 3 (cubic polynomial kernel,
        unbiased MMD^2, mean and std over random subsets).
  P/R:  Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric ...", eq. (1)-(3).
  D/C:  Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics ...", eq. (3)-(4).
  IS:   Salimans et al. 2016, "Improved Techniques for Training GANs", sec. 4.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Rows of the query set per JAX distance chunk: 1024 x N float32 distances at a time.
DISTANCE_CHUNK = 1024


def check_features(features: Any, name: str, min_samples: int, metric: str) -> np.ndarray:
    """`features` as a finite float64 [N, D] array with N >= min_samples, else ValueError."""
    array = np.asarray(features)
    if array.ndim != 2:
        raise ValueError(f"{metric}: {name} features must be [num_samples, dim], got shape {array.shape}.")
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{metric}: {name} features must be numbers, got dtype {array.dtype}.")
    array = array.astype(np.float64)
    if len(array) < min_samples:
        raise ValueError(
            f"{metric} needs at least {min_samples} {name} samples, got shape {array.shape}; generate or load more."
        )
    if not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.all(np.isfinite(array), axis=1)))
        raise ValueError(
            f"{metric}: {name} features of shape {array.shape} hold NaN or inf in {bad} rows; "
            "check the images (a diverged generator) and the feature extractor."
        )
    return array


def _check_pair(real: Any, fake: Any, min_samples: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    real = check_features(real, "real", min_samples, metric)
    fake = check_features(fake, "generated", min_samples, metric)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"{metric}: real features {real.shape} and generated features {fake.shape} have different "
            "widths; extract both with the same feature network."
        )
    return real, fake


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], covariance [D, D]) in float64 of features [N, D], N >= 2 (unbiased covariance)."""
    features = check_features(features, "input", 2, "feature_statistics")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance(mean1: Any, cov1: Any, mean2: Any, cov2: Any) -> float:
    """Frechet distance between Gaussians N(mean1, cov1) and N(mean2, cov2):
    ||mean1 - mean2||^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)).

    tr((cov1 cov2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the
    symmetric PSD matrix cov1^(1/2) cov2 cov1^(1/2), which has the same eigenvalues as
    cov1 cov2; unlike scipy.linalg.sqrtm of the non-symmetric product, it has no complex
    round-off to discard and no singular-matrix failure.
    """
    mean1, mean2 = np.asarray(mean1, np.float64), np.asarray(mean2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    if mean1.shape != mean2.shape or cov1.shape != cov2.shape or cov1.shape != (mean1.size, mean1.size):
        raise ValueError(
            f"frechet_distance: means {mean1.shape}, {mean2.shape} and covariances {cov1.shape}, {cov2.shape} "
            "must be [D] and [D, D] for one D."
        )
    sqrt_cov1 = _psd_sqrt(cov1)
    middle = sqrt_cov1 @ cov2 @ sqrt_cov1
    trace_sqrt_product = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)))
    difference = mean1 - mean2
    distance = difference @ difference + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt_product
    return float(max(distance, 0.0))


def fid_from_features(real: Any, fake: Any) -> float:
    """Frechet Inception Distance (Heusel et al. 2017) between features real [N, D] and
    fake [M, D] (N, M >= 2); 0 for identical statistics. Scale depends on the feature network."""
    real, fake = _check_pair(real, fake, 2, "FID")
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Binkowski et al. 2018, sec. 3: k(x, y) = (x.y / d + 1)^3.
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _unbiased_mmd2(real: np.ndarray, fake: np.ndarray) -> float:
    n, m = len(real), len(fake)
    k_rr, k_ff, k_rf = _polynomial_kernel(real, real), _polynomial_kernel(fake, fake), _polynomial_kernel(real, fake)
    return float(
        (k_rr.sum() - np.trace(k_rr)) / (n * (n - 1))
        + (k_ff.sum() - np.trace(k_ff)) / (m * (m - 1))
        - 2 * k_rf.mean()
    )


def kid_from_features(
    real: Any, fake: Any, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): (mean, std) over `num_subsets`
    random subsets of `subset_size` real and generated samples (drawn without replacement;
    shrunk to the smaller set when it has fewer) of the unbiased MMD^2 with kernel
    (x.y/D + 1)^3. Unbiased: about 0 (and can be slightly negative) for one distribution.
    """
    if num_subsets < 1 or subset_size < 2:
        raise ValueError(f"KID needs num_subsets >= 1 and subset_size >= 2, got {num_subsets} and {subset_size}.")
    real, fake = _check_pair(real, fake, 2, "KID")
    size = min(subset_size, len(real), len(fake))
    rng = np.random.default_rng(seed)
    estimates = [
        _unbiased_mmd2(real[rng.choice(len(real), size, replace=False)], fake[rng.choice(len(fake), size, replace=False)])
        for _ in range(num_subsets)
    ]
    return float(np.mean(estimates)), float(np.std(estimates))


@jax.jit
def _squared_distances(queries: jax.Array, points: jax.Array) -> jax.Array:
    squared = (
        jnp.sum(queries**2, axis=1)[:, None] - 2 * queries @ points.T + jnp.sum(points**2, axis=1)[None, :]
    )
    return jnp.maximum(squared, 0.0)


@functools.partial(jax.jit, static_argnums=2)
def _kth_smallest(queries: jax.Array, points: jax.Array, k: int) -> jax.Array:
    return -jax.lax.top_k(-_squared_distances(queries, points), k)[0][:, -1]


@jax.jit
def _ball_membership(queries: jax.Array, centres: jax.Array, squared_radii: jax.Array) -> tuple[jax.Array, jax.Array]:
    inside = _squared_distances(queries, centres) <= squared_radii[None, :]
    return jnp.sum(inside, axis=1), jnp.any(inside, axis=0)


def _chunks(array: np.ndarray):
    for start in range(0, len(array), DISTANCE_CHUNK):
        yield jnp.asarray(array[start : start + DISTANCE_CHUNK], jnp.float32)


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Squared distance [N] from each row of features [N, D] to its k-th nearest other row."""
    points = jnp.asarray(features, jnp.float32)
    # The nearest point to each row is itself (distance 0), so take the (k+1)-th smallest.
    return np.concatenate([np.asarray(_kth_smallest(chunk, points, k + 1)) for chunk in _chunks(features)])


def _membership(queries: np.ndarray, centres: np.ndarray, squared_radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(number of balls holding each query [Q], whether each ball holds some query [C])."""
    centres_device, radii_device = jnp.asarray(centres, jnp.float32), jnp.asarray(squared_radii, jnp.float32)
    counts, covered = [], np.zeros(len(centres), bool)
    for chunk in _chunks(queries):
        chunk_counts, chunk_covered = _ball_membership(chunk, centres_device, radii_device)
        counts.append(np.asarray(chunk_counts))
        covered |= np.asarray(chunk_covered)
    return np.concatenate(counts), covered


def precision_recall(real: Any, fake: Any, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds.

    precision: fraction of generated samples inside the real manifold (the union of balls
    around real samples, each with the radius to its k-th nearest real neighbour);
    recall: fraction of real samples inside the generated manifold. Needs N, M > k.
    """
    real, fake = _check_pair(real, fake, k + 1, f"Precision/recall (k={k})")
    real_counts, _ = _membership(real, fake, knn_radii(fake, k))
    fake_counts, _ = _membership(fake, real, knn_radii(real, k))
    return {"precision": float(np.mean(fake_counts > 0)), "recall": float(np.mean(real_counts > 0))}


def density_coverage(real: Any, fake: Any, k: int = 5) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020, eq. 3-4) with k-NN balls around real samples.

    density: mean number of real balls holding a generated sample, divided by k (about 1
    when both distributions match; above 1 when samples crowd dense real regions);
    coverage: fraction of real balls holding at least one generated sample (about
    1 - 2^-k = 0.97 for k=5 when both match with N = M). Needs N, M > k.
    """
    real, fake = _check_pair(real, fake, k + 1, f"Density/coverage (k={k})")
    fake_counts, real_covered = _membership(fake, real, knn_radii(real, k))
    return {"density": float(np.sum(fake_counts) / (k * len(fake))), "coverage": float(np.mean(real_covered))}


def inception_score(probabilities: Any, num_splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), (mean, std) over
    `num_splits` equal consecutive splits, from class probabilities [N, K] (rows sum to 1).

    K for a perfectly confident, perfectly class-balanced sample; 1 for a single class.
    """
    probabilities = check_features(probabilities, "class probability", num_splits, "Inception Score")
    if np.any(probabilities < 0) or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError(
            f"Inception Score needs class probabilities [N, K] with rows summing to 1 (shape {probabilities.shape}); "
            "apply softmax to logits first."
        )
    scores = []
    for split in np.array_split(probabilities, num_splits):
        marginal = split.mean(axis=0, keepdims=True)
        kl = np.sum(split * (np.log(np.clip(split, 1e-12, None)) - np.log(np.clip(marginal, 1e-12, None))), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def class_histogram_metrics(
    predicted_labels: Any, conditioning_labels: Any, num_classes: int, min_fraction: float = 0.1
) -> dict[str, Any]:
    """Mode coverage of a conditional generator judged by a classifier.

    Args:
      predicted_labels: [N] classes the domain classifier assigns to generated images.
      conditioning_labels: [N] classes the images were generated for.
      min_fraction: a class counts as covered when the classifier assigns it at least this
        fraction of the number of images conditioned on it.

    Returns:
      classes_covered: number of conditioned classes that are covered;
      class_coverage: classes_covered / number of conditioned classes;
      class_kl: KL(generated class histogram || conditioning histogram) in nats, with both
        histograms smoothed by 1e-6 so a class never predicted or never asked for stays finite;
      generated_class_counts: [K] counts of predicted classes.
    """
    predicted = np.asarray(predicted_labels).reshape(-1)
    conditioning = np.asarray(conditioning_labels).reshape(-1)
    if predicted.shape != conditioning.shape or predicted.size == 0:
        raise ValueError(
            f"class_histogram_metrics needs as many predicted as conditioning labels (at least one), "
            f"got shapes {np.shape(predicted_labels)} and {np.shape(conditioning_labels)}."
        )
    for name, labels in (("predicted", predicted), ("conditioning", conditioning)):
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"{name} labels span [{labels.min()}, {labels.max()}]; they must lie in [0, {num_classes - 1}].")
    generated_counts = np.bincount(predicted, minlength=num_classes)
    conditioning_counts = np.bincount(conditioning, minlength=num_classes)
    asked = conditioning_counts > 0
    covered = asked & (generated_counts >= np.maximum(min_fraction * conditioning_counts, 1))
    generated_p = (generated_counts + 1e-6) / (generated_counts + 1e-6).sum()
    conditioning_p = (conditioning_counts + 1e-6) / (conditioning_counts + 1e-6).sum()
    return {
        "classes_covered": int(covered.sum()),
        "class_coverage": float(covered.sum() / asked.sum()),
        "class_kl": float(np.sum(generated_p * np.log(generated_p / conditioning_p))),
        "generated_class_counts": generated_counts.tolist(),
    }


def intra_class_fid(
    real: Any, real_labels: Any, fake: Any, fake_labels: Any, num_classes: int
) -> tuple[float, list[float]]:
    """Intra-class FID (Miyato & Koyama 2018): (mean over classes, per-class list) of the FID
    between real and generated features of each class. Every class needs >= 2 of each."""
    real, fake = _check_pair(real, fake, 2, "Intra-class FID")
    real_labels, fake_labels = np.asarray(real_labels).reshape(-1), np.asarray(fake_labels).reshape(-1)
    if len(real_labels) != len(real) or len(fake_labels) != len(fake):
        raise ValueError(
            f"Intra-class FID: labels {real_labels.shape}, {fake_labels.shape} must match features "
            f"{real.shape}, {fake.shape} row for row."
        )
    per_class = []
    for label in range(num_classes):
        real_class, fake_class = real[real_labels == label], fake[fake_labels == label]
        if len(real_class) < 2 or len(fake_class) < 2:
            raise ValueError(
                f"Intra-class FID needs at least 2 real and 2 generated samples of class {label}, got "
                f"{len(real_class)} and {len(fake_class)}."
            )
        per_class.append(fid_from_features(real_class, fake_class))
    return float(np.mean(per_class)), per_class
