"""Recognition on long-tailed data: the strategies, S-seed classifier training under jax.vmap,
and evaluation.

Every strategy trains the same network for the same steps and batch size from the same S
seeds; they differ only in what a batch holds and how it is weighted:

  plain         uniform batches of the long-tailed set, cross-entropy;
  reweight      uniform batches, class-balanced loss weights (Cui et al. 2019);
  oversample    class-balanced sampling: a class uniformly, then one of its images;
  augment       uniform batches, random shifts (and flips where valid);
  gan           B_real uniform real images + B_syn images made inside the step by a
                conditional generator, labels drawn to top every class up to balance
                (experiment.synthetic_fraction); or, with experiment.synthetic_top_up = L,
                class-balanced batches in which every class has its real images plus
                synthetic ones up to L (`top_up_plan`);
  gan+augment   the same, both parts augmented.

Seeds. Seed s has its own initialisation, dropout/augmentation/synthesis randomness and its
own real-data order (batches are drawn per seed, not shared), so the spread over seeds
covers all of the classifier's randomness. Seed s is the same for every strategy (paired).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ganjax import data, metrics, parallel
from ganjax.augment import Augmentation, check_augmentation
from ganjax.state import GeneratorSource, ModelState, create_classifier_state
from ganjax.steps import ClassifierStepSpec, classifier_eval_step, make_multi_seed_step, over_seeds

STRATEGIES = ("plain", "reweight", "oversample", "augment", "gan", "gan+augment")
GAN_MODES = ("two_stage", "joint")
REWEIGHTS = ("effective_number", "inverse_frequency")
FILTERS = ("none", "confidence", "discriminator")
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "rare_class_accuracy", "ece")
# Classifier seeds draw from their own stream, apart from the GAN's (fold_in 0, 1, 2 in train.py).
CLASSIFIER_STREAM = 7919


class Strategy(NamedTuple):
    """What distinguishes one strategy's batches from another's."""

    name: str
    sampling: str  # "uniform" or "class_balanced"
    reweight: bool
    augment: bool
    synthetic: bool


STRATEGY_SPECS = {
    "plain": Strategy("plain", "uniform", False, False, False),
    "reweight": Strategy("reweight", "uniform", True, False, False),
    "oversample": Strategy("oversample", "class_balanced", False, False, False),
    "augment": Strategy("augment", "uniform", False, True, False),
    "gan": Strategy("gan", "uniform", False, False, True),
    "gan+augment": Strategy("gan+augment", "uniform", False, True, True),
}


def parse_strategies(text: str) -> list[Strategy]:
    """Strategies named in a comma-separated string such as "plain,gan"; raises ValueError on an unknown name."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in STRATEGY_SPECS:
            raise ValueError(
                f"Unknown strategy {name!r}; choose from {STRATEGIES} (set experiment.strategies, comma-separated)."
            )
    if not names:
        raise ValueError(f"No strategy given; set experiment.strategies to some of {STRATEGIES}.")
    return [STRATEGY_SPECS[name] for name in names]


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
    """(num_real, num_synthetic) per step; synthetic_fraction -1 means the balancing share."""
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


def real_class_probs(strategy: Strategy, config, counts: np.ndarray) -> np.ndarray | None:
    """Class probabilities [K] of the real images of a GAN strategy topping classes up
    (experiment.synthetic_top_up > 0); None when real batches are uniform or class-balanced."""
    level = config.experiment.synthetic_top_up
    if not strategy.synthetic or level <= 0:
        return None
    return top_up_plan(counts, level, config.classifier.batch_size)[2]


def make_step_spec(strategy: Strategy, config, counts: np.ndarray) -> tuple[ClassifierStepSpec, int]:
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
        probs = synthetic_label_probs(counts, num_real, num_synthetic)
    spec = ClassifierStepSpec(
        augmentation=augmentation,
        num_synthetic=num_synthetic,
        synthetic_label_probs=tuple(float(p) for p in probs),
        noise_dim=config.model.noise_dim,
        synthetic_filter=experiment.filter,
        filter_threshold=float(experiment.filter_threshold),
        filter_keep_fraction=float(experiment.filter_keep_fraction),
    )
    return spec, num_real


def build_classifier_module(config, num_classes: int):
    from ganjax.classify import build_classifier

    c = config.classifier
    return build_classifier(c.model, num_classes, c.width, c.norm, c.dropout)


def seed_keys(config, num_seeds: int, stream: int = CLASSIFIER_STREAM) -> tuple[jax.Array, jax.Array]:
    """(init keys [S], step keys [S]): seed s's keys, the same for every strategy; `stream`
    keeps one experiment's keys apart from another's (and from the GAN's)."""
    root = jax.random.fold_in(jax.random.key(config.seed), stream)
    keys = jax.vmap(lambda s: jax.random.split(jax.random.fold_in(root, s)))(jnp.arange(num_seeds))
    return keys[:, 0], keys[:, 1]


