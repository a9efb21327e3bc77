"""defense_gan: the robust study's standard classifier behind a projection onto the GAN's range
(Samangouei et al. 2018; `ganjax.defense_gan`), judged by a naive and an adaptive attack.

The classifier is trained exactly as `standard` (same step, batches and keys: the same S classifiers).
Its finish hook takes defense.num_validation validation and defense.num_test test images (class-stratified
subsets of the robust study's scored images, data.seed) and, for every seed s, measures on them:

  undefended_clean_accuracy  the classifier alone, clean;
  clean_accuracy             the defended classifier classifier(P(x)), clean;
  naive_accuracy             PGD (robust.eval_steps, robust.eps, L-inf) against the classifier alone, the
                             adversarial images then met by the projection (the paper's threat model);
  bpda_accuracy              PGD (defense.attack_steps) against the defended classifier itself, the
                             projection's backward pass the identity (BPDA) and its random starts averaged
                             over defense.eot_draws draws per step (EOT) (Athalye et al. 2018);
  robust_accuracy            correct clean and under both attacks (the worst case).

Every defended prediction draws the projection's starts afresh (its own key), as a deployed defence would.
The GAN is the study's (experiment.generator_workdir, or trained in WORKDIR/gan): its images must have the
classifier's shape and its classes the classifier's (`ganjax.defense_gan.check_defense`).
"""

from __future__ import annotations

import time

import jax
import numpy as np
from tqdm.auto import tqdm

from ganjax import attacks, data, defense_gan, names
from ganjax.steps import ClassifierStepSpec
from ganjax.studies import long_tail, robust
from ganjax.studies.engine import Strategy, StudyContext
from ganjax.studies.repair import scored_subset
from ganjax.studies.strategies import robust as robust_strategies
from ganjax.studies.strategies.classic import classifier_strategy

SECTIONS = robust_strategies.SECTIONS + ("defense",)
# Keys of its own: apart from the robust study's evaluation attacks (robust.ROBUST_STREAM's).
DEFENSE_STREAM = 260611
METRICS = ("undefended_clean_accuracy", "clean_accuracy", "naive_accuracy", "bpda_accuracy", "robust_accuracy")


def defense_of(config, classifier_apply, gan_loss: str) -> defense_gan.DefenseGAN:
    settings = config.defense
    return defense_gan.DefenseGAN(classifier_apply, steps=int(settings.steps), restarts=int(settings.restarts),
                                  classes=int(settings.classes), learning_rate=float(settings.learning_rate),
                                  gan_loss=gan_loss)


def defense_keys(seed: int, split: str, seed_index: int) -> dict[str, jax.Array]:
    """Seed `seed_index`'s keys on `split`: the naive and the BPDA attacks' and the projections'."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), DEFENSE_STREAM), robust.SPLITS.index(split))
    key = jax.random.fold_in(key, seed_index)
    return dict(zip(("naive", "bpda", "clean_projection", "naive_projection", "bpda_projection"),
                    jax.random.split(key, 5)))


def score_defended(defense, params: dict, images: np.ndarray, labels: np.ndarray, keys: dict, config) -> dict:
    """One seed's METRICS on images [N, H, W, C] in [-1, 1] (module docstring), with "seconds"."""
    settings, batch_size = config.defense, int(config.defense.batch_size)
    classifier_apply, classifier_params = defense.classifier_apply, params["classifier"]
    start = time.perf_counter()
    correct = {"undefended": attacks.predict_classes(classifier_apply, classifier_params, images) == labels,
               "clean": defense_gan.defended_predictions(defense, params, images, keys["clean_projection"],
                                                         batch_size) == labels}
    naive = attacks.attack_in_batches("pgd", classifier_apply, classifier_params, images, labels, keys["naive"],
                                      batch_size=batch_size, eps=float(config.robust.eps), norm=robust.NORM,
                                      steps=int(config.robust.eval_steps))
    correct["naive"] = correct["clean"] & (defense_gan.defended_predictions(
        defense, params, naive, keys["naive_projection"], batch_size) == labels)
    eot = attacks.EOT(defense.straight_through, draws=int(settings.eot_draws))
    adaptive = np.concatenate([
        np.asarray(attacks.pgd(eot, params, images[i:i + batch_size], labels[i:i + batch_size],
                               jax.random.fold_in(keys["bpda"], i), eps=float(config.robust.eps),
                               steps=int(settings.attack_steps), norm=robust.NORM, early_stop=False))
        for i in range(0, len(images), batch_size)])
    correct["bpda"] = correct["clean"] & (defense_gan.defended_predictions(
        defense, params, adaptive, keys["bpda_projection"], batch_size) == labels)
    largest = max(float(np.max(attacks.perturbation_size(found, images, robust.NORM), initial=0.0))
                  for found in (naive, adaptive))
    return {"undefended_clean_accuracy": float(np.mean(correct["undefended"])),
            "clean_accuracy": float(np.mean(correct["clean"])),
            "naive_accuracy": float(np.mean(correct["naive"])),
            "bpda_accuracy": float(np.mean(correct["bpda"])),
            "robust_accuracy": float(np.mean(correct["clean"] & correct["naive"] & correct["bpda"])),
            "max_perturbation": {"naive": largest}, "seconds": {"defense": time.perf_counter() - start}}


