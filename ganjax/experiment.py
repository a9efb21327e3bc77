"""GAN-augmented recognition against the classic long-tail baselines, over many seeds.

    python -m ganjax.experiment --config configs/fashion_mnist_lt.py --workdir DIR \
        [--config.experiment.num_seeds=3 ...]

Writes DIR/report.json, DIR/report.md, DIR/confusion_matrix.png and DIR/per_class_recall.png.
With data.subset="few_label" it runs the few-label strategies instead (see ganjax.semi).
In two-stage mode the GAN is trained (or resumed, or reused when finished) in DIR/gan by
`ganjax.train.train_and_evaluate` on the classifier's training part of the long-tailed set.
From Python: `ganjax.experiment.run_experiment(config, workdir)`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from ganjax import checkpoint, data, parallel, recognition, report
from ganjax.config import validate_config
from ganjax.state import generator_source

GAN_DIR = "gan"
logger = logging.getLogger("ganjax")


def split_validation(train_set: data.Dataset, config) -> tuple[np.ndarray, np.ndarray]:
    """(train part, validation part) indices into `train_set`: a stratified
    experiment.validation_fraction of each class (at least one image of each class with two
    or more) is held out for tuning; the test split is only used for the report."""
    return data.stratified_split_indices(train_set.labels, config.experiment.validation_fraction, config.data.seed)


def prepare_gan_workdir(workdir: str, gan_workdir: str, train_part: np.ndarray, config) -> None:
    """Makes `ganjax.train` train the GAN on the classifier's training part only (not on the
    validation images): the subset indices it reads from gan_workdir/subset_indices.json are
    the experiment's subset restricted to the training part."""
    source_path = os.path.join(workdir, data.SUBSET_INDICES_FILE)
    if not os.path.exists(source_path):  # subset "none": the GAN sees the whole train split
        return
    import json

    record = json.loads(open(source_path).read())
    subset_indices = np.asarray(record["indices"], np.int64)
    indices = subset_indices[train_part]
    description = {**record["description"], "validation_fraction": config.experiment.validation_fraction}
    target = os.path.join(gan_workdir, data.SUBSET_INDICES_FILE)
    if os.path.exists(target):
        stored = data.load_indices(target, record["description"]["num_examples"])
        if not np.array_equal(stored, indices):
            raise ValueError(
                f"The GAN in {gan_workdir} was trained on other images than this experiment's training "
                f"part (different data or validation settings); delete {gan_workdir} or use a fresh workdir."
            )
        return
    data.save_indices(target, indices, description)


def load_trained_generator(gan_workdir: str, train_set: data.Dataset):
    """The GAN state restored from `gan_workdir`, after checking it fits the dataset."""
    if checkpoint.latest_step(gan_workdir) is None:
        raise FileNotFoundError(
            f"No GAN checkpoint in {gan_workdir}; train one with python -m ganjax.train, or set "
            "experiment.generator_workdir='' to train it inside the experiment."
        )
    _, meta = checkpoint.restore_meta(gan_workdir)
    if meta["num_classes"] != train_set.num_classes:
        raise ValueError(
            f"The generator in {gan_workdir} has {meta['num_classes']} classes but the dataset has "
            f"{train_set.num_classes}; point experiment.generator_workdir at a GAN trained on this "
            "data, or leave it empty to train one."
        )
    if tuple(meta["image_shape"]) != train_set.image_shape:
        raise ValueError(
            f"The generator in {gan_workdir} makes images {tuple(meta['image_shape'])} but the dataset's "
            f"are {train_set.image_shape}; set data.image_size to match or train a new GAN."
        )
    from ganjax.sample import load_generator

    generator = load_generator(gan_workdir)
    return generator


