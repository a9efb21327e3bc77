"""Are generated samples recognisably of their class?

    python benchmarks/conditional_accuracy.py --workdir WORKDIR [--num 10000] \
        [--classifier-steps N] [--classifier-cache PATH] [--step S] [--seed 0]

Judges with ganjax's domain classifier (`ganjax.metrics.features.domain_classifier`: a
SmallCNN trained on the full real training split of the GAN's data source, read from the
config saved with its checkpoint, any subset ignored), loaded from --classifier-cache or
ganjax's cache if saved there, else trained and saved; reports its real test accuracy. Then draws --num samples, equally many per class,
from the GAN's generator and reports the fraction the classifier assigns to their
conditioning class, overall and per class. Writes WORKDIR/conditional_accuracy.json and
ends with the line `conditional_accuracy=X real_test_accuracy=Y`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

from ganjax import checkpoint, classify, data, metrics
from ganjax.metrics import features
from ganjax.config import config_from_dict
from ganjax.sample import load_generator

RESULT_FILE = "conditional_accuracy.json"
DEFAULT_CLASSIFIER_STEPS = features.DOMAIN_CLASSIFIER_STEPS
GENERATE_BATCH_SIZE = 500


def conditional_accuracy(
    workdir: str,
    num: int = 10000,
    classifier_steps: int = DEFAULT_CLASSIFIER_STEPS,
    classifier_cache: str | None = None,
    step: int | None = None,
    seed: int = 0,
) -> dict:
    """Runs the benchmark on the GAN checkpoint `step` (default latest) in `workdir`; returns
    the results written to WORKDIR/conditional_accuracy.json."""
    timings = {}
    start = time.perf_counter()
    checkpoint_step, meta = checkpoint.restore_meta(workdir, step)
    config = config_from_dict(meta["config"])
    config.data.subset = "none"
    train_set, test_set = data.load_train_and_test(config.data)
    num_classes = train_set.num_classes
    if num % num_classes:
        raise ValueError(f"--num {num} must be a multiple of the {num_classes} classes (equal samples per class).")
    timings["load_data_s"] = time.perf_counter() - start

    start = time.perf_counter()
    state, classifier_meta = features.domain_classifier(
        config.data, classifier_cache, steps=classifier_steps, seed=seed
    )
    timings["classifier_train_or_load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    test_predictions = classify.predict(state, data.to_model_range(test_set.images)).argmax(axis=-1)
    timings["classify_real_test_s"] = time.perf_counter() - start

    start = time.perf_counter()
    generator = load_generator(workdir, checkpoint_step)
    if generator.num_classes != num_classes:
        raise ValueError(f"Generator has {generator.num_classes} classes but {config.data.source} has {num_classes}.")
    conditioning_labels = np.repeat(np.arange(num_classes, dtype=np.int32), num // num_classes)
    samples = generator.sample_many(jax.random.key(seed), conditioning_labels, GENERATE_BATCH_SIZE)
    timings["generate_s"] = time.perf_counter() - start
    start = time.perf_counter()
    sample_predictions = classify.predict(state, samples).argmax(axis=-1)
    timings["classify_generated_s"] = time.perf_counter() - start

    per_class = metrics.per_class_recall(conditioning_labels, sample_predictions, num_classes)
    results = {
        "workdir": os.path.abspath(workdir),
        "gan_step": checkpoint_step,
        "num_samples": num,
        "seed": seed,
        "conditional_accuracy": metrics.accuracy(conditioning_labels, sample_predictions),
        "conditional_accuracy_per_class": dict(zip(train_set.class_names, per_class.tolist())),
        "generated_confusion_matrix": metrics.confusion_matrix(
            conditioning_labels, sample_predictions, num_classes
        ).tolist(),
        "real_test_accuracy": metrics.accuracy(test_set.labels, test_predictions),
        "real_test_balanced_accuracy": metrics.balanced_accuracy(test_set.labels, test_predictions, num_classes),
        "real_test_size": len(test_set),
        "classifier": {key: value for key, value in classifier_meta.items() if key != "class_names"},
        "classifier_cache": os.path.abspath(classifier_cache or features.default_classifier_dir(config.data)),
        "data_source": config.data.source,
        "devices": f"{jax.device_count()} x {jax.devices()[0].platform}",
        "timings_s": timings,
    }
    with open(os.path.join(workdir, RESULT_FILE), "w") as stream:
        json.dump(results, stream, indent=2)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="GAN training directory holding checkpoints/")
    parser.add_argument("--num", type=int, default=10000, help="generated samples (a multiple of the classes)")
    parser.add_argument("--classifier-steps", type=int, default=DEFAULT_CLASSIFIER_STEPS,
                        help=f"classifier training steps at batch {features.DOMAIN_CLASSIFIER_BATCH_SIZE}")
    parser.add_argument("--classifier-cache", default=None,
                        help="directory to load the classifier from, or to save it to after training "
                             "(default: ganjax's domain-classifier cache, see ganjax.metrics.features)")
    parser.add_argument("--step", type=int, default=None, help="GAN checkpoint step (default: latest)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.num <= 0 or args.classifier_steps <= 0:
        parser.error("--num and --classifier-steps must be positive")
    try:
        results = conditional_accuracy(
            args.workdir, args.num, args.classifier_steps, args.classifier_cache, args.step, args.seed
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"conditional_accuracy: error: {error}", file=sys.stderr)
        return 2
    print(f"GAN checkpoint step {results['gan_step']} in {results['workdir']}, {results['num_samples']} samples")
    for name, recall in results["conditional_accuracy_per_class"].items():
        print(f"  {name:>12s}: {recall:.3f}")
    print("timings (s): " + ", ".join(f"{k}={v:.1f}" for k, v in results["timings_s"].items()))
    print(f"wrote {os.path.join(results['workdir'], RESULT_FILE)}")
    print(f"conditional_accuracy={results['conditional_accuracy']:.4f} "
          f"real_test_accuracy={results['real_test_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
