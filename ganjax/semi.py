"""Few labels: the semi-supervised K+1 GAN, AC-GAN and the supervised baselines, S seeds at once.

    python -m ganjax.experiment --config configs/fashion_mnist_semi.py --workdir DIR

(`ganjax.experiment` runs this when data.subset is "few_label".) Strategies, all on the same
network (ganjax.models.semi.NoisyMLPDiscriminator: Salimans et al. 2016's MNIST
discriminator), the same labelled images, steps and seeds:

  semi_gan            K+1 discriminator + feature-matching generator (Salimans et al. 2016);
  acgan               AC-GAN (Odena et al. 2017): real/fake head + class head, conditional G;
  supervised          cross-entropy on the labelled images only;
  supervised_augment  the same with classic augmentation (shifts, flips where valid).

The classifier is the discriminator's class head. By default no validation split is carved:
with 10 labels per class one would cost half the labels, so the reported accuracy is that of
the last step, not a checkpoint picked on test. To compare settings without looking at test,
semi.validation_per_class = n holds out n more labelled training images per class (outside
the labelled subset; saved in DIR/validation_indices.json) and reports every strategy's
accuracy on them beside the test results. They stay in the unlabelled pool, like the whole
train split, and a real few-label user would not have them (Oliver et al. 2018, "Realistic
Evaluation of Deep Semi-Supervised Learning Algorithms").

Each strategy's per-seed results are saved to DIR/strategies/NAME.json as soon as it finishes;
a rerun of the same command skips the finished strategies.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from ganjax import data, parallel, recognition, steps
from ganjax.augment import Augmentation, check_augmentation
from ganjax.models.semi import MLPGenerator, NoisyConvDiscriminator, NoisyMLPDiscriminator
from ganjax.state import GANState, ModelState, create_model_state
from ganjax.steps import FewLabelSpec, few_label_logits, over_seeds

FEW_LABEL_STRATEGIES = ("semi_gan", "acgan", "supervised", "supervised_augment")
GAN_STRATEGIES = ("semi_gan", "acgan")
FEW_LABEL_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "ece")
STRATEGY_DIR = "strategies"
VALIDATION_INDICES_FILE = "validation_indices.json"
# Few-label seeds draw from their own stream (fold_in 0, 1, 2 are the GAN's in train.py).
FEW_LABEL_STREAM = 104729
# The K+1 generator's own shuffle of the unlabelled images (semi.separate_matching_batch).
MATCHING_STREAM = FEW_LABEL_STREAM + 7
logger = logging.getLogger("ganjax")


def parse_hidden(text: str) -> tuple[int, ...]:
    """Hidden widths from "1000,500,250"; raises ValueError naming config key semi.hidden."""
    try:
        widths = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        widths = ()
    if not widths or any(width <= 0 for width in widths):
        raise ValueError(f"Config key 'semi.hidden' must list positive widths such as '1000,500,250', got {text!r}.")
    return widths


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


def validation_indices(workdir: str, train_set: data.Dataset, labelled: np.ndarray, config) -> np.ndarray | None:
    """semi.validation_per_class labelled images of every class outside `labelled` (indices into
    `train_set`), drawn with data.seed + 1 and saved in workdir/VALIDATION_INDICES_FILE; None when 0.
    A saved file is reused after checking it still avoids the labelled subset."""
    per_class = config.semi.validation_per_class
    if per_class == 0:
        return None
    path = os.path.join(workdir, VALIDATION_INDICES_FILE)
    if os.path.exists(path):
        indices = data.load_indices(path, len(train_set))
    else:
        candidates = np.setdiff1d(np.arange(len(train_set)), labelled)
        try:
            chosen = data.few_label_indices(train_set.labels[candidates], train_set.num_classes, per_class,
                                            config.data.seed + 1)
        except ValueError as error:
            raise ValueError(f"Config key 'semi.validation_per_class' = {per_class} is too large: {error}") from None
        indices = candidates[chosen]
        data.save_indices(path, indices, {"validation_per_class": per_class, "seed": config.data.seed + 1,
                                          "excludes": data.SUBSET_INDICES_FILE})
    if np.intersect1d(indices, labelled).size:
        raise ValueError(f"{path} shares images with the labelled subset; delete it to redraw.")
    counts = data.class_counts(train_set.labels[indices], train_set.num_classes)
    if np.any(counts != per_class):
        raise ValueError(f"{path} holds {counts.tolist()} images per class, not semi.validation_per_class="
                         f"{per_class}; delete it to redraw, or use a fresh workdir.")
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
    )


def make_step(strategy: str, spec, num_classes: int) -> Callable:
    """One seed's pure step (state, batch, key) -> (state, metrics) for `strategy`."""
    if strategy == "semi_gan":
        return steps.make_semi_gan_step(spec)
    if strategy == "acgan":
        return steps.make_acgan_step(spec, num_classes)
    if strategy in ("supervised", "supervised_augment"):
        return steps.make_supervised_few_label_step(spec)
    raise ValueError(f"Unknown few-label strategy {strategy!r}; choose from {FEW_LABEL_STRATEGIES}.")


