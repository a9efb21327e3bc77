"""Attack a saved classifier on test images of its dataset and measure its robust accuracy.

    python -m ganjax.attack --classifier DIR --attack apgd-ce --eps 0.1 [--norm linf|l2] [--steps N] \
        [--restarts R] [--num N] [--seed S] [--batch-size B] --out OUT

DIR is a classifier saved by `ganjax.classify.save_classifier` whose meta names its dataset
("data_source", "image_size"), as `ganjax.metrics.features.domain_classifier` saves it. The
attack (one of ganjax.names.ATTACKS: fgsm, pgd, apgd-ce, apgd-t; `ganjax.attacks`) runs on
`--num` test images chosen at random with the seed (default: up to 1000), with budget `--eps`
on the [0, 1] pixel scale in the `--norm` ball. Writes to OUT:
  attack.png   the first 16 attacked images: a row of clean images, one of adversarial images, and
               one of their perturbations, amplified so the largest fills the grey range (mid grey = 0);
  attack.json  {"scores": clean and robust accuracy, attack success rate, perturbation sizes,
               "per_class": robust accuracy per class, "per_image", "settings": the attack's,
               "timings", "provenance": classifier, weights, data, seed, versions}.
The images are chosen by numpy's default_rng(seed); the attack draws from jax.random.key(seed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

from ganjax import attacks, classify, data, metrics, visualize
from ganjax.cli import enable_compilation_cache
from ganjax.config import default_config
from ganjax.names import ATTACK_NORMS, ATTACKS
from ganjax.provenance import checkpoint_line, run_provenance, write_json

RESULT_FILE = "attack.json"
GRID_FILE = "attack.png"
GRID_COLUMNS = 16
DEFAULT_NUM = 1000


def attack_grid(clean: np.ndarray, adversarial: np.ndarray, path: str) -> tuple[str, float]:
    """Writes rows of clean / adversarial / amplified perturbation for the first GRID_COLUMNS
    images [N, H, W, C] in [-1, 1]; returns (path, the perturbation's amplification)."""
    clean, adversarial = clean[:GRID_COLUMNS], adversarial[:GRID_COLUMNS]
    perturbation = adversarial - clean
    gain = 1.0 / max(float(np.abs(perturbation).max()), 1e-12)
    return visualize.save_image_grid(np.concatenate([clean, adversarial, perturbation * gain]), 3, path), gain


def dataset_test_split(meta: dict, classifier_dir: str) -> data.Dataset:
    """The test split of the dataset the classifier's meta names, at its image size."""
    if "data_source" not in meta:
        raise ValueError(
            f"The classifier meta in {classifier_dir} does not name its dataset; save it with meta "
            "{'data_source': config.data.source, 'image_size': config.data.image_size, ...} "
            "(as ganjax.metrics.features.domain_classifier does)."
        )
    data_config = default_config().data
    data_config.source, data_config.image_size = meta["data_source"], int(meta.get("image_size") or 0)
    _, test_set = data.load_train_and_test(data_config)
    if tuple(test_set.image_shape) != tuple(meta["image_shape"]):
        raise ValueError(
            f"The classifier in {classifier_dir} takes images {tuple(meta['image_shape'])} but {meta['data_source']} "
            f"at image_size {data_config.image_size} gives {test_set.image_shape}; fix the meta's image_size."
        )
    return test_set


def attack_classifier(
    classifier_dir: str,
    attack: str,
    eps: float,
    out: str,
    *,
    norm: str = "linf",
    steps: int | None = None,
    restarts: int = 1,
    num: int | None = None,
    seed: int = 0,
    batch_size: int = attacks.BATCH_SIZE,
) -> dict:
    """Attacks `num` test images with the classifier in `classifier_dir` (module docstring);
    writes OUT/attack.png and OUT/attack.json and returns the latter's dict.

    Raises FileNotFoundError for a directory without a classifier, ValueError for a bad attack,
    norm, budget, count or classifier meta (each message names the problem and the fix).
    """
    attacks.attack_settings(attack, eps=eps, norm=norm, steps=steps, restarts=restarts)  # checks them
    if num is not None and num <= 0:
        raise ValueError(f"--num must be positive, got {num}.")
    if batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {batch_size}.")
    timings = {}
    start = time.perf_counter()
    state, meta = classify.load_classifier(classifier_dir)
    test_set = dataset_test_split(meta, classifier_dir)
    if num is not None and num > len(test_set):
        raise ValueError(f"--num {num} exceeds the {len(test_set)} test images of {meta['data_source']}; pass fewer.")
    num = min(DEFAULT_NUM, len(test_set)) if num is None else num
    indices = np.sort(np.random.default_rng(seed).choice(len(test_set), num, replace=False))
    clean, labels = data.to_model_range(test_set.images[indices]), test_set.labels[indices]
    apply_fn, params = attacks.classifier_apply_fn(state)
    settings = attacks.attack_settings(attack, eps=eps, norm=norm, steps=steps, restarts=restarts,
                                       num_classes=test_set.num_classes)
    timings["load_s"] = time.perf_counter() - start

    start = time.perf_counter()
    adversarial = attacks.attack_in_batches(attack, apply_fn, params, clean, labels, jax.random.key(seed),
                                            batch_size=batch_size, eps=eps, norm=norm, steps=settings["steps"],
                                            restarts=settings["restarts"])
    timings["attack_s"] = time.perf_counter() - start
    timings["images_per_s"] = num / max(timings["attack_s"], 1e-9)

    start = time.perf_counter()
    clean_predictions = attacks.predict_classes(apply_fn, params, clean, batch_size)
    adversarial_predictions = attacks.predict_classes(apply_fn, params, adversarial, batch_size)
    linf, l2 = (attacks.perturbation_size(adversarial, clean, name) for name in ATTACK_NORMS)
    correct = clean_predictions == labels
    fooled = correct & (adversarial_predictions != labels)
    robust_recall = metrics.per_class_recall(labels, adversarial_predictions, test_set.num_classes)
    timings["metrics_s"] = time.perf_counter() - start

    os.makedirs(out, exist_ok=True)
    _, gain = attack_grid(clean, adversarial, os.path.join(out, GRID_FILE))
    results = {
        "scores": {
            "clean_accuracy": metrics.accuracy(labels, clean_predictions),
            "robust_accuracy": metrics.accuracy(labels, adversarial_predictions),
            "attack_success_rate": float(fooled.sum() / max(correct.sum(), 1)),
            "num_images": num,
            "num_clean_correct": int(correct.sum()),
            "num_fooled": int(fooled.sum()),
            "perturbation_linf": {"mean": float(linf.mean()), "max": float(linf.max())},
            "perturbation_l2": {"mean": float(l2.mean()), "max": float(l2.max())},
        },
        "per_class": {"robust_accuracy": dict(zip(test_set.class_names, map(float, robust_recall)))},
        "per_image": {
            "test_index": indices.tolist(),
            "label": labels.tolist(),
            "clean_prediction": clean_predictions.tolist(),
            "adversarial_prediction": adversarial_predictions.tolist(),
            "perturbation_linf": linf.tolist(),
            "perturbation_l2": l2.tolist(),
        },
        "settings": {**settings, "batch_size": min(batch_size, num)},
        "timings": timings,
        "provenance": {
            **run_provenance(classifier_dir, meta["step"]),
            "classifier": {key: meta[key] for key in ("model", "num_classes", "width", "norm", "dropout", "downsample",
                                                      "blocks_per_stage", "real_test_accuracy") if key in meta},
            "weights_sha256": meta["weights_sha256"],
            "dataset": meta["data_source"],
            "image_size": meta.get("image_size"),
            "split": "test",
            "num_images": num,
            "images": f"{num} of the {len(test_set)} test images at random (numpy default_rng({seed}).choice), sorted",
            "seed": seed,
            "keys": "batch b of the attack: fold_in(key(seed), b)",
            "eps_scale": "[0, 1] pixels; the images are in [-1, 1], where the budget is twice as large",
            "robust_accuracy": "accuracy on each image's first misclassified iterate (its last, highest-loss point "
                               "when no run fools it): an image counts as robust only if every run fails",
            "grid": {"file": GRID_FILE, "rows": ["clean", "adversarial", f"perturbation x {gain:.3g}"],
                     "test_index": indices[:GRID_COLUMNS].tolist()},
            "attack_timing": "wall time of the attack, compilation included",
        },
    }
    write_json(os.path.join(out, RESULT_FILE), results)
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ganjax.attack", description=__doc__.split("\n")[0])
    parser.add_argument("--classifier", required=True, help="classifier directory (ganjax.classify.save_classifier)")
    parser.add_argument("--attack", required=True, help=f"one of {', '.join(ATTACKS)}")
    parser.add_argument("--eps", type=float, required=True,
                        help="budget on the [0, 1] pixel scale (e.g. 0.1 for linf, 1.0 for l2)")
    parser.add_argument("--norm", default="linf", help=f"one of {', '.join(ATTACK_NORMS)}")
    default_steps = ", ".join(f"{name} {steps}" for name, steps in attacks.DEFAULT_STEPS.items())
    parser.add_argument("--steps", type=int, default=None, help=f"steps per run (default: {default_steps})")
    parser.add_argument("--restarts", type=int, default=1, help="random restarts (apgd-t: per target class)")
    parser.add_argument("--num", type=int, default=None, help=f"test images to attack (default: up to {DEFAULT_NUM})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=attacks.BATCH_SIZE, help="images attacked at once")
    parser.add_argument("--out", required=True, help=f"output directory for {GRID_FILE} and {RESULT_FILE}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    enable_compilation_cache()
    try:
        results = attack_classifier(
            args.classifier, args.attack, args.eps, args.out, norm=args.norm, steps=args.steps,
            restarts=args.restarts, num=args.num, seed=args.seed, batch_size=args.batch_size,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"ganjax.attack: error: {error}", file=sys.stderr)
        return 2
    scores, settings, provenance = results["scores"], results["settings"], results["provenance"]
    print(checkpoint_line(
        provenance["checkpoint_step"], provenance["workdir"],
        f"{args.attack} ({settings['norm']}, eps {settings['eps']:g} on [0, 1], {settings['steps']} steps, "
        f"{settings['restarts']} restart(s)) on {scores['num_images']} {provenance['dataset']} test "
        f"images: clean accuracy {scores['clean_accuracy']:.4f}, robust accuracy {scores['robust_accuracy']:.4f} "
        f"({results['timings']['images_per_s']:.3g} images/s)"))
    print(f"wrote {os.path.join(args.out, GRID_FILE)} and {os.path.join(args.out, RESULT_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
