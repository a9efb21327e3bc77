"""ganjax's jobs as Python functions with typed results, for notebooks and scripts.

    import ganjax
    run = ganjax.train_gan(config, "workdirs/digits", evaluate="fid,classes")   # -> TrainResult
    samples = ganjax.sample_images("workdirs/digits", num=20, out="grid.png")    # -> SampleResult
    scores = ganjax.evaluate_generator("workdirs/digits", "fid,kid", num=2000)   # -> EvalResult
    study = ganjax.run_study(ganjax.load_config("digits_lt"), "workdirs/lt")     # -> StudyResult

Each function runs the job of one command (`python -m ganjax.train`, `.sample`, `.evaluate`,
`.experiment`: the same files in the workdir) and returns a frozen dataclass of what its report
holds; `.to_dict()` gives it as JSON-ready data. The functions are not called `train`, `sample`,
`evaluate`: those names are the modules behind the commands (`from ganjax import sample` imports
the module), and a function of the same name on the package would be replaced by the module as soon
as anything imported it. The dict-returning functions stay as they are: `ganjax.train_and_evaluate`
(which, as in the Flax examples it is named after, trains and logs but does not score the generator:
`train_gan(..., evaluate=...)` does both), `ganjax.run_experiment` and `ganjax.evaluate.evaluate`.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Scores of a generator's samples (workdir/eval.json).

    scores: {score name: value} (see ganjax.evaluate's module docstring);
    per_class: {what: {class name: value}} (intra-class FID, generated class counts);
    provenance: how every score was obtained (checkpoint, features, sample counts, seed);
    path: the eval.json written; step: the checkpoint step scored.
    """

    scores: dict[str, Any]
    per_class: dict[str, Any]
    provenance: dict[str, Any]
    path: str
    step: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """A finished (or resumed-and-finished) training run.

    workdir: absolute path; step: the last step trained; metrics: the last logged record of
    workdir/metrics.jsonl ({"step", "d_loss", "g_loss", ...}); checkpoint_dir: the orbax checkpoints;
    samples_dir: the per-step sample grids; evaluation: the scores asked for with `evaluate=`, else None.
    """

    workdir: str
    step: int
    metrics: dict[str, Any]
    checkpoint_dir: str
    samples_dir: str
    evaluation: EvalResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class SampleResult:
    """Samples of a trained generator.

    images: [num, height, width, channels] float32 in [-1, 1] (`ganjax.data.to_uint8` for pixels);
    labels: [num] int32 conditioning labels, -1 for an unconditional GAN; class_names: the checkpoint's;
    step: the checkpoint step sampled; path: the PNG grid written, or None; npz_path: the .npz
    (x = images, y = labels) written, or None.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    step: int
    path: str | None = None
    npz_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the labels as a list, the images by their shape only (`npz=` stores them)."""
        return {
            "image_shape": list(self.images.shape), "labels": self.labels.tolist(),
            "class_names": list(self.class_names), "step": self.step, "path": self.path, "npz_path": self.npz_path,
        }


