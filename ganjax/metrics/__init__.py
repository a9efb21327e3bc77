"""Metrics: classification metrics and generative sample-quality metrics (FID/KID,
precision/recall, density/coverage, Inception Score, class coverage)."""

from ganjax.metrics.classification import (
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    per_class_recall,
)
from ganjax.metrics.generative import (
    class_histogram_metrics,
    density_coverage,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    inception_score,
    intra_class_fid,
    kid_from_features,
    precision_recall,
)

__all__ = [
    "accuracy",
    "balanced_accuracy",
    "class_histogram_metrics",
    "confusion_matrix",
    "density_coverage",
    "expected_calibration_error",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
    "inception_score",
    "intra_class_fid",
    "kid_from_features",
    "macro_f1",
    "per_class_recall",
    "precision_recall",
]
