"""Classification metrics: pure functions of labels, predictions and probabilities.

Labels and predictions are [N] integer class ids in [0, num_classes); probabilities are
[N, num_classes] rows summing to one. `num_classes` defaults to the width of the inputs
(probabilities) or to max(label) + 1, so pass it when a class may be absent.

Confusion matrix, accuracy, per-class recall, balanced accuracy and macro-F1 are
scikit-learn's (`sklearn.metrics`) behind ganjax's input checks and its conventions for
absent classes; expected calibration error, which scikit-learn lacks, is computed here.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn import metrics as sk_metrics


def _check_class_ids(values, name: str, num_classes: int | None = None) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class ids, got shape {values.shape}.")
    if values.size and values.dtype.kind not in "iu" and (
        values.dtype.kind != "f" or np.any(values != np.round(values))
    ):
        raise ValueError(f"{name} must hold integer class ids, got dtype {values.dtype}.")
    values = values.astype(np.int64)
    if values.size and values.min() < 0:
        raise ValueError(f"{name} holds {values.min()}; class ids must be >= 0.")
    if num_classes is not None and values.size and values.max() >= num_classes:
        raise ValueError(
            f"{name} holds class {values.max()} but num_classes={num_classes}; "
            f"class ids must lie in [0, {num_classes - 1}]."
        )
    return values


def _check_pair(labels, predictions, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    labels = _check_class_ids(labels, "labels", num_classes)
    predictions = _check_class_ids(predictions, "predictions", num_classes)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} must have the same length.")
    if labels.size == 0:
        raise ValueError("labels is empty; a classification metric needs at least one example.")
    if num_classes is None:
        num_classes = int(max(labels.max(), predictions.max())) + 1
    return labels, predictions, num_classes


def confusion_matrix(labels, predictions, num_classes: int | None = None) -> np.ndarray:
    """[K, K] int64 counts; entry [i, j] counts examples of true class i predicted as j
    (rows are true classes): sklearn.metrics.confusion_matrix over labels 0..K-1."""
    labels, predictions, num_classes = _check_pair(labels, predictions, num_classes)
    return sk_metrics.confusion_matrix(labels, predictions, labels=np.arange(num_classes)).astype(np.int64)


def accuracy(labels, predictions) -> float:
    """Fraction of examples whose prediction equals the label (sklearn's accuracy_score)."""
    labels, predictions, _ = _check_pair(labels, predictions, None)
    return float(sk_metrics.accuracy_score(labels, predictions))


def per_class_recall(labels, predictions, num_classes: int | None = None) -> np.ndarray:
    """[K] float64 recall of each class (correct / examples of that class); NaN for a class
    with no examples. sklearn's recall_score(average=None) over labels 0..K-1."""
    labels, predictions, num_classes = _check_pair(labels, predictions, num_classes)
    recall = sk_metrics.recall_score(
        labels, predictions, labels=np.arange(num_classes), average=None, zero_division=np.nan
    )
    return np.asarray(recall, np.float64)


def balanced_accuracy(labels, predictions, num_classes: int | None = None) -> float:
    """Mean recall over the classes that occur in `labels` (Brodersen et al. 2010), the
    accuracy a class-balanced test set would give: sklearn's balanced_accuracy_score.
    `num_classes` only bounds the class ids; absent classes are left out either way."""
    labels, predictions, _ = _check_pair(labels, predictions, num_classes)
    with warnings.catch_warnings():
        # sklearn warns when a predicted class is absent from `labels` (it has no recall:
        # leaving it out is the definition) and when only one class is seen (its internal
        # confusion matrix is then 1 x 1, which is all the score needs).
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true", category=UserWarning)
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        return float(sk_metrics.balanced_accuracy_score(labels, predictions))


def macro_f1(labels, predictions, num_classes: int | None = None) -> float:
    """Unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN); a class that is neither
    present nor predicted is left out, one predicted but absent (or vice versa) scores 0:
    sklearn's f1_score(average="macro", zero_division=0) over the classes in labels or
    predictions. `num_classes` only bounds the class ids."""
    labels, predictions, _ = _check_pair(labels, predictions, num_classes)
    return float(sk_metrics.f1_score(labels, predictions, average="macro", zero_division=0))


def expected_calibration_error(probs, labels, num_bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence (Guo et al. 2017, "On Calibration
    of Modern Neural Networks", eq. 3): sum over bins of |B_m| / N * |acc(B_m) - conf(B_m)|.

    probs: [N, K] class probabilities (rows sum to one); labels: [N] ints in [0, K).
    Confidences fall into `num_bins` equal-width bins on [0, 1], bin m covering
    (m / M, (m + 1) / M]; a confidence of exactly 0 goes in the first bin.
    """
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs must be [N, num_classes] with N > 0, got shape {probs.shape}.")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError(
            "probs must be finite, non-negative rows summing to one; pass softmax(logits), not logits."
        )
    labels = _check_class_ids(labels, "labels", probs.shape[1])
    if labels.shape[0] != probs.shape[0]:
        raise ValueError(f"probs has {probs.shape[0]} rows but labels has {labels.shape[0]} entries.")
    if num_bins < 1:
        raise ValueError(f"num_bins must be positive, got {num_bins}.")
    confidences = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(confidences * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    confidence_sums = np.bincount(bins, weights=confidences, minlength=num_bins)
    correct_sums = np.bincount(bins, weights=correct, minlength=num_bins)
    return float(np.sum(np.abs(correct_sums - confidence_sums)) / len(labels))