def data_seed(config, seed_index: int) -> int:
    """Seed of classifier seed `seed_index`'s batch order."""
    return int(config.seed) * 1000 + int(seed_index)


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

    def __init__(self, train_set: data.Dataset, strategy: Strategy, config, num_real: int, class_weights: np.ndarray):
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


@functools.cache
def _jitted_multi_seed_step(spec: ClassifierStepSpec, mesh: jax.sharding.Mesh):
    """The S-seed step, jitted once per (spec, mesh): (states, batch, step_keys, step, source)."""
    multi_seed_step = make_multi_seed_step(spec)

    def train_step(states, batch, step_keys, step, source):
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(step_keys, step)
        return multi_seed_step(states, batch, keys, source)

    replicated = parallel.replicated(mesh)
    return jax.jit(
        train_step,
        in_shardings=(replicated, parallel.batch_sharding(mesh, 1), replicated, replicated, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )


def strategy_class_weights(strategy: Strategy, config, counts: np.ndarray) -> np.ndarray:
    if strategy.reweight:
        return class_balanced_weights(counts, config.experiment.reweight, config.experiment.reweight_beta)
    return np.ones(len(counts), np.float32)


def train_classifiers(
    strategy: Strategy,
    config,
    train_set: data.Dataset,
    mesh: jax.sharding.Mesh,
    source: GeneratorSource | None = None,
    progress: bool = True,
) -> ModelState:
    """Trains config.experiment.num_seeds classifiers with `strategy` in one compiled program.

    Returns:
      the S classifier ModelStates stacked along a leading axis.
    """
    counts = data.class_counts(train_set.labels, train_set.num_classes)
    spec, num_real = make_step_spec(strategy, config, counts)
    if strategy.synthetic and source is None:
        raise ValueError(f"Strategy {strategy.name!r} needs a generator; pass `source` (a GeneratorSource).")
    parallel.check_batch_size(num_real, mesh)
    num_seeds = config.experiment.num_seeds
    init_keys, step_keys = seed_keys(config, num_seeds)
    states = parallel.replicate(init_classifier_states(config, train_set.num_classes, train_set.image_shape, init_keys), mesh)
    step_keys = parallel.replicate(step_keys, mesh)
    source = parallel.replicate(source, mesh) if source is not None else None
    train_step = _jitted_multi_seed_step(spec, mesh)
    make_batch = RealBatches(train_set, strategy, config, num_real, strategy_class_weights(strategy, config, counts))
    steps = config.classifier.steps
    bar = tqdm(total=steps, desc=f"{strategy.name} x{num_seeds} seeds", unit="step", disable=not progress, leave=False)
    with data.BatchIterator(make_batch) as batches, bar:
        for step in range(steps):
            batch = parallel.shard_global_batch(next(batches), mesh, batch_axis=1)
            states, step_metrics = train_step(states, batch, step_keys, np.int32(step), source)
            bar.update(1)
            if (step + 1) % 100 == 0 or step + 1 == steps:
                values = {name: float(np.mean(value)) for name, value in jax.device_get(step_metrics).items()}
                check_finite_loss(values["loss"], step + 1, config)
                bar.set_postfix({name: f"{value:.3f}" for name, value in values.items()})
    return states


def check_finite_loss(loss: float, step: int, config) -> None:
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"Classifier loss is {loss} at step {step}; lower classifier.learning_rate (now "
            f"{config.classifier.learning_rate})."
        )


@functools.cache
def jitted_multi_seed_eval(mesh: jax.sharding.Mesh, eval_fn: Callable = classifier_eval_step) -> Callable:
    """(states [S], images [B, ...]) -> outputs [S, B, ...] of `eval_fn(state, images)` for S
    stacked states in one program; states replicated, images sharded over `mesh`."""
    return jax.jit(
        over_seeds(eval_fn, in_axes=(0, None)),
        in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
        out_shardings=parallel.replicated(mesh),
    )


def predict_seeds(states: ModelState, images: np.ndarray, batch_size: int, mesh: jax.sharding.Mesh) -> np.ndarray:
    """Logits [S, N, K] of S stacked classifiers on images [N, H, W, C] float32 in [-1, 1].

    Fixed-size chunks (the last padded), so the network compiles once per image shape.
    """
    evaluate = jitted_multi_seed_eval(mesh)
    return np.concatenate(
        parallel.map_in_chunks(lambda chunk: evaluate(states, chunk), images, batch_size, mesh, output_axis=1), axis=1
    )


def rarest_classes(counts: np.ndarray, how_many: int) -> np.ndarray:
    """The `how_many` classes with the fewest training images (ties: lower class id first), sorted."""
    order = np.lexsort((np.arange(len(counts)), np.asarray(counts)))
    return np.sort(order[: min(how_many, len(counts))])