@dataclasses.dataclass(frozen=True)
class StrategyResult:
    """One strategy of a study over its seeds, on the test split (report.json's entry), per metric:
    mean, std (ddof=1), ci95 (the 95% Student-t interval of the mean) and per_seed values;
    per_class_recall: the mean recall of each class over seeds, or None; validation_mean: the mean of
    each metric on the validation split (what choices are made on), or None without one."""

    mean: dict[str, float]
    std: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    per_seed: dict[str, tuple[float, ...]]
    per_class_recall: tuple[float, ...] | None = None
    validation_mean: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """A study's report (workdir/report.json), typed.

    study: "long_tail", "few_label", "repair" or "robust"; strategies: {name: StrategyResult};
    chosen: the strategy best on validation by selection_metric (None without a validation split);
    num_seeds; report_path / markdown_path: report.json / report.md; figures: the PNG plots in the
    workdir; workdir: absolute path.
    """

    study: str
    strategies: dict[str, StrategyResult]
    chosen: str | None
    selection_metric: str
    num_seeds: int
    report_path: str
    markdown_path: str
    figures: tuple[str, ...]
    workdir: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_report(cls, report: Mapping[str, Any], workdir: str) -> StudyResult:
        """The StudyResult of a report dict (as `ganjax.run_experiment` returns and report.json holds)
        written in `workdir`."""
        from ganjax import names
        from ganjax import report as report_files

        meta = report["meta"]
        validation = meta.get("validation_mean") or {}
        strategies = {}
        for name, entry in report.items():
            if name == "meta":
                continue
            summaries = {metric: value for metric, value in entry.items() if metric != "per_class_recall"}
            recall = entry.get("per_class_recall")
            strategies[name] = StrategyResult(
                mean={metric: float(value["mean"]) for metric, value in summaries.items()},
                std={metric: float(value["std"]) for metric, value in summaries.items()},
                ci95={metric: tuple(float(bound) for bound in value["ci95"]) for metric, value in summaries.items()},
                per_seed={metric: tuple(float(v) for v in value["per_seed"]) for metric, value in summaries.items()},
                per_class_recall=tuple(float(v) for v in recall["mean"]) if recall else None,
                validation_mean=validation.get(name),
            )
        workdir = os.path.abspath(workdir)
        return cls(
            study=meta["study"],
            strategies=strategies,
            chosen=meta.get("best_on_validation"),
            selection_metric=names.SELECTION_METRIC[meta["study"]],
            num_seeds=int(meta["num_seeds"]),
            report_path=os.path.join(workdir, report_files.REPORT_JSON),
            markdown_path=os.path.join(workdir, report_files.REPORT_MD),
            figures=tuple(sorted(glob.glob(os.path.join(glob.escape(workdir), "*.png")))),
            workdir=workdir,
        )


