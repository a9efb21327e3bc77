"""The few-label study: the semi-supervised K+1 GAN, AC-GAN, the supervised baselines, VAT and pseudo-labels.

    python -m ganjax.experiment --config configs/fashion_mnist_semi.py --workdir DIR

(`ganjax.experiment` runs this study when data.subset is "few_label".) Strategies, all on the
same network (ganjax.models.semi.NoisyMLPDiscriminator: Salimans et al. 2016's MNIST
discriminator), the same labelled images, steps and seeds (ganjax.studies.strategies):

  semi_gan            K+1 discriminator + feature-matching generator (Salimans et al. 2016);
  acgan               AC-GAN (Odena et al. 2017): real/fake head + class head, conditional G;
  supervised          cross-entropy on the labelled images only;
  supervised_augment  the same with classic augmentation (shifts, flips where valid);
  vat                 virtual adversarial training on the labelled and unlabelled images (Miyato et al.
                      2018): the classic semi-supervised alternative, no generator;
  pseudo_label        confident predictions on the unlabelled images as labels for the noisy network
                      (FixMatch's rule, Sohn et al. 2020): the other classic alternative, no generator.

The classifier is the discriminator's class head, tested after the last step (no early
stopping). The validation split follows the engine's one rule (`engine.carve_validation`):
semi.validation_per_class labelled training images per class, outside the labelled subset (with
10 labels per class, splitting the labelled subset itself would cost half the labels). They
stay in the unlabelled pool, like the whole train split, and a real few-label user would not
have them (Oliver et al. 2018, "Realistic Evaluation of Deep Semi-Supervised Learning
Algorithms"); 0 (the default) carves none, and then no best strategy is chosen.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ganjax import data
from ganjax.augment import Augmentation, check_augmentation
from ganjax.models.semi import MLPGenerator, NoisyConvDiscriminator, NoisyMLPDiscriminator
from ganjax.names import parse_hidden
from ganjax.state import GANState, ModelState, create_model_state
from ganjax.steps import FewLabelSpec, ema_update, few_label_logits, over_seeds
from ganjax.studies.engine import Strategy, StudyContext, carve_validation, data_seed, strategy_module

GAN_STRATEGIES = ("semi_gan", "acgan")
# Few-label seeds draw from their own stream (fold_in 0, 1, 2 are the GAN's in train.py).
FEW_LABEL_STREAM = 104729
# The K+1 generator's own shuffle of the unlabelled images (semi.separate_matching_batch).
MATCHING_STREAM = FEW_LABEL_STREAM + 7
# The config sections that define a few-label strategy's result (model: the DCGAN generator's).
SECTIONS = ("seed", "data", "semi", "experiment", "optim", "model")


def labelled_indices(workdir: str, train_set: data.Dataset, config) -> np.ndarray:
    """The labelled images' indices into `train_set` (the full train split), as
    `data.load_train_and_test` saved them in workdir/subset_indices.json, after checking that
    every class has at least one labelled image."""
    path = os.path.join(workdir, data.SUBSET_INDICES_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No labelled-subset file {path}; load the data with data.subset='few_label' and this workdir first "
            "(ganjax.data.load_train_and_test writes it)."
        )
    indices = data.load_indices(path, len(train_set))
    if len(np.unique(indices)) != len(indices):
        raise ValueError(f"{path} lists some image twice; each labelled image must appear once. Delete it to redraw.")
    counts = data.class_counts(train_set.labels[indices], train_set.num_classes)
    if np.any(counts == 0):
        missing = [train_set.class_names[c] for c in np.flatnonzero(counts == 0)]
        raise ValueError(f"{path} labels no image of classes {missing}; every class needs at least one label.")
    return indices


def build_discriminator(config, num_classes: int, adversarial_head: bool):
    """The classifier / discriminator network of config.semi (architecture "mlp" or "conv")."""
    s = config.semi
    if s.architecture == "conv":
        return NoisyConvDiscriminator(
            num_classes=num_classes,
            width=s.conv_width,
            input_dropout=s.input_dropout,
            weight_norm=s.weight_norm,
            adversarial_head=adversarial_head,
        )
    return NoisyMLPDiscriminator(
        num_classes=num_classes,
        hidden=parse_hidden(s.hidden),
        input_noise=s.input_noise,
        hidden_noise=s.hidden_noise,
        weight_norm=s.weight_norm,
        data_init=s.data_init,
        train_hidden_scale=s.train_hidden_scale,
        feature_layer=s.feature_layer,
        adversarial_head=adversarial_head,
    )


def build_generator(config, num_classes: int, image_shape: tuple[int, int, int]):
    """config.semi.generator's network; num_classes 0 makes it unconditional (semi_gan)."""
    if config.semi.generator == "dcgan":
        from ganjax.models import Generator

        height, _, channels = image_shape
        m = config.model
        # An unconditional DCGAN generator is a conditional one with a single class.
        return Generator(num_classes=max(num_classes, 1), image_size=height, channels=channels,
                         width=m.generator_width, embed_dim=m.embed_dim, upsample=m.upsample,
                         norm=m.generator_norm)
    return MLPGenerator(image_shape=tuple(image_shape), num_classes=num_classes, hidden=config.semi.generator_hidden)


