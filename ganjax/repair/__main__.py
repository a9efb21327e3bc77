"""Damage test images of a GAN's dataset, repair them, and score the repair.

    python -m ganjax.repair --workdir GAN_WORKDIR --damage centre:0.5 [--method inversion] [--num 16] \
        [--seed 0] [--steps L] [--restarts R] [--prior-weight LAMBDA] [--known-labels] [--blend] \
        [--step N] --out DIR

Takes `--num` images of the test split of the dataset the GAN in GAN_WORKDIR was trained on (chosen
at random with the seed), damages them (`ganjax.names.parse_damage`), repairs them with `--method`
(one of ganjax.names.REPAIR_METHODS) and writes to DIR:
  repair.png   for each group of up to 16 images, a row of clean, of damaged and of repaired images;
  repair.json  {"scores": PSNR / SSIM of the repaired and of the damaged images against the clean
               ones, over the whole image and the damaged region (mean, std, count), "per_image",
               "settings": the method's, "timings": seconds and images/s, "provenance"}.
The damage draws from jax.random.split(jax.random.key(seed))[0], inversion from [1].
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

from ganjax import checkpoint, data, visualize
from ganjax.cli import enable_compilation_cache
from ganjax.config import config_from_dict
from ganjax.metrics.image_quality import DATA_RANGE, SSIM_SIGMA, SSIM_WINDOW, image_quality, summarize
from ganjax.names import REPAIR_METHODS, check_repair_method, parse_damage
from ganjax.provenance import checkpoint_line, run_provenance, write_json
from ganjax.repair import classic_settings, damage, damaged_region, inversion, is_noise, repair
from ganjax.sample import load_generator

RESULT_FILE = "repair.json"
GRID_FILE = "repair.png"
GRID_COLUMNS = 16


def repair_grid(clean: np.ndarray, damaged: np.ndarray, repaired: np.ndarray, path: str) -> str:
    """Writes rows of clean / damaged / repaired images [N, H, W, C], GRID_COLUMNS images a row."""
    columns = min(len(clean), GRID_COLUMNS)
    groups = -(-len(clean) // columns)
    blank = -np.ones((groups * columns - len(clean), *clean.shape[1:]), np.float32)
    rows = [np.concatenate([images, blank])[group * columns:(group + 1) * columns]
            for group in range(groups) for images in (clean, damaged, repaired)]
    return visualize.save_image_grid(np.concatenate(rows), 3 * groups, path)


def repair_workdir(
    workdir: str,
    damage_spec: str,
    out: str,
    *,
    method: str = "inversion",
    num: int = 16,
    seed: int = 0,
    step: int | None = None,
    steps: int = inversion.DEFAULT_STEPS,
    restarts: int = inversion.DEFAULT_RESTARTS,
    prior_weight: float = inversion.DEFAULT_PRIOR_WEIGHT,
    known_labels: bool = False,
    blend: bool = False,
    progress: bool = True,
) -> dict:
    """Damages, repairs and scores `num` test images of the GAN in `workdir` (module docstring);
    writes DIR/repair.png and DIR/repair.json and returns the latter's dict.

    Raises FileNotFoundError for a workdir without a generator checkpoint, ValueError for a bad
    damage, method, number or setting (each message names the problem and the fix).
    """
    parse_damage(damage_spec)
    check_repair_method(method)
    if num <= 0:
        raise ValueError(f"--num must be positive, got {num}.")
    timings = {}
    start = time.perf_counter()
    checkpoint_step, meta = checkpoint.restore_meta(workdir, step)
    config = config_from_dict(meta["config"])
    config.data.subset = "none"  # the images to repair come from the whole test split
    _, test_set = data.load_train_and_test(config.data)
    if num > len(test_set):
        raise ValueError(f"--num {num} exceeds the {len(test_set)} test images of {config.data.source}; pass fewer.")
    indices = np.sort(np.random.default_rng(seed).choice(len(test_set), num, replace=False))
    clean = data.to_model_range(test_set.images[indices])
    labels = test_set.labels[indices]
    generator = None
    if method == "inversion":
        generator = load_generator(workdir, checkpoint_step)
        if generator.num_classes != test_set.num_classes:
            raise ValueError(
                f"The generator in {workdir} has {generator.num_classes} classes but its dataset "
                f"{config.data.source} has {test_set.num_classes}; use the dataset the GAN was trained on."
            )
    timings["load_s"] = time.perf_counter() - start

    damage_key, repair_key = jax.random.split(jax.random.key(seed))
    start = time.perf_counter()
    damaged, mask = (np.asarray(part) for part in damage(damage_spec, damage_key, clean))
    timings["damage_s"] = time.perf_counter() - start

    if method == "inversion":
        options = {"steps": steps, "restarts": restarts, "prior_weight": prior_weight, "progress": progress}
        if not is_noise(damage_spec):
            options["blend"] = blend
        settings = inversion.inversion_settings(generator, labels_given=known_labels, steps=steps, restarts=restarts,
                                                prior_weight=prior_weight, blend=blend, noise=is_noise(damage_spec))
    else:
        options = {}
        settings = classic_settings(damage_spec) if method == "classic" else {}
    settings = {"method": method, **settings}
    start = time.perf_counter()
    repaired = repair(method, damaged, mask, repair_key, damage=damage_spec, generator=generator,
                      labels=labels if known_labels and method == "inversion" else None, **options)
    timings["repair_s"] = time.perf_counter() - start
    timings["images_per_s"] = num / max(timings["repair_s"], 1e-9)

    start = time.perf_counter()
    region = damaged_region(damage_spec, mask)
    quality = {"repaired": image_quality(clean, repaired, region), "damaged": image_quality(clean, damaged, region)}
    timings["metrics_s"] = time.perf_counter() - start

    os.makedirs(out, exist_ok=True)
    repair_grid(clean, damaged, repaired, os.path.join(out, GRID_FILE))
    results = {
        "scores": {images: {name: summarize(values) for name, values in scores.items()}
                   for images, scores in quality.items()},
        "per_image": {
            "test_index": indices.tolist(),
            "label": labels.tolist(),
            "damaged_fraction": (1.0 - mask.mean(axis=(1, 2))).tolist(),
            **{f"{images}_{name}": values.tolist() for images, scores in quality.items()
               for name, values in scores.items()},
        },
        "settings": settings,
        "timings": timings,
        "provenance": {
            **run_provenance(workdir, checkpoint_step),
            "dataset": config.data.source,
            "image_size": config.data.image_size,
            "split": "test",
            "num_images": num,
            "images": f"{num} of the test split at random (numpy default_rng({seed}).choice), sorted",
            "damage": damage_spec,
            "damaged_region": "every pixel (noise damage)" if is_noise(damage_spec) else "the missing pixels",
            "seed": seed,
            "keys": "damage: split(key(seed))[0]; repair: split(key(seed))[1]",
            "metrics": {"psnr": f"skimage peak_signal_noise_ratio, data_range {DATA_RANGE} ([-1, 1] images)",
                        "ssim": f"skimage structural_similarity, Gaussian window {SSIM_WINDOW}x{SSIM_WINDOW} "
                                f"sigma {SSIM_SIGMA}, data_range {DATA_RANGE}; region: full map averaged"},
            "repair_timing": "wall time of the repair, compilation included",
        },
    }
    write_json(os.path.join(out, RESULT_FILE), results)
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ganjax.repair", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="GAN training directory holding checkpoints/")
    parser.add_argument("--damage", required=True, help="NAME:SEVERITY, e.g. centre:0.5, pixels:0.5, noise:0.3, "
                                                        "saltpepper:0.1, blocks:0.25, half:left")
    parser.add_argument("--method", default="inversion", help=f"one of {', '.join(REPAIR_METHODS)}")
    parser.add_argument("--num", type=int, default=16, help="test images to damage and repair")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--steps", type=int, default=inversion.DEFAULT_STEPS, help="inversion: Adam steps L")
    parser.add_argument("--restarts", type=int, default=inversion.DEFAULT_RESTARTS, help="inversion: restarts R")
    parser.add_argument("--prior-weight", type=float, default=inversion.DEFAULT_PRIOR_WEIGHT,
                        help="inversion: weight lambda of the discriminator's prior loss")
    parser.add_argument("--known-labels", action="store_true",
                        help="inversion: condition on the images' true classes instead of trying every class")
    parser.add_argument("--blend", action="store_true", help="inversion: Poisson-blend the fill into the known pixels")
    parser.add_argument("--out", required=True, help=f"output directory for {GRID_FILE} and {RESULT_FILE}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    enable_compilation_cache()
    try:
        results = repair_workdir(
            args.workdir, args.damage, args.out, method=args.method, num=args.num, seed=args.seed, step=args.step,
            steps=args.steps, restarts=args.restarts, prior_weight=args.prior_weight,
            known_labels=args.known_labels, blend=args.blend,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"ganjax.repair: error: {error}", file=sys.stderr)
        return 2
    provenance = results["provenance"]
    print(checkpoint_line(provenance["checkpoint_step"], provenance["workdir"],
                          f"{args.method} repair of {provenance['num_images']} {provenance['dataset']} test images "
                          f"under {args.damage}, {results['timings']['images_per_s']:.3g} images/s"))
    for images, scores in results["scores"].items():
        print(f"  {images:>8s}: " + ", ".join(f"{name} {score['mean']:.4g} ± {score['std']:.2g}"
                                               for name, score in scores.items()))
    print(f"wrote {os.path.join(args.out, GRID_FILE)} and {os.path.join(args.out, RESULT_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