def defense_subsets(context: StudyContext) -> dict[str, data.Dataset]:
    """{split: the class-stratified subset of the scored images that the defence is judged on}."""
    config = context.config
    sizes = {"validation": int(config.defense.num_validation), "test": int(config.defense.num_test)}
    return {split: scored_subset(context.resources["scored"][split], sizes[split], config.data.seed)
            for split in robust.SPLITS}


def defense_record(context: StudyContext, classifiers, splits: tuple[str, ...] = robust.SPLITS) -> dict:
    """defense_gan's finish: "seed_metrics" (METRICS per seed on the subset of each of `splits`) and
    "defense" (the settings, the subsets' sizes, the GAN and the wall time)."""
    from ganjax import checkpoint

    config = context.config
    generator = long_tail.trained_generator(context)
    subsets = defense_subsets(context)
    jobs = [(split, s) for split in splits for s in range(config.experiment.num_seeds)]
    results = {split: [] for split in splits}
    start = time.perf_counter()
    for split, seed_index in tqdm(jobs, desc="defense_gan", unit="seed", disable=not context.progress, leave=False):
        classifier_apply, classifier_params = attacks.classifier_apply_fn(robust.seed_classifier(classifiers,
                                                                                                  seed_index))
        defense = defense_of(config, classifier_apply, generator.config.gan.loss)
        params = defense_gan.defense_params(classifier_params, generator)
        subset = subsets[split]
        results[split].append(score_defended(defense, params, data.to_model_range(subset.images), subset.labels,
                                             defense_keys(config.seed, split, seed_index), config))
    gan_dir = long_tail.gan_workdir(context)
    return {"seed_metrics": results,
            "defense": {"settings": config.defense.to_dict(), "eps": float(config.robust.eps),
                        "naive_attack": {"name": "pgd", "steps": int(config.robust.eval_steps)},
                        "scored_images": {split: len(subsets[split]) for split in robust.SPLITS},
                        "gan": {"workdir": gan_dir, "checkpoint_step": checkpoint.latest_step(gan_dir)},
                        "seconds": time.perf_counter() - start}}


def defense_notes(defense: dict, row: dict, eps: float) -> list[str]:
    """report.md's Defense-GAN table (`ganjax.studies.robust.notes` calls it)."""
    settings = defense["settings"]
    columns = METRICS
    headers = ["classifier alone, clean", "defended, clean", f"naive PGD-{defense['naive_attack']['steps']}",
               f"BPDA+EOT PGD-{settings['attack_steps']}", "worst case", "validation worst case"]
    cells = robust._cells(row["test"], columns) + robust._cells(row["validation"], ("robust_accuracy",))
    return [
        "### Defense-GAN (the standard classifier behind a projection onto the GAN's range)",
        "",
        f"L-inf eps {eps:g}, on {defense['scored_images']['test']} class-stratified test images (the validation "
        f"column on {defense['scored_images']['validation']}), mean ± std over seeds [95% interval]. Projection: "
        f"{settings['steps']} Adam steps (rate {settings['learning_rate']:g}) x {settings['restarts']} random starts "
        f"x {settings['classes'] or 'every'} candidate class(es) (the classifier's likeliest), L1 distance "
        f"(the authors' code: 200 steps x 10 starts). Naive: the attack sees the classifier alone. BPDA+EOT: the "
        f"attack differentiates through the projection as the identity, {settings['eot_draws']} projection "
        "draw(s) averaged per step, every step taken; each defended prediction projects with fresh starts.",
        "",
        "| strategy | " + " | ".join(headers) + " |",
        "|---|" + "---|" * len(headers),
        "| defense_gan | " + " | ".join(cells) + " |",
        "",
        f"- GAN {defense['gan']['workdir']} at step {defense['gan']['checkpoint_step']}; defence wall time "
        f"{defense['seconds']:.0f} s (all seeds, validation + test).",
    ]


def make(name: str, context: StudyContext) -> Strategy:
    if name != "defense_gan":
        raise ValueError(f"{name!r} is not a Defense-GAN strategy; this module makes {names.DEFENSE_STRATEGIES}.")
    config = context.config
    # The GAN first: a generator of another image shape or class count is refused before any training.
    defense_gan.check_defense(long_tail.trained_generator(context), data.to_model_range(context.test_set.images[:1]),
                              context.train_set.num_classes)
    strategy = classifier_strategy(name, context, ClassifierStepSpec(), config.classifier.batch_size,
                                   long_tail.COMPOSITIONS["plain"])

    def finish(states, context, evaluate, splits):
        return defense_record(context, strategy.classifiers(states), splits)

    strategy.finish = finish
    return strategy
