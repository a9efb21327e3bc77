"""The robust study: classifiers trained to resist L-inf adversarial examples, judged by strong attacks.

    python -m ganjax.experiment --config configs/fashion_mnist_robust.py --workdir DIR

Four classifier strategies (ganjax.studies.strategies.robust), S seeds each, trained on the training part
of the whole training split (the engine's validation rule holds out experiment.validation_fraction):

  standard          clean training;
  pgd_at            PGD adversarial training (Madry et al. 2018);
  trades            TRADES (Zhang et al. 2019), robust.trades_beta;
  pgd_at_generated  PGD adversarial training on real plus GAN-generated images (Gowal et al. 2021),
                    robust.generated_fraction of every batch generated.

Evaluation. robust.num_test test images and robust.num_validation validation images (class-stratified,
data.seed; the same for every strategy and seed) are attacked, for every seed s, under the L-inf budget
robust.eps (on the [0, 1] pixel scale; ganjax's images in [-1, 1] move by up to 2 eps) by
  PGD      robust.eval_steps steps of 2.5 eps / eval_steps, uniform random start, robust.eval_restarts;
  APGD-CE  robust.apgd_steps iterations (Croce & Hein 2020), robust.eval_restarts;
each attack drawing its random starts from a key of (config.seed, split, attack, s): seeds are paired
across strategies. An image counts as correct under an attack only if the classifier gets it right both
clean and attacked (as AutoAttack counts); the worst case ("robust_accuracy") counts an image only if it
survives every attack. The metrics per seed: accuracy (clean, the whole split), clean_accuracy,
pgd_accuracy, apgd_ce_accuracy, robust_accuracy (the scored images); the best strategy is the one with
the highest mean validation robust_accuracy (names.SELECTION_METRIC), never chosen on test.

Seed s sets the classifier's initialisation and batches, the training attacks' random starts, the
generated images and the evaluation attacks' starts, so the intervals cover all of them; the GAN is one
(experiment.generator_workdir, or trained in WORKDIR/gan on the training part), its own seed-to-seed
variance is not in them.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from tqdm.auto import tqdm

from ganjax import data, report
from ganjax.studies import long_tail
from ganjax.studies.engine import StudyContext, best_on_validation
from ganjax.studies.repair import prepare_scored_study

SPLITS = ("validation", "test")
# The evaluation attacks' random starts draw from their own stream, apart from the classifiers' and the GAN's.
ROBUST_STREAM = 130363
EVAL_ATTACKS = ("pgd", "apgd-ce")
ATTACK_METRICS = {"pgd": "pgd_accuracy", "apgd-ce": "apgd_ce_accuracy"}
# The columns of the robustness table, on the scored images.
COLUMNS = ("clean_accuracy", "pgd_accuracy", "apgd_ce_accuracy", "robust_accuracy")
NORM = "linf"


# --- Data.


def prepare(config, workdir: str, mesh, progress: bool = True) -> StudyContext:
    """The robust study's context (`ganjax.studies.repair.prepare_scored_study`): robust.num_validation
    and robust.num_test images are attacked."""
    return prepare_scored_study("robust", config, workdir, mesh, progress, config.robust.num_validation,
                                config.robust.num_test)


# --- Attacks and their scores.


def attack_key(seed: int, split: str, attack: str, seed_index: int) -> jax.Array:
    """The key of seed `seed_index`'s `attack` (one of EVAL_ATTACKS) on `split`."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), ROBUST_STREAM), SPLITS.index(split))
    return jax.random.fold_in(jax.random.fold_in(key, EVAL_ATTACKS.index(attack)), seed_index)


def attack_options(config) -> dict[str, dict]:
    """{attack: keyword arguments of `ganjax.attacks.attack` (eps, norm, steps, restarts)}."""
    settings = config.robust
    common = {"eps": float(settings.eps), "norm": NORM, "restarts": int(settings.eval_restarts)}
    return {"pgd": {**common, "steps": int(settings.eval_steps)},
            "apgd-ce": {**common, "steps": int(settings.apgd_steps)}}


def seed_classifier(classifiers, seed_index: int):
    """Classifier `seed_index` of S stacked ones (leaves without the seed axis)."""
    return jax.tree.map(lambda leaf: leaf[seed_index], classifiers)


def score_classifier(classifier, images: np.ndarray, labels: np.ndarray, keys: dict[str, jax.Array], options: dict,
                     batch_size: int) -> dict:
    """One classifier's scores under every attack of `options`.

    classifier: one ModelState; images [N, H, W, C] float32 in [-1, 1]; labels [N]; keys: {attack: key}.
    Returns {"clean_accuracy", ATTACK_METRICS..., "robust_accuracy", "max_perturbation": {attack: [0, 1]
    scale}, "seconds": {attack: s}}; an image counts under an attack only if it is correct clean too.
    """
    from ganjax import attacks

    apply_fn, params = attacks.classifier_apply_fn(classifier)
    correct = {"clean": attacks.predict_classes(apply_fn, params, images, batch_size) == labels}
    result = {"max_perturbation": {}, "seconds": {}}
    for attack, settings in options.items():
        start = time.perf_counter()
        adversarial = attacks.attack_in_batches(attack, apply_fn, params, images, labels, keys[attack],
                                                batch_size=batch_size, **settings)
        result["seconds"][attack] = time.perf_counter() - start
        result["max_perturbation"][attack] = float(np.max(
            attacks.perturbation_size(adversarial, images, settings["norm"]), initial=0.0))
        correct[attack] = correct["clean"] & (attacks.predict_classes(apply_fn, params, adversarial, batch_size) == labels)
        result[ATTACK_METRICS[attack]] = float(np.mean(correct[attack]))
    result["clean_accuracy"] = float(np.mean(correct["clean"]))
    result["robust_accuracy"] = float(np.mean(np.logical_and.reduce(list(correct.values()))))
    return result