def with_average(step: Callable, decay: float) -> Callable:
    """`step` over (state, average): also keeps an exponential moving (Polyak) average of the
    classifier's params (`steps.ema_update` at the classifier's step; Salimans et al.'s code
    tests the averaged parameters)."""

    def averaged_step(carry, batch, key):
        state, average = carry
        state, metrics = step(state, batch, key)
        classifier = classifier_of(state)
        average = steps.ema_update(average, classifier.params, classifier.step, decay)
        return (state, average), metrics

    return averaged_step


def dense_only(strategy: str, config) -> bool:
    """Whether every network the strategy trains is made of dense layers (then seeds are
    vectorised with vmap; convolutions are not, see ganjax.steps.over_seeds)."""
    uses_generator = strategy in GAN_STRATEGIES
    return config.semi.architecture == "mlp" and not (uses_generator and config.semi.generator == "dcgan")


@functools.cache
def jitted_multi_seed_step(
    strategy: str, spec, num_classes: int, mesh: jax.sharding.Mesh, dense_only: bool = False,
    average_decay: float = 0.0, steps_per_call: int = 1,
) -> Callable:
    """S seeds' steps in one compiled program: (states [S], batch [S, B, ...], keys [S]) ->
    (states, metrics [S]); states replicated and donated, batches sharded on their batch axis.
    With average_decay > 0 the states are (state, averaged classifier params) (`with_average`).
    steps_per_call K > 1: K such steps per call (`steps.make_multi_step`), batches [K, S, B, ...],
    keys [K, S], metrics [K, S]."""
    step = make_step(strategy, spec, num_classes)
    if average_decay > 0:
        step = with_average(step, average_decay)
    step = over_seeds(step, in_axes=(0, 0, 0), vectorize=dense_only)
    if steps_per_call > 1:
        return parallel.jit_step(steps.make_multi_step(step), mesh, batch_axis=2)
    return parallel.jit_step(step, mesh, batch_axis=1)


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
        self.seeds = [recognition.data_seed(config, s) for s in range(config.experiment.num_seeds)]
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


def seed_keys(config) -> tuple[jax.Array, jax.Array]:
    """(init keys [S], step keys [S]); seed s's keys are the same for every strategy."""
    return recognition.seed_keys(config, config.experiment.num_seeds, stream=FEW_LABEL_STREAM)


def train_strategy(
    strategy: str, config, train_set: data.Dataset, labelled: np.ndarray, mesh: jax.sharding.Mesh,
    progress: bool = True,
):
    """Trains config.experiment.num_seeds models of `strategy` for semi.steps steps.

    Returns:
      (states, averaged): the S states stacked along a leading axis (GANStates or classifier
      ModelStates) and, if semi.average_decay > 0, the S classifiers with their params replaced
      by the Polyak averages (else None).
    """
    parallel.check_batch_size(config.semi.batch_size, mesh, "semi.batch_size")
    parallel.check_batch_size(config.semi.labelled_batch_size, mesh, "semi.labelled_batch_size")
    init_keys, step_keys = seed_keys(config)
    images = jnp.asarray(init_images(train_set, config))
    states = jax.vmap(lambda key: init_state(strategy, config, train_set.num_classes, images, key))(init_keys)
    average_decay = float(config.semi.average_decay)
    if average_decay > 0:
        states = (states, jax.tree.map(jnp.copy, classifier_of(states).params))  # own buffers: both are donated
    states = parallel.replicate(states, mesh)
    step_keys = parallel.replicate(step_keys, mesh)
    fold_in = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))
    # fold_in for K steps at once: [K, S] keys, the per-step loop's keys stacked.
    fold_in_steps = jax.jit(jax.vmap(fold_in, in_axes=(None, 0)))
    multi_seed_step = functools.partial(
        jitted_multi_seed_step, strategy, step_spec(strategy, config), train_set.num_classes, mesh,
        dense_only(strategy, config), average_decay,
    )
    train_step = multi_seed_step()
    steps_per_call = config.semi.steps_per_call
    multi_step = multi_seed_step(steps_per_call) if steps_per_call > 1 else None
    num_seeds, num_steps = config.experiment.num_seeds, config.semi.steps
    bar = tqdm(total=num_steps, desc=f"{strategy} x{num_seeds} seeds", unit="step", disable=not progress, leave=False)
    step = 0
    with data.BatchIterator(FewLabelBatches(train_set, labelled, config, strategy)) as batches, bar:
        while step < num_steps:
            if multi_step is not None and step + steps_per_call <= num_steps:
                calls = np.arange(step, step + steps_per_call)
                host_batch = data.stack_batches([next(batches) for _ in calls])
                batch = parallel.shard_global_batch(host_batch, mesh, batch_axis=2)
                states, stacked = multi_step(states, batch, fold_in_steps(step_keys, calls))
                metrics = jax.tree.map(lambda value: value[-1], stacked)
            else:
                calls = [step]
                batch = parallel.shard_global_batch(next(batches), mesh, batch_axis=1)
                states, metrics = train_step(states, batch, fold_in(step_keys, step))
            previous, step = step, step + len(calls)
            bar.update(len(calls))
            if step // 100 > previous // 100 or step == num_steps:
                values = {name: float(np.mean(value)) for name, value in jax.device_get(metrics).items()}
                if not all(np.isfinite(v) for v in values.values()):
                    raise FloatingPointError(
                        f"{strategy}: non-finite metrics {values} at step {step}; lower semi.learning_rate "
                        f"(now {config.semi.learning_rate})."
                    )
                bar.set_postfix({name: f"{value:.3f}" for name, value in values.items()})
    if average_decay > 0:
        states, average = states
        return states, classifier_of(states).replace(params=average)
    return states, None


