"""The repair study: damaged images repaired, and the repairs judged by a classifier.

    python -m ganjax.experiment --config configs/fashion_mnist_repair.py --workdir DIR

Two classifier strategies (ganjax.studies.strategies.repair), trained on the training part of the
whole training split (the engine's validation rule holds out experiment.validation_fraction):

  clean           trained on clean images; it judges every repair;
  damage_augment  trained with the study's damages as augmentation (repair.clean_fraction of each
                  batch clean, the rest one damage each): the practitioner's alternative to repairing.

For every damage of repair.damages and every seed s, repair.num_test test images (class-stratified,
data.seed) are damaged with seed s's key, repaired by every method of repair.methods (none, mean,
classic, inversion; ganjax.repair) and scored: the accuracy of clean classifier s, and PSNR / SSIM
against the clean images over the whole image and over the damaged region. damage_augment's
classifier s is scored on the same damaged images, unrepaired. The same is done on
repair.num_validation validation images for the repairs that need no generator: the best classic
repair of each damage (`ganjax.names.CLASSIC_REPAIRS`) is chosen there, never on test.

Seed s sets the classifier's initialisation and batches, the damage draw and the inversion's
restarts, so the intervals cover all three; the GAN is one (experiment.generator_workdir, or trained
in WORKDIR/gan), its own seed-to-seed variance is not in them.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from tqdm.auto import tqdm

from ganjax import data, names, report
from ganjax.studies import long_tail
from ganjax.studies.engine import StudyContext, predict

SPLITS = ("validation", "test")
# The damage draws and inversion restarts draw from their own stream, apart from the classifiers'.
REPAIR_STREAM = 104729
GRID_IMAGES = 8  # test images per damage in the study's grid PNG
GRID_FILE = "repair_grid_{index}.png"
QUALITY = ("psnr", "ssim", "psnr_region", "ssim_region")


# --- Data.


def scored_subset(dataset: data.Dataset, size: int, seed: int) -> data.Dataset:
    """A class-stratified sample of about `size` images of `dataset` drawn with `seed` (all if size
    is 0 or at least its length), in the dataset's order."""
    if size == 0 or size >= len(dataset):
        return dataset
    _, indices = data.stratified_split_indices(dataset.labels, size / len(dataset), seed)
    return dataset.subset(np.sort(indices))


def prepare_scored_study(study: str, config, workdir: str, mesh, progress: bool, num_validation: int,
                         num_test: int) -> StudyContext:
    """The context of a study on the whole training split (the repair and robust studies): a training
    part and a validation part by the engine's rule, the test set, and in resources["scored"]
    class-stratified subsets of about num_validation validation and num_test test images (0 = all)."""
    full_train, test_set = data.load_train_and_test(config.data, workdir=workdir)
    train_part, validation_part = long_tail.validation_split(full_train, config, workdir, study=study)
    train_set, validation_set = full_train.subset(train_part), full_train.subset(validation_part)
    long_tail.check_class_counts(data.class_counts(train_set.labels, train_set.num_classes), train_set.class_names,
                                 "the training part")
    context = StudyContext(
        study=study, config=config, workdir=workdir, mesh=mesh, train_set=train_set,
        validation_set=validation_set, test_set=test_set, rare_classes=np.zeros(0, np.int64), progress=progress,
    )
    context.resources["train_part"] = train_part
    context.resources["scored"] = {
        "validation": scored_subset(validation_set, num_validation, config.data.seed),
        "test": scored_subset(test_set, num_test, config.data.seed),
    }
    return context


def prepare(config, workdir: str, mesh, progress: bool = True) -> StudyContext:
    """The repair study's context (`prepare_scored_study`): repair.num_validation and repair.num_test
    images are damaged and repaired."""
    return prepare_scored_study("repair", config, workdir, mesh, progress, config.repair.num_validation,
                                config.repair.num_test)


