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

from ganjax import data, names, report
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
# defense_gan's own columns (ganjax.studies.strategies.defense_gan): its classifier behind the projection,
# attacked through the classifier alone (naive) and by BPDA + EOT through the projection (adaptive).
DEFENSE_COLUMNS = ("undefended_clean_accuracy", "naive_accuracy", "bpda_accuracy")
NORM = "linf"


# --- Data.


def prepare(config, workdir: str, mesh, progress: bool = True) -> StudyContext:
    """The robust study's context (`ganjax.studies.repair.prepare_scored_study`): robust.num_validation
    and robust.num_test images are attacked."""
    return prepare_scored_study("robust", config, workdir, mesh, progress, config.robust.num_validation,
                                config.robust.num_test)


# --- Attacks and their scores.


def attack_key(seed: int, split: str, attack: str, seed_index: int, budget_index: int = 0) -> jax.Array:
    """The key of seed `seed_index`'s `attack` (one of EVAL_ATTACKS) on `split` under budget
    `budget_index` of `budgets` (0: robust.eps)."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), ROBUST_STREAM), SPLITS.index(split))
    key = jax.random.fold_in(jax.random.fold_in(key, EVAL_ATTACKS.index(attack)), seed_index)
    return key if budget_index == 0 else jax.random.fold_in(key, budget_index)


def budgets(config) -> tuple[tuple[str, float], ...]:
    """The evaluation budgets (norm, eps): (NORM, robust.eps) first, where validation and the choice
    are made, then robust.extra_budgets (test only)."""
    return ((NORM, float(config.robust.eps)),) + names.parse_budgets(config.robust.extra_budgets)


def attack_options(config, norm: str = NORM, eps: float | None = None) -> dict[str, dict]:
    """{attack: keyword arguments of `ganjax.attacks.attack` (eps, norm, steps, restarts)} under the
    budget (norm, eps); eps None: robust.eps."""
    settings = config.robust
    common = {"eps": float(settings.eps if eps is None else eps), "norm": norm,
              "restarts": int(settings.eval_restarts)}
    return {"pgd": {**common, "steps": int(settings.eval_steps)},
            "apgd-ce": {**common, "steps": int(settings.apgd_steps)}}


def budget_metric(metric: str, budget_index: int, budget: tuple[str, float]) -> str:
    """The per-seed key of `metric` under a budget: the metric itself under robust.eps (budget 0),
    "metric@linf:0.2" under the others."""
    return metric if budget_index == 0 else f"{metric}@{names.budget_name(*budget)}"


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


def renamed(result: dict, budget_index: int, budget: tuple[str, float]) -> dict:
    """`score_classifier`'s result with its metrics named for the budget (`budget_metric`)."""
    return {budget_metric(name, budget_index, budget): value for name, value in result.items()}


def robust_scores(context: StudyContext, classifiers, splits: tuple[str, ...] = SPLITS) -> dict[str, list[dict]]:
    """{split: [seed 0's scores, seed 1's, ...]} for each of `splits`, of S stacked classifiers on the scored images: the
    `score_classifier` results under every budget (test) or robust.eps alone (validation), named by
    `budget_metric`; seed s attacked with its own keys (`attack_key`)."""
    config = context.config
    num_seeds = config.experiment.num_seeds
    results = {split: [{} for _ in range(num_seeds)] for split in splits}
    jobs = [(split, s, b, budget) for split in splits for b, budget in enumerate(budgets(config))
            for s in range(num_seeds) if split == "test" or b == 0]
    for split, seed_index, b, budget in tqdm(jobs, desc="attacks", unit="seed", disable=not context.progress,
                                            leave=False):
        scored = context.resources["scored"][split]
        options = attack_options(config, *budget)
        keys = {attack: attack_key(config.seed, split, attack, seed_index, b) for attack in options}
        result = score_classifier(seed_classifier(classifiers, seed_index), data.to_model_range(scored.images),
                                  scored.labels, keys, options, config.experiment.eval_batch_size)
        results[split][seed_index].update(renamed(result, b, budget))
    return results