def evaluate_logits(logits: np.ndarray, labels: np.ndarray, rare_classes: np.ndarray, ece_bins: int) -> dict[str, Any]:
    """Metrics of one classifier. logits [N, K]; labels [N].

    rare_class_accuracy is the accuracy over the examples whose label is in `rare_classes`
    (the classes with fewest training images); on a balanced test set it is their mean recall.

    Returns:
      {metric: float for METRICS, "per_class_recall": [K], "confusion": [K, K]}.
    """
    num_classes = logits.shape[-1]
    logits = np.asarray(logits, np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    predictions = probs.argmax(axis=1)
    rare = np.isin(labels, rare_classes)
    return {
        "accuracy": metrics.accuracy(labels, predictions),
        "balanced_accuracy": metrics.balanced_accuracy(labels, predictions, num_classes),
        "macro_f1": metrics.macro_f1(labels, predictions, num_classes),
        "rare_class_accuracy": float(np.mean(predictions[rare] == labels[rare])) if rare.any() else float("nan"),
        "ece": metrics.expected_calibration_error(probs, labels, ece_bins),
        "per_class_recall": metrics.per_class_recall(labels, predictions, num_classes),
        "confusion": metrics.confusion_matrix(labels, predictions, num_classes),
    }


def evaluate_seeds(
    states: ModelState, dataset: data.Dataset, rare_classes: np.ndarray, config, mesh: jax.sharding.Mesh
) -> list[dict[str, Any]]:
    """`evaluate_logits` for each of the S stacked classifiers on `dataset`."""
    logits = predict_seeds(states, data.to_model_range(dataset.images), config.experiment.eval_batch_size, mesh)
    return [evaluate_logits(seed_logits, dataset.labels, rare_classes, config.experiment.ece_bins) for seed_logits in logits]


def train_joint(
    strategy: Strategy, config, train_set: data.Dataset, mesh: jax.sharding.Mesh, progress: bool = True
) -> tuple[ModelState, Any]:
    """Joint mode: a fresh GAN and the S classifiers trained in one compiled step
    (`ganjax.steps.make_joint_train_step`) for config.classifier.steps steps; the classifiers
    learn from the generator as it is trained. Not checkpointed.

    Returns:
      (the S stacked classifier states, the final GANState without its classifiers).
    """
    from ganjax.state import create_gan_state
    from ganjax.steps import make_joint_train_step

    if not strategy.synthetic:
        raise ValueError(f"Joint mode only applies to GAN strategies, not {strategy.name!r}.")
    counts = data.class_counts(train_set.labels, train_set.num_classes)
    spec, num_real = make_step_spec(strategy, config, counts)
    parallel.check_batch_size(num_real, mesh)
    parallel.check_batch_size(config.train.batch_size, mesh)
    num_seeds = config.experiment.num_seeds
    init_keys, step_keys = seed_keys(config, num_seeds)
    gan_root = jax.random.key(config.seed)
    state = create_gan_state(config, train_set.num_classes, train_set.image_shape, jax.random.fold_in(gan_root, 0))
    classifiers = init_classifier_states(config, train_set.num_classes, train_set.image_shape, init_keys)
    state = parallel.replicate(state.replace(classifier=classifiers), mesh)
    joint_step = parallel.jit_step(make_joint_train_step(config, spec, num_seeds), mesh, batch_axis=1)
    make_real = RealBatches(train_set, strategy, config, num_real, strategy_class_weights(strategy, config, counts))
    n_critic = config.gan.n_critic

    def make_batch(step: int) -> dict:
        gan_batch = data.stacked_batch_at(
            train_set, config.train.batch_size, step, config.data.seed, (n_critic,), config.train.class_balanced
        )
        return {"gan": gan_batch, "classifier": make_real(step)}

    step_key = jax.random.fold_in(jax.random.fold_in(gan_root, 1), CLASSIFIER_STREAM)
    steps = config.classifier.steps
    bar = tqdm(total=steps, desc=f"{strategy.name} joint x{num_seeds}", unit="step", disable=not progress, leave=False)
    with data.BatchIterator(make_batch) as batches, bar:
        for step in range(steps):
            host = next(batches)
            batch = {name: parallel.shard_global_batch(part, mesh, batch_axis=1) for name, part in host.items()}
            state, step_metrics = joint_step(state, batch, jax.random.fold_in(step_key, step))
            bar.update(1)
            if (step + 1) % 100 == 0 or step + 1 == steps:
                values = {name: float(value) for name, value in jax.device_get(step_metrics).items()}
                check_finite_loss(values["classifier_loss"], step + 1, config)
                bar.set_postfix(d=f"{values['d_loss']:.2f}", g=f"{values['g_loss']:.2f}", c=f"{values['classifier_loss']:.3f}")
    return state.classifier, state.replace(classifier=None)
