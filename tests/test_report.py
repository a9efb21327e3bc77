import json
import os

import numpy as np
import pytest

from ganjax import names, report


def _per_seed():
    """Two strategies, three seeds, three classes."""
    table = {}
    for offset, strategy in [(0.0, "plain"), (0.1, "gan")]:
        table[strategy] = [
            {**{metric: 0.5 + offset + 0.1 * seed for metric in names.LONG_TAIL_METRICS},
             "per_class_recall": [0.2 * seed, 0.5, 1.0]}
            for seed in range(3)
        ]
    return table


def test_summarize_known_values():
    summary = report.summarize([0.5, 0.6, 0.7])
    assert summary["mean"] == pytest.approx(0.6)
    assert summary["std"] == pytest.approx(0.1)
    # t(0.975, 2) = 4.302653
    half = 4.302653 * 0.1 / np.sqrt(3)
    np.testing.assert_allclose(summary["ci95"], [0.6 - half, 0.6 + half], rtol=1e-5)
    assert summary["per_seed"] == pytest.approx([0.5, 0.6, 0.7])
    single = report.summarize([0.3])
    assert single["std"] == 0.0 and single["ci95"] == [0.3, 0.3]
    with pytest.raises(ValueError, match="non-empty"):
        report.summarize([])


def test_paired_image_bootstrap_centres_on_the_metric_difference_and_widens_with_few_images():
    from ganjax import metrics

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), [400, 400, 6])  # a long tail: 6 images in class 2
    first = rng.random((3, labels.size)) < 0.8
    other = first.copy()
    other[:, :400] |= rng.random((3, 400)) < 0.5  # many images of class 0 gained, on every seed
    low, high = report.paired_image_bootstrap(first, other, labels, "balanced_accuracy", seed=0)
    exact = np.mean([metrics.balanced_accuracy(labels, np.where(other[s], labels, (labels + 1) % 3))
                     - metrics.balanced_accuracy(labels, np.where(first[s], labels, (labels + 1) % 3)) for s in range(3)])
    assert 0 < low < exact < high
    # Accuracy weighs a class by its count: the same gain counts 400/806 instead of 1/3.
    low_acc, high_acc = report.paired_image_bootstrap(first, other, labels, "accuracy", seed=0)
    assert low_acc < np.mean(other.mean(1) - first.mean(1)) < high_acc and low_acc > low
    # Two images of the six-image class flipped to right on every seed: +11 points of balanced accuracy, the
    # same on all seeds (a seed interval of width 0 above 0), but the images' interval holds 0.
    lucky = first.copy()
    rare = np.flatnonzero(labels == 2)
    lucky[:, rare] = False
    gained = lucky.copy()
    gained[:, rare[:2]] = True
    low, high = report.paired_image_bootstrap(lucky, gained, labels, "balanced_accuracy", seed=0)
    assert low <= 0 < 2 / 6 / 3 <= high
    assert report.paired_image_bootstrap(first, first, labels, "accuracy", seed=0) == [0.0, 0.0]
    with pytest.raises(ValueError, match="not 'ece'"):
        report.paired_image_bootstrap(first, other, labels, "ece", seed=0)
    with pytest.raises(ValueError, match="seeds, images"):
        report.paired_image_bootstrap(first, other[:, :5], labels, "accuracy", seed=0)


def test_report_schema_files_and_plots(tmp_path):
    meta = {"num_seeds": 3, "data_source": "digits", "subset": "long_tail"}
    full = report.build_report(_per_seed(), meta)
    assert set(full) == {"plain", "gan", "meta"}
    for strategy in ("plain", "gan"):
        for metric in names.LONG_TAIL_METRICS:
            entry = full[strategy][metric]
            assert set(entry) == {"mean", "std", "ci95", "per_seed"}
            assert len(entry["per_seed"]) == 3 and entry["ci95"][0] <= entry["mean"] <= entry["ci95"][1]
        assert full[strategy]["per_class_recall"]["mean"] == pytest.approx([0.2, 0.5, 1.0])
    assert full["gan"]["accuracy"]["mean"] == pytest.approx(0.7)
    paths = report.write_report(os.fspath(tmp_path), full, "notes here", title=names.STUDY_TITLES["long_tail"])
    assert json.loads(open(paths["json"]).read()) == json.loads(json.dumps(full))
    text = open(paths["md"]).read()
    assert text.startswith("# Recognition on long-tailed data: digits (long_tail)\n")
    assert "| gan | **70.0 ± 10.0**" in text and "| plain | 60.0 ± 10.0" in text and "notes here" in text
    confusion = report.plot_confusion_matrix(np.eye(3) * 5, ["a", "b", "c"], "t", os.fspath(tmp_path / "c.png"))
    recall = report.plot_per_class_recall(full, ["a", "b", "c"], os.fspath(tmp_path / "r.png"))
    assert os.path.getsize(confusion) > 1000 and os.path.getsize(recall) > 1000


def test_the_recall_plots_legend_covers_no_bar():
    """Eight strategies (the long-tail study's) over ten classes: the legend sits outside the axes, inside
    the picture, clear of every bar (inside the axes it used to hide the first classes' bars)."""
    strategies = names.LONG_TAIL_STRATEGIES
    full = {strategy: {"per_class_recall": {"mean": [0.95] * 10, "std": [0.01] * 10}} for strategy in strategies}
    figure = report.per_class_recall_figure(full, [f"class {index}" for index in range(10)])
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (axes,) = figure.axes
    (legend,) = figure.legends
    box = legend.get_window_extent(renderer)
    assert [text.get_text() for text in legend.get_texts()] == list(strategies)
    assert not box.overlaps(axes.get_window_extent(renderer))
    assert not any(box.overlaps(bar.get_window_extent(renderer)) for bar in axes.patches)
    assert len(axes.patches) == 80
    assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1 and figure.bbox.y0 <= box.y0 <= box.y1 <= figure.bbox.y1
    import matplotlib.pyplot as plt

    plt.close(figure)