def advgan_key(seed: int, seed_index: int) -> jax.Array:
    """The key of seed `seed_index`'s AdvGAN (its initialisation and batches)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), ROBUST_STREAM + 1), seed_index)


def advgan_scores(context: StudyContext, classifiers) -> list[dict]:
    """[seed s's {"advgan_accuracy", "advgan_losses", "seconds@advgan"}]: an AdvGAN (`ganjax.attacks.train_advgan`,
    robust.advgan_steps steps at L-inf robust.eps) trained against classifier s on the training part, then
    attacking the scored test images; an image counts only if it is correct clean and attacked."""
    from ganjax import attacks

    config = context.config
    train_images = data.to_model_range(context.train_set.images)
    scored = context.resources["scored"]["test"]
    images = data.to_model_range(scored.images)
    results = []
    for seed_index in tqdm(range(config.experiment.num_seeds), desc="advgan", unit="seed",
                           disable=not context.progress, leave=False):
        start = time.perf_counter()
        apply_fn, params = attacks.classifier_apply_fn(seed_classifier(classifiers, seed_index))
        advgan = attacks.train_advgan(apply_fn, params, train_images, context.train_set.labels,
                                      advgan_key(config.seed, seed_index), eps=float(config.robust.eps),
                                      steps=int(config.robust.advgan_steps))
        adversarial = attacks.advgan_attack(advgan, images)
        clean = attacks.predict_classes(apply_fn, params, images) == scored.labels
        attacked = attacks.predict_classes(apply_fn, params, adversarial) == scored.labels
        results.append({"advgan_accuracy": float(np.mean(clean & attacked)), "advgan_losses": advgan.final_losses,
                        "seconds@advgan": {"advgan": time.perf_counter() - start}})
    return results


def robust_record(context: StudyContext, classifiers, name: str, splits: tuple[str, ...] = SPLITS) -> dict:
    """Robust strategy `name`'s extra record fields (its finish hook on `splits`): "seed_metrics", the attack
    scores of `robust_scores` (and on test of `advgan_scores` for the strategies of robust.advgan_against) that the
    engine merges into its per-seed clean metrics (where its report and its choice on validation,
    names.SELECTION_METRIC["robust"], read them); "robust": the attack settings per budget and the
    scored images' counts."""
    scores = robust_scores(context, classifiers, splits)
    if ("test" in splits and int(context.config.robust.advgan_steps)
            and name in names.parse_strategies(context.config.robust.advgan_against)):
        for seed, extra in zip(scores["test"], advgan_scores(context, classifiers)):
            seed.update(extra)
    return {"seed_metrics": scores,
            "robust": {"attacks": {names.budget_name(*budget): attack_options(context.config, *budget)
                                   for budget in budgets(context.config)},
                       "scored_images": {split: len(context.resources["scored"][split]) for split in SPLITS}}}


# --- The report.


def _summaries(entries: list[dict] | None, metrics) -> dict[str, dict]:
    """{metric: summarize over seeds} of the metrics every seed's entry has."""
    entries = entries or []
    return {metric: report.summarize([seed[metric] for seed in entries]) for metric in metrics
            if entries and all(metric in seed for seed in entries)}


def _budget_summaries(per_seed: list[dict], budget_index: int, budget: tuple[str, float]) -> dict[str, dict]:
    """{column: summary} of the COLUMNS under one budget (their per-seed keys named by `budget_metric`)."""
    keys = {budget_metric(column, budget_index, budget): column for column in COLUMNS}
    return {keys[key]: summary for key, summary in _summaries(per_seed, keys).items()}


def _largest_perturbation(entries: list[dict], budget_index: int, budget: tuple[str, float]) -> float | None:
    """The largest perturbation any attack found under one budget, over the seeds' entries that have it."""
    key = budget_metric("max_perturbation", budget_index, budget)
    found = [value for seed in entries if key in seed for value in seed[key].values()]
    return max(found, default=0.0) if any(key in seed for seed in entries) else None


