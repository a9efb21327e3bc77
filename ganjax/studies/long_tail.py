"""The long-tail study: GAN-augmented recognition against the classic long-tail baselines.

    python -m ganjax.experiment --config configs/fashion_mnist_lt.py --workdir DIR

Every strategy trains the same network for the same steps and batch size from the same S
seeds; they differ only in what a batch holds and how it is weighted
(ganjax.studies.strategies.classic and .synthetic):

  plain         uniform batches of the long-tailed set, cross-entropy;
  reweight      uniform batches, class-balanced loss weights (Cui et al. 2019);
  oversample    class-balanced sampling: a class uniformly, then one of its images;
  augment       uniform batches, random shifts (and flips where valid);
  gan           B_real uniform real images + B_syn images made inside the step by a
                conditional generator, labels drawn to top every class up to balance
                (experiment.synthetic_fraction); or, with experiment.synthetic_top_up = L,
                class-balanced batches in which every class has its real images plus
                synthetic ones up to L (`top_up_plan`); with share 0 (and no top-up) it is
                plain, step for step: the baseline point of a grid (experiment.grid);
  gan+augment   the same, both parts augmented;
  gan+oversample  class-balanced real batches (oversample's) plus synthetic images with uniform
                labels: the GAN adds new images of the rare classes on top of the best classic
                rebalancing instead of replacing it (with a top-up level, the same as gan);
  gan+reweight  reweight's weighted uniform real batches plus gan's synthetic images.
Synthetic images weigh experiment.synthetic_weight in the loss (real ones 1, or their class weight).

A stratified experiment.validation_fraction of every class is held out as the validation split
(the engine's rule, `ganjax.studies.engine.carve_validation`); in two-stage mode the GAN is
trained (or resumed, or reused when finished) in WORKDIR/gan by `ganjax.train.train_and_evaluate`
on the training part only.

Seeds. Seed s has its own initialisation, dropout/augmentation/synthesis randomness and its
own real-data order (batches are drawn per seed, not shared), so the spread over seeds
covers all of the classifier's randomness. Seed s is the same for every strategy (paired).
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import jax
import numpy as np

from ganjax import checkpoint, data
from ganjax.augment import Augmentation, check_augmentation
from ganjax.names import LONG_TAIL_STRATEGIES, REWEIGHTS
from ganjax.state import ModelState, create_classifier_state
from ganjax.steps import ClassifierStepSpec
from ganjax.studies.engine import StudyContext, carve_validation, data_seed

GAN_DIR = "gan"
# Classifier seeds draw from their own stream, apart from the GAN's (fold_in 0, 1, 2 in train.py).
CLASSIFIER_STREAM = 7919
# The config sections that define a classic strategy's result; GAN strategies add the GAN's.
CLASSIFIER_SECTIONS = ("seed", "data", "classifier", "experiment")
GAN_SECTIONS = ("model", "gan", "optim", "train")


class Composition(NamedTuple):
    """What distinguishes one long-tail strategy's batches from another's."""

    name: str
    sampling: str  # "uniform" or "class_balanced"
    reweight: bool
    augment: bool
    synthetic: bool


COMPOSITIONS = {
    "plain": Composition("plain", "uniform", False, False, False),
    "reweight": Composition("reweight", "uniform", True, False, False),
    "oversample": Composition("oversample", "class_balanced", False, False, False),
    "augment": Composition("augment", "uniform", False, True, False),
    "gan": Composition("gan", "uniform", False, False, True),
    "gan+augment": Composition("gan+augment", "uniform", False, True, True),
    "gan+oversample": Composition("gan+oversample", "class_balanced", False, False, True),
    "gan+reweight": Composition("gan+reweight", "uniform", True, False, True),
}
assert tuple(COMPOSITIONS) == LONG_TAIL_STRATEGIES


def check_class_counts(counts: np.ndarray, class_names: tuple[str, ...], where: str) -> None:
    """Raises ValueError if some class has no training image (no strategy can learn it)."""
    empty = np.flatnonzero(np.asarray(counts) == 0)
    if empty.size:
        names = [f"{c} ({class_names[c]})" for c in empty]
        raise ValueError(
            f"Classes {names} have no images in {where}; every class needs at least one. Lower "
            "data.imbalance_ratio or raise data.cut_fraction, or fix the data source."
        )


def class_balanced_weights(counts: np.ndarray, kind: str = "effective_number", beta: float = 0.999) -> np.ndarray:
    """Per-class loss weights [K] float32, normalised to mean 1 over classes.

    "effective_number" (Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of
    Samples", eq. 5 and Sec. 4): w_c proportional to (1 - beta) / (1 - beta ** n_c).
    "inverse_frequency": w_c proportional to 1 / n_c (the beta -> 1 limit).
    """
    counts = np.asarray(counts, np.float64)
    if counts.ndim != 1 or np.any(counts <= 0):
        raise ValueError(f"Class counts must be positive, got {counts.tolist()}.")
    if kind == "effective_number":
        if not 0 < beta < 1:
            raise ValueError(f"reweight_beta must be in (0, 1), got {beta}.")
        weights = (1.0 - beta) / (1.0 - np.power(beta, counts))
    elif kind == "inverse_frequency":
        weights = 1.0 / counts
    else:
        raise ValueError(f"Reweighting {kind!r} is unknown; choose one of {REWEIGHTS}.")
    return (weights / weights.mean()).astype(np.float32)


def balancing_synthetic_fraction(counts: np.ndarray) -> float:
    """Share of synthetic images that tops every class up to the largest: (K n_max - N) / (K n_max)."""
    counts = np.asarray(counts, np.float64)
    return float(1.0 - counts.sum() / (len(counts) * counts.max()))


def synthetic_label_probs(counts: np.ndarray, num_real: int, num_synthetic: int) -> np.ndarray:
    """Label distribution [K] of the synthetic images that makes the expected class mix of a batch
    (num_real uniform real images + num_synthetic synthetic ones) as balanced as possible.

    Class c's expected share is (num_real n_c / N + num_synthetic q_c) / B; it equals 1/K for
    q_c = (T - n_c) * num_real / (N num_synthetic) with T = N B / (K num_real). With the
    balancing synthetic fraction T = n_max, i.e. q_c proportional to n_max - n_c. With fewer
    synthetic images some q_c would be negative: they are clipped to 0 and the rest renormalised
    (the tail is topped up, the head stays over-represented).
    """
    counts = np.asarray(counts, np.float64)
    batch = num_real + num_synthetic
    level = counts.sum() * batch / (len(counts) * num_real)
    deficits = np.maximum(level - counts, 0.0)
    if deficits.sum() <= 0:  # already balanced: spread synthetic images evenly
        deficits = np.ones_like(counts)
    return deficits / deficits.sum()


def split_batch(batch_size: int, synthetic_fraction: float, counts: np.ndarray) -> tuple[int, int]:
    """(num_real, num_synthetic) per step; synthetic_fraction -1 means the balancing share, 0 none (the
    strategy is then its classic twin: gan is plain, gan+augment augment); any other share gives at
    least one synthetic and one real image."""
    if synthetic_fraction == 0:
        return batch_size, 0
    fraction = balancing_synthetic_fraction(counts) if synthetic_fraction == -1 else synthetic_fraction
    num_synthetic = int(round(fraction * batch_size))
    num_synthetic = min(max(num_synthetic, 1), batch_size - 1)
    return batch_size - num_synthetic, num_synthetic


def top_up_plan(counts: np.ndarray, level: int, batch_size: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Batches drawn from every class topped up to `level` images with synthetic ones.

    Each class is 1/K of a batch; within class c a slot is real with probability
    rho_c = min(1, n_c / level), synthetic otherwise. So classes with at least `level` images
    get no synthetic ones, and a class with n_c < level has its n_c real images plus
    level - n_c synthetic ones. level = n_max is the balancing share with uniform real batches
    (synthetic_fraction -1); a level at or below the smallest class is class-balanced
    over-sampling, with no synthetic images (refused here).

    Returns:
      (num_real, num_synthetic, real class probabilities [K], synthetic label probabilities [K]).
    """
    counts = np.asarray(counts, np.float64)
    if level <= counts.min():
        raise ValueError(
            f"experiment.synthetic_top_up={level} is at or below the smallest class ({int(counts.min())} images): "
            "no class would get synthetic images. Raise it (the largest class has "
            f"{int(counts.max())}), or use the oversample strategy."
        )
    real_share = np.minimum(1.0, counts / level)
    num_real, num_synthetic = split_batch(batch_size, 1.0 - real_share.mean(), counts)
    synthetic_share = 1.0 - real_share
    return num_real, num_synthetic, real_share / real_share.sum(), synthetic_share / synthetic_share.sum()


def real_class_probs(strategy: Composition, config, counts: np.ndarray) -> np.ndarray | None:
    """Class probabilities [K] of the real images of a GAN strategy topping classes up
    (experiment.synthetic_top_up > 0); None when real batches are uniform or class-balanced."""
    level = config.experiment.synthetic_top_up
    if not strategy.synthetic or level <= 0:
        return None
    return top_up_plan(counts, level, config.classifier.batch_size)[2]


def make_step_spec(strategy: Composition, config, counts: np.ndarray) -> tuple[ClassifierStepSpec, int]:
    """(the strategy's static step description, real images per step)."""
    experiment = config.experiment
    augmentation = None
    if strategy.augment:
        augmentation = check_augmentation(
            Augmentation(experiment.augment_shift, experiment.augment_flip, experiment.augment_padding)
        )
    if not strategy.synthetic:
        return ClassifierStepSpec(augmentation=augmentation), config.classifier.batch_size
    if experiment.synthetic_top_up > 0:
        num_real, num_synthetic, _, probs = top_up_plan(counts, experiment.synthetic_top_up, config.classifier.batch_size)
    else:
        num_real, num_synthetic = split_batch(config.classifier.batch_size, experiment.synthetic_fraction, counts)
        if not num_synthetic:  # share 0: the classic twin's step exactly
            return ClassifierStepSpec(augmentation=augmentation), num_real
        if strategy.sampling == "class_balanced":  # real batches balanced already: synthetic labels uniform
            probs = np.full(len(counts), 1.0 / len(counts))
        else:
            probs = synthetic_label_probs(counts, num_real, num_synthetic)
    spec = ClassifierStepSpec(
        augmentation=augmentation,
        num_synthetic=num_synthetic,
        synthetic_label_probs=tuple(float(p) for p in probs),
        noise_dim=config.model.noise_dim,
        synthetic_filter=experiment.filter,
        filter_threshold=float(experiment.filter_threshold),
        filter_keep_fraction=float(experiment.filter_keep_fraction),
        synthetic_weight=float(experiment.synthetic_weight),
        teacher_labels=experiment.synthetic_labels == "teacher",
    )
    return spec, num_real


def build_classifier_module(config, num_classes: int):
    from ganjax.classify import build_classifier

    c = config.classifier
    return build_classifier(c.model, num_classes, c.width, c.norm, c.dropout)


def init_classifier_states(config, num_classes: int, image_shape: tuple[int, int, int], init_keys: jax.Array) -> ModelState:
    """S freshly initialised classifier states stacked along a leading axis (vmap over init keys)."""
    module = build_classifier_module(config, num_classes)
    c = config.classifier

    def create(key):
        return create_classifier_state(
            module, c.learning_rate, key, image_shape,
            optimizer=c.optimizer, total_steps=c.steps, weight_decay=c.weight_decay,
        )

    return jax.vmap(create)(init_keys)


class RealBatches:
    """Host-side batches for S seeds: item `step` is {"images": [S, B, H, W, C] in [-1, 1],
    "labels": [S, B] int32, "weights": [S, B] float32}; seed s's batch is a pure function of
    (data_seed(config, s), step)."""

    def __init__(self, train_set: data.Dataset, strategy: Composition, config, num_real: int, class_weights: np.ndarray):
        self.train_set = train_set
        self.strategy = strategy
        self.num_real = num_real
        self.class_weights = np.asarray(class_weights, np.float32)
        self.seeds = [data_seed(config, s) for s in range(config.experiment.num_seeds)]
        counts = data.class_counts(train_set.labels, train_set.num_classes)
        self.class_probs = real_class_probs(strategy, config, counts)

    def indices(self, seed: int, step: int) -> np.ndarray:
        if self.strategy.sampling == "class_balanced" or self.class_probs is not None:
            return data.balanced_sample_indices(
                self.train_set.labels, self.train_set.num_classes, self.num_real, step, seed, self.class_probs
            )
        return data.batch_indices(len(self.train_set), self.num_real, step, seed)

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        indices = np.stack([self.indices(seed, step) for seed in self.seeds])
        labels = self.train_set.labels[indices]
        return {
            "images": data.to_model_range(self.train_set.images[indices]),
            "labels": labels,
            "weights": self.class_weights[labels],
        }


def strategy_class_weights(strategy: Composition, config, counts: np.ndarray) -> np.ndarray:
    if strategy.reweight:
        return class_balanced_weights(counts, config.experiment.reweight, config.experiment.reweight_beta)
    return np.ones(len(counts), np.float32)


def rarest_classes(counts: np.ndarray, how_many: int) -> np.ndarray:
    """The `how_many` classes with the fewest training images (ties: lower class id first), sorted."""
    order = np.lexsort((np.arange(len(counts)), np.asarray(counts)))
    return np.sort(order[: min(how_many, len(counts))])



# --- The study: data, the validation split, the GAN, the report's description.


def validation_split(full_train: data.Dataset, config, workdir: str, study: str = "long_tail") -> tuple[np.ndarray, np.ndarray]:
    """(training part, validation part): indices into `full_train`. The validation part is
    round(experiment.validation_fraction x count) images of every class with two or more (at
    least one, never all), drawn with data.seed (`engine.carve_validation`)."""
    counts = data.class_counts(full_train.labels, full_train.num_classes)
    fraction = config.experiment.validation_fraction
    sizes = np.where(counts >= 2, np.clip(np.round(fraction * counts), 1, counts - 1), 0).astype(np.int64)
    validation = carve_validation(workdir, full_train.labels, np.arange(len(full_train)), sizes, config.data.seed,
                                  {"study": study, "validation_fraction": fraction})
    return np.setdiff1d(np.arange(len(full_train)), validation).astype(np.int64), validation


def prepare(config, workdir: str, mesh, progress: bool = True) -> StudyContext:
    """The long-tailed training set split into a training part and a validation part, the test
    set, and the rare classes."""
    full_train, test_set = data.load_train_and_test(config.data, workdir=workdir)
    check_class_counts(data.class_counts(full_train.labels, full_train.num_classes), full_train.class_names,
                       "the training set")
    train_part, validation_part = validation_split(full_train, config, workdir)
    train_set, validation_set = full_train.subset(train_part), full_train.subset(validation_part)
    counts = data.class_counts(train_set.labels, train_set.num_classes)
    check_class_counts(counts, train_set.class_names, "the training part (after holding out validation)")
    context = StudyContext(
        study="long_tail", config=config, workdir=workdir, mesh=mesh, train_set=train_set,
        validation_set=validation_set, test_set=test_set,
        rare_classes=rarest_classes(counts, config.experiment.rare_classes), progress=progress,
    )
    context.resources["train_part"] = train_part
    return context


def gan_workdir(context: StudyContext) -> str:
    return context.config.experiment.generator_workdir or os.path.join(context.workdir, GAN_DIR)


def prepare_gan_workdir(workdir: str, gan_dir: str, train_part: np.ndarray, config) -> None:
    """Makes `ganjax.train` train the GAN on the classifier's training part only (not on the
    validation images): the subset indices it reads from gan_dir/subset_indices.json are
    the experiment's subset restricted to the training part."""
    source_path = os.path.join(workdir, data.SUBSET_INDICES_FILE)
    if not os.path.exists(source_path):  # subset "none": the GAN sees the whole train split
        return
    record = json.loads(open(source_path).read())
    indices = np.asarray(record["indices"], np.int64)[train_part]
    description = {**record["description"], "validation_fraction": config.experiment.validation_fraction}
    target = os.path.join(gan_dir, data.SUBSET_INDICES_FILE)
    if os.path.exists(target):
        stored = data.load_indices(target, record["description"]["num_examples"])
        if not np.array_equal(stored, indices):
            raise ValueError(
                f"The GAN in {gan_dir} was trained on other images than this experiment's training "
                f"part (different data or validation settings); delete {gan_dir} or use a fresh workdir."
            )
        return
    data.save_indices(target, indices, description)


def load_trained_generator(gan_dir: str, train_set: data.Dataset):
    """The generator restored from `gan_dir` (`ganjax.sample.load_generator`), after checking it
    fits the dataset."""
    if checkpoint.latest_step(gan_dir) is None:
        raise FileNotFoundError(
            f"No GAN checkpoint in {gan_dir}; train one with python -m ganjax.train, or set "
            "experiment.generator_workdir='' to train it inside the experiment."
        )
    _, meta = checkpoint.restore_meta(gan_dir)
    if meta["num_classes"] != train_set.num_classes:
        raise ValueError(
            f"The generator in {gan_dir} has {meta['num_classes']} classes but the dataset has "
            f"{train_set.num_classes}; point experiment.generator_workdir at a GAN trained on this "
            "data, or leave it empty to train one."
        )
    if tuple(meta["image_shape"]) != train_set.image_shape:
        raise ValueError(
            f"The generator in {gan_dir} makes images {tuple(meta['image_shape'])} but the dataset's "
            f"are {train_set.image_shape}; set data.image_size to match or train a new GAN."
        )
    from ganjax.sample import load_generator

    return load_generator(gan_dir)


def check_conditional_gan(config) -> None:
    """Raises ValueError if `config` describes an unconditional GAN: the studies' GAN strategies
    generate images of chosen classes (or search over classes), which such a GAN cannot."""
    if not config.model.conditional:
        raise ValueError(
            "The study's GAN strategies generate images per class, but model.conditional=False describes an "
            "unconditional GAN; set model.conditional=True, or list only strategies without a GAN."
        )


def trained_generator(context: StudyContext):
    """Two-stage mode's generator, trained (or resumed) in WORKDIR/gan on the training part, or
    loaded from experiment.generator_workdir; built once per run and shared by the GAN strategies."""

    def build():
        import time

        config, gan_dir = context.config, gan_workdir(context)
        check_conditional_gan(config)
        start = time.perf_counter()
        if not config.experiment.generator_workdir:
            os.makedirs(gan_dir, exist_ok=True)
            prepare_gan_workdir(context.workdir, gan_dir, context.resources["train_part"], config)
            from ganjax.train import train_and_evaluate

            train_and_evaluate(config, gan_dir)  # checks the saved config itself when it resumes
        else:  # the GAN strategies' records name this config's GAN keys: the GAN must match them
            checkpoint.check_workdir_config(gan_dir, config)
        generator = load_trained_generator(gan_dir, context.train_set)
        context.resources["gan_seconds"] = time.perf_counter() - start
        return generator

    return context.resource("generator", build)


def teacher_classifiers(context: StudyContext):
    """The S classifiers of the plain strategy, trained once per run on the real training part (the same
    seeds, batches and keys as plain's record): seed s's labels seed s's synthetic images under
    experiment.synthetic_labels='teacher'. Host arrays, so that each use places (and donates) its own copy."""

    def build():
        from ganjax.studies import engine
        from ganjax.studies.strategies import classic

        plain = classic.make("plain", context)
        return jax.device_get(plain.classifiers(engine.train(plain, context.config, context.mesh, context.progress)))

    return context.resource("teacher", build)


def batch_split(context: StudyContext, records: dict[str, dict] | None = None) -> dict[str, dict[str, int]]:
    """{strategy: {"real": images, "synthetic": images}} per step, for every strategy listed (a strategy
    whose record holds a grid: at the point chosen on validation)."""
    from ganjax.names import parse_strategies
    from ganjax.studies.engine import chosen_config

    config, counts = context.config, data.class_counts(context.train_set.labels, context.train_set.num_classes)
    split = {}
    for name in parse_strategies(config.experiment.strategies):
        spec, num_real = make_step_spec(COMPOSITIONS[name], chosen_config(config, (records or {}).get(name)), counts)
        split[name] = {"real": num_real, "synthetic": spec.num_synthetic}
    return split


def describe(context: StudyContext, records: dict[str, dict]) -> dict:
    """The study's part of report.json's meta."""
    config = context.config
    train_set, validation_set, test_set = context.train_set, context.validation_set, context.test_set
    num_classes = train_set.num_classes
    gan_note = ""
    if any(COMPOSITIONS[name].synthetic for name in records):
        if config.experiment.gan_mode == "two_stage":
            step = checkpoint.latest_step(gan_workdir(context))
            gan_note = (f" One GAN (seed {config.seed}, {step} steps, in {gan_workdir(context)}) serves every "
                        "classifier seed; its own seed-to-seed variance is not in the intervals.")
        else:
            gan_note = (f" Joint mode: each GAN strategy trains its own GAN (seed {config.seed}) for "
                        "classifier.steps steps inside the classifiers' compiled step; all classifier seeds share "
                        "that GAN, so its seed-to-seed variance is not in the intervals.")
    wall = {"gan_training": context.resources["gan_seconds"]} if "gan_seconds" in context.resources else {}
    return {
        "class_counts": {
            "train": data.class_counts(train_set.labels, num_classes).tolist(),
            "validation": data.class_counts(validation_set.labels, num_classes).tolist(),
            "test": data.class_counts(test_set.labels, num_classes).tolist(),
        },
        "rare_classes": context.rare_classes.tolist(),
        "budget": {
            "classifier_steps": config.classifier.steps,
            "classifier_batch_size": config.classifier.batch_size,
            "gan_steps": config.train.steps if config.experiment.gan_mode == "two_stage" else config.classifier.steps,
            "gan_batch_size": config.train.batch_size,
            "gan_mode": config.experiment.gan_mode,
        },
        "batch_split": batch_split(context, records),
        "wall_seconds": wall,
        "seed_handling": (
            "Classifier seed s sets initialisation, dropout/augmentation/synthesis randomness and the "
            "real-data order (batches are drawn per seed, not shared); seeds are the same across strategies."
            + gan_note
        ),
    }


def notes(meta: dict) -> str:
    """report.md's setup section."""
    budget = meta["budget"]
    return "\n".join([
        "## Setup",
        "",
        f"- Training part class counts: {meta['class_counts']['train']}; validation: "
        f"{meta['class_counts']['validation']}; test: {meta['class_counts']['test']}.",
        f"- rare_class_accuracy: test accuracy on the {len(meta['rare_classes'])} classes with fewest training "
        f"images, {meta['rare_classes']}.",
        f"- Budget: {budget['classifier_steps']} classifier steps at batch {budget['classifier_batch_size']} for every "
        f"strategy; GAN {budget['gan_steps']} steps at batch {budget['gan_batch_size']} ({budget['gan_mode']}).",
        f"- Batch split (real, synthetic): {meta['batch_split']}.",
        f"- Seeds: {meta['seed_handling']}",
    ])
