"""The classic long-tail strategies: plain, reweight, oversample and augment.

They train the same classifier on real images only and differ in the batches
(`ganjax.studies.long_tail.COMPOSITIONS`): uniform or class-balanced sampling, class-balanced
loss weights, classic augmentation.
"""

from __future__ import annotations

from ganjax import data
from ganjax.steps import classifier_eval_step, make_classifier_step
from ganjax.studies import long_tail
from ganjax.studies.engine import Strategy, StudyContext

SECTIONS = long_tail.CLASSIFIER_SECTIONS  # the config sections that define these strategies' results


def make(name: str, context: StudyContext) -> Strategy:
    composition = long_tail.COMPOSITIONS[name]
    config, train_set = context.config, context.train_set
    counts = data.class_counts(train_set.labels, train_set.num_classes)
    spec, num_real = long_tail.make_step_spec(composition, config, counts)
    return classifier_strategy(name, context, spec, num_real, composition)


def classifier_strategy(name, context: StudyContext, spec, num_real: int, composition, shared=None) -> Strategy:
    """A long-tail classifier strategy: S classifiers trained by `make_classifier_step(spec)` on
    `composition`'s real batches (+ spec's synthetic images from `shared`, a GeneratorSource)."""
    from ganjax import parallel

    config, train_set = context.config, context.train_set
    parallel.check_batch_size(num_real, context.mesh, "classifier.batch_size")
    counts = data.class_counts(train_set.labels, train_set.num_classes)
    class_weights = long_tail.strategy_class_weights(composition, config, counts)
    return Strategy(
        name=name,
        steps=config.classifier.steps,
        steps_per_call=config.classifier.steps_per_call,
        step_key=("classifier", spec),
        make_step=lambda: make_classifier_step(spec),
        init=lambda keys: long_tail.init_classifier_states(config, train_set.num_classes, train_set.image_shape, keys),
        batches=long_tail.RealBatches(train_set, composition, config, num_real, class_weights),
        classifiers=lambda states: states,
        logits=classifier_eval_step,
        stream=long_tail.CLASSIFIER_STREAM,
        shared=shared,
        divergence_hint=f"lower classifier.learning_rate (now {config.classifier.learning_rate})",
    )