def optimizer(config, generator: bool = False) -> optax.GradientTransformation:
    """Adam (b1 = optim.b1, Salimans et al.'s 0.5) with the rate cosine-decayed over semi.steps:
    from semi.learning_rate, or for the generator from semi.generator_learning_rate when set."""
    peak = config.semi.learning_rate
    if generator and config.semi.generator_learning_rate > 0:
        peak = config.semi.generator_learning_rate
    schedule = optax.cosine_decay_schedule(peak, config.semi.steps)
    return optax.adam(schedule, b1=config.optim.b1, b2=config.optim.b2)


INIT_BATCH = 500  # real images that set the weight-normalised layers' data-dependent initialisation


def init_images(train_set: data.Dataset, config) -> np.ndarray:
    """[INIT_BATCH, H, W, C] training images in [-1, 1] (labels unused) for `init_state`."""
    indices = data.batch_indices(len(train_set), min(INIT_BATCH, len(train_set)), 0, int(config.seed))
    return data.to_model_range(train_set.images[indices])


def init_state(strategy: str, config, num_classes: int, images: jnp.ndarray, key: jax.Array):
    """One seed's fresh state: a GANState for semi_gan / acgan, the classifier's ModelState otherwise.

    images: [N, H, W, C] real images in [-1, 1]; they set the data-dependent initialisation of
    the weight-normalised layers (see ganjax.models.semi.WeightNormDense).
    """
    image_shape = tuple(images.shape[1:])
    discriminator_key, generator_key = jax.random.split(key)
    discriminator = build_discriminator(config, num_classes, adversarial_head=strategy == "acgan")
    discriminator_state = create_model_state(discriminator, optimizer(config), discriminator_key, images)
    if strategy not in GAN_STRATEGIES:
        return discriminator_state
    generator = build_generator(config, num_classes if strategy == "acgan" else 0, image_shape)
    noise = jnp.zeros((2, config.semi.noise_dim), jnp.float32)
    generator_state = create_model_state(
        generator, optimizer(config, generator=True), generator_key, noise, jnp.zeros((2,), jnp.int32), train=False
    )
    return GANState(step=jnp.zeros((), jnp.int32), generator=generator_state, discriminator=discriminator_state,
                    generator_ema=())



def step_spec(strategy: str, config):
    augmentation = None
    if strategy == "supervised_augment":
        e = config.experiment
        augmentation = check_augmentation(Augmentation(e.augment_shift, e.augment_flip, e.augment_padding))
    return FewLabelSpec(
        noise_dim=config.semi.noise_dim,
        unlabelled_weight=float(config.semi.unlabelled_weight),
        entropy_weight=float(config.semi.entropy_weight),
        pull_away_weight=float(config.semi.pull_away_weight),
        manifold_weight=float(config.semi.manifold_weight),
        manifold_epsilon=float(config.semi.manifold_epsilon),
        class_weight=float(config.semi.acgan_class_weight),
        augmentation=augmentation,
        vat_epsilon=float(config.semi.vat_epsilon),
        vat_xi=float(config.semi.vat_xi),
        vat_iterations=int(config.semi.vat_iterations),
        vat_weight=float(config.semi.vat_weight),
        pseudo_label_threshold=float(config.semi.pseudo_label_threshold),
        pseudo_label_weight=float(config.semi.pseudo_label_weight),
    )


def with_average(step: Callable, decay: float) -> Callable:
    """`step` over (state, average): also keeps an exponential moving (Polyak) average of the
    classifier's params (`ema_update` at the classifier's step; Salimans et al.'s code
    tests the averaged parameters)."""

    def averaged_step(carry, batch, key):
        state, average = carry
        state, metrics = step(state, batch, key)
        classifier = classifier_of(state)
        average = ema_update(average, classifier.params, classifier.step, decay)
        return (state, average), metrics

    return averaged_step