def train_gan(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    evaluate: str | Sequence[str] | None = None,
    evaluate_options: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Trains the GAN of `config` in `workdir` (resuming from its newest checkpoint), then optionally scores it.

    Runs `ganjax.train.train_and_evaluate` (the files of `python -m ganjax.train`: metrics.jsonl,
    samples/, checkpoints/). With `evaluate`, metric names as `evaluate_generator` takes them (e.g.
    "fid,classes" or ("fid", "kid")), the trained generator is then scored by `evaluate_generator(workdir,
    evaluate, **evaluate_options)` and the scores land in workdir/eval.json and `TrainResult.evaluation`.
    The metric names are checked before training starts.

    Args:
        config: a config (`ganjax.load_config`); `config.data.source` may come from `ganjax.data.from_arrays`.
        workdir: directory of the run.
        evaluate: metrics to score after training, or None (no scoring, as `train_and_evaluate`).
        evaluate_options: keyword arguments of `evaluate_generator` (num, features, seed, ...).

    Raises:
        ValueError: a bad config, data or metric name (before training); and the errors of
            `train_and_evaluate` and `evaluate_generator`.
    """
    from ganjax import checkpoint, train
    from ganjax import evaluate as evaluate_module

    if evaluate is not None:
        evaluate_module.metrics_for_generator(evaluate_module.parse_metrics(evaluate), config.model.conditional)
    metrics = train.train_and_evaluate(config, workdir)
    evaluation = None
    if evaluate is not None:
        evaluation = evaluate_generator(workdir, evaluate, **dict(evaluate_options or {}))
    return TrainResult(
        workdir=os.path.abspath(workdir),
        step=int(metrics["step"]),
        metrics=dict(metrics),
        checkpoint_dir=checkpoint.checkpoint_dir(workdir),
        samples_dir=os.path.join(os.path.abspath(workdir), "samples"),
        evaluation=evaluation,
    )


def sample_images(
    workdir: str,
    num: int = 64,
    *,
    label: int | None = None,
    seed: int = 0,
    step: int | None = None,
    use_ema: bool = True,
    bn_statistics: str | None = None,
    out: str | None = None,
    npz: str | None = None,
) -> SampleResult:
    """Samples the generator of a checkpoint in `workdir` (no dataset needed), as `python -m ganjax.sample`.

    Args:
        workdir: a training directory holding checkpoints/.
        num: number of samples.
        label: the class of every sample; None cycles the classes 0, 1, ..., K-1 (sorted by class).
        seed: the samples' noise comes from `jax.random.key(seed)`.
        step: checkpoint step; None: the newest readable one.
        use_ema: the EMA generator weights (when trained with gan.ema_decay > 0), else the raw ones.
        bn_statistics: "running" or "standing" BatchNorm statistics (`ganjax.sample`); None: the default.
        out: also write a PNG grid there (one row per class when `num` is a multiple of the class count).
        npz: also write x (images) and y (labels) there.

    Raises:
        FileNotFoundError: no checkpoint in workdir; ValueError: bad arguments (a label out of range,
            a label for an unconditional GAN, num <= 0).
    """
    from ganjax import sample

    generator = sample.load_generator(
        workdir, step, use_ema=use_ema, bn_statistics=bn_statistics or sample.DEFAULT_BN_STATISTICS
    )
    images, labels = sample.write_samples(generator, num, label=label, seed=seed, out=out, npz=npz)
    return SampleResult(
        images=images, labels=labels, class_names=generator.class_names, step=generator.step,
        path=os.path.abspath(out) if out is not None else None,
        npz_path=os.path.abspath(npz) if npz is not None else None,
    )


def evaluate_generator(
    workdir: str,
    metrics: str | Sequence[str] | None = None,
    *,
    num: int = 10000,
    features: str = "domain",
    step: int | None = None,
    seed: int = 0,
    reference: str = "test",
    output: str | None = None,
    classifier_steps: int | None = None,
    **options: Any,
) -> EvalResult:
    """Scores `num` samples of the generator in `workdir` against its dataset, as `python -m ganjax.evaluate`.

    Args:
        workdir: a training directory holding checkpoints/ (its config names the dataset, which must be
            readable: for a `from_arrays` source, its .npz).
        metrics: names from `ganjax.evaluate.METRICS`, comma-separated or a sequence; None: DEFAULT_METRICS.
        num: samples generated, balanced over the classes.
        features: "domain" (a classifier trained on the dataset, cached) or "inception".
        step: checkpoint step; None: the newest.
        seed: seed of the samples (and of a domain classifier trained now).
        reference: the real split compared with, "test" or "train".
        output: the JSON written; None: workdir/eval.json.
        classifier_steps: training steps of a missing domain classifier; None:
            `ganjax.metrics.features.DOMAIN_CLASSIFIER_STEPS`.
        **options: further keywords of `ganjax.evaluate.evaluate` (classifier, inception_weights, cas_steps,
            train_classifier, reference_cache, bn_statistics).

    Raises:
        FileNotFoundError: no checkpoint, dataset or feature weights (the message says how to get them);
        ValueError: bad arguments, or too few samples for a metric.
    """
    from ganjax import evaluate
    from ganjax.metrics import features as feature_extractors

    if classifier_steps is None:
        classifier_steps = feature_extractors.DOMAIN_CLASSIFIER_STEPS
    output = output or os.path.join(workdir, evaluate.RESULT_FILE)
    results = evaluate.evaluate(
        workdir, evaluate.DEFAULT_METRICS if metrics is None else metrics, num=num, features=features, step=step,
        seed=seed, reference=reference, output=output, classifier_steps=classifier_steps, **options,
    )
    return EvalResult(
        scores=results["scores"], per_class=results["per_class"], provenance=results["provenance"],
        path=os.path.abspath(output), step=int(results["provenance"]["checkpoint_step"]),
    )


def run_study(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True) -> StudyResult:
    """Runs the study `config` describes in `workdir`, as `python -m ganjax.experiment`; returns its report.

    The config chooses the study: experiment.study ("repair", "robust"), else data.subset ("few_label"
    for the few-label study, any other subset the long-tail study); experiment.strategies lists the
    strategies, experiment.num_seeds the seeds. A rerun reuses the strategies already finished with the
    same defining config. Writes report.json, report.md, the PNG plots and strategies/NAME.json.
    `ganjax.run_experiment` returns the same report as a dict.
    """
    from ganjax import experiment

    return StudyResult.from_report(experiment.run_experiment(config, workdir, progress=progress), workdir)