def damage_keys(seed: int, split: str, damage_index: int, seed_index: int) -> tuple[jax.Array, jax.Array]:
    """(damage key, repair key) of seed `seed_index`'s draw of damage `damage_index` on `split`."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), REPAIR_STREAM), SPLITS.index(split))
    key = jax.random.fold_in(jax.random.fold_in(key, damage_index), seed_index)
    damage_key, repair_key = jax.random.split(key)
    return damage_key, repair_key


def damaged_images(context: StudyContext, split: str, damage_index: int, seed_index: int):
    """(clean, damaged [N, H, W, C] in [-1, 1], mask [N, H, W]) of the scored `split` images under damage
    `damage_index` of repair.damages, drawn with seed `seed_index`'s key; built once per run."""
    from ganjax.repair import damage

    def build():
        spec = names.parse_damages(context.config.repair.damages)[damage_index]
        clean = data.to_model_range(context.resources["scored"][split].images)
        damage_key, _ = damage_keys(context.config.seed, split, damage_index, seed_index)
        damaged, mask = damage(spec, damage_key, clean)
        return clean, np.asarray(damaged), np.asarray(mask)

    return context.resource(("damaged", split, damage_index, seed_index), build)


# --- Repairs and their scores.


def seed_classifier(classifiers, seed_index: int):
    """Classifier `seed_index` of S stacked ones, as a stack of one."""
    return jax.tree.map(lambda leaf: leaf[seed_index:seed_index + 1], classifiers)


def seed_logits(context: StudyContext, classifiers, logits_fn, seed_index: int, images: np.ndarray) -> np.ndarray:
    """Logits [N, K] of classifier `seed_index` on images [N, H, W, C] in [-1, 1]."""
    return predict(seed_classifier(classifiers, seed_index), logits_fn, images,
                   context.config.experiment.eval_batch_size, context.mesh)[0]


def inversion_options(config, spec: str) -> dict:
    """ganjax.repair.repair's options for the inversion, from the repair section."""
    from ganjax.repair import is_noise

    repair = config.repair
    options = {"steps": repair.steps, "restarts": repair.restarts, "prior_weight": repair.prior_weight,
               "learning_rate": repair.learning_rate, "batch_size": repair.batch_size}
    if not is_noise(spec):
        options.update(window=repair.window, blend=repair.blend)
    return options


def candidate_classes(logits: np.ndarray, k: int) -> np.ndarray:
    """[N, k] int32: the k likeliest classes of each row of logits [N, K], likeliest first."""
    return np.argsort(-logits, axis=1, kind="stable")[:, :k].astype(np.int32)


def repair_images(context: StudyContext, method: str, spec: str, damaged, mask, repair_key,
                  classify=None, classic=None) -> np.ndarray:
    """`method`'s repair of damaged [N, H, W, C]; for the inversion with repair.candidate_classes k > 0,
    `classify(images) -> logits` (the judging classifier) picks each image's k candidate classes on
    the classic repair (`classic`, or computed here)."""
    from ganjax.repair import repair

    if method != "inversion":
        return np.asarray(repair(method, damaged, mask, repair_key, damage=spec))
    config = context.config
    labels = None
    if config.repair.candidate_classes:
        if classic is None:
            classic = np.asarray(repair("classic", damaged, mask, repair_key, damage=spec))
        labels = candidate_classes(classify(classic), config.repair.candidate_classes)
    generator = long_tail.trained_generator(context)
    options = inversion_options(config, spec)
    if config.repair.encoder_steps:
        from ganjax.repair.encoder import encode

        options["initial_latents"] = encode(trained_encoder(context), damaged)
    return np.asarray(repair("inversion", damaged, mask, repair_key, damage=spec, generator=generator,
                             labels=labels, **options))


def trained_encoder(context: StudyContext):
    """The encoder warm start (ganjax.repair.encoder), trained once per run for repair.encoder_steps
    steps on the generator's samples under the study's damages; its wall time in resources."""

    def build():
        from ganjax.repair.encoder import train_encoder

        config = context.config
        start = time.perf_counter()
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), REPAIR_STREAM), len(SPLITS))
        state, losses = train_encoder(long_tail.trained_generator(context), key,
                                      damages=names.parse_damages(config.repair.damages),
                                      clean_fraction=config.repair.clean_fraction, steps=config.repair.encoder_steps,
                                      progress=context.progress)
        context.resources["encoder"] = {"seconds": time.perf_counter() - start, "final_loss": float(losses[-1]),
                                        "first_loss": float(losses[0])}
        return state

    return context.resource("encoder_state", build)


def score(labels: np.ndarray, logits: np.ndarray, clean=None, repaired=None, region=None) -> dict:
    """{"accuracy"} of logits [N, K], and with images the mean PSNR / SSIM (whole image and damaged region)."""
    from ganjax.metrics.image_quality import image_quality

    result = {"accuracy": float(np.mean(np.argmax(logits, axis=1) == labels))}
    if repaired is not None:
        quality = image_quality(clean, repaired, region)
        result.update({name: float(np.nanmean(quality[name])) for name in QUALITY})
    return result