def classifier_of(states) -> ModelState:
    """The stacked classifier (discriminator) ModelStates of a strategy's states."""
    return states.discriminator if isinstance(states, GANState) else states


def predict(classifiers: ModelState, images: np.ndarray, batch_size: int, mesh: jax.sharding.Mesh) -> np.ndarray:
    """Class logits [S, N, K] of S stacked classifiers on images [N, H, W, C] in [-1, 1]; fixed-size
    chunks (the last padded) so the network compiles once."""
    logits_fn = recognition.jitted_multi_seed_eval(mesh, few_label_logits)
    return np.concatenate(
        parallel.map_in_chunks(lambda chunk: logits_fn(classifiers, chunk), images, batch_size, mesh, output_axis=1),
        axis=1,
    )


def evaluate(classifiers: ModelState, test_set: data.Dataset, config, mesh) -> list[dict[str, Any]]:
    """Per-seed test metrics (FEW_LABEL_METRICS, per_class_recall, confusion) of S classifiers."""
    logits = predict(classifiers, data.to_model_range(test_set.images), config.experiment.eval_batch_size, mesh)
    results = []
    for seed_logits in logits:
        result = recognition.evaluate_logits(
            seed_logits, test_set.labels, np.array([], np.int64), config.experiment.ece_bins
        )
        result.pop("rare_class_accuracy")
        results.append(result)
    return results


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


def _strategy_path(workdir: str, strategy: str) -> str:
    return os.path.join(workdir, STRATEGY_DIR, f"{strategy}.json")


