"""The recognition experiment's report: report.json, report.md and PNG plots.

Pure functions of per-seed results; no training here.

report.json = {strategy: {metric: {"mean", "std", "ci95": [lo, hi], "per_seed": [...]},
                          "per_class_recall": {"mean": [K], "std": [K], "per_seed": [[K], ...]}},
               "meta": {...}}
std is the sample standard deviation over seeds (ddof=1); ci95 is the two-sided 95%
Student-t interval of the mean, mean +- t(0.975, S-1) std / sqrt(S) (a single seed gives
std 0 and the interval [mean, mean]).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from ganjax import faults
from ganjax.names import LONG_TAIL_METRICS as METRICS

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CONFUSION_PNG = "confusion_matrix.png"
RECALL_PNG = "per_class_recall.png"
METRIC_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced acc.",
    "macro_f1": "macro-F1",
    "rare_class_accuracy": "rare-class acc.",
    "ece": "ECE (lower is better)",
}


def t_quantile_975(degrees_of_freedom: int) -> float:
    """The 0.975 quantile of Student's t distribution."""
    from scipy import stats  # a dependency of scikit-learn

    return float(stats.t.ppf(0.975, degrees_of_freedom))


def summarize(values) -> dict[str, Any]:
    """{"mean", "std", "ci95": [lo, hi], "per_seed"} of one metric's per-seed values [S]."""
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"summarize needs a non-empty list of per-seed values, got shape {values.shape}.")
    mean = float(np.mean(values))
    if values.size == 1:
        std, half_width = 0.0, 0.0
    else:
        std = float(np.std(values, ddof=1))
        half_width = t_quantile_975(values.size - 1) * std / math.sqrt(values.size)
    return {"mean": mean, "std": std, "ci95": [mean - half_width, mean + half_width], "per_seed": values.tolist()}


# The metrics `paired_image_bootstrap` can redraw: means of per-image correctness (over classes, or over images).
IMAGE_BOOTSTRAP_METRICS = ("balanced_accuracy", "accuracy")


def paired_image_bootstrap(first, other, labels, metric: str, seed: int, resamples: int = 2000) -> list[float]:
    """95% interval [lo, hi] of the seed-mean difference other - first in `metric` ("balanced_accuracy":
    the mean recall over classes; "accuracy") when the evaluation images themselves are redrawn: a paired
    bootstrap of the images, stratified by class (each class keeps its count), the same draw for every seed
    and both models. first, other: [S, N] whether each seed's model labels each image right; labels [N].
    The seeds' paired t-interval (`summarize`) holds the images fixed; this one holds the seeds fixed."""
    first, other, labels = np.asarray(first, bool), np.asarray(other, bool), np.asarray(labels)
    if first.shape != other.shape or first.ndim != 2 or first.shape[1] != labels.shape[0]:
        raise ValueError(f"paired_image_bootstrap needs two [seeds, images] arrays and [images] labels, got "
                         f"{first.shape}, {other.shape} and {labels.shape}.")
    if metric not in IMAGE_BOOTSTRAP_METRICS:
        raise ValueError(f"paired_image_bootstrap resamples per-image correctness, which gives "
                         f"{' or '.join(IMAGE_BOOTSTRAP_METRICS)}, not {metric!r}.")
    difference = (other.astype(np.float64) - first).mean(axis=0)  # per image, over seeds: both metrics are linear
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    total = np.zeros(resamples)
    for label in classes:
        members = difference[labels == label]
        weight = 1.0 / len(classes) if metric == "balanced_accuracy" else len(members) / len(labels)
        total += weight * members[rng.integers(0, len(members), size=(resamples, len(members)))].mean(axis=1)
    return [float(value) for value in np.quantile(total, [0.025, 0.975])]


def build_report(
    per_seed: dict[str, list[dict[str, Any]]], meta: dict[str, Any], metrics: tuple[str, ...] = METRICS
) -> dict[str, Any]:
    """report.json's content from {strategy: [seed 0's metrics, seed 1's, ...]}, each a dict with
    `metrics` as floats and optionally "per_class_recall" [K]. A strategy whose seeds lack a metric
    (e.g. the robust study's defense_gan, which is attacked otherwise) has no entry for it."""
    report: dict[str, Any] = {}
    for strategy, seeds in per_seed.items():
        entry = {metric: summarize([seed[metric] for seed in seeds]) for metric in metrics
                 if all(metric in seed for seed in seeds)}
        if all("per_class_recall" in seed for seed in seeds):
            recalls = np.asarray([seed["per_class_recall"] for seed in seeds], np.float64)
            entry["per_class_recall"] = {
                "mean": recalls.mean(axis=0).tolist(),
                "std": (recalls.std(axis=0, ddof=1) if len(seeds) > 1 else np.zeros(recalls.shape[1])).tolist(),
                "per_seed": recalls.tolist(),
            }
        report[strategy] = entry
    report["meta"] = meta
    return report