def split_methods(config, split: str) -> tuple[str, ...]:
    """The repairs scored on `split`: all of repair.methods on test, those needing no generator on validation."""
    methods = names.parse_repair_methods(config.repair.methods)
    return methods if split == "test" else tuple(method for method in methods if method != "inversion")


def repair_scores(context: StudyContext, classifiers, logits_fn, repaired: bool, splits: tuple[str, ...] = SPLITS) -> dict:
    """{split: {"clean": [S scores], "damages": {damage: {method: [S scores]}}}} for each of `splits`, of S stacked
    classifiers, each seed on its own damage draw: with `repaired`, every method of `split_methods`
    (with timings); without, the damaged images only ("none")."""
    from ganjax.repair import damaged_region

    config = context.config
    num_seeds = config.experiment.num_seeds
    specs = names.parse_damages(config.repair.damages)
    results = {}
    jobs = [(split, d, s) for split in splits for d in range(len(specs)) for s in range(num_seeds)]
    if repaired and config.repair.encoder_steps and "inversion" in split_methods(config, "test"):
        trained_encoder(context)  # trained once, before the timed repairs (its own time is in resources)
    bar = tqdm(jobs, desc="repairs" if repaired else "damaged images", unit="set", disable=not context.progress,
               leave=False)
    for split in splits:
        labels = context.resources["scored"][split].labels
        clean_images = data.to_model_range(context.resources["scored"][split].images)
        results[split] = {
            "clean": [score(labels, seed_logits(context, classifiers, logits_fn, s, clean_images))
                      for s in range(num_seeds)],
            "damages": {},
        }
    for split, damage_index, seed_index in bar:
        spec = specs[damage_index]
        labels = context.resources["scored"][split].labels
        clean, damaged, mask = damaged_images(context, split, damage_index, seed_index)
        region = damaged_region(spec, mask)
        _, repair_key = damage_keys(config.seed, split, damage_index, seed_index)

        def classify(images, s=seed_index):
            return seed_logits(context, classifiers, logits_fn, s, images)

        per_method = results[split]["damages"].setdefault(spec, {})
        done = {}
        for method in split_methods(config, split) if repaired else ("none",):
            start = time.perf_counter()
            images = repair_images(context, method, spec, damaged, mask, repair_key, classify, done.get("classic"))
            seconds = time.perf_counter() - start
            done[method] = images
            entry = score(labels, classify(images), clean, images, region)
            per_method.setdefault(method, []).append({**entry, "seconds": seconds, "images": len(images)})
            if repaired and split == "test" and seed_index == 0:
                context.resources.setdefault("grid", {}).setdefault(spec, {"clean": clean[:GRID_IMAGES],
                                                                           "damaged": damaged[:GRID_IMAGES]})
                context.resources["grid"][spec][method] = images[:GRID_IMAGES]
    return results


def write_grids(context: StudyContext) -> dict[str, str]:
    """For each damage, WORKDIR/repair_grid_D.png: rows clean, damaged, then every repair, of the first
    GRID_IMAGES scored test images (seed 0's damage draw); returns {damage: file name}."""
    import os

    from ganjax import visualize

    files = {}
    for index, (spec, rows) in enumerate(context.resources.get("grid", {}).items()):
        methods = [method for method in names.REPAIR_METHODS if method in rows and method != "none"]
        order = ["clean", "damaged", *methods]
        files[spec] = GRID_FILE.format(index=index)
        visualize.save_image_grid(np.concatenate([rows[name] for name in order]), len(order),
                                  os.path.join(context.workdir, files[spec]), scale=3)
    return files


# --- The report.


def _values(entries: list[dict], metric: str) -> np.ndarray:
    return np.asarray([entry[metric] for entry in entries], np.float64)