def run_experiment(config: ml_collections.ConfigDict, workdir: str, progress: bool = True) -> dict[str, Any]:
    """Runs every strategy of config.experiment.strategies for config.experiment.num_seeds
    classifier seeds; writes and returns the report (see ganjax.report)."""
    validate_config(config)
    parallel.initialize_distributed(config)
    if config.data.subset == "few_label":
        from ganjax.semi import run_few_label_experiment

        return run_few_label_experiment(config, workdir, progress=progress)
    start = time.perf_counter()
    os.makedirs(workdir, exist_ok=True)
    strategies = recognition.parse_strategies(config.experiment.strategies)
    full_train, test_set = data.load_train_and_test(config.data, workdir=workdir)
    recognition.check_class_counts(
        data.class_counts(full_train.labels, full_train.num_classes), full_train.class_names, "the training set"
    )
    train_part, validation_part = split_validation(full_train, config)
    train_set, validation_set = full_train.subset(train_part), full_train.subset(validation_part)
    counts = data.class_counts(train_set.labels, train_set.num_classes)
    recognition.check_class_counts(counts, train_set.class_names, "the training part (after holding out validation)")
    rare = recognition.rarest_classes(counts, config.experiment.rare_classes)
    mesh = parallel.make_mesh()
    wall_times: dict[str, float] = {}

    source = None
    gan_note = ""
    uses_gan = any(s.synthetic for s in strategies)
    if uses_gan and config.experiment.gan_mode == "two_stage":
        gan_workdir = config.experiment.generator_workdir or os.path.join(workdir, GAN_DIR)
        gan_start = time.perf_counter()
        if not config.experiment.generator_workdir:
            os.makedirs(gan_workdir, exist_ok=True)
            prepare_gan_workdir(workdir, gan_workdir, train_part, config)
            from ganjax.train import train_and_evaluate

            train_and_evaluate(config, gan_workdir)
        generator = load_trained_generator(gan_workdir, train_set)
        source = generator_source(generator.state, use_ema=generator.use_ema)
        wall_times["gan_training"] = time.perf_counter() - gan_start
        gan_note = (
            f"One GAN (seed {config.seed}, {generator.step} steps, in {gan_workdir}) serves every classifier "
            "seed; its own seed-to-seed variance is not in the intervals."
        )
    elif uses_gan:
        gan_note = (
            f"Joint mode: each GAN strategy trains its own GAN (seed {config.seed}) for classifier.steps "
            "steps inside the classifiers' compiled step; all classifier seeds share that GAN, so its "
            "seed-to-seed variance is not in the intervals."
        )

    per_seed: dict[str, list] = {}
    validation: dict[str, dict] = {}
    confusions: dict[str, np.ndarray] = {}
    for strategy in tqdm(strategies, desc="strategies", unit="strategy", disable=not progress):
        strategy_start = time.perf_counter()
        if strategy.synthetic and config.experiment.gan_mode == "joint":
            states, _ = recognition.train_joint(strategy, config, train_set, mesh, progress=progress)
        else:
            states = recognition.train_classifiers(
                strategy, config, train_set, mesh, source if strategy.synthetic else None, progress=progress
            )
        test_results = recognition.evaluate_seeds(states, test_set, rare, config, mesh)
        validation_results = recognition.evaluate_seeds(states, validation_set, rare, config, mesh)
        wall_times[strategy.name] = time.perf_counter() - strategy_start
        per_seed[strategy.name] = test_results
        validation[strategy.name] = {
            metric: float(np.mean([r[metric] for r in validation_results])) for metric in recognition.METRICS
        }
        confusions[strategy.name] = np.sum([r["confusion"] for r in test_results], axis=0)
        logger.info(
            "%s: test balanced accuracy %.4f (validation %.4f), %.0f s",
            strategy.name,
            np.mean([r["balanced_accuracy"] for r in test_results]),
            validation[strategy.name]["balanced_accuracy"],
            wall_times[strategy.name],
        )

    # The best strategy is chosen on validation, never on test.
    best = max(validation, key=lambda name: validation[name]["balanced_accuracy"])
    wall_times["total"] = time.perf_counter() - start
    meta = {
        "config": config.to_dict(),
        "data_source": config.data.source,
        "subset": config.data.subset,
        "class_names": list(train_set.class_names),
        "class_counts": {
            "train": counts.tolist(),
            "validation": data.class_counts(validation_set.labels, train_set.num_classes).tolist(),
            "test": data.class_counts(test_set.labels, train_set.num_classes).tolist(),
        },
        "rare_classes": rare.tolist(),
        "num_seeds": config.experiment.num_seeds,
        "budget": {
            "classifier_steps": config.classifier.steps,
            "classifier_batch_size": config.classifier.batch_size,
            "gan_steps": config.train.steps if config.experiment.gan_mode == "two_stage" else config.classifier.steps,
            "gan_batch_size": config.train.batch_size,
            "gan_mode": config.experiment.gan_mode,
        },
        "batch_split": {
            s.name: dict(zip(("real", "synthetic"), _real_synthetic(s, config, counts))) for s in strategies
        },
        "wall_seconds": wall_times,
        "devices": f"{jax.device_count()} x {jax.devices()[0].platform}",
        "validation_mean": validation,
        "best_on_validation": best,
        "seed_handling": (
            "Classifier seed s sets initialisation, dropout/augmentation/synthesis randomness and the "
            "real-data order (batches are drawn per seed, not shared); seeds are the same across strategies. "
            + gan_note
        ),
    }
    result = build_and_write(workdir, per_seed, meta, confusions[best], best)
    return result


def _real_synthetic(strategy, config, counts) -> tuple[int, int]:
    spec, num_real = recognition.make_step_spec(strategy, config, counts)
    return num_real, spec.num_synthetic


def build_and_write(workdir: str, per_seed: dict, meta: dict, best_confusion: np.ndarray, best: str) -> dict:
    """report.json, report.md and the two plots."""
    full = report.build_report(per_seed, meta)
    budget = meta["budget"]
    notes = [
        "## Setup",
        "",
        f"- Training part class counts: {meta['class_counts']['train']}; validation: "
        f"{meta['class_counts']['validation']}; test: {meta['class_counts']['test']}.",
        f"- rare_class_accuracy: test accuracy on the {len(meta['rare_classes'])} classes with fewest training "
        f"images, {meta['rare_classes']}.",
        f"- Budget: {budget['classifier_steps']} classifier steps at batch {budget['classifier_batch_size']} for every "
        f"strategy; GAN {budget['gan_steps']} steps at batch {budget['gan_batch_size']} ({budget['gan_mode']}).",
        f"- Batch split (real, synthetic): {meta['batch_split']}.",
        f"- Seeds: {meta['seed_handling']}",
        f"- Best strategy on validation balanced accuracy: {best} (its summed confusion matrix: {report.CONFUSION_PNG}).",
        f"- Wall time (s): { {k: round(v, 1) for k, v in meta['wall_seconds'].items()} } on {meta['devices']}.",
    ]
    report.write_report(workdir, full, "\n".join(notes))
    report.plot_confusion_matrix(
        best_confusion, meta["class_names"], f"{best} (summed over seeds)", os.path.join(workdir, report.CONFUSION_PNG)
    )
    report.plot_per_class_recall(full, meta["class_names"], os.path.join(workdir, report.RECALL_PNG))
    return full


def _print_report(result, workdir: str) -> None:
    metrics = tuple(name for name in recognition.METRICS if name in next(iter(result.values())))
    print(report.markdown_table(result, metrics))
    print(f"wrote {os.path.join(workdir, report.REPORT_JSON)}")


if __name__ == "__main__":
    from ganjax.cli import run_config_program

    run_config_program("experiment", run_experiment, "Directory for the report, plots and the GAN.", _print_report)