def robust_table(records: dict[str, dict], config) -> dict[str, dict]:
    """{strategy: {"test": {column: summary}, "validation": {column: summary}, "budgets": {budget name:
    {column: summary}} (test, robust.extra_budgets), "attack_seconds": s, "max_perturbation": {budget
    name: largest perturbation found}}} of the COLUMNS (and the whole split's clean "accuracy"), summaries
    by `ganjax.report.summarize`; a strategy without a column (defense_gan has its own) lacks its entry."""
    table = {}
    all_budgets = budgets(config)
    for name, record in records.items():
        entries = [seed for split in ("per_seed", "validation") for seed in record[split] or []]
        row = {split: _summaries(record[key], ("accuracy", *COLUMNS, *DEFENSE_COLUMNS, "advgan_accuracy"))
               for split, key in (("test", "per_seed"), ("validation", "validation"))}
        if "advgan_accuracy" in row["test"]:  # success rate: the share of clean-correct images an attack fools
            row["success_rate"] = {attack: report.summarize([1.0 - seed[metric] / max(seed["clean_accuracy"], 1e-12)
                                                             for seed in record["per_seed"]])
                                   for attack, metric in (("pgd", "pgd_accuracy"), ("advgan", "advgan_accuracy"))}
        row["budgets"] = {names.budget_name(*budget): _budget_summaries(record["per_seed"], b, budget)
                          for b, budget in enumerate(all_budgets) if b}
        row["attack_seconds"] = float(sum(sum(value.values()) for seed in entries for key, value in seed.items()
                                          if key.partition("@")[0] == "seconds"))
        row["max_perturbation"] = {names.budget_name(*budget): _largest_perturbation(entries, b, budget)
                                   for b, budget in enumerate(all_budgets)}
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
    from ganjax.studies.engine import chosen_config
    from ganjax.studies.strategies.robust import generated_split

    config = context.config
    settings = config.robust
    scored = context.resources["scored"]
    table = robust_table(records, config)
    validation_means = {name: {"robust_accuracy": row["validation"]["robust_accuracy"]["mean"]}
                        for name, row in table.items()}
    gan = {}
    if "pgd_at_generated" in records:
        gan_dir = long_tail.gan_workdir(context)
        gan = {"workdir": gan_dir, "checkpoint_step": checkpoint.latest_step(gan_dir)}
    wall = {"gan_training": context.resources["gan_seconds"]} if "gan_seconds" in context.resources else {}
    generated_config = chosen_config(config, records.get("pgd_at_generated"))  # its fraction may be chosen on a grid
    real, generated = generated_split(generated_config)
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
        "extra_budgets": {names.budget_name(*budget): {
            name: attacks.attack_settings(name, num_classes=num_classes, **options)
            for name, options in attack_options(config, *budget).items()} for budget in budgets(config)[1:]},
        "defense_gan": records["defense_gan"].get("defense") if "defense_gan" in records else None,
        "advgan_steps": int(settings.advgan_steps),
        "training_attack": {
            "eps": settings.train_eps, "steps": settings.train_steps,
            "step_size": settings.train_step_size or attacks.pgd_step_size(settings.train_eps, settings.train_steps),
            "random_start": "uniform in the L-inf ball", "batch_norm": "inference mode (running statistics)",
            "trades_beta": settings.trades_beta,
            "generated_per_step": {"real": real, "generated": generated,
                                   "generated_fraction": generated_config.robust.generated_fraction},
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


def _cells(summaries: dict, columns) -> list[str]:
    return [_cell(summaries[column]) if column in summaries else "—" for column in columns]


def notes(meta: dict) -> str:
    """report.md's robustness tables and setup."""
    table = meta["robust_table"]
    pgd, apgd = meta["attacks"]["pgd"], meta["attacks"]["apgd-ce"]
    eps = pgd["eps"]
    attacked = {name: row for name, row in table.items() if name != "defense_gan"}
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
    for name, row in attacked.items():
        cells = _cells(row["test"], COLUMNS) + _cells(row["validation"], ("robust_accuracy",))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    difference = meta["pgd_at_generated_minus_pgd_at"]
    if difference is not None:
        lines.append(
            f"- pgd_at_generated - pgd_at, worst-case robust test accuracy paired over seeds: "
            f"{100 * difference['mean']:+.1f} points (95% interval [{100 * difference['ci95'][0]:+.1f}, "
            f"{100 * difference['ci95'][1]:+.1f}]).")
    extra = list(meta["extra_budgets"])
    if extra:
        headers = [f"{budget} {column}" for budget in extra for column in ("PGD", "APGD-CE", "worst case")]
        lines += ["", "### Other budgets (test images only)", "",
                  "| strategy | " + " | ".join(headers) + " |", "|---|" + "---|" * len(headers)]
        for name, row in attacked.items():
            cells = [cell for budget in extra for cell in _cells(row["budgets"].get(budget, {}), COLUMNS[1:])]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    advgan = {name: row["success_rate"] for name, row in attacked.items() if "success_rate" in row}
    if advgan:
        lines += ["", f"### AdvGAN beside PGD (L-inf eps {eps:g}, test images)", "",
                  "Success rate in %: the share of the clean-correct images that the attack fools. AdvGAN: one "
                  f"forward pass of a perturbation generator trained for {meta['advgan_steps']} steps against each "
                  "seed's classifier on the training part (Xiao et al. 2018); PGD as above.", "",
                  f"| strategy | PGD-{pgd['steps']} | AdvGAN |", "|---|---|---|"]
        for name, rates in advgan.items():
            lines.append(f"| {name} | {_cell(rates['pgd'])} | {_cell(rates['advgan'])} |")
    defense = meta.get("defense_gan")
    if defense:
        from ganjax.studies.strategies.defense_gan import defense_notes

        lines += ["", *defense_notes(defense, table["defense_gan"], eps)]
    training = meta["training_attack"]
    split = training["generated_per_step"]
    gan = meta["gan"]
    largest = {budget: max((row["max_perturbation"].get(budget) or 0.0) for row in table.values())
               for budget in [names.budget_name(NORM, eps), *extra]}
    lines += [
        "",
        "## Setup",
        "",
        f"- Evaluation attacks, at every budget: PGD {pgd['steps']} steps of 2.5 eps / steps "
        f"(L-inf: sign steps; L2: normalised gradient steps), uniform random start in the ball, {pgd['restarts']} "
        f"restart(s); APGD-CE {apgd['steps']} iterations, {apgd['restarts']} restart(s). Each keeps an image's "
        "first misclassified iterate; every seed's attacks have their own keys, the same for every strategy. "
        "Largest perturbation found per budget: " + ", ".join(f"{budget} {value:.4g}" for budget, value in largest.items())
        + ".",
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