def repair_table(records: dict[str, dict]) -> dict:
    """{damage: {...}} of the test split: per column (clean, the repairs, damage_trained) the accuracy
    summary, per repair PSNR / SSIM, the best classic repair chosen on validation accuracy, and the
    paired per-seed comparisons of the inversion with it and with the damage."""
    table = {}
    clean_record = records.get("clean", {}).get("repair")
    augment_record = records.get("damage_augment", {}).get("repair")
    source = clean_record or augment_record
    if source is None:
        return table
    for spec in source["test"]["damages"]:
        row = {"accuracy": {}, "quality": {}}
        if clean_record is not None:
            test = clean_record["test"]
            clean = _values(test["clean"], "accuracy")
            row["accuracy"]["clean"] = report.summarize(clean)
            for method, entries in test["damages"][spec].items():
                row["accuracy"][method] = report.summarize(_values(entries, "accuracy"))
                row["quality"][method] = {name: report.summarize(_values(entries, name)) for name in QUALITY}
            row["seconds"] = {method: float(np.sum(_values(entries, "seconds")))
                              for method, entries in test["damages"][spec].items()}
            row["images_per_second"] = {
                method: float(np.sum(_values(entries, "images")) / max(np.sum(_values(entries, "seconds")), 1e-9))
                for method, entries in test["damages"][spec].items()}
            validation = clean_record["validation"]["damages"][spec]
            classic = [method for method in names.CLASSIC_REPAIRS if method in validation]
            if classic:
                means = {method: float(np.mean(_values(validation[method], "accuracy"))) for method in classic}
                best = max(classic, key=lambda method: means[method])
                row["best_classic"] = {"method": best, "validation_accuracy": means}
                if "inversion" in test["damages"][spec]:
                    inversion = _values(test["damages"][spec]["inversion"], "accuracy")
                    row["inversion_minus_best_classic"] = report.summarize(
                        inversion - _values(test["damages"][spec][best], "accuracy"))
                    inversion_region = _values(test["damages"][spec]["inversion"], "psnr_region")
                    row["inversion_minus_best_classic_psnr_region"] = report.summarize(
                        inversion_region - _values(test["damages"][spec][best], "psnr_region"))
            if "inversion" in test["damages"][spec] and "none" in test["damages"][spec]:
                damaged = _values(test["damages"][spec]["none"], "accuracy")
                inversion = _values(test["damages"][spec]["inversion"], "accuracy")
                row["recovered_fraction"] = report.summarize((inversion - damaged) / np.maximum(clean - damaged, 1e-9))
        if augment_record is not None:
            row["accuracy"]["damage_trained"] = report.summarize(
                _values(augment_record["test"]["damages"][spec]["none"], "accuracy"))
            row["accuracy"]["damage_trained_clean"] = report.summarize(
                _values(augment_record["test"]["clean"], "accuracy"))
        table[spec] = row
    return table


def describe(context: StudyContext, records: dict[str, dict]) -> dict:
    """The study's part of report.json's meta."""
    from ganjax import checkpoint

    config = context.config
    scored = context.resources["scored"]
    uses_gan = "clean" in records and "inversion" in names.parse_repair_methods(config.repair.methods)
    gan = {}
    if uses_gan:
        gan_dir = long_tail.gan_workdir(context)
        gan = {"workdir": gan_dir, "checkpoint_step": checkpoint.latest_step(gan_dir)}
    wall = {"gan_training": context.resources["gan_seconds"]} if "gan_seconds" in context.resources else {}
    return {
        "class_counts": {
            "train": data.class_counts(context.train_set.labels, context.train_set.num_classes).tolist(),
            "validation": data.class_counts(context.validation_set.labels, context.train_set.num_classes).tolist(),
            "test": data.class_counts(context.test_set.labels, context.train_set.num_classes).tolist(),
        },
        "scored_images": {split: len(scored[split]) for split in SPLITS},
        "damages": list(names.parse_damages(config.repair.damages)),
        "methods": list(names.parse_repair_methods(config.repair.methods)),
        "inversion": {key: config.repair[key] for key in ("steps", "restarts", "prior_weight", "learning_rate",
                                                          "window", "blend", "batch_size", "candidate_classes",
                                                          "encoder_steps")},
        "encoder": records.get("clean", {}).get("encoder"),
        "gan": gan,
        "repair_table": repair_table(records),
        "grid_files": records.get("clean", {}).get("grid_files", {}),
        "budget": {"classifier_steps": config.classifier.steps, "classifier_batch_size": config.classifier.batch_size},
        "wall_seconds": wall,
        "seed_handling": (
            "Seed s sets classifier s's initialisation and batches, the damage draw of every image and the "
            "inversion's restarts; seeds are paired across methods and strategies. One GAN serves every seed."
        ),
    }


