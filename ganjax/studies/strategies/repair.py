"""clean and damage_augment: the repair study's classifiers (ganjax.studies.repair).

Both train the long-tail study's classifier network on uniform batches of the training part
(`classic.classifier_strategy` with the plain composition). damage_augment damages
1 - repair.clean_fraction of every batch inside the compiled step, each image with one of the
study's damages chosen uniformly (`damage_mixture`). After training, clean scores every repair of
the damaged validation and test images (and writes the grids); damage_augment scores the damaged
images unrepaired.
"""

from __future__ import annotations

import jax

from ganjax import names
from ganjax.repair.damage import damage_mixture
from ganjax.steps import ClassifierStepSpec, make_classifier_step
from ganjax.studies import long_tail, repair
from ganjax.studies.engine import Strategy, StudyContext
from ganjax.studies.strategies.classic import classifier_strategy

# The config sections that define these strategies' results: the classifier's, the repairs', and
# the GAN's (the inversion repairs with it).
SECTIONS = long_tail.CLASSIFIER_SECTIONS + ("repair",) + long_tail.GAN_SECTIONS


def make_damage_augment_step(spec: ClassifierStepSpec, damages: tuple[str, ...], clean_fraction: float):
    """The classifier step of `spec` on batches passed through `damage_mixture` first."""
    inner = make_classifier_step(spec)

    def step(state, batch, key, source=None):
        damage_key, key = jax.random.split(key)
        images = damage_mixture(damage_key, batch["images"], damages, clean_fraction)
        return inner(state, {**batch, "images": images}, key, source)

    return step


def make(name: str, context: StudyContext) -> Strategy:
    config = context.config
    plain = long_tail.COMPOSITIONS["plain"]
    spec = ClassifierStepSpec()
    strategy = classifier_strategy(name, context, spec, config.classifier.batch_size, plain)
    if name == "clean":

        def finish(states, context, evaluate, splits):
            scores = repair.repair_scores(context, strategy.classifiers(states), strategy.logits, True, splits)
            return {"repair": scores, "grid_files": repair.write_grids(context) if "test" in splits else {},
                    "encoder": context.resources.get("encoder")}

    else:
        damages = names.parse_damages(config.repair.damages)
        clean_fraction = float(config.repair.clean_fraction)
        strategy.step_key = ("damage_augment", spec, damages, clean_fraction)
        strategy.make_step = lambda: make_damage_augment_step(spec, damages, clean_fraction)

        def finish(states, context, evaluate, splits):
            return {"repair": repair.repair_scores(context, strategy.classifiers(states), strategy.logits, False,
                                                   splits)}

    strategy.finish = finish
    return strategy
