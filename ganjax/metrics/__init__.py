"""Metrics: classification metrics (and, as they arrive, FID/KID and precision/recall)."""

from ganjax.metrics.classification import (
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    per_class_recall,
)

__all__ = [
    "accuracy",
    "balanced_accuracy",
    "confusion_matrix",
    "expected_calibration_error",
    "macro_f1",
    "per_class_recall",
]
