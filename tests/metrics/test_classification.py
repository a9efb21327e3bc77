import warnings

import numpy as np
import pytest
from sklearn import metrics as sk

from ganjax.metrics import (
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    per_class_recall,
)

LABELS = np.array([0, 0, 0, 1, 1, 2])
PREDICTIONS = np.array([0, 0, 1, 1, 2, 2])


def test_hand_computed_values():
    np.testing.assert_array_equal(confusion_matrix(LABELS, PREDICTIONS), [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert accuracy(LABELS, PREDICTIONS) == pytest.approx(4 / 6)
    np.testing.assert_allclose(per_class_recall(LABELS, PREDICTIONS), [2 / 3, 1 / 2, 1])
    assert balanced_accuracy(LABELS, PREDICTIONS) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # F1 = 2TP / (2TP + FP + FN): class 0: 4/5, class 1: 2/4, class 2: 2/3.
    assert macro_f1(LABELS, PREDICTIONS) == pytest.approx((4 / 5 + 2 / 4 + 2 / 3) / 3)


def test_absent_class_has_nan_recall_and_is_left_out_of_balanced_accuracy():
    recall = per_class_recall([0, 0, 2], [0, 1, 2], num_classes=4)
    assert recall[0] == 0.5 and np.isnan(recall[1]) and recall[2] == 1.0 and np.isnan(recall[3])
    assert balanced_accuracy([0, 0, 2], [0, 1, 2], num_classes=4) == pytest.approx(0.75)
    assert confusion_matrix([0, 0, 2], [0, 1, 2], num_classes=4).shape == (4, 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    # Skewed classes; class 5 never occurs as a label, class 6 is never predicted.
    labels = rng.choice(7, size=300, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.0, 0.05])
    predictions = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 6, 300))
    np.testing.assert_array_equal(
        confusion_matrix(labels, predictions, 7), sk.confusion_matrix(labels, predictions, labels=range(7))
    )
    assert accuracy(labels, predictions) == pytest.approx(sk.accuracy_score(labels, predictions))
    with pytest.warns(UserWarning):  # sklearn warns about class 5 (predicted, never true)
        expected = sk.balanced_accuracy_score(labels, predictions)
    assert balanced_accuracy(labels, predictions) == pytest.approx(expected)
    assert macro_f1(labels, predictions) == pytest.approx(
        sk.f1_score(labels, predictions, average="macro", zero_division=0)
    )
    np.testing.assert_allclose(
        per_class_recall(labels, predictions, 7)[:5],
        sk.recall_score(labels, predictions, labels=range(5), average=None, zero_division=0),
    )


def _numpy_reference(labels, predictions, num_classes):
    """The metrics' documented definitions written out from a confusion matrix, independently
    of scikit-learn: (confusion, per-class recall, balanced accuracy, macro-F1)."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (labels, predictions), 1)
    support = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, np.diag(counts) / support, np.nan)
    denominators = counts.sum(axis=0) + counts.sum(axis=1)  # 2 TP + FP + FN
    seen = denominators > 0
    f1 = np.mean(2.0 * np.diag(counts)[seen] / denominators[seen])
    return counts, recall, np.nanmean(recall), f1


@pytest.mark.parametrize("seed", range(6))
def test_metrics_follow_their_definitions_with_absent_classes_and_warn_nothing(seed):
    rng = np.random.default_rng(seed)
    num_classes = 9  # classes 7 and 8 neither occur nor are predicted
    size = int(rng.integers(1, 400))
    # Class 5 never a label (but predicted), class 6 a label but never predicted.
    labels = rng.choice(7, size=size, p=[0.3, 0.2, 0.15, 0.1, 0.1, 0.0, 0.15])
    predictions = np.where(rng.random(size) < 0.5, labels, rng.integers(0, 6, size))
    predictions = np.where(predictions == 6, 5, predictions)
    counts, recall, balanced, f1 = _numpy_reference(labels, predictions, num_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn's ill-defined-metric warnings must stay inside
        np.testing.assert_array_equal(confusion_matrix(labels, predictions, num_classes), counts)
        assert confusion_matrix(labels, predictions, num_classes).dtype == np.int64
        np.testing.assert_allclose(per_class_recall(labels, predictions, num_classes), recall)
        assert np.isnan(per_class_recall(labels, predictions, num_classes)[[5, 7, 8]]).all()
        assert balanced_accuracy(labels, predictions, num_classes) == pytest.approx(balanced)
        assert balanced_accuracy(labels, predictions) == pytest.approx(balanced)
        assert macro_f1(labels, predictions, num_classes) == pytest.approx(f1)
        assert macro_f1(labels, predictions) == pytest.approx(f1)  # unseen classes 7, 8 left out
        assert accuracy(labels, predictions) == pytest.approx(np.mean(labels == predictions))


def test_macro_f1_scores_zero_for_a_class_only_predicted_and_leaves_out_unseen_ones():
    # Class 0: F1 2/3, class 1 (predicted, never true): 0, class 2: 1; class 3 unseen.
    assert macro_f1([0, 0, 2], [0, 1, 2], num_classes=4) == pytest.approx((2 / 3 + 0 + 1) / 3)


def test_a_single_class_gives_perfect_scores_without_warnings():
    labels = np.zeros(5, np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(confusion_matrix(labels, labels, 2), [[5, 0], [0, 0]])
        assert accuracy(labels, labels) == balanced_accuracy(labels, labels) == macro_f1(labels, labels, 2) == 1.0
        np.testing.assert_array_equal(per_class_recall(labels, labels, 2), [1.0, np.nan])


def test_integer_valued_float_ids_are_accepted():
    assert accuracy(np.array([0.0, 1.0, 2.0]), np.array([0, 1, 1])) == pytest.approx(2 / 3)
    np.testing.assert_array_equal(confusion_matrix([1.0, 0.0], [1, 1]), [[0, 1], [0, 1]])


def test_expected_calibration_error_known_example():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.65, 0.35], [0.35, 0.65]])
    labels = np.array([0, 1, 0, 0])
    # Bin (0.9, 1]: 2 examples, accuracy 1/2, confidence 0.95; bin (0.6, 0.7]: 2 examples,
    # accuracy 1/2, confidence 0.65. ECE = 2/4 * 0.45 + 2/4 * 0.15.
    assert expected_calibration_error(probs, labels, num_bins=10) == pytest.approx(0.3)
    # Confidence 0.75 with three of four right is perfectly calibrated.
    calibrated = np.tile([[0.75, 0.25]], (4, 1))
    assert expected_calibration_error(calibrated, [0, 0, 0, 1]) == pytest.approx(0.0)
    # One bin gives |accuracy - mean confidence|.
    assert expected_calibration_error(probs, labels, num_bins=1) == pytest.approx(abs(0.5 - 0.8))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"class 3 but num_classes=3"):
        confusion_matrix([0, 3], [0, 1], num_classes=3)
    with pytest.raises(ValueError, match="labels holds -1"):
        accuracy([-1, 0], [0, 0])
    with pytest.raises(ValueError, match="same length"):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match="integer class ids"):
        accuracy([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="softmax"):
        expected_calibration_error(np.array([[2.0, -1.0]]), [0])
    with pytest.raises(ValueError, match=r"labels holds class 2"):
        expected_calibration_error(np.array([[0.5, 0.5]]), [2])
