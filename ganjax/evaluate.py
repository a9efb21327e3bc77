"""Score a trained generator's samples, recording how every score was obtained.

    python -m ganjax.evaluate --workdir DIR [--metrics fid,kid,pr,dc,ic_fid,classes,cas,is] \
        [--num 10000] [--features domain|inception] [--step N] [--seed 0] [--reference test|train] \
        [--bn-statistics running|standing] [--no-reference-cache]

Writes DIR/eval.json: {"scores": {...}, "per_class": {...}, "provenance": {...}}, the
provenance naming the dataset and reference split, sample counts, feature extractor and
its weights sha256, resizer, seed, checkpoint step, the generator's weights and BatchNorm
statistics (ganjax.sample.BN_STATISTICS) and ganjax version.

Metrics (ganjax.metrics): fid, kid (mean and std over subsets), pr (improved precision and
recall, k=3), dc (density and coverage, k=5), ic_fid (intra-class FID), classes (classes
covered and KL(generated class histogram || conditioning labels) under the domain
classifier), is (Inception Score from the domain classifier's class probabilities: the FID
Inception weights stop at pool3), cas (classification accuracy score: a classifier trained
on generated images, tested on the real test set; Ravuri & Vinyals 2019).
The key of every score computed on features names them (`features.score_key`): with
--features inception, fid_inception, kid_inception_mean, kid_inception_std, precision_inception,
recall_inception, density_inception, coverage_inception, intra_class_fid_inception (and
per_class.fid_inception); with domain features the same with _domain; the Inception Score is
inception_score_domain_mean / _std. `read_score` also reads eval.json files written before the keys
named their features. An unconditional
GAN (model.conditional=False) has no conditioning labels: ic_fid, cas and classes' conditional
accuracy are skipped (`metrics_for_generator`; listed in provenance.skipped_metrics).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import sys
import time

import jax
import numpy as np

from ganjax import checkpoint, classify, data, lock, metrics
from ganjax.cli import enable_compilation_cache
from ganjax.config import config_from_dict
from ganjax.metrics import features as feature_extractors
from ganjax.provenance import checkpoint_line, run_provenance, write_json
from ganjax.sample import BN_STATISTICS, DEFAULT_BN_STATISTICS, TrainedGenerator, check_bn_statistics, load_generator

RESULT_FILE = "eval.json"
METRICS = ("fid", "kid", "pr", "dc", "ic_fid", "classes", "cas", "is")
DEFAULT_METRICS = ("fid", "kid", "pr", "dc", "ic_fid", "classes", "cas")
# Metrics that compare each sample with the class it was generated for: none for an unconditional GAN.
CLASS_CONDITIONAL_METRICS = ("ic_fid", "cas")
UNCONDITIONAL_REASON = "needs samples generated per class; the GAN is unconditional (model.conditional=False)"
FEATURES = feature_extractors.FEATURES
GENERATE_BATCH_SIZE = 500
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
PR_K, DC_K = 3, 5
CAS_BATCH_SIZE = 128
logger = logging.getLogger("ganjax")


def parse_metrics(names: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """("fid", "kid", ...) from "fid,kid" or a sequence, checked against METRICS."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise ValueError(f"Unknown metrics {unknown or names!r}; choose from {','.join(METRICS)}.")
    return tuple(dict.fromkeys(names))


def metrics_for_generator(metric_names: tuple[str, ...], conditional: bool) -> tuple[tuple[str, ...], dict[str, str]]:
    """(the metrics `evaluate` computes of `metric_names`, {skipped metric or score: why}). An unconditional
    generator skips CLASS_CONDITIONAL_METRICS and the "classes" metric's conditional_accuracy; the
    class coverage and class KL (against a uniform histogram) remain.

    Raises:
      ValueError if every metric asked for needs a class-conditional generator.
    """
    if conditional:
        return metric_names, {}
    kept = tuple(name for name in metric_names if name not in CLASS_CONDITIONAL_METRICS)
    skipped = {name: UNCONDITIONAL_REASON for name in metric_names if name in CLASS_CONDITIONAL_METRICS}
    if not kept:
        usable = ",".join(name for name in METRICS if name not in CLASS_CONDITIONAL_METRICS)
        raise ValueError(f"Metrics {','.join(skipped)} need a class-conditional GAN; this one is unconditional "
                         f"(model.conditional=False). Choose from {usable}.")
    if "classes" in kept:
        skipped["conditional_accuracy"] = UNCONDITIONAL_REASON
    return kept, skipped


