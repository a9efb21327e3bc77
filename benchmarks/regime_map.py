"""When does the GAN help recognition? The map of regimes: data regimes x classifier capacities.

    python benchmarks/regime_map.py --workdir workdirs/regime_map [--cells fashion_1pct,fashion_lt10]
        [--classifiers cnn,resnet] [--set KEY=VALUE ...] [--report-only]

Each cell (a data regime of CELLS x a classifier of CLASSIFIERS) is one long-tail-engine study of
configs/regime_map.py with the cell's overrides, run in WORKDIR/REGIME-CLASSIFIER; a rerun reuses every
finished strategy and grid point, so the map can be run (or stopped and resumed) a few cells at a time.
The classifiers of one data regime share its GAN (trained in the first cell's WORKDIR/.../gan). The few-label
regime (fashion_100labels: 100 labels, the rest of the images unlabelled) is a few-label study of
configs/fashion_mnist_semi.py on its own network, classifier "mlp" (`--cells fashion_100labels --classifiers
mlp`): there the GAN strategy is the semi-supervised K+1 GAN and the classic ones are supervised training, with
augmentation, and the classic semi-supervised methods: virtual adversarial training (VAT) and pseudo-labels.

For every finished cell the map reports, on the test split (read once per strategy, never for a choice):
  - the best classic strategy and the best GAN strategy, each chosen on validation balanced accuracy
    among the cell's classic (plain, reweight, oversample, augment; few-label: supervised, supervised_augment,
    vat, pseudo_label) and GAN strategies (each validated itself: its synthetic share chosen from experiment.grid, 0
    included; few-label: semi_gan);
  - the paired difference best GAN - best classic in balanced accuracy, mean and 95% interval (t) over
    the seeds; best GAN - plain; and (in the JSON) each GAN strategy minus its classic twin (gan: plain,
    gan+augment: augment, ...), which share 0 makes it equal to, so it differs from it by validation noise;
  - the GAN's quality: domain FID, intra-class FID and conditional accuracy of 2,000 samples
    (`ganjax.evaluate`, reference: the whole train split; none for the few-label cell, whose K+1 GAN's
    generator is unconditional).
It prints the table, and writes WORKDIR/regime_map.json, regime_map.md and regime_map.png (a heat map of
the difference with its interval). --set applies config overrides to every cell (e.g. a smoke run with
--set classifier.steps=20 --set train.steps=20).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION = "idx:/usr/share/datasets/fashion-mnist"
LONG_TAIL_LIST = "plain,reweight,oversample,augment,gan,gan+augment,gan+oversample"
# Data regimes: overrides of configs/regime_map.py. Balanced sets of 1% and 5% of Fashion-MNIST and all of it
# (the over-fitting axis), long tails of imbalance 10 and 100, and scikit-learn's digits.
CELLS = {
    "fashion_1pct": {"data.subset": "balanced", "data.images_per_class": 60,
                     "experiment.validation_fraction": 0.2},  # 12 validation images a class, not 6
    "fashion_5pct": {"data.subset": "balanced", "data.images_per_class": 300},
    "fashion_full": {"data.subset": "none"},
    "fashion_lt10": {"data.subset": "long_tail", "data.imbalance_ratio": 10.0,
                     "experiment.strategies": LONG_TAIL_LIST},
    "fashion_lt100": {"data.subset": "long_tail", "data.imbalance_ratio": 100.0,
                      "experiment.strategies": LONG_TAIL_LIST},
    "digits": {"data.source": "digits", "data.image_size": 16, "data.subset": "none",
               "experiment.augment_flip": False, "experiment.validation_fraction": 0.2},
    # Labels scarce, images plentiful: 100 labels and the rest of Fashion-MNIST unlabelled. The few-label study
    # (configs/fashion_mnist_semi.py, its own network: "mlp") with the classic semi-supervised alternatives: VAT
    # with its entropy term (VAT+EntMin; the grid confines semi.entropy_weight to vat, the K+1 GAN keeps its
    # own) at eps 1.5, and FixMatch-rule pseudo-labels at the paper's threshold 0.95, both set by probes on
    # held-out training images (benchmarks/few_label_probe.py; VAT alone drifts to a collapse over 5,000 steps).
    # AC-GAN left out (36 min, 63.7% in BENCHMARKS.md). 100 validation labels a class: more than the training
    # labels, as in the semi-supervised literature (Oliver et al. 2018 discuss the caveat).
    "fashion_100labels": {"config": "fashion_mnist_semi.py",
                          "experiment.strategies": "supervised,supervised_augment,vat,pseudo_label,semi_gan",
                          "semi.validation_per_class": 100, "semi.steps_per_call": 10,
                          "experiment.grid": "semi.vat_epsilon=1.5;semi.entropy_weight=1",
                          "experiment.grid_choice": "best"},
}
CLASSIFIERS = {
    "cnn": {"classifier.model": "cnn", "classifier.width": 16},
    "resnet": {"classifier.model": "resnet", "classifier.width": 16},
    "mlp": {},  # the few-label study's network (Salimans et al.'s noisy MLP), set by its config
}
FEW_LABEL_CELLS = ("fashion_100labels",)


def valid_cell(regime: str, classifier: str) -> bool:
    """Whether the map has the cell: the few-label regime only with its own network, the others with cnn/resnet."""
    return (regime in FEW_LABEL_CELLS) == (classifier == "mlp")
METRIC = "balanced_accuracy"
GAN_QUALITY_SAMPLES = 2000


def cell_name(regime: str, classifier: str) -> str:
    return f"{regime}-{classifier}"


def cell_config(regime: str, classifier: str, gan_workdir: str = "", overrides=()):
    """configs/regime_map.py with the cell's overrides (and `overrides`, "KEY=VALUE"), validated."""
    from ganjax.config import apply_overrides, load_config

    if not valid_cell(regime, classifier):
        raise ValueError(f"The map has no cell {cell_name(regime, classifier)}: the few-label regimes "
                         f"{list(FEW_LABEL_CELLS)} take classifier mlp, the others cnn or resnet.")
    settings = {**CELLS[regime], **CLASSIFIERS[classifier]}
    config = load_config(os.path.join(REPO, "configs", settings.pop("config", "regime_map.py")))
    config = apply_overrides(config, [f"{key}={value}" for key, value in settings.items()] + list(overrides))
    if gan_workdir:
        config.experiment.generator_workdir = gan_workdir
    return config


