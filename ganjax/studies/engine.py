"""The one study engine: seeds in one compiled program, one training loop, one validation rule,
one record per finished strategy, one report writer.

A study (ganjax.studies.long_tail, ganjax.studies.few_label) prepares the data into a
`StudyContext` and describes its report; a strategy (a module of ganjax.studies.strategies,
chosen by name through ganjax.names.STRATEGY_MODULES and built by its `make(name, context)`, the
way big_vision plugs in its evaluators) says how to make its state, its batches, its step and
what it evaluates, as a `Strategy`. The engine knows neither: it runs S seeds of every strategy
in one compiled program, evaluates them on the validation and test splits, records each finished
strategy in WORKDIR/strategies/NAME.json (a rerun reuses it only when the config keys that define
it are equal), makes every choice on the validation split, and writes report.json / report.md /
PNG plots titled by the study.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import time
from typing import Any, Callable, Hashable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from ganjax import data, faults, loop, metrics, names, parallel, report
from ganjax.state import ModelState
from ganjax.steps import make_multi_step, over_seeds

STRATEGY_DIR = "strategies"
SPLITS = ("validation", "test")  # the splits a strategy is evaluated on, in this order
VALIDATION_INDICES_FILE = "validation_indices.json"
CHECK_EVERY = 100  # steps between the loop's finite checks and progress-bar updates
logger = logging.getLogger("ganjax")

# Keys that never change what a strategy computes: which strategies a run lists, how often the
# loop logs or saves, how many steps one compiled call holds (bitwise the same), how evaluation
# is chunked, and the multi-host set-up.
RESULT_NEUTRAL_KEYS = (
    "experiment.strategies", "experiment.eval_batch_size", "experiment.note", "classifier.steps_per_call",
    "semi.steps_per_call",
    "train.log_every", "train.sample_every", "train.checkpoint_every", "train.keep_checkpoints",
    "train.samples_per_class", "train.steps_per_call", "train.allow_config_change", "train.tensorboard",
    "experiment.grid", "experiment.grid_choice",  # a grid strategy records both and checks them (`run_grid`)
)
RESULT_NEUTRAL_SECTIONS = ("eval", "parallel")


@dataclasses.dataclass
class StudyContext:
    """What a study prepared for its strategies.

    train_set: the images strategies train on (long tail: the training part after the validation
      split; few labels: the whole train split, whose labels only `labelled` may use);
    validation_set: labelled training images no strategy trains on, or None;
    test_set: read for the reported figures only;
    rare_classes: the classes rare_class_accuracy covers (empty: not reported);
    labelled: indices into train_set of the images whose labels may be used (None: all);
    resources: things several strategies share, built once on first use (`resource`).
    """

    study: str
    config: ml_collections.ConfigDict
    workdir: str
    mesh: jax.sharding.Mesh
    train_set: data.Dataset
    validation_set: data.Dataset | None
    test_set: data.Dataset
    rare_classes: np.ndarray
    labelled: np.ndarray | None = None
    progress: bool = True
    resources: dict = dataclasses.field(default_factory=dict)

    def resource(self, name: str, build: Callable[[], Any]) -> Any:
        """`build()` the first time `name` is asked for, the same object afterwards."""
        if name not in self.resources:
            self.resources[name] = build()
        return self.resources[name]


@dataclasses.dataclass
class Strategy:
    """One strategy, as the engine runs it.

    step_key: hashable identity of `make_step()`'s computation (the compiled step is cached on it);
    make_step: () -> one seed's pure step (state, batch, key, shared) -> (state, metrics), or with
      per_seed False the step of all seeds at once, taking one key;
    init: (init keys [S]) -> the S states stacked on a leading axis;
    batches: step -> the host batch of all S seeds, each leaf [S, ...] with its batch axis at 1;
    classifiers: states -> the S stacked classifier ModelStates that are evaluated;
    logits: (one classifier state, images [B, H, W, C] in [-1, 1]) -> logits [B, K];
    shared: a pytree every seed reads (e.g. a generator), not trained;
    vectorize: seeds by jax.vmap rather than unrolled (`ganjax.steps.over_seeds`);
    stream: keeps this strategy family's random keys apart from others' (`seed_keys`);
    step_keys: overrides the per-seed step keys (per_seed False: one key);
    finish: (states, context, evaluate, splits) -> extra record fields, after evaluation on `splits`
      (a subset of SPLITS: a grid point is evaluated on validation alone, the chosen one then on test);
      its "seed_metrics" entry, {"test": [per-seed dicts], "validation": [...]} for those splits, is
      merged into the engine's per-seed metrics of those splits (where the report and the choice on
      validation read them), not stored;
    divergence_hint: what to do when a metric turns non-finite.
    """

    name: str
    steps: int
    steps_per_call: int
    step_key: Hashable
    make_step: Callable[[], Callable]
    init: Callable[[jax.Array], Any]
    batches: Callable[[int], dict]
    classifiers: Callable[[Any], ModelState]
    logits: Callable[[ModelState, jnp.ndarray], jnp.ndarray]
    stream: int
    shared: Any = None
    vectorize: bool = False
    per_seed: bool = True
    step_keys: jax.Array | None = None
    finish: Callable[[Any, StudyContext, Callable, tuple[str, ...]], dict] | None = None
    divergence_hint: str = "lower the learning rate"


def strategy_module(name: str):
    """The module of strategy `name` in ganjax.studies.strategies (ganjax.names.STRATEGY_MODULES):
    it defines SECTIONS (the config sections that define its strategies' results) and
    `make(name, context) -> Strategy`."""
    if name not in names.STRATEGY_MODULES:
        raise ValueError(f"Strategy {name!r} is unknown; choose from {sorted(names.STRATEGY_MODULES)}.")
    return importlib.import_module(f"ganjax.studies.strategies.{names.STRATEGY_MODULES[name]}")


def build_strategy(name: str, context: StudyContext) -> Strategy:
    """The strategy `name`, made by its module's uniform constructor."""
    return strategy_module(name).make(name, context)


# --- Seeds.


def seed_keys(seed: int, num_seeds: int, stream: int) -> tuple[jax.Array, jax.Array]:
    """(init keys [S], step keys [S]): seed s's keys, the same for every strategy of a stream;
    `stream` keeps one family's keys apart from another's (and from the GAN's)."""
    root = jax.random.fold_in(jax.random.key(seed), stream)
    keys = jax.vmap(lambda s: jax.random.split(jax.random.fold_in(root, s)))(jnp.arange(num_seeds))
    return keys[:, 0], keys[:, 1]


def data_seed(config, seed_index: int) -> int:
    """Seed of seed `seed_index`'s batch order."""
    return int(config.seed) * 1000 + int(seed_index)


# --- The one training loop.

_COMPILED: dict[Hashable, Callable] = {}


def compiled_step(strategy: Strategy, mesh: jax.sharding.Mesh, steps_per_call: int) -> Callable:
    """(states, batch, keys, shared) -> (states, metrics), jitted once per (strategy.step_key, mesh,
    steps_per_call): S seeds in one program, states replicated and donated, batches sharded on
    their batch axis; steps_per_call K > 1 runs K steps in one `lax.scan` (batches and keys
    stacked on a new leading axis, metrics [K, ...])."""
    cache_key = (strategy.step_key, strategy.per_seed, strategy.vectorize, mesh, steps_per_call)
    if cache_key in _COMPILED:
        return _COMPILED[cache_key]
    step = strategy.make_step()
    if strategy.per_seed:
        step = over_seeds(step, in_axes=(0, 0, 0, None), vectorize=strategy.vectorize)
    batch_axis = 1
    if steps_per_call > 1:
        one_step = step

        def step(states, batches, keys, shared):
            return make_multi_step(lambda s, b, k: one_step(s, b, k, shared))(states, batches, keys)

        batch_axis = 2
    replicated = parallel.replicated(mesh)
    jitted = jax.jit(
        step,
        in_shardings=(replicated, parallel.batch_sharding(mesh, batch_axis), replicated, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )
    _COMPILED[cache_key] = jitted
    return jitted


def _shard(host_batch: dict, mesh: jax.sharding.Mesh, batch_axis: int) -> dict:
    """A (possibly nested) dict of global host arrays -> arrays sharded on their batch axis."""
    if all(isinstance(value, dict) for value in host_batch.values()):
        return {name: _shard(part, mesh, batch_axis) for name, part in host_batch.items()}
    return parallel.shard_global_batch(host_batch, mesh, batch_axis=batch_axis)


def train(strategy: Strategy, config, mesh: jax.sharding.Mesh, progress: bool = True) -> Any:
    """Trains the S seeds of `strategy` for strategy.steps steps; returns their stacked states.

    Seed s's step keys are fold_in(step_keys[s], step); with steps_per_call K > 1 every
    K-aligned block of K steps runs in one call (`ganjax.loop.run_steps`), to the same states.
    """
    num_seeds = config.experiment.num_seeds
    init_keys, step_keys = seed_keys(config.seed, num_seeds, strategy.stream)
    if strategy.step_keys is not None:
        step_keys = strategy.step_keys
    states = parallel.replicate(strategy.init(init_keys), mesh)
    shared = parallel.replicate(strategy.shared, mesh) if strategy.shared is not None else None
    steps_per_call = strategy.steps_per_call
    single = compiled_step(strategy, mesh, 1)
    multi = compiled_step(strategy, mesh, steps_per_call) if steps_per_call > 1 else None
    total = strategy.steps

    def after_call(states, step: int, step_metrics, stacked: bool):
        if step // CHECK_EVERY > (step - (steps_per_call if stacked else 1)) // CHECK_EVERY or step == total:
            last = jax.tree.map(lambda value: value[-1], step_metrics) if stacked else step_metrics
            values = {name: float(np.mean(value)) for name, value in jax.device_get(last).items()}
            if not all(np.isfinite(value) for value in values.values()):
                raise FloatingPointError(
                    f"{strategy.name}: non-finite metrics {values} at step {step}; {strategy.divergence_hint}."
                )
            bar.set_postfix({name: f"{value:.3f}" for name, value in values.items()})
            faults.maybe_kill("strategy_check")
        return states, False

    bar = loop.progress_bar(total, desc=f"{strategy.name} x{num_seeds} seeds", disable=not progress, leave=False)
    with data.BatchIterator(strategy.batches) as batches, bar:
        states, _ = loop.run_steps(
            states, start_step=0, total_steps=total, next_batch=lambda: next(batches),
            place=lambda batch, stacked: _shard(batch, mesh, 2 if stacked else 1),
            step_keys=lambda steps: loop.fold_in_steps(step_keys, steps),
            single=lambda states, batch, keys: single(states, batch, keys, shared),
            multi=None if multi is None else lambda states, batch, keys: multi(states, batch, keys, shared),
            steps_per_call=steps_per_call, after_call=after_call, bar=bar,
        )
    return states


# --- Evaluation.


_EVALUATORS: dict[Hashable, Callable] = {}


def predict(
    classifiers: ModelState, logits_fn: Callable, images: np.ndarray, batch_size: int, mesh: jax.sharding.Mesh
) -> np.ndarray:
    """Logits [S, N, K] of S stacked classifiers on images [N, H, W, C] float32 in [-1, 1];
    fixed-size chunks (the last padded), so the network compiles once per image shape."""
    cache_key = (logits_fn, mesh)
    if cache_key not in _EVALUATORS:
        _EVALUATORS[cache_key] = jax.jit(
            over_seeds(logits_fn, in_axes=(0, None)),
            in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
            out_shardings=parallel.replicated(mesh),
        )
    evaluate = _EVALUATORS[cache_key]
    return np.concatenate(
        parallel.map_in_chunks(lambda chunk: evaluate(classifiers, chunk), images, batch_size, mesh, output_axis=1),
        axis=1,
    )


def evaluate_logits(logits: np.ndarray, labels: np.ndarray, rare_classes: np.ndarray, ece_bins: int) -> dict[str, Any]:
    """Metrics of one classifier. logits [N, K]; labels [N].

    rare_class_accuracy is the accuracy over the examples whose label is in `rare_classes`
    (the classes with fewest training images; NaN when empty); on a balanced test set it is
    their mean recall.

    Returns:
      {metric: float for names.LONG_TAIL_METRICS, "per_class_recall": [K], "confusion": [K, K]}.
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


def evaluator(context: StudyContext, logits_fn: Callable) -> Callable[[ModelState, data.Dataset], list[dict]]:
    """(S stacked classifiers, dataset) -> per-seed metrics (the study's metrics, per_class_recall, confusion)."""
    config = context.config
    kept = set(names.STUDY_METRICS[context.study]) | {"per_class_recall", "confusion"}

    def evaluate(classifiers: ModelState, dataset: data.Dataset) -> list[dict[str, Any]]:
        logits = predict(classifiers, logits_fn, data.to_model_range(dataset.images),
                         config.experiment.eval_batch_size, context.mesh)
        results = [evaluate_logits(seed_logits, dataset.labels, context.rare_classes, config.experiment.ece_bins)
                   for seed_logits in logits]
        return [{name: value for name, value in result.items() if name in kept} for result in results]

    return evaluate


# --- The validation rule.


def carve_validation(
    workdir: str, labels: np.ndarray, candidates: np.ndarray, sizes: np.ndarray, seed: int, description: dict
) -> np.ndarray:
    """The validation split, by the one rule of every study: sizes[c] labelled training images
    of each class c, drawn with `seed` from `candidates` (indices into the train split that no
    strategy trains on with their labels); saved in workdir/VALIDATION_INDICES_FILE with
    `description`, and on a rerun reloaded and checked against it.

    Returns:
      sorted int64 indices into the train split.
    """
    path = os.path.join(workdir, VALIDATION_INDICES_FILE)
    candidates = np.asarray(candidates, np.int64)
    sizes = np.asarray(sizes, np.int64)
    counts = data.class_counts(labels[candidates], len(sizes))
    if np.any(sizes > counts):
        short = {int(c): (int(counts[c]), int(sizes[c])) for c in np.flatnonzero(sizes > counts)}
        raise ValueError(f"The validation split asks more images than some classes have ({{class: (have, asked)}}: "
                         f"{short}); lower the validation size.")
    indices = candidates[data.subsets._choose_per_class(labels[candidates], sizes, seed)]
    description = {**description, "seed": int(seed), "per_class": sizes.tolist()}
    if os.path.exists(path):
        stored = data.load_indices(path, len(labels))
        if not np.array_equal(stored, indices):
            raise ValueError(
                f"{path} holds another validation split than this config draws (data or validation settings "
                "changed); use a fresh workdir, or delete it and the strategies/ records to redraw."
            )
    else:
        data.save_indices(path, indices, description)
    return indices


# --- Records of finished strategies.


def record_path(workdir: str, strategy: str) -> str:
    return os.path.join(workdir, STRATEGY_DIR, f"{strategy}.json")


def _json_default(value):
    return value.tolist() if hasattr(value, "tolist") else str(value)


def save_record(path: str, record: dict) -> None:
    """Writes `record` atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as stream:
        json.dump(record, stream, indent=1, default=_json_default)
    faults.maybe_kill("record_write")
    os.replace(path + ".tmp", path)


def config_differences(saved: dict, config, sections: tuple[str, ...]) -> dict[str, tuple[Any, Any]]:
    """{key: (saved value, new value)} for the keys of `sections` ("seed" is the top-level key)
    that differ between a saved config dict and `config`, result-neutral keys left out."""
    from ganjax.config import config_differences as differing_keys

    others = tuple(f"{section}.*" if isinstance(config[section], ml_collections.ConfigDict) else section
                   for section in config if section not in sections)
    ignore = others + RESULT_NEUTRAL_KEYS + tuple(f"{section}.*" for section in RESULT_NEUTRAL_SECTIONS)
    return differing_keys(saved, config, ignore)


def load_finished(workdir: str, name: str, config, sections: tuple[str, ...], chosen: tuple[str, ...] = ()) -> dict | None:
    """Strategy `name`'s record from an earlier run whose config agrees on the keys of `sections`
    (those that define the strategy's result) but `chosen` (keys its grid chooses), else None (not run
    yet); raises ValueError naming the keys that differ."""
    path = record_path(workdir, name)
    if not os.path.exists(path):
        return None
    record = json.loads(open(path).read())
    differences = config_differences(record.get("config", {}), config, sections)
    differences = {key: values for key, values in differences.items() if key not in chosen}
    if differences:
        listed = ", ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in
                           ((key, *values) for key, values in sorted(differences.items())))
        raise ValueError(
            f"Strategy {name!r} finished in {workdir} with another config ({listed}). Use a fresh workdir, "
            f"or delete {path} to rerun it with this config."
        )
    return record


def merge_seed_metrics(engine_metrics: list[dict] | None, extra: list[dict] | None) -> list[dict] | None:
    """Seed s's engine metrics updated with extra[s] (a finish hook's per-seed metrics of the same split)."""
    if extra is None:
        return engine_metrics
    if engine_metrics is None or len(extra) != len(engine_metrics):
        raise ValueError(f"A finish hook gave metrics of {len(extra)} seeds for a split the engine evaluated "
                         f"{'not at all' if engine_metrics is None else f'for {len(engine_metrics)} seeds'}.")
    return [{**mine, **theirs} for mine, theirs in zip(engine_metrics, extra)]


def evaluate_strategy(strategy: Strategy, states, context: StudyContext, splits: tuple[str, ...] = SPLITS) -> dict:
    """{"validation": per-seed metrics (None without a validation split), "per_seed": per-seed test
    metrics, ...finish's fields} of trained `states` on `splits` (a split left out: no entry)."""
    evaluate = evaluator(context, strategy.logits)
    classifiers = strategy.classifiers(states)
    datasets = {"validation": context.validation_set, "test": context.test_set}
    metrics = {split: None if datasets[split] is None else evaluate(classifiers, datasets[split]) for split in splits}
    extras = dict(strategy.finish(states, context, evaluate, splits)) if strategy.finish is not None else {}
    seed_metrics = extras.pop("seed_metrics", {})
    fields = {"validation": "validation", "test": "per_seed"}
    return {fields[split]: merge_seed_metrics(metrics[split], seed_metrics.get(split)) for split in splits} | extras


def run_strategy(strategy: Strategy, context: StudyContext, splits: tuple[str, ...] = SPLITS,
                 record_name: str | None = None, keep_states: bool = False) -> tuple[Any, dict]:
    """Trains, evaluates on `splits` and records one strategy in WORKDIR/strategies/RECORD_NAME.json
    (default: the strategy's name), with keep_states its trained states first beside it (`states_path`);
    returns (the trained states, the record: {"per_seed" (test), "validation" (per seed, or None),
    "wall_seconds", "train_seconds", "config", ...finish's})."""
    start = time.perf_counter()
    states = train(strategy, context.config, context.mesh, context.progress)
    train_seconds = time.perf_counter() - start
    record = {
        **evaluate_strategy(strategy, states, context, splits),
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - start,
        "config": context.config.to_dict(),
    }
    record_name = record_name or strategy.name
    if keep_states:  # before the record: a record on disk always has its states
        save_states(states_path(context.workdir, record_name), states)
    save_record(record_path(context.workdir, record_name), record)
    return states, json.loads(json.dumps(record, default=_json_default))  # as a rerun reads it


# --- Settings chosen on validation (experiment.grid).


def grid_points(config, name: str) -> list[tuple[str, ...]]:
    """Strategy `name`'s grid: every point ("KEY=VALUE" assignments) of experiment.grid's axes over the
    keys the strategy may vary (names.TUNABLE_KEYS); [] when none applies."""
    return names.grid_assignments(names.parse_grid(config.experiment.grid), names.TUNABLE_KEYS.get(name, ()))


def point_name(name: str, point: tuple[str, ...]) -> str:
    """The record name of strategy `name` at grid point `point`: "NAME@KEY=VALUE,KEY=VALUE"."""
    return f"{name}@{','.join(point)}"


def states_path(workdir: str, record_name: str) -> str:
    return os.path.join(workdir, STRATEGY_DIR, f"{record_name}.states.msgpack")


def save_states(path: str, states) -> None:
    """Writes trained states (any pytree of arrays) atomically, for the test evaluation of a chosen point."""
    from flax import serialization

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as stream:
        stream.write(serialization.to_bytes(jax.device_get(states)))
    os.replace(path + ".tmp", path)


def load_states(path: str, strategy: Strategy, config) -> Any:
    """`save_states`' states, restored into the structure of `strategy.init`'s."""
    from flax import serialization

    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: the grid point's record exists but its trained states do not; "
                                f"delete {path.removesuffix('.states.msgpack')}.json to retrain the point.")
    template = strategy.init(seed_keys(config.seed, config.experiment.num_seeds, strategy.stream)[0])
    with open(path, "rb") as stream:
        return serialization.from_bytes(template, stream.read())


def chosen_config(config, record: dict | None):
    """`config` at the grid point its strategy's `record` chose on validation (`config` itself without a grid)."""
    from ganjax.config import with_overrides

    grid = (record or {}).get("grid")
    return config if grid is None else with_overrides(config, [*grid["chosen"], "experiment.grid="])


def seed_mean(per_seed: list[dict], metric: str) -> float:
    return float(np.mean([seed[metric] for seed in per_seed]))


def choose_point(per_seed: list[list[float]], choice: str, image_lower: list[float] | None = None) -> int:
    """The chosen grid point's index from its per-seed validation scores [points][seeds] (names.GRID_CHOICES):
    "best" the highest mean (the first of equals); "significant" the highest mean among the points whose
    paired difference to point 0 has a 95% t-interval over the seeds above 0, else point 0. With one seed the
    interval is a point, and "significant" keeps point 0 unless another is strictly better. "strict" asks
    "significant"'s test and also image_lower[point] > 0: the lower end of the difference's interval over
    redrawn validation images (`validation_image_lower`)."""
    means = [float(np.mean(values)) for values in per_seed]
    if choice == "best":
        return int(np.argmax(means))
    if choice not in ("significant", "strict"):
        raise ValueError(f"Unknown grid choice {choice!r}; expected one of {names.GRID_CHOICES}.")
    if choice == "strict" and (image_lower is None or len(image_lower) != len(per_seed)):
        raise ValueError("The 'strict' grid choice needs each point's interval over validation images (image_lower).")
    from ganjax.report import summarize

    better = [index for index in range(1, len(per_seed))
              if summarize(np.subtract(per_seed[index], per_seed[0]))["ci95"][0] > 0
              and (choice == "significant" or image_lower[index] > 0)]
    return max(better, key=lambda index: means[index]) if better else 0


def validation_correct(strategy: Strategy, states, context: StudyContext) -> np.ndarray:
    """[S, N] bool: whether each seed's trained classifier labels each validation image right."""
    validation = context.validation_set
    logits = predict(strategy.classifiers(states), strategy.logits, data.to_model_range(validation.images),
                     context.config.experiment.eval_batch_size, context.mesh)
    return np.argmax(logits, axis=-1) == validation.labels


def validation_image_lower(correct: list[np.ndarray], context: StudyContext, metric: str) -> list[float]:
    """Per grid point, the lower end of the 95% interval of its validation `metric` minus point 0's when the
    validation images are redrawn (`report.paired_image_bootstrap`; point 0: 0.0). correct: each point's
    `validation_correct`."""
    labels = context.validation_set.labels
    return [0.0] + [report.paired_image_bootstrap(correct[0], other, labels, metric, context.config.seed)[0]
                    for other in correct[1:]]


def run_grid(module, name: str, points: list[tuple[str, ...]], context: StudyContext) -> dict:
    """Strategy `name` at every grid point: each trained and evaluated on the validation split alone
    (its record WORKDIR/strategies/NAME@POINT.json, its states beside it); the point with the best mean
    validation score (names.SELECTION_METRIC; the first of equals in grid order; or by another
    experiment.grid_choice, `choose_point`) is then evaluated on
    the test split, once. Returns the strategy's record, with "grid": the points' validation scores and
    the chosen point. A rerun reuses finished points, and the whole record when the grid is the same."""
    config, workdir = context.config, context.workdir
    if context.validation_set is None:
        raise ValueError(f"Config key 'experiment.grid' asks the engine to choose {name}'s settings on the "
                         "validation split, but this study has none; set experiment.grid=''.")
    metric = names.SELECTION_METRIC[context.study]
    chosen_keys = tuple({assignment.partition("=")[0] for point in points for assignment in point})
    choice = config.experiment.grid_choice
    if choice == "strict" and metric not in report.IMAGE_BOOTSTRAP_METRICS:
        raise ValueError(f"experiment.grid_choice='strict' redraws validation images, which needs a metric of "
                         f"per-image correctness; the {context.study} study chooses on {metric}. Use "
                         "experiment.grid_choice='significant'.")
    record = load_finished(workdir, name, config, module.SECTIONS, chosen_keys)
    if record is not None:
        if [point["point"] for point in record.get("grid", {}).get("points", [])] == [list(p) for p in points]:
            if record["grid"].get("choice", "best") == choice:
                return record
            record = None  # the same points chosen by another rule: choose again from their saved records
    if record is not None:
        earlier = [", ".join(point["point"]) for point in record.get("grid", {}).get("points", [])]
        raise ValueError(f"Strategy {name!r} finished in {workdir} "
                         + (f"on another grid ({' | '.join(earlier)}); " if earlier else "without a grid; ")
                         + "use a fresh workdir, or delete "
                         f"{record_path(workdir, name)} to choose again on this grid.")
    from ganjax.config import with_overrides

    tried = []
    for point in tqdm(points, desc=f"{name} grid", unit="point", disable=not context.progress, leave=False):
        point_context = dataclasses.replace(context, config=with_overrides(config, point + ("experiment.grid=",)))
        record_name = point_name(name, point)
        point_record = load_finished(workdir, record_name, point_context.config, module.SECTIONS)
        states = None
        if point_record is None:
            strategy = module.make(name, point_context)
            states, point_record = run_strategy(strategy, point_context, ("validation",), record_name, keep_states=True)
        tried.append((point, point_context, point_record, states))
        logger.info("%s: validation %s %.4f", record_name, metric, seed_mean(point_record["validation"], metric))
    per_seed = [[seed[metric] for seed in point_record["validation"]] for _, _, point_record, _ in tried]
    scores = [float(np.mean(values)) for values in per_seed]

    def built(index: int):
        """(strategy, trained states) of grid point `index`; states saved by an earlier run are loaded."""
        tried_point, tried_context, _, tried_states = tried[index]
        strategy = module.make(name, tried_context)
        if tried_states is None:
            tried_states = load_states(states_path(workdir, point_name(name, tried_point)), strategy,
                                       tried_context.config)
        return strategy, tried_states

    image_lower, made = None, {}
    if choice == "strict":  # each point's per-image validation predictions, from its states
        made = {index: built(index) for index in range(len(tried))}
        image_lower = validation_image_lower([validation_correct(*made[index], tried[index][1])
                                              for index in range(len(tried))], context, metric)
    chosen = choose_point(per_seed, choice, image_lower)
    point, point_context, point_record, _ = tried[chosen]
    start = time.perf_counter()  # the test evaluation; each point's own time is in its record
    strategy, states = made[chosen] if chosen in made else built(chosen)
    extras = {key: value for key, value in point_record.items() if key not in ("per_seed", "validation", "config")}
    record = {
        **extras,
        **evaluate_strategy(strategy, states, point_context, ("test",)),
        "validation": point_record["validation"],
        "grid": {"metric": metric, "choice": choice, "chosen": list(point),
                 "points": [{"point": list(p), "validation_mean": score, "validation_per_seed": values,
                             "wall_seconds": r["wall_seconds"]}
                            | ({} if image_lower is None else {"validation_image_lower": image_lower[index]})
                            for index, ((p, _, r, _), score, values) in enumerate(zip(tried, scores, per_seed))]},
        "train_seconds": sum(r["train_seconds"] for _, _, r, _ in tried),
        "wall_seconds": sum(r["wall_seconds"] for _, _, r, _ in tried) + time.perf_counter() - start,
        "config": config.to_dict(),
    }
    save_record(record_path(workdir, name), record)
    return json.loads(json.dumps(record, default=_json_default))


def validation_means(records: dict[str, dict], metric_names: tuple[str, ...]) -> dict[str, dict[str, float]] | None:
    """{strategy: {metric: mean over seeds on the validation split}}, or None without one."""
    if any(record.get("validation") is None for record in records.values()):
        return None
    return {name: {metric: float(np.mean([seed[metric] for seed in record["validation"]])) for metric in metric_names
                   if all(metric in seed for seed in record["validation"])}
            for name, record in records.items()}


def best_on_validation(means: dict[str, dict[str, float]] | None, metric: str) -> str | None:
    """The strategy with the highest mean validation `metric` (None without a validation split).
    Every choice the engine makes is made here, on validation; the test split is never read."""
    if means is None:
        return None
    return max(means, key=lambda name: means[name][metric])


def grid_notes(grids: dict[str, dict]) -> str:
    """report.md's lines on the settings each grid strategy chose on validation."""
    lines = []
    for name, grid in grids.items():
        tried = "; ".join(f"{', '.join(point['point'])}: {point['validation_mean']:.4f}" for point in grid["points"])
        rule = {"significant": "the first point unless another beats it with a paired 95% interval above 0",
                "strict": "the first point unless another beats it with a 95% interval above 0 both over the seeds "
                          "and over redrawn validation images"}.get(grid.get("choice"), "the best mean over seeds")
        lines.append(f"\n- {name}: settings chosen on validation {grid['metric']} ({rule}) from a grid: "
                     f"{tried}; chosen {', '.join(grid['chosen'])}, the only point read on the test split. Its "
                     "validation figure is the best of the grid's, so optimistic beside single-setting strategies'.")
    return "".join(lines)


# --- The study.


def run_study(study_module, config, workdir: str, progress: bool = True) -> dict[str, Any]:
    """Runs every strategy of config.experiment.strategies in `study_module`'s context; writes and
    returns the report. A strategy finished by an earlier run with the same defining config is
    reused, not rerun. Holds the workdir's lock (ganjax.lock) throughout: a second writer refuses."""
    from ganjax import lock

    os.makedirs(workdir, exist_ok=True)
    with lock.workdir_lock(workdir):
        return _run_study(study_module, config, workdir, progress)


def _run_study(study_module, config, workdir: str, progress: bool) -> dict[str, Any]:
    """run_study's work, under the workdir's lock."""
    start = time.perf_counter()
    mesh = parallel.make_mesh()
    context = study_module.prepare(config, workdir, mesh, progress)
    study = context.study
    records: dict[str, dict] = {}
    for name in tqdm(names.parse_strategies(config.experiment.strategies), desc="strategies", unit="strategy",
                     disable=not progress):
        module = strategy_module(name)
        points = grid_points(config, name)
        if points:
            record = run_grid(module, name, points, context)
        elif (record := load_finished(workdir, name, config, module.SECTIONS)) is None:
            # Only now is the strategy built (a GAN strategy may train its GAN).
            _, record = run_strategy(module.make(name, context), context)
        elif "grid" in record:
            raise ValueError(f"Strategy {name!r} finished in {workdir} with its settings chosen on a grid "
                             f"({record['grid']['chosen']}), and experiment.grid now chooses none of them; restore "
                             f"the grid, use a fresh workdir, or delete {record_path(workdir, name)}.")
        else:
            logger.info("%s: finished in an earlier run, results loaded from %s", name, record_path(workdir, name))
        records[name] = record
        logger.info("%s: test %s %.4f", name, names.SELECTION_METRIC[study],
                    np.mean([seed[names.SELECTION_METRIC[study]] for seed in record["per_seed"]]))
    metric_names = names.STUDY_METRICS[study]
    means = validation_means(records, metric_names)
    best = best_on_validation(means, names.SELECTION_METRIC[study])
    meta = {
        "study": study,
        "config": config.to_dict(),
        "data_source": config.data.source,
        "subset": config.data.subset,
        "class_names": list(context.train_set.class_names),
        "num_seeds": config.experiment.num_seeds,
        "validation_mean": means,
        "best_on_validation": best,
        "grid": {name: record["grid"] for name, record in records.items() if "grid" in record},
        **study_module.describe(context, records),
        "devices": f"{jax.device_count()} x {jax.devices()[0].platform}",
    }
    meta["wall_seconds"] = {**{name: record["wall_seconds"] for name, record in records.items()},
                            **meta.get("wall_seconds", {}), "total_this_run": time.perf_counter() - start}
    per_seed = {name: record["per_seed"] for name, record in records.items()}
    full = report.build_report(per_seed, meta, metrics=metric_names)
    notes = study_module.notes(meta)
    notes += grid_notes(meta["grid"])
    if config.experiment.note:
        notes += f"\n- How the settings were chosen: {config.experiment.note}"
    shown = best if best is not None else next(iter(records))
    notes += (f"\n- Best strategy on validation {names.SELECTION_METRIC[study]}: {best} (its summed confusion "
              f"matrix: {report.CONFUSION_PNG})." if best is not None else
              f"\n- No validation split, so no best strategy is chosen; {report.CONFUSION_PNG} shows {shown}, "
              "the first strategy listed.")
    notes += f"\n- Wall time (s): { {k: round(v, 1) for k, v in meta['wall_seconds'].items()} } on {meta['devices']}."
    report.write_report(workdir, full, notes, metrics=metric_names, title=names.STUDY_TITLES[study])
    confusion = np.sum([seed["confusion"] for seed in per_seed[shown]], axis=0)
    report.plot_confusion_matrix(confusion, meta["class_names"], f"{shown} (summed over seeds)",
                                 os.path.join(workdir, report.CONFUSION_PNG))
    report.plot_per_class_recall(full, meta["class_names"], os.path.join(workdir, report.RECALL_PNG))
    return full