def balanced_labels(num: int, num_classes: int) -> np.ndarray:
    """[num] conditioning labels 0, 1, ..., K-1, 0, 1, ... (equal counts when K divides num)."""
    return (np.arange(num) % num_classes).astype(np.int32)


def generated_samples(generator: TrainedGenerator, num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images [num, S, S, C] float32 in [-1, 1], labels [num]): the samples every score of
    `evaluate` is computed on, balanced labels drawn from `jax.random.key(seed)`."""
    labels = balanced_labels(num, generator.num_classes)
    return generator.sample_many(jax.random.key(seed), labels, GENERATE_BATCH_SIZE), labels


def _inside(path: str, directory: str) -> bool:
    directory = os.path.realpath(directory)
    return os.path.commonpath([os.path.realpath(path), directory]) == directory


def generator_provenance(generator: TrainedGenerator) -> dict:
    """How the scored generator made its images: weights and BatchNorm statistics."""
    return {
        "generator_weights": "EMA" if generator.use_ema else "raw",
        "generator_bn_statistics": generator.bn_statistics,
        "standing_statistics": generator.standing,
    }


def classification_accuracy_score(
    samples: np.ndarray, labels: np.ndarray, train_set: data.Dataset, test_set: data.Dataset, steps: int, seed: int
) -> float:
    """Accuracy on the real test set of a SmallCNN trained only on generated `samples` [N, H, W, C]
    in [-1, 1] with their conditioning `labels` (Ravuri & Vinyals 2019)."""
    generated = data.Dataset(data.to_uint8(samples), labels.astype(np.int32), train_set.class_names)
    state = classify.train_classifier(
        generated, steps=steps, batch_size=min(CAS_BATCH_SIZE, len(generated)), seed=seed, model="cnn", progress=False
    )
    predictions = classify.predict(state, data.to_model_range(test_set.images)).argmax(axis=-1)
    return metrics.accuracy(test_set.labels, predictions)


def evaluate(
    workdir: str,
    metric_names=DEFAULT_METRICS,
    *,
    num: int = 10000,
    features: str = "domain",
    step: int | None = None,
    seed: int = 0,
    reference: str = "test",
    classifier: str | None = None,
    inception_weights: str | None = None,
    classifier_steps: int = feature_extractors.DOMAIN_CLASSIFIER_STEPS,
    cas_steps: int = feature_extractors.DOMAIN_CLASSIFIER_STEPS,
    train_classifier: bool = True,
    reference_cache: bool = True,
    bn_statistics: str = DEFAULT_BN_STATISTICS,
    output: str | None = None,
) -> dict:
    """Scores `num` samples of the generator checkpoint `step` (default latest) in `workdir`
    against the real `reference` split of its dataset; writes and returns the eval.json dict. Writing into
    the workdir (the default `output`), it holds the workdir's lock (ganjax.lock), so it refuses to start while
    another process (a training) writes there.
    reference_cache: read / write the reference split's features in
    `features.default_reference_cache_dir()` (keyed by weights, preprocessing and image bytes).
    bn_statistics: the generator's BatchNorm statistics, one of BN_STATISTICS
    (`ganjax.sample.load_generator`).

    Raises:
      FileNotFoundError: no checkpoint in workdir, or missing feature weights (the message
        says how to get them); ValueError: bad arguments or too few samples for a metric.
    """
    metric_names = parse_metrics(metric_names)
    if features not in FEATURES:
        raise ValueError(f"--features {features!r} is unknown; choose one of {FEATURES}.")
    if reference not in ("test", "train"):
        raise ValueError(f"--reference {reference!r} must be 'test' or 'train'.")
    if num <= 0:
        raise ValueError(f"--num must be positive, got {num}.")
    check_bn_statistics(bn_statistics)
    output = output or os.path.join(workdir, RESULT_FILE)
    # Writing into the workdir: a training there could delete the scored checkpoint (ganjax.lock).
    writes_workdir = os.path.isdir(workdir) and _inside(output, workdir)
    with lock.workdir_lock(workdir) if writes_workdir else contextlib.nullcontext():
        timings = {}
        start = time.perf_counter()
        checkpoint_step, meta = checkpoint.restore_meta(workdir, step)
        config = config_from_dict(meta["config"])
        metric_names, skipped = metrics_for_generator(metric_names, config.model.conditional)
        for name, reason in skipped.items():
            logger.warning("Skipping %s: it %s.", name, reason)
        config.data.subset = "none"  # the reference is the whole split, whatever subset the GAN saw
        train_set, test_set = data.load_train_and_test(config.data)
        reference_set = test_set if reference == "test" else train_set
        num_classes = train_set.num_classes

        needs_domain = features == "domain" or {"classes", "is"} & set(metric_names)
        domain = None
        if needs_domain:
            domain = feature_extractors.domain_feature_extractor(
                config.data, classifier, steps=classifier_steps, seed=seed, train_if_missing=train_classifier
            )
        extractor = domain if features == "domain" else feature_extractors.inception_feature_extractor(inception_weights)
        timings["load_s"] = time.perf_counter() - start

        start = time.perf_counter()
        generator = load_generator(workdir, checkpoint_step, bn_statistics=bn_statistics)
        samples, labels = generated_samples(generator, num, seed)
        timings["generate_s"] = time.perf_counter() - start

        start = time.perf_counter()
        real_features, _, reference_cache_info = feature_extractors.reference_features(
            extractor,
            data.to_model_range(reference_set.images),
            feature_extractors.default_reference_cache_dir() if reference_cache else None,
        )
        fake_features, fake_logits = extractor.extract(samples)
        if domain is not None and extractor is not domain:
            _, fake_logits = domain.extract(samples)
        timings["features_s"] = time.perf_counter() - start

        scores, per_class, parameters = {}, {}, {}
        key = functools.partial(feature_extractors.score_key, features=features)
        start = time.perf_counter()
        if "fid" in metric_names:
            scores[key("fid")] = metrics.fid_from_features(real_features, fake_features)
        if "kid" in metric_names:
            scores[key("kid_mean")], scores[key("kid_std")] = metrics.kid_from_features(
                real_features, fake_features, KID_SUBSETS, KID_SUBSET_SIZE, seed
            )
            parameters["kid"] = {"num_subsets": KID_SUBSETS, "subset_size": min(KID_SUBSET_SIZE, num, len(reference_set)),
                                 "kernel": "(x.y/d + 1)^3"}
        if "pr" in metric_names:
            scores.update({key(name): value for name, value in
                           metrics.precision_recall(real_features, fake_features, k=PR_K).items()})
            parameters["pr"] = {"k": PR_K}
        if "dc" in metric_names:
            scores.update({key(name): value for name, value in
                           metrics.density_coverage(real_features, fake_features, k=DC_K).items()})
            parameters["dc"] = {"k": DC_K}
        if "ic_fid" in metric_names:
            scores[key("intra_class_fid")], values = metrics.intra_class_fid(
                real_features, reference_set.labels, fake_features, labels, num_classes
            )
            per_class[key("fid")] = dict(zip(train_set.class_names, values))
        if "classes" in metric_names:
            histogram = metrics.class_histogram_metrics(fake_logits.argmax(axis=-1), labels, num_classes)
            per_class["generated_class_counts"] = dict(zip(train_set.class_names, histogram.pop("generated_class_counts")))
            scores.update(histogram)
            if config.model.conditional:
                scores["conditional_accuracy"] = metrics.accuracy(labels, fake_logits.argmax(axis=-1))
            parameters["classes"] = {"judge": "domain classifier", "covered_if_at_least": "10% of the conditioned count"}
        if "is" in metric_names:
            probabilities = np.asarray(jax.nn.softmax(fake_logits.astype(np.float64), axis=-1))
            domain_key = functools.partial(feature_extractors.score_key, features="domain")
            scores[domain_key("inception_score_mean")], scores[domain_key("inception_score_std")] = (
                metrics.inception_score(probabilities))
            parameters["is"] = {"classifier": "domain classifier (not Inception)", "num_splits": 10}
        timings["metrics_s"] = time.perf_counter() - start
        if "cas" in metric_names:
            start = time.perf_counter()
            scores["cas"] = classification_accuracy_score(samples, labels, train_set, test_set, cas_steps, seed)
            if domain is not None:
                scores["cas_real_baseline"] = domain.provenance.get("classifier_real_test_accuracy")
            parameters["cas"] = {"model": "cnn", "steps": cas_steps, "batch_size": CAS_BATCH_SIZE,
                                 "train": f"{num} generated", "test": f"real test split ({len(test_set)})"}
            timings["cas_s"] = time.perf_counter() - start

        results = {
            "scores": scores,
            "per_class": per_class,
            "provenance": {
                **run_provenance(workdir, checkpoint_step),
                **generator_provenance(generator),
                "dataset": config.data.source,
                "image_size": config.data.image_size,
                "reference_split": reference,
                "num_reference": len(reference_set),
                "reference_features": reference_cache_info,
                "num_generated": num,
                "conditioning_labels": ("balanced: i % num_classes" if config.model.conditional else
                                        "none (unconditional GAN): the class KL compares with a uniform histogram"),
                "skipped_metrics": skipped,
                "seed": seed,
                "feature_extractor": extractor.provenance,
                "resizer": extractor.provenance["resizer"],
                "class_judge": domain.provenance if domain is not None else None,
                "metric_parameters": parameters,
                "timings_s": timings,
            },
        }
        write_json(output, results)
        return results


def read_score(results: dict, score: str, features: str) -> float:
    """Score `score` (e.g. "fid", "intra_class_fid", "kid_mean") on `features` features from an eval.json dict.
    A file written before the keys named their features holds `score` itself, computed on the features
    its provenance names; the score is read there only if those are `features`.

    Raises:
      KeyError naming the key and the scores present when the file has no such score.
    """
    scores = results["scores"]
    key = feature_extractors.score_key(score, features)
    if key in scores:
        return scores[key]
    if score in scores and results["provenance"]["feature_extractor"]["name"] == features:
        return scores[score]
    raise KeyError(f"No {key} in these scores ({', '.join(scores)}); rerun ganjax.evaluate with --features {features}.")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ganjax.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="training directory holding checkpoints/")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help=f"comma-separated, from {','.join(METRICS)}")
    parser.add_argument("--num", type=int, default=10000, help="generated samples (balanced over classes)")
    parser.add_argument("--features", default="domain", choices=FEATURES)
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", default="test", choices=("test", "train"), help="real split to compare with")
    parser.add_argument("--classifier", default=None, help="domain classifier directory (default: ganjax's cache)")
    parser.add_argument("--no-train-classifier", action="store_true", help="fail instead of training a missing one")
    parser.add_argument("--classifier-steps", type=int, default=feature_extractors.DOMAIN_CLASSIFIER_STEPS)
    parser.add_argument("--cas-steps", type=int, default=feature_extractors.DOMAIN_CLASSIFIER_STEPS)
    parser.add_argument("--inception-weights", default=None, help="converted .npz (tools/convert_inception.py)")
    parser.add_argument("--bn-statistics", default=DEFAULT_BN_STATISTICS, choices=BN_STATISTICS,
                        help="the generator's BatchNorm statistics (ganjax.sample): running or standing (default)")
    parser.add_argument("--no-reference-cache", action="store_true",
                        help="recompute the real split's features instead of using $GANJAX_CACHE/reference_features")
    parser.add_argument("--out", default=None, help=f"output path (default: WORKDIR/{RESULT_FILE})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    enable_compilation_cache()
    try:
        results = evaluate(
            args.workdir, args.metrics, num=args.num, features=args.features, step=args.step, seed=args.seed,
            reference=args.reference, classifier=args.classifier, inception_weights=args.inception_weights,
            classifier_steps=args.classifier_steps, cas_steps=args.cas_steps,
            train_classifier=not args.no_train_classifier, reference_cache=not args.no_reference_cache,
            bn_statistics=args.bn_statistics, output=args.out,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"ganjax.evaluate: error: {error}", file=sys.stderr)
        return 2
    provenance, extractor = results["provenance"], results["provenance"]["feature_extractor"]
    print(checkpoint_line(provenance["checkpoint_step"], provenance["workdir"],
                          f"{provenance['num_generated']} samples vs {provenance['num_reference']} real "
                          f"{provenance['reference_split']} images, {extractor['name']} features "
                          f"({extractor['weights_sha256'][:12]})"))
    for name, value in results["scores"].items():
        print(f"  {name:>22s}: {value:.5g}" if isinstance(value, float) else f"  {name:>22s}: {value}")
    for name, reason in results["provenance"]["skipped_metrics"].items():
        print(f"  {name:>22s}: skipped ({reason})")
    print(f"wrote {args.out or os.path.join(args.workdir, RESULT_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