def paired(first: list[float], second: list[float]) -> dict:
    """summarize(first - second) over paired seeds: mean, std, 95% interval (`ganjax.report.summarize`)."""
    from ganjax.report import summarize

    return summarize(np.subtract(first, second))


def summarize_cell(full: dict) -> dict:
    """A finished cell's row from its report.json dict: the best classic and the best GAN strategy chosen on
    validation `METRIC`, their test figures, the paired differences, and every validated GAN strategy's
    difference to plain."""
    from ganjax import names

    meta = full["meta"]
    validation = meta["validation_mean"]
    study = meta.get("study", "long_tail")
    plain = names.PLAIN_STRATEGY[study]
    listed = [name for name in validation if name in names.STUDY_STRATEGIES[study]]
    gans = [name for name in listed if name in names.GAN_TWINS]
    twins = {name: names.GAN_TWINS[name] for name in gans}
    classic = [name for name in listed if name not in gans]
    best_classic = max(classic, key=lambda name: validation[name][METRIC])
    best_gan = max(gans, key=lambda name: validation[name][METRIC])

    def test(name):
        return full[name][METRIC]["per_seed"]

    return {
        "best_classic": best_classic, "best_gan": best_gan,
        "classic_test": full[best_classic][METRIC], "gan_test": full[best_gan][METRIC],
        "difference": paired(test(best_gan), test(best_classic)),
        "best_gan_minus_plain": paired(test(best_gan), test(plain)) if plain in listed else None,
        "gan_minus_twin": {name: paired(test(name), test(twin)) for name, twin in twins.items() if twin in listed},
        "chosen_points": {name: grid["chosen"] for name, grid in meta.get("grid", {}).items()},
        "grid_choice": sorted({grid.get("choice", "best") for grid in meta.get("grid", {}).values()}),
        "grid_points": {name: grid_points(grid) for name, grid in meta.get("grid", {}).items()},
        "validation": {name: validation[name][METRIC] for name in listed},
        "num_seeds": meta["num_seeds"],
        "class_counts": meta.get("class_counts", {}),
    }


def grid_points(grid: dict) -> list[dict]:
    """A grid strategy's points on validation: each point's mean and its paired difference to the grid's
    first point (its baseline, e.g. share 0) over the seeds, with the 95% interval; no test figure."""
    points = grid["points"]
    if not all("validation_per_seed" in point for point in points):
        return [{"point": point["point"], "validation_mean": point["validation_mean"]} for point in points]
    first = points[0]["validation_per_seed"]
    return [{"point": point["point"], "validation_mean": point["validation_mean"],
             "minus_first": paired(point["validation_per_seed"], first)}
            | ({"image_lower": point["validation_image_lower"]} if "validation_image_lower" in point else {})
            for point in points]