def dense_only(strategy: str, config) -> bool:
    """Whether every network the strategy trains is made of dense layers (then seeds are
    vectorised with vmap; convolutions are not, see ganjax.steps.over_seeds)."""
    uses_generator = strategy in GAN_STRATEGIES
    return config.semi.architecture == "mlp" and not (uses_generator and config.semi.generator == "dcgan")


class FewLabelBatches:
    """Host-side batches for S seeds: item `step` is {"labelled_images": [S, B_l, H, W, C],
    "labels": [S, B_l], "unlabelled_images": [S, B_u, H, W, C]} in [-1, 1]; seed s's batch is a
    pure function of (seed, step). The unlabelled images are the whole train split (labelled
    ones included, as in Salimans et al.). With semi.separate_matching_batch the item also holds
    "matching_images" [S, B_u, H, W, C] for strategy semi_gan: the unlabelled images in a second,
    independent shuffle, which the K+1 generator's feature matching compares against (as in the
    authors' code)."""

    def __init__(self, train_set: data.Dataset, labelled: np.ndarray, config, strategy: str = "semi_gan"):
        self.train_set = train_set
        self.labelled = np.asarray(labelled)
        self.labelled_batch_size = config.semi.labelled_batch_size
        self.batch_size = config.semi.batch_size
        self.seeds = [data_seed(config, s) for s in range(config.experiment.num_seeds)]
        self.separate_matching_batch = strategy == "semi_gan" and bool(config.semi.separate_matching_batch)

    def _unlabelled(self, step: int, stream: int) -> np.ndarray:
        indices = np.stack([
            data.batch_indices(len(self.train_set), self.batch_size, step, seed + stream) for seed in self.seeds
        ])
        return data.to_model_range(self.train_set.images[indices])

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        labelled = np.stack([
            self.labelled[data.batch_indices(len(self.labelled), self.labelled_batch_size, step, seed)]
            for seed in self.seeds
        ])
        batch = {
            "labelled_images": data.to_model_range(self.train_set.images[labelled]),
            "labels": self.train_set.labels[labelled],
            "unlabelled_images": self._unlabelled(step, FEW_LABEL_STREAM),
        }
        if self.separate_matching_batch:
            batch["matching_images"] = self._unlabelled(step, MATCHING_STREAM)
        return batch


def classifier_of(states) -> ModelState:
    """The stacked classifier (discriminator) ModelStates of a strategy's states."""
    return states.discriminator if isinstance(states, GANState) else states


@functools.partial(jax.jit, static_argnums=(3,))
def _sample(generators: ModelState, noise: jax.Array, labels: jax.Array, conditional: bool) -> jax.Array:
    def one(generator):
        variables = {"params": generator.params, "batch_stats": generator.batch_stats}
        # An unconditional generator ignores (MLP) or has a single class for (DCGAN) its labels.
        return generator.apply_fn(variables, noise, labels if conditional else jnp.zeros_like(labels), train=False)

    return over_seeds(one, in_axes=(0,))(generators)


def sample_images(states: GANState, strategy: str, labels: np.ndarray, noise_dim: int, key: jax.Array,
                  chunk: int = 500) -> np.ndarray:
    """Generated images [S, N, H, W, C] in [-1, 1] of S stacked generators, conditioned on
    `labels` [N] for AC-GAN (ignored by the unconditional semi_gan generator)."""
    outputs = []
    for start in range(0, len(labels), chunk):
        part = np.asarray(labels[start : start + chunk], np.int32)
        noise = jax.random.normal(jax.random.fold_in(key, start), (len(part), noise_dim))
        outputs.append(np.asarray(_sample(states.generator, noise, jnp.asarray(part), strategy == "acgan")))
    return np.concatenate(outputs, axis=1)


