"""Which BatchNorm statistics should the EMA generator sample with: running or standing?

    python benchmarks/bn_statistics_fid.py --workdir WORKDIR [--step N] [--num 10000] \
        [--features inception|domain] [--inception-weights PATH] [--seed 0] \
        [--standing-batches 100] [--standing-seed 0] [--num-reference N] [--out RESULT.json]

Draws `--num` samples (balanced labels, seed `--seed`: the samples `ganjax.evaluate` scores)
from the EMA generator of checkpoint `--step` (default: latest) twice: with the running
BatchNorm statistics training kept ("running", ganjax's default) and with standing statistics
of the EMA weights ("standing", `ganjax.sample.standing_batch_stats`). Each set is scored by
FID (Inception features by default, the protocol of BENCHMARKS.md) against two references:

  selection: about 10,000 images carved from the TRAINING split, class-stratified and seeded
             (the live-FID reference, `ganjax.live.reference_images`): the better treatment
             is chosen on this FID alone, never on the test split;
  report:    the whole test split, as `python -m ganjax.evaluate --features inception`; the
             figures to quote, for both treatments.

`--num-reference N` shrinks both references to a class-stratified, seeded sample of N images
(`ganjax.live.reference_indices`) for a machine too slow for 30,000-40,000 Inception passes;
FID is biased upwards at small N (the same bias for both treatments, so the choice stays fair,
but the figures are not comparable to 10,000-image FIDs), so KID, which is unbiased, is
reported beside it.

Prints FID and KID for both treatments and ends with the line `better=running|standing`
(on a tie, the default, ganjax.sample.DEFAULT_BN_STATISTICS). Reference features go through ganjax.evaluate's cache.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from ganjax import checkpoint, data, evaluate, live, metrics
from ganjax.cli import enable_compilation_cache
from ganjax.config import config_from_dict
from ganjax.metrics import features as feature_extractors
from ganjax.provenance import checkpoint_line, run_provenance, write_json
from ganjax.sample import BN_STATISTICS, DEFAULT_BN_STATISTICS, STANDING_NUM_BATCHES, load_generator


def bn_statistics_fid(
    workdir: str,
    *,
    step: int | None = None,
    num: int = 10000,
    features: str = "inception",
    inception_weights: str | None = None,
    classifier: str | None = None,
    classifier_steps: int = feature_extractors.DOMAIN_CLASSIFIER_STEPS,
    seed: int = 0,
    standing_num_batches: int = STANDING_NUM_BATCHES,
    standing_seed: int = 0,
    reference_cache: bool = True,
    num_reference: int | None = None,
) -> dict:
    """{"fid": {treatment: {"train_selection": FID, "test": FID}}, "kid": {treatment: {reference:
    [mean, std]}}, "better": treatment, "provenance": {...}} for the EMA generator of `workdir`,
    treatments BN_STATISTICS; the choice is made on the train_selection FID."""
    if features not in evaluate.FEATURES:
        raise ValueError(f"--features {features!r} is unknown; choose one of {evaluate.FEATURES}.")
    if num <= 0:
        raise ValueError(f"--num must be positive, got {num}.")
    if num_reference is not None and num_reference < 2:
        raise ValueError(f"--num-reference must be at least 2, got {num_reference}.")
    timings = {}
    start = time.perf_counter()
    checkpoint_step, meta = checkpoint.restore_meta(workdir, step)
    config = config_from_dict(meta["config"])
    if config.gan.ema_decay <= 0:
        raise ValueError(f"The GAN in {workdir} has no EMA generator (gan.ema_decay={config.gan.ema_decay}).")
    config.data.subset = "none"  # the references are whole splits (or carved from one), whatever the GAN saw
    _, test_set = data.load_train_and_test(config.data)
    selection_images, selection_provenance = live.reference_images(config.data)
    test_images, test_provenance = test_set.images, {"split": "test", "num_images": len(test_set)}
    if num_reference is not None:
        # The selection carve's labels are not returned; stratify it by its position instead
        # (it is already class-stratified), the test split by its labels.
        keep = live.reference_indices(np.zeros(len(selection_images), np.int64), num_reference, seed)
        selection_images = selection_images[keep]
        selection_provenance = dict(selection_provenance, num_images=int(len(keep)),
                                    subsample=f"{len(keep)} drawn uniformly (seed {seed}) from the carve")
        keep = live.reference_indices(test_set.labels, num_reference, seed)
        test_images = test_images[keep]
        test_provenance = dict(test_provenance, num_images=int(len(keep)),
                               sampling=f"class-stratified, seed {seed}", num_test=len(test_set))
    if features == "domain":
        extractor = feature_extractors.domain_feature_extractor(config.data, classifier, steps=classifier_steps, seed=seed)
    else:
        extractor = feature_extractors.inception_feature_extractor(inception_weights)
    cache_dir = feature_extractors.default_reference_cache_dir() if reference_cache else None
    references = {}
    for name, images in (("train_selection", selection_images), ("test", test_images)):
        references[name], _, references[f"{name}_cache"] = feature_extractors.reference_features(
            extractor, data.to_model_range(images), cache_dir
        )
    timings["references_s"] = time.perf_counter() - start

    fid, kid, generators = {}, {}, {}
    for treatment in BN_STATISTICS:
        start = time.perf_counter()
        generator = load_generator(
            workdir, checkpoint_step, bn_statistics=treatment,
            standing_num_batches=standing_num_batches, standing_seed=standing_seed,
        )
        samples, _ = evaluate.generated_samples(generator, num, seed)
        fake_features, _ = extractor.extract(samples)
        fid[treatment] = {name: metrics.fid_from_features(references[name], fake_features)
                          for name in ("train_selection", "test")}
        kid[treatment] = {name: list(metrics.kid_from_features(references[name], fake_features))
                          for name in ("train_selection", "test")}
        generators[treatment] = evaluate.generator_provenance(generator)
        timings[f"{treatment}_s"] = time.perf_counter() - start
    # Chosen on the training carve only; a tie keeps the default.
    better = min(BN_STATISTICS, key=lambda treatment: (fid[treatment]["train_selection"], treatment != DEFAULT_BN_STATISTICS))
    return {
        "fid": fid,
        "kid": kid,
        "better": better,
        "chosen_on": "train_selection",
        "provenance": {
            **run_provenance(workdir, checkpoint_step),
            "generators": generators,
            "dataset": config.data.source,
            "num_generated": num,
            "conditioning_labels": "balanced: i % num_classes",
            "seed": seed,
            "selection_reference": dict(selection_provenance, cache=references["train_selection_cache"]),
            "test_reference": dict(test_provenance, cache=references["test_cache"]),
            "feature_extractor": extractor.provenance,
            "timings_s": timings,
        },
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="GAN training directory holding checkpoints/")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--num", type=int, default=10000, help="generated samples per treatment (balanced over classes)")
    parser.add_argument("--features", default="inception", choices=evaluate.FEATURES)
    parser.add_argument("--inception-weights", default=None, help="converted .npz (tools/convert_inception.py)")
    parser.add_argument("--classifier", default=None, help="domain classifier directory (--features domain)")
    parser.add_argument("--classifier-steps", type=int, default=feature_extractors.DOMAIN_CLASSIFIER_STEPS)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (as ganjax.evaluate's)")
    parser.add_argument("--standing-batches", type=int, default=STANDING_NUM_BATCHES,
                        help="batches (of the training batch size) averaged into the standing statistics")
    parser.add_argument("--standing-seed", type=int, default=0)
    parser.add_argument("--no-reference-cache", action="store_true")
    parser.add_argument("--num-reference", type=int, default=None,
                        help="shrink both references to N images (default: 10,000-image carve, whole test split)")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    enable_compilation_cache()
    try:
        results = bn_statistics_fid(
            args.workdir, step=args.step, num=args.num, features=args.features,
            inception_weights=args.inception_weights, classifier=args.classifier,
            classifier_steps=args.classifier_steps, seed=args.seed, standing_num_batches=args.standing_batches,
            standing_seed=args.standing_seed, reference_cache=not args.no_reference_cache,
            num_reference=args.num_reference,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"bn_statistics_fid: error: {error}", file=sys.stderr)
        return 2
    provenance, extractor = results["provenance"], results["provenance"]["feature_extractor"]
    selection = provenance["selection_reference"]
    print(checkpoint_line(provenance["checkpoint_step"], provenance["workdir"],
                          f"{provenance['num_generated']} EMA samples per treatment (seed {provenance['seed']}), "
                          f"{extractor['name']} features ({extractor['weights_sha256'][:12]})"))
    carve = (f"all {selection['num_train']} images of the training split" if selection["num_images"] == selection["num_train"]
             else f"{selection['num_images']} of its {selection['num_train']}, class-stratified, seed {selection['seed']}")
    print(f"choice on FID against TRAINING images ({carve}); figures against the "
          f"{provenance['test_reference']['num_images']}-image test split")
    for treatment, scores in results["fid"].items():
        kid = results["kid"][treatment]
        print(f"  {treatment:>8s}: FID train carve {scores['train_selection']:8.3f}   FID test {scores['test']:8.3f}   "
              f"KID train carve {kid['train_selection'][0]:.4f} ± {kid['train_selection'][1]:.4f}   "
              f"KID test {kid['test'][0]:.4f} ± {kid['test'][1]:.4f}")
    if args.out:
        print(f"wrote {write_json(args.out, results)}")
    print(f"better={results['better']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