def grid_markdown(rows: dict[str, dict]) -> str:
    """The levers on validation: every grid point of every cell, its mean and its difference to the first
    point (points of validation balanced accuracy, paired over seeds, 95% interval) and, under the "strict"
    choice, that difference's lower 95% end over redrawn validation images; * marks the chosen."""
    lines = ["| cell | strategy | point | validation | minus first point [95%] | lower end over images |",
             "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        for strategy, points in row.get("grid_points", {}).items():
            for point in points:
                mark = " *" if point["point"] == row["chosen_points"].get(strategy) else ""
                difference = _interval(point["minus_first"]) if "minus_first" in point else "—"
                images = f"{100 * point['image_lower']:+.1f}" if "image_lower" in point else "—"
                lines.append(f"| {name} | {strategy} | {', '.join(point['point']).replace('experiment.', '')}{mark} | "
                             f"{100 * point['validation_mean']:.1f} | {difference} | {images} |")
    return "\n".join(lines)


def gan_quality(gan_dir: str) -> dict:
    """Domain FID, intra-class FID and conditional accuracy of GAN_QUALITY_SAMPLES samples of the GAN in
    `gan_dir` (cached in gan_dir/regime_map_eval.json)."""
    from ganjax import evaluate

    path = os.path.join(gan_dir, "regime_map_eval.json")
    if not os.path.exists(path):
        evaluate.evaluate(gan_dir, ("fid", "ic_fid", "classes"), num=GAN_QUALITY_SAMPLES, reference="train",
                          output=path)
    results = json.load(open(path))  # read_score: also a cache written before the keys named their features
    return {"fid_domain": evaluate.read_score(results, "fid", "domain"),
            "intra_class_fid_domain": evaluate.read_score(results, "intra_class_fid", "domain"),
            "conditional_accuracy": results["scores"]["conditional_accuracy"]}


def _cell(entry: dict) -> str:
    return f"{100 * entry['mean']:.1f} ± {100 * entry['std']:.1f}"


def _interval(entry: dict) -> str:
    low, high = entry["ci95"]
    return f"{100 * entry['mean']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def markdown(rows: dict[str, dict]) -> str:
    headers = ["cell", "best classic (test)", "best GAN (test)", "GAN - classic [95%]", "GAN - plain",
               "GAN: domain FID / intra-class FID / cond. acc.", "chosen on validation", "minutes"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name, row in rows.items():
        quality = row.get("gan_quality") or {}
        quality_text = (f"{quality['fid_domain']:.2f} / {quality['intra_class_fid_domain']:.2f} / "
                        f"{100 * quality['conditional_accuracy']:.1f}" if quality else "—")
        to_plain = row["best_gan_minus_plain"]
        chosen = "; ".join(f"{strategy}: {', '.join(point).replace('experiment.', '')}"
                           for strategy, point in row["chosen_points"].items())
        chosen += f" (by {', '.join(row.get('grid_choice', ['best']))})" if row["chosen_points"] else ""
        lines.append("| " + " | ".join([
            name, f"{row['best_classic']} {_cell(row['classic_test'])}", f"{row['best_gan']} {_cell(row['gan_test'])}",
            _interval(row["difference"]), "—" if to_plain is None else _interval(to_plain), quality_text, chosen,
            f"{row['minutes']:.0f}"]) + " |")
    return "\n".join(lines)


def plot(rows: dict[str, dict], path: str) -> str:
    """Heat map of the paired difference best GAN - best classic (points of test balanced accuracy),
    regimes down, classifiers across, each cell annotated with its 95% interval."""
    from ganjax.report import _pyplot

    plt = _pyplot()
    regimes = [regime for regime in CELLS if any(name.startswith(regime + "-") for name in rows)]
    classifiers = [classifier for classifier in CLASSIFIERS if any(name.endswith("-" + classifier) for name in rows)]
    values = np.full((len(regimes), len(classifiers)), np.nan)
    for i, regime in enumerate(regimes):
        for j, classifier in enumerate(classifiers):
            row = rows.get(cell_name(regime, classifier))
            if row is not None:
                values[i, j] = 100 * row["difference"]["mean"]
    limit = max(2.0, float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 2.0)
    figure, axes = plt.subplots(figsize=(2.6 + 2.2 * len(classifiers), 1.2 + 0.75 * len(regimes)))
    image = axes.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for i, regime in enumerate(regimes):
        for j, classifier in enumerate(classifiers):
            row = rows.get(cell_name(regime, classifier))
            text = ("—" if not valid_cell(regime, classifier) else "not run" if row is None
                    else _interval(row["difference"]).replace(" [", "\n["))
            axes.text(j, i, text, ha="center", va="center", fontsize=8)
    axes.set_xticks(range(len(classifiers)), classifiers)
    axes.set_yticks(range(len(regimes)), regimes)
    axes.set_title("best GAN - best classic, balanced accuracy (points)", fontsize=9)
    figure.colorbar(image, ax=axes, label="points")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def run_cell(regime: str, classifier: str, workdir: str, overrides) -> dict:
    """Runs (or resumes) one cell; returns its row."""
    from ganjax.studies import run

    cell_dir = os.path.join(workdir, cell_name(regime, classifier))
    first = cell_name(regime, next(iter(CLASSIFIERS)))
    gan_dir = os.path.join(workdir, first, "gan")
    shared = classifier != next(iter(CLASSIFIERS)) and os.path.isdir(os.path.join(gan_dir, "checkpoints"))
    config = cell_config(regime, classifier, gan_dir if shared else "", overrides)
    start = time.perf_counter()
    full = run(config, cell_dir, progress=sys.stderr.isatty())
    row = summarize_cell(full)
    row["minutes"] = sum(seconds for name, seconds in full["meta"]["wall_seconds"].items() if name != "total_this_run") / 60
    row["minutes_this_run"] = (time.perf_counter() - start) / 60
    # The few-label GAN is trained inside its strategy (semi_gan's generator is unconditional): no GAN workdir.
    row["gan_quality"] = (None if regime in FEW_LABEL_CELLS else
                          gan_quality(config.experiment.generator_workdir or os.path.join(cell_dir, "gan")))
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--cells", default=",".join(CELLS), help=f"data regimes, of {', '.join(CELLS)}")
    parser.add_argument("--classifiers", default="cnn", help=f"of {', '.join(CLASSIFIERS)}")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--report-only", action="store_true", help="summarise the finished cells, run none")
    args = parser.parse_args(argv)
    regimes = [name.strip() for name in args.cells.split(",") if name.strip()]
    classifiers = [name.strip() for name in args.classifiers.split(",") if name.strip()]
    unknown = [name for name in regimes if name not in CELLS] + [name for name in classifiers if name not in CLASSIFIERS]
    if unknown:
        parser.error(f"unknown cells or classifiers {unknown}; cells: {list(CELLS)}, classifiers: {list(CLASSIFIERS)}")
    from ganjax.cli import enable_compilation_cache

    enable_compilation_cache()
    os.makedirs(args.workdir, exist_ok=True)
    map_path = os.path.join(args.workdir, "regime_map.json")
    rows = json.load(open(map_path))["cells"] if os.path.exists(map_path) else {}
    cells = [(regime, classifier) for classifier in classifiers for regime in regimes if valid_cell(regime, classifier)]
    if not cells and not args.report_only:
        parser.error(f"no cell of {regimes} x {classifiers}: the few-label regimes {list(FEW_LABEL_CELLS)} take "
                     "--classifiers mlp, the others cnn or resnet")
    for regime, classifier in cells:
        name = cell_name(regime, classifier)
        if args.report_only:
            continue
        print(f"cell {name}: running (resumes finished strategies)", flush=True)
        row = run_cell(regime, classifier, args.workdir, args.set)
        # A rerun that reuses the cell's GAN and strategies counts only what it redid: keep the first run's.
        row["minutes"] = max(row["minutes"], rows.get(name, {}).get("minutes", 0.0))
        rows[name] = row
        print(f"cell {name}: {rows[name]['best_gan']} - {rows[name]['best_classic']} = "
              f"{_interval(rows[name]['difference'])} points", flush=True)
        with open(map_path + ".tmp", "w") as stream:
            json.dump({"cells": rows, "overrides": args.set}, stream, indent=1)
        os.replace(map_path + ".tmp", map_path)
    ordered = {cell_name(regime, classifier): rows[cell_name(regime, classifier)]
               for classifier in CLASSIFIERS for regime in CELLS if cell_name(regime, classifier) in rows}
    table = markdown(ordered)
    with open(os.path.join(args.workdir, "regime_map.md"), "w") as stream:
        stream.write(table + "\n\nGrid points on validation (the levers; * chosen):\n\n" + grid_markdown(ordered) + "\n")
    if ordered:
        plot(ordered, os.path.join(args.workdir, "regime_map.png"))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