def _save_json(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as stream:
        json.dump(record, stream, indent=1, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    os.replace(path + ".tmp", path)


def run_strategy(strategy: str, config, train_set, test_set, labelled, mesh, workdir: str, progress: bool,
                 validation_set: data.Dataset | None = None) -> dict:
    """Trains, evaluates and records one strategy; returns {"per_seed", "generator", "wall_seconds",
    "validation_accuracy" (per seed, None without a validation set), ...}."""
    start = time.perf_counter()
    states, averaged = train_strategy(strategy, config, train_set, labelled, mesh, progress=progress)
    train_seconds = time.perf_counter() - start
    last_iterate = evaluate(classifier_of(states), test_set, config, mesh)
    tested = classifier_of(states) if averaged is None else averaged
    per_seed = last_iterate if averaged is None else evaluate(tested, test_set, config, mesh)
    validation_accuracy = None
    if validation_set is not None:
        validation_accuracy = [result["accuracy"] for result in evaluate(tested, validation_set, config, mesh)]
    generator = generator_quality(states, strategy, train_set, config, workdir) if strategy in GAN_STRATEGIES else {}
    record = {
        "per_seed": per_seed,
        "last_iterate_accuracy": [result["accuracy"] for result in last_iterate],
        "validation_accuracy": validation_accuracy,
        "generator": generator,
        "wall_seconds": time.perf_counter() - start,
        "train_seconds": train_seconds,
        "config": config.to_dict(),
    }
    _save_json(_strategy_path(workdir, strategy), record)
    return record


def _comparable(config_dict: dict) -> dict:
    """A config as JSON data without experiment.strategies: which strategies a run lists does
    not change any one strategy's result, so a later run may add strategies to a workdir.
    Keys the config lacks (a record written before ganjax added them) take their defaults, which
    keep the earlier behaviour."""
    from ganjax.config import default_config  # ganjax.config imports this module

    config_dict = json.loads(json.dumps(config_dict))
    for section, defaults in json.loads(json.dumps(default_config().to_dict())).items():
        if isinstance(defaults, dict) and isinstance(config_dict.get(section), dict):
            config_dict[section] = {**defaults, **config_dict[section]}
    config_dict.get("experiment", {}).pop("strategies", None)
    return config_dict


def load_finished(workdir: str, strategy: str, config) -> dict | None:
    """A finished strategy's record from an earlier run with the same config (up to the list of
    strategies), else None."""
    path = _strategy_path(workdir, strategy)
    if not os.path.exists(path):
        return None
    record = json.loads(open(path).read())
    if _comparable(record.get("config", {})) != _comparable(config.to_dict()):
        raise ValueError(
            f"{path} was made with another config; use a fresh workdir, or delete {os.path.dirname(path)} to rerun."
        )
    return record


def run_few_label_experiment(config, workdir: str, progress: bool = True) -> dict[str, Any]:
    """Every strategy of config.experiment.strategies on the few-label subset; writes and returns
    the report (report.json keyed by strategy, metrics FEW_LABEL_METRICS)."""
    from ganjax import report

    start = time.perf_counter()
    os.makedirs(workdir, exist_ok=True)
    strategies = [name.strip() for name in config.experiment.strategies.split(",") if name.strip()]
    train_set, test_set = data.load_train_and_test(config.data, workdir=workdir)
    labelled = labelled_indices(workdir, train_set, config)
    held_out = validation_indices(workdir, train_set, labelled, config)
    validation_set = None if held_out is None else train_set.subset(held_out)
    mesh = parallel.make_mesh()
    records = {}
    for strategy in tqdm(strategies, desc="strategies", unit="strategy", disable=not progress):
        record = load_finished(workdir, strategy, config)
        if record is None:
            record = run_strategy(strategy, config, train_set, test_set, labelled, mesh, workdir, progress,
                                  validation_set)
        else:
            logger.info("%s: finished in an earlier run, results loaded from %s", strategy, _strategy_path(workdir, strategy))
        records[strategy] = record
        logger.info("%s: test accuracy %.4f", strategy, np.mean([r["accuracy"] for r in record["per_seed"]]))
    per_seed = {name: record["per_seed"] for name, record in records.items()}
    labelled_counts = data.class_counts(train_set.labels[labelled], train_set.num_classes)
    meta = {
        "config": config.to_dict(),
        "data_source": config.data.source,
        "subset": config.data.subset,
        "class_names": list(train_set.class_names),
        "num_labelled": int(len(labelled)),
        "labelled_class_counts": labelled_counts.tolist(),
        "num_unlabelled": int(len(train_set)),
        "num_test": int(len(test_set)),
        "num_seeds": config.experiment.num_seeds,
        "budget": {"steps": config.semi.steps, "batch_size": config.semi.batch_size,
                   "labelled_batch_size": config.semi.labelled_batch_size},
        "generator": {name: record["generator"] for name, record in records.items() if record["generator"]},
        "average_decay": float(config.semi.average_decay),
        "last_iterate_accuracy": {name: record.get("last_iterate_accuracy") for name, record in records.items()},
        "validation": None if held_out is None else {
            "per_class": int(config.semi.validation_per_class),
            "num_images": int(len(held_out)),
            "accuracy": {name: record.get("validation_accuracy") for name, record in records.items()},
        },
        "wall_seconds": {**{name: record["wall_seconds"] for name, record in records.items()},
                         "total_this_run": time.perf_counter() - start},
        "devices": f"{jax.device_count()} x {jax.devices()[0].platform}",
        "seed_handling": (
            "Seed s sets initialisation, the network's noise, the generator's noise and the order of the "
            "labelled and unlabelled batches; seed s is the same for every strategy (paired). The labelled "
            f"subset is fixed (data.seed {config.data.seed}) and shared by all seeds and strategies."
        ),
    }
    full = report.build_report(per_seed, meta, metrics=FEW_LABEL_METRICS)
    notes = _notes(meta)
    report.write_report(workdir, full, notes, metrics=FEW_LABEL_METRICS)
    best = max(per_seed, key=lambda name: full[name]["accuracy"]["mean"])
    confusion = np.sum([r["confusion"] for r in per_seed[best]], axis=0)
    report.plot_confusion_matrix(confusion, meta["class_names"], f"{best} (summed over seeds)",
                                 os.path.join(workdir, report.CONFUSION_PNG))
    report.plot_per_class_recall(full, meta["class_names"], os.path.join(workdir, report.RECALL_PNG))
    return full


def _notes(meta: dict) -> str:
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
    lines.append(f"- Wall time (s): { {k: round(v, 1) for k, v in meta['wall_seconds'].items()} } on {meta['devices']}.")
    return "\n".join(lines)