def generator_quality(states: GANState, strategy: str, train_set: data.Dataset, config, workdir: str) -> dict:
    """Writes WORKDIR/samples_STRATEGY.png (seed 0; AC-GAN: one row per class) and, for AC-GAN,
    judges semi.generator_eval_samples class-balanced samples per seed with the domain
    classifier (ganjax.metrics.features.domain_classifier, trained on the full labelled train
    split; an evaluation tool, not part of the few-label model): {"conditional_accuracy":
    [S floats], "domain_classifier": path, "num_samples": N}."""
    from ganjax.visualize import save_image_grid

    num_classes = train_set.num_classes
    key = jax.random.fold_in(jax.random.key(config.seed), FEW_LABEL_STREAM + 1)
    grid_labels = np.repeat(np.arange(num_classes), 10)
    grid = sample_images(states, strategy, grid_labels, config.semi.noise_dim, key)[0]
    save_image_grid(grid, num_classes, os.path.join(workdir, f"samples_{strategy}.png"))
    quality: dict[str, Any] = {"samples_png": f"samples_{strategy}.png"}
    num_samples = int(config.semi.generator_eval_samples)
    if strategy != "acgan" or num_samples == 0:
        return quality
    from ganjax.classify import predict as classify_predict
    from ganjax.metrics import features

    judge, meta = features.domain_classifier(config.data)
    labels = np.arange(num_samples) % num_classes
    images = sample_images(states, strategy, labels, config.semi.noise_dim, jax.random.fold_in(key, 1))
    accuracies = [float(np.mean(classify_predict(judge, seed_images).argmax(-1) == labels)) for seed_images in images]
    quality.update({
        "conditional_accuracy": accuracies,
        "num_samples": num_samples,
        "domain_classifier": features.default_classifier_dir(config.data),
        "domain_classifier_real_test_accuracy": meta.get("real_test_accuracy"),
    })
    return quality



def make_step(name: str, spec: FewLabelSpec, num_classes: int) -> Callable:
    """One seed's step (state, batch, key) -> (state, metrics) of few-label strategy `name`, as its
    module in ganjax.studies.strategies defines it (`make_step(spec, num_classes)`): the one table
    from a strategy's name to its step, for the study, the probes and the tests."""
    return strategy_module(name).make_step(spec, num_classes)


def few_label_strategy(name: str, context: StudyContext) -> Strategy:
    """Few-label strategy `name` from its one-seed step (`make_step`): S seeds of the networks of
    config.semi, semi.steps steps on `FewLabelBatches`, the classifier tested after the last step
    (or, with semi.average_decay > 0, its Polyak average; `with_average`)."""
    from ganjax import parallel

    config, train_set = context.config, context.train_set
    parallel.check_batch_size(config.semi.batch_size, context.mesh, "semi.batch_size")
    parallel.check_batch_size(config.semi.labelled_batch_size, context.mesh, "semi.labelled_batch_size")
    spec, num_classes = step_spec(name, config), train_set.num_classes
    average_decay = float(config.semi.average_decay)
    images = jnp.asarray(init_images(train_set, config))

    def init(init_keys):
        states = jax.vmap(lambda key: init_state(name, config, num_classes, images, key))(init_keys)
        if average_decay > 0:  # own buffers for the average: both are donated
            return states, jax.tree.map(jnp.copy, classifier_of(states).params)
        return states

    def one_seed_step():
        step = make_step(name, spec, num_classes)
        if average_decay > 0:
            step = with_average(step, average_decay)
        return lambda state, batch, key, shared: step(state, batch, key)

    def classifiers(states):
        if average_decay > 0:
            states, average = states
            return classifier_of(states).replace(params=average)
        return classifier_of(states)

    def finish(states, context, evaluate, splits) -> dict:
        trained = states[0] if average_decay > 0 else states
        extras = {}
        if "test" not in splits:  # a grid point, judged on validation alone
            return extras
        if average_decay > 0:
            extras["last_iterate_accuracy"] = [seed["accuracy"] for seed in evaluate(classifier_of(trained),
                                                                                    context.test_set)]
        if name in GAN_STRATEGIES:
            extras["generator"] = generator_quality(trained, name, train_set, config, context.workdir)
        return extras

    return Strategy(
        name=name,
        steps=config.semi.steps,
        steps_per_call=config.semi.steps_per_call,
        step_key=("few_label", name, spec, num_classes, average_decay),
        make_step=one_seed_step,
        init=init,
        batches=FewLabelBatches(train_set, context.labelled, config, name),
        classifiers=classifiers,
        logits=few_label_logits,
        stream=FEW_LABEL_STREAM,
        vectorize=dense_only(name, config),
        finish=finish,
        divergence_hint=f"lower semi.learning_rate (now {config.semi.learning_rate})",
    )


# --- The study: data, the validation split, the report's description.