def _cell(summary: dict | None, scale: float = 100.0, digits: int = 1) -> str:
    if summary is None:
        return "-"
    return f"{scale * summary['mean']:.{digits}f} ± {scale * summary['std']:.{digits}f}"


def notes(meta: dict) -> str:
    """report.md's repair tables and setup."""
    table = meta["repair_table"]
    columns = ["clean", "none", "mean", "classic", "inversion", "damage_trained"]
    headers = ["clean", "damaged", "mean", "classic", "inversion", "damage-trained classifier"]
    lines = [
        "## Repair",
        "",
        f"Accuracy in % on {meta['scored_images']['test']} test images, mean ± std over seeds; the first five "
        "columns are the clean classifier's (on clean, damaged and repaired images), the last is the "
        "damage-trained classifier's on the damaged images.",
        "",
        "| damage | " + " | ".join(headers) + " |",
        "|---|" + "---|" * len(headers),
    ]
    for spec, row in table.items():
        lines.append(f"| {spec} | " + " | ".join(_cell(row["accuracy"].get(column)) for column in columns) + " |")
    lines += [
        "",
        "PSNR (dB) and SSIM against the clean images, on the damaged region (whole image in report.json):",
        "",
        "| damage | " + " | ".join(f"{method} PSNR / SSIM" for method in ("none", "mean", "classic", "inversion")) + " |",
        "|---|---|---|---|---|",
    ]
    for spec, row in table.items():
        cells = []
        for method in ("none", "mean", "classic", "inversion"):
            quality = row["quality"].get(method)
            cells.append("-" if quality is None else
                         f"{_cell(quality['psnr_region'], 1, 2)} / {_cell(quality['ssim_region'], 1, 3)}")
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    lines += ["", "Inversion against the best classic repair (chosen on validation accuracy), paired over seeds:", ""]
    for spec, row in table.items():
        best = row.get("best_classic")
        if best is None or "inversion_minus_best_classic" not in row:
            continue
        difference = row["inversion_minus_best_classic"]
        psnr = row["inversion_minus_best_classic_psnr_region"]
        recovered = row.get("recovered_fraction")
        lines.append(
            f"- {spec}: best classic {best['method']} (validation accuracy "
            f"{ {method: round(100 * value, 1) for method, value in best['validation_accuracy'].items()} }); "
            f"inversion - {best['method']}: {100 * difference['mean']:+.1f} points (95% CI "
            f"[{100 * difference['ci95'][0]:+.1f}, {100 * difference['ci95'][1]:+.1f}]), damaged-region PSNR "
            f"{psnr['mean']:+.2f} dB (95% CI [{psnr['ci95'][0]:+.2f}, {psnr['ci95'][1]:+.2f}])"
            + (f"; recovers {100 * recovered['mean']:.0f}% of the accuracy the damage costs" if recovered else "")
            + f"; inversion {row['images_per_second'].get('inversion', float('nan')):.3g} images/s "
              "(compilation included)."
        )
    inversion = meta["inversion"]
    gan = meta["gan"]
    lines += [
        "",
        "## Setup",
        "",
        f"- Scored images: {meta['scored_images']} (class-stratified); the training part "
        f"{sum(meta['class_counts']['train'])} images, validation {sum(meta['class_counts']['validation'])}.",
        f"- Inversion: {inversion['steps']} Adam steps, {inversion['restarts']} restarts, lambda "
        f"{inversion['prior_weight']}, lr {inversion['learning_rate']}, window {inversion['window']}, blend "
        f"{inversion['blend']}, classes tried: "
        + ("all" if not inversion["candidate_classes"] else
           f"the clean classifier's {inversion['candidate_classes']} likeliest on the classic repair")
        + ("" if not inversion["encoder_steps"] else
           f"; warm start: one restart per candidate at E(x), an encoder trained {inversion['encoder_steps']} steps "
           f"on the generator's damaged samples ({meta['encoder']['seconds']:.0f} s, regression loss "
           f"{meta['encoder']['first_loss']:.3f} -> {meta['encoder']['final_loss']:.3f})")
        + (f"; GAN {gan['workdir']} at step {gan['checkpoint_step']}." if gan else "."),
        f"- Grids (clean, damaged, repairs; seed 0): {meta['grid_files']}.",
        f"- Budget: {meta['budget']['classifier_steps']} classifier steps at batch "
        f"{meta['budget']['classifier_batch_size']} for both strategies.",
        f"- Seeds: {meta['seed_handling']}",
    ]
    return "\n".join(lines)