def robust_scores(context: StudyContext, classifiers) -> dict[str, list[dict]]:
    """{split: [seed 0's `score_classifier` result, seed 1's, ...]} of S stacked classifiers on the
    scored images, seed s attacked with its own keys (`attack_key`)."""
    config = context.config
    options = attack_options(config)
    num_seeds = config.experiment.num_seeds
    results = {split: [] for split in SPLITS}
    jobs = [(split, s) for split in SPLITS for s in range(num_seeds)]
    for split, seed_index in tqdm(jobs, desc="attacks", unit="seed", disable=not context.progress, leave=False):
        scored = context.resources["scored"][split]
        keys = {attack: attack_key(config.seed, split, attack, seed_index) for attack in options}
        results[split].append(score_classifier(
            seed_classifier(classifiers, seed_index), data.to_model_range(scored.images), scored.labels, keys,
            options, config.experiment.eval_batch_size))
    return results


def robust_record(context: StudyContext, classifiers, evaluate) -> dict:
    """A robust strategy's extra record fields (its finish hook): "per_seed" and "validation", the
    engine's clean metrics of every seed (`evaluate` on the test and validation splits, computed again
    here: a hook does not see the engine's) with the attack scores of `robust_scores` added. They
    replace the engine's entries of the same name, so that the engine's report and its choice on
    validation (names.SELECTION_METRIC["robust"]) read the attack scores. "robust": the attack settings
    and the scored images' counts."""
    scores = robust_scores(context, classifiers)
    clean = {"test": evaluate(classifiers, context.test_set),
             "validation": evaluate(classifiers, context.validation_set)}
    merged = {split: [{**seed_clean, **seed_scores} for seed_clean, seed_scores in zip(clean[split], scores[split])]
              for split in SPLITS}
    return {"per_seed": merged["test"], "validation": merged["validation"],
            "robust": {"attacks": attack_options(context.config),
                       "scored_images": {split: len(context.resources["scored"][split]) for split in SPLITS}}}


# --- The report.


def robust_table(records: dict[str, dict]) -> dict[str, dict]:
    """{strategy: {"test": {column: summary}, "validation": {column: summary}, "attack_seconds": s}} of
    the COLUMNS (and the whole split's clean "accuracy"), summaries by `ganjax.report.summarize`."""
    table = {}
    for name, record in records.items():
        row = {}
        for split, entries in (("test", record["per_seed"]), ("validation", record["validation"])):
            row[split] = {column: report.summarize([seed[column] for seed in entries])
                          for column in ("accuracy", *COLUMNS)}
        row["attack_seconds"] = float(sum(sum(seed["seconds"].values())
                                          for entries in (record["per_seed"], record["validation"])
                                          for seed in entries))
        row["max_perturbation"] = max(max(seed["max_perturbation"].values())
                                      for entries in (record["per_seed"], record["validation"]) for seed in entries)
        table[name] = row
    return table


def paired_difference(records: dict[str, dict], first: str, second: str, metric: str = "robust_accuracy"):
    """summarize(first's test `metric` - second's) over paired seeds, or None unless both ran."""
    if first not in records or second not in records:
        return None
    return report.summarize([a[metric] - b[metric] for a, b in zip(records[first]["per_seed"],
                                                                   records[second]["per_seed"])])