def prepare(config, workdir: str, mesh, progress: bool = True) -> StudyContext:
    """The whole train split (unlabelled pool), its labelled subset, the validation split
    (semi.validation_per_class per class, or none) and the test set."""
    train_set, test_set = data.load_train_and_test(config.data, workdir=workdir)
    labelled = labelled_indices(workdir, train_set, config)
    validation_set = None
    per_class = config.semi.validation_per_class
    if per_class > 0:
        candidates = np.setdiff1d(np.arange(len(train_set)), labelled)
        sizes = np.full(train_set.num_classes, per_class, np.int64)
        available = data.class_counts(train_set.labels[candidates], train_set.num_classes)
        if np.any(available < per_class):
            raise ValueError(f"Config key 'semi.validation_per_class' = {per_class} is too large: some class has only "
                             f"{int(available.min())} images outside the labelled subset; lower it.")
        held_out = carve_validation(workdir, train_set.labels, candidates, sizes, config.data.seed + 1,
                                    {"study": "few_label", "validation_per_class": per_class,
                                     "excludes": data.SUBSET_INDICES_FILE})
        validation_set = train_set.subset(held_out)
    return StudyContext(
        study="few_label", config=config, workdir=workdir, mesh=mesh, train_set=train_set,
        validation_set=validation_set, test_set=test_set, rare_classes=np.array([], np.int64), labelled=labelled,
        progress=progress,
    )


def describe(context: StudyContext, records: dict[str, dict]) -> dict:
    """The study's part of report.json's meta."""
    config, train_set, labelled = context.config, context.train_set, context.labelled
    validation = None
    if context.validation_set is not None:
        validation = {
            "per_class": int(config.semi.validation_per_class),
            "num_images": int(len(context.validation_set)),
            "accuracy": {name: [seed["accuracy"] for seed in record["validation"]] if record.get("validation")
                         else record.get("validation_accuracy") for name, record in records.items()},
        }
    return {
        "num_labelled": int(len(labelled)),
        "labelled_class_counts": data.class_counts(train_set.labels[labelled], train_set.num_classes).tolist(),
        "num_unlabelled": int(len(train_set)),
        "num_test": int(len(context.test_set)),
        "budget": {"steps": config.semi.steps, "batch_size": config.semi.batch_size,
                   "labelled_batch_size": config.semi.labelled_batch_size},
        "generator": {name: record["generator"] for name, record in records.items() if record.get("generator")},
        "average_decay": float(config.semi.average_decay),
        "last_iterate_accuracy": {
            name: record.get("last_iterate_accuracy") or [seed["accuracy"] for seed in record["per_seed"]]
            for name, record in records.items()
        },
        "validation": validation,
        "seed_handling": (
            "Seed s sets initialisation, the network's noise, the generator's noise and the order of the "
            "labelled and unlabelled batches; seed s is the same for every strategy (paired). The labelled "
            f"subset is fixed (data.seed {config.data.seed}) and shared by all seeds and strategies."
        ),
    }


def notes(meta: dict) -> str:
    """report.md's setup section."""
    budget = meta["budget"]
    lines = [
        "## Setup",
        "",
        f"- {meta['num_labelled']} labelled training images (per class {meta['labelled_class_counts']}), "
        f"{meta['num_unlabelled']} unlabelled (the whole train split), {meta['num_test']} test images.",
        f"- Budget: {budget['steps']} steps for every strategy, {budget['labelled_batch_size']} labelled + "
        f"{budget['batch_size']} unlabelled (+ as many generated) images per step.",
        "- No early stopping: every classifier is tested after the last step.",
        f"- Seeds: {meta['seed_handling']}",
    ]
    validation = meta.get("validation")
    if validation is None:
        lines.insert(4, "- No validation split (semi.validation_per_class = 0).")
    else:
        accuracy = {name: f"{100 * np.mean(values):.1f}" for name, values in validation["accuracy"].items() if values}
        lines.append(
            f"- Validation: {validation['num_images']} more labelled training images ({validation['per_class']} per "
            f"class, outside the labelled subset, also in the unlabelled pool; a real few-label user would not "
            f"have them), used only to compare settings; accuracy (%): {accuracy}."
        )
    if meta["average_decay"] > 0:
        last = {name: f"{100 * np.mean(values):.1f}" for name, values in meta["last_iterate_accuracy"].items() if values}
        lines.append(f"- Tested with a Polyak (exponential moving) average of the classifier's params, decay "
                     f"{meta['average_decay']}; accuracy (%) with the last step's params instead: {last}.")
    for name, generator in meta["generator"].items():
        line = f"- {name} generator: samples in {generator['samples_png']}"
        if "conditional_accuracy" in generator:
            accuracies = generator["conditional_accuracy"]
            line += (f"; class-conditional accuracy of {generator['num_samples']} samples per seed under the "
                     f"domain classifier (real test accuracy {generator['domain_classifier_real_test_accuracy']:.4f}): "
                     f"{100 * np.mean(accuracies):.1f} ± {100 * np.std(accuracies, ddof=1 if len(accuracies) > 1 else 0):.1f}%")
        lines.append(line + ".")
    return "\n".join(lines)
