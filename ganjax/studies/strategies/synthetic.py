"""The GAN strategies of the long-tail study: gan and gan+augment.

Each classifier step tops its real batch up with images that a class-conditional generator makes
inside the step (`ganjax.steps.make_classifier_step`). Two-stage mode (experiment.gan_mode):
the generator is trained first, once per run, and shared by every seed. Joint mode: a fresh GAN
and the S classifiers train in one compiled step (`ganjax.steps.make_joint_train_step`), the
classifiers learning from the generator as it trains.
"""

from __future__ import annotations

import jax

from ganjax import data, parallel
from ganjax.state import create_gan_state, generator_source
from ganjax.steps import classifier_eval_step, make_classifier_step, make_joint_train_step
from ganjax.studies import long_tail
from ganjax.studies.engine import Strategy, StudyContext
from ganjax.studies.strategies.classic import classifier_strategy

SECTIONS = long_tail.CLASSIFIER_SECTIONS + long_tail.GAN_SECTIONS  # they define these strategies' results


def make(name: str, context: StudyContext) -> Strategy:
    composition = long_tail.COMPOSITIONS[name]
    config, train_set = context.config, context.train_set
    counts = data.class_counts(train_set.labels, train_set.num_classes)
    spec, num_real = long_tail.make_step_spec(composition, config, counts)
    if not spec.num_synthetic:  # synthetic share 0 (a grid's baseline point): no GAN in the step
        return classifier_strategy(name, context, spec, num_real, composition)
    if config.experiment.gan_mode == "joint":
        return joint_strategy(name, context, spec, num_real, composition)
    generator = long_tail.trained_generator(context)
    source = generator_source(generator.state, use_ema=generator.use_ema)
    strategy = classifier_strategy(name, context, spec, num_real, composition, shared=source)
    return taught(strategy, spec, context) if spec.teacher_labels else strategy


def taught(strategy: Strategy, spec, context: StudyContext) -> Strategy:
    """`strategy` with seed s's state paired with its teacher, (classifier, teacher): the plain strategy's
    classifier of seed s (`long_tail.teacher_classifiers`), frozen, whose softmax is the target of the
    synthetic images (spec.teacher_labels)."""
    teachers = long_tail.teacher_classifiers(context)
    init_students = strategy.init
    step = make_classifier_step(spec)

    def paired_step(states, batch, key, source):
        student, teacher = states
        student, metrics = step(student, batch, key, source, teacher)
        return (student, teacher), metrics

    strategy.init = lambda keys: (init_students(keys), teachers)
    strategy.make_step = lambda: paired_step
    strategy.step_key = ("taught", spec)
    strategy.classifiers = lambda states: states[0]
    return strategy


def joint_strategy(name: str, context: StudyContext, spec, num_real: int, composition) -> Strategy:
    """The GAN (seed config.seed) and the S classifiers in one compiled step for classifier.steps
    steps; the state is the GANState holding the S stacked classifiers. Not checkpointed."""
    config, train_set = context.config, context.train_set
    long_tail.check_conditional_gan(config)
    parallel.check_batch_size(num_real, context.mesh, "classifier.batch_size")
    parallel.check_batch_size(config.train.batch_size, context.mesh)
    num_seeds = config.experiment.num_seeds
    gan_root = jax.random.key(config.seed)
    counts = data.class_counts(train_set.labels, train_set.num_classes)
    real_batches = long_tail.RealBatches(
        train_set, composition, config, num_real, long_tail.strategy_class_weights(composition, config, counts)
    )

    def init(init_keys):
        state = create_gan_state(config, train_set.num_classes, train_set.image_shape, jax.random.fold_in(gan_root, 0))
        classifiers = long_tail.init_classifier_states(config, train_set.num_classes, train_set.image_shape, init_keys)
        return state.replace(classifier=classifiers)

    def batches(step: int) -> dict:
        gan_batch = data.stacked_batch_at(
            train_set, config.train.batch_size, step, config.data.seed, (config.gan.n_critic,),
            config.train.class_balanced,
        )
        return {"gan": gan_batch, "classifier": real_batches(step)}

    joint_step = make_joint_train_step(config, spec, num_seeds)
    return Strategy(
        name=name,
        steps=config.classifier.steps,
        steps_per_call=config.classifier.steps_per_call,
        step_key=("joint", spec, num_seeds, config_key(config)),
        make_step=lambda: lambda state, batch, key, shared: joint_step(state, batch, key),
        init=init,
        batches=batches,
        classifiers=lambda state: state.classifier,
        logits=classifier_eval_step,
        stream=long_tail.CLASSIFIER_STREAM,
        per_seed=False,
        step_keys=jax.random.fold_in(jax.random.fold_in(gan_root, 1), long_tail.CLASSIFIER_STREAM),
        divergence_hint=f"lower classifier.learning_rate (now {config.classifier.learning_rate}) or the GAN's rates",
    )


def config_key(config) -> str:
    """The GAN sections of `config` as a hashable value (the joint step is built from them)."""
    import json

    return json.dumps({section: config[section].to_dict() for section in long_tail.GAN_SECTIONS},
                      sort_keys=True)
