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