def describe(context: StudyContext, records: dict[str, dict]) -> dict:
    """The study's part of report.json's meta."""
    from ganjax import attacks, checkpoint
    from ganjax.studies.strategies.robust import generated_split

    config = context.config
    settings = config.robust
    scored = context.resources["scored"]
    table = robust_table(records)
    validation_means = {name: {"robust_accuracy": row["validation"]["robust_accuracy"]["mean"]}
                        for name, row in table.items()}
    gan = {}
    if "pgd_at_generated" in records:
        gan_dir = long_tail.gan_workdir(context)
        gan = {"workdir": gan_dir, "checkpoint_step": checkpoint.latest_step(gan_dir)}
    wall = {"gan_training": context.resources["gan_seconds"]} if "gan_seconds" in context.resources else {}
    real, generated = generated_split(config)
    num_classes = context.train_set.num_classes
    return {
        "class_counts": {
            "train": data.class_counts(context.train_set.labels, num_classes).tolist(),
            "validation": data.class_counts(context.validation_set.labels, num_classes).tolist(),
            "test": data.class_counts(context.test_set.labels, num_classes).tolist(),
        },
        "scored_images": {split: len(scored[split]) for split in SPLITS},
        "robust_table": table,
        "best_on_validation_robust_accuracy": best_on_validation(validation_means, "robust_accuracy"),
        "pgd_at_generated_minus_pgd_at": paired_difference(records, "pgd_at_generated", "pgd_at"),
        "attacks": {name: attacks.attack_settings(name, num_classes=num_classes, **options)
                    for name, options in attack_options(config).items()},
        "training_attack": {
            "eps": settings.train_eps, "steps": settings.train_steps,
            "step_size": settings.train_step_size or attacks.pgd_step_size(settings.train_eps, settings.train_steps),
            "random_start": "uniform in the L-inf ball", "batch_norm": "inference mode (running statistics)",
            "trades_beta": settings.trades_beta,
            "generated_per_step": {"real": real, "generated": generated, "generated_fraction": settings.generated_fraction},
        },
        "gan": gan,
        "budget": {"classifier_steps": config.classifier.steps, "classifier_batch_size": config.classifier.batch_size},
        "wall_seconds": wall,
        "seed_handling": (
            "Seed s sets classifier s's initialisation and batches, its training attacks' random starts and "
            "generated images, and the evaluation attacks' random starts (the same keys for every strategy: "
            "paired). One GAN serves every seed; its own variance is not in the intervals."
        ),
    }


def _cell(summary: dict) -> str:
    low, high = summary["ci95"]
    return f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def notes(meta: dict) -> str:
    """report.md's robustness table and setup."""
    table = meta["robust_table"]
    pgd, apgd = meta["attacks"]["pgd"], meta["attacks"]["apgd-ce"]
    eps = pgd["eps"]
    headers = ["clean", f"PGD-{pgd['steps']}", f"APGD-CE ({apgd['steps']})", "worst case", "validation worst case"]
    lines = [
        "## Robustness",
        "",
        f"L-inf eps = {eps:g} on the [0, 1] pixel scale ({2 * eps:g} on the model's [-1, 1] images). Accuracy in % "
        f"on {meta['scored_images']['test']} class-stratified test images, mean ± std over seeds [95% interval]; "
        "an image counts under an attack only if it is classified correctly clean and attacked, and in the worst "
        f"case only if it survives every attack. The last column is on {meta['scored_images']['validation']} "
        "validation images, where the best strategy is chosen.",
        "",
        "| strategy | " + " | ".join(headers) + " |",
        "|---|" + "---|" * len(headers),
    ]
    for name, row in table.items():
        cells = [_cell(row["test"][column]) for column in COLUMNS] + [_cell(row["validation"]["robust_accuracy"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    difference = meta["pgd_at_generated_minus_pgd_at"]
    if difference is not None:
        lines.append(
            f"- pgd_at_generated - pgd_at, worst-case robust test accuracy paired over seeds: "
            f"{100 * difference['mean']:+.1f} points (95% interval [{100 * difference['ci95'][0]:+.1f}, "
            f"{100 * difference['ci95'][1]:+.1f}]).")
    training = meta["training_attack"]
    split = training["generated_per_step"]
    gan = meta["gan"]
    lines += [
        "",
        "## Setup",
        "",
        f"- Evaluation attacks (L-inf, eps {eps:g}): PGD {pgd['steps']} steps of {pgd['step_size']:.4g} "
        f"(2.5 eps / steps), uniform random start, {pgd['restarts']} restart(s); APGD-CE {apgd['steps']} "
        f"iterations, {apgd['restarts']} restart(s). Each keeps an image's first misclassified iterate; every "
        f"seed's attacks have their own keys, the same for every strategy. Largest perturbation found: "
        f"{max(row['max_perturbation'] for row in table.values()):.4g}.",
        f"- Training attack (pgd_at, trades, pgd_at_generated): PGD {training['steps']} steps of "
        f"{training['step_size']:.4g} at eps {training['eps']:g}, "
        f"uniform random start, every step taken (no early stop), BatchNorm in {training['batch_norm']}; TRADES "
        f"beta {training['trades_beta']:g} (its attack maximises the KL to the clean prediction).",
        f"- pgd_at_generated: {split['generated']} of {split['real'] + split['generated']} images per step made by "
        "the conditional GAN (labels uniform), attacked like the real ones"
        + (f"; GAN {gan['workdir']} at step {gan['checkpoint_step']}." if gan else "."),
        f"- Budget: {meta['budget']['classifier_steps']} classifier steps at batch "
        f"{meta['budget']['classifier_batch_size']} for every strategy; training part "
        f"{sum(meta['class_counts']['train'])} images, validation {sum(meta['class_counts']['validation'])}, test "
        f"{sum(meta['class_counts']['test'])} (clean accuracy on all of it in the first table, 'accuracy').",
        "- Attack wall time (s, all seeds, validation + test; the first strategy's includes compilation): "
        + ", ".join(f"{name} {row['attack_seconds']:.0f}" for name, row in table.items()) + ".",
        f"- Seeds: {meta['seed_handling']}",
    ]
    return "\n".join(lines)