def markdown_table(report: dict[str, Any], metrics: tuple[str, ...] = METRICS) -> str:
    """A strategy x metric table of mean +- std (in %), best mean per column in bold; "—" where a
    strategy lacks the metric."""
    strategies = [name for name in report if name != "meta"]
    header = "| strategy | " + " | ".join(METRIC_LABELS.get(m, m) for m in metrics) + " |"
    lines = [header, "|" + "---|" * (len(metrics) + 1)]
    best = {}
    for metric in metrics:
        means = [report[s][metric]["mean"] for s in strategies if metric in report[s]]
        best[metric] = (min(means) if metric == "ece" else max(means)) if means else None
    for strategy in strategies:
        cells = []
        for metric in metrics:
            if metric not in report[strategy]:
                cells.append("—")
                continue
            summary = report[strategy][metric]
            cell = f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f}"
            cells.append(f"**{cell}**" if summary["mean"] == best[metric] else cell)
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def write_report(
    workdir: str, report: dict[str, Any], notes: str = "", metrics: tuple[str, ...] = METRICS,
    title: str = "Recognition",
) -> dict[str, str]:
    """Writes workdir/report.json and workdir/report.md (`title`, the table, then `notes`);
    returns their paths."""
    os.makedirs(workdir, exist_ok=True)
    json_path = os.path.join(workdir, REPORT_JSON)
    with open(json_path + ".tmp", "w") as stream:
        json.dump(report, stream, indent=1, default=_json_default)
    faults.maybe_kill("report_write")
    os.replace(json_path + ".tmp", json_path)
    meta = report.get("meta", {})
    seeds = meta.get("num_seeds", "?")
    text = [
        f"# {title}: {meta.get('data_source', '?')} ({meta.get('subset', '?')})",
        "",
        f"Test-set metrics in %, mean ± std over {seeds} classifier seeds (95% t-intervals in report.json).",
        "",
        markdown_table(report, metrics),
        "",
        notes,
    ]
    md_path = os.path.join(workdir, REPORT_MD)
    with open(md_path, "w") as stream:
        stream.write("\n".join(text).rstrip() + "\n")
    return {"json": json_path, "md": md_path}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(confusion: np.ndarray, class_names: list[str], title: str, path: str) -> str:
    """Row-normalised confusion matrix [K, K] (rows: true class) as a PNG."""
    plt = _pyplot()
    confusion = np.asarray(confusion, np.float64)
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for (row, column), rate in np.ndenumerate(rates):
        axes.text(column, row, f"{rate:.2f}", ha="center", va="center", fontsize=7,
                  color="white" if rate > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path + ".tmp", dpi=100, format="png")  # then renamed: a killed run leaves no half PNG
    os.replace(path + ".tmp", path)
    plt.close(figure)
    return path


def plot_per_class_recall(report: dict[str, Any], class_names: list[str], path: str) -> str:
    """Writes `per_class_recall_figure` to `path` as a PNG; returns path."""
    plt = _pyplot()
    figure = per_class_recall_figure(report, class_names)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path + ".tmp", dpi=100, format="png")  # then renamed: a killed run leaves no half PNG
    os.replace(path + ".tmp", path)
    plt.close(figure)
    return path


def per_class_recall_figure(report: dict[str, Any], class_names: list[str]):
    """Grouped bars: mean test recall of every class under every strategy (error bars: std over seeds);
    a matplotlib Figure, the legend right of the axes."""
    plt = _pyplot()
    strategies = [name for name in report if name != "meta" and "per_class_recall" in report[name]]
    width = 0.8 / max(len(strategies), 1)
    positions = np.arange(len(class_names))
    # Constrained layout makes room for the legend outside the axes, where it hides no bar (inside, it
    # covered the first classes' bars whatever the corner).
    figure, axes = plt.subplots(figsize=(max(6.0, 0.9 * len(class_names) + 2) + 1.5, 4), layout="constrained")
    for index, strategy in enumerate(strategies):
        recall = report[strategy]["per_class_recall"]
        axes.bar(positions + (index - (len(strategies) - 1) / 2) * width, recall["mean"], width,
                 yerr=recall["std"], label=strategy, capsize=1)
    axes.set_xticks(positions, class_names, rotation=45, ha="right")
    axes.set_ylim(0, 1)
    axes.set_ylabel("test recall")
    axes.set_title("Per-class recall (classes in training-frequency order as given)")
    figure.legend(loc="outside right upper", fontsize=8)
    return figure
