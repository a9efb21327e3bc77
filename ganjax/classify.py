"""Train, apply, save and load image classifiers (SmallCNN, ResNet) on a `ganjax.data.Dataset`.

    from ganjax import classify, data
    train_set, test_set = data.load_train_and_test(config.data)
    state = classify.train_classifier(train_set, steps=1500, batch_size=128, seed=0)
    logits = classify.predict(state, data.to_model_range(test_set.images))
    classify.save_classifier("classifiers/fm", state, {"image_shape": train_set.image_shape})
    state, meta = classify.load_classifier("classifiers/fm")

A saved classifier is a directory with two orbax items: 'state' (params, BatchNorm
statistics, step) and 'meta' (JSON: architecture, image shape, sha256 of the weights and
whatever the caller adds), so it can be rebuilt without the code that trained it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
import orbax.checkpoint as ocp

import ganjax
from ganjax import data, loop, parallel
from ganjax.models import ResNet, SmallCNN
from ganjax.names import NORMS
from ganjax.state import ModelState, create_classifier_state
from ganjax.steps import classifier_eval_step, classifier_train_step

CLASSIFIER_MODELS = {"cnn": SmallCNN, "resnet": ResNet}
DEFAULT_WIDTHS = {"cnn": 32, "resnet": 16}
CLASSIFIER_FORMAT = 1
LOG_EVERY = 50


def build_classifier(
    model: str,
    num_classes: int,
    width: int | None = None,
    norm: str = "batch",
    dropout: float = 0.0,
    **architecture: Any,
) -> nn.Module:
    """The classifier module `model` ("cnn" -> SmallCNN, "resnet" -> ResNet).

    `architecture` passes module-specific fields (SmallCNN: downsample; ResNet:
    blocks_per_stage). width None takes DEFAULT_WIDTHS[model].
    """
    if model not in CLASSIFIER_MODELS:
        raise ValueError(f"Classifier model {model!r} is unknown; choose one of {sorted(CLASSIFIER_MODELS)}.")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}.")
    width = DEFAULT_WIDTHS[model] if width is None else int(width)
    if width < 1:
        raise ValueError(f"Classifier width must be positive, got {width}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"Classifier dropout must be in [0, 1), got {dropout}.")
    if norm not in NORMS:
        raise ValueError(f"Classifier norm {norm!r} is unknown; use one of {NORMS}.")
    if "blocks_per_stage" in architecture:
        architecture["blocks_per_stage"] = tuple(int(n) for n in architecture["blocks_per_stage"])
    return CLASSIFIER_MODELS[model](num_classes=num_classes, width=width, norm=norm, dropout=dropout, **architecture)


def describe_classifier(state: ModelState) -> dict:
    """Architecture of the classifier in `state` as JSON-able data: {"model", "num_classes",
    "width", "norm", "dropout", ...}; `build_classifier(**description)` rebuilds it."""
    module = getattr(state.apply_fn, "__self__", None)
    kinds = {cls: name for name, cls in CLASSIFIER_MODELS.items()}
    if type(module) not in kinds:
        raise ValueError(
            f"State holds {type(module).__name__}, not a classifier from build_classifier "
            f"({', '.join(cls.__name__ for cls in kinds)})."
        )
    description = {"model": kinds[type(module)], "num_classes": module.num_classes, "width": module.width,
                   "norm": module.norm, "dropout": module.dropout}
    if isinstance(module, SmallCNN):
        description["downsample"] = module.downsample
    else:
        description["blocks_per_stage"] = [int(n) for n in module.blocks_per_stage]
    return description


def train_classifier(
    train_set: data.Dataset,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    model: str = "cnn",
    width: int | None = None,
    norm: str = "batch",
    dropout: float = 0.0,
    learning_rate: float = 3e-3,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    class_weights: np.ndarray | None = None,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = True,
    **architecture: Any,
) -> ModelState:
    """Trains a classifier on `train_set` for `steps` batches; returns its ModelState.

    The learning rate decays along a cosine to zero over `steps`. Batches come from
    `ganjax.data.iterate_batches` (reshuffled each epoch, seeded by `seed`), sharded over
    `mesh` (default: all devices) with the state replicated.

    Args:
      class_weights: optional [num_classes] loss weight per class (e.g. inverse
        frequency for a long-tailed set); each example is weighted by its class's.
      architecture: module-specific fields, see `build_classifier`.
    """
    if steps <= 0:
        raise ValueError(f"Classifier training steps must be positive, got {steps}.")
    mesh = parallel.make_mesh() if mesh is None else mesh
    parallel.check_batch_size(batch_size, mesh)
    if class_weights is not None:
        class_weights = np.asarray(class_weights, np.float32)
        if class_weights.shape != (train_set.num_classes,) or np.any(class_weights < 0):
            raise ValueError(
                f"class_weights must be {train_set.num_classes} non-negative numbers, one per class; "
                f"got shape {class_weights.shape}."
            )
    module = build_classifier(model, train_set.num_classes, width, norm, dropout, **architecture)
    init_key, step_key = jax.random.split(jax.random.key(seed))
    state = create_classifier_state(
        module, learning_rate, init_key, train_set.image_shape,
        optimizer=optimizer, total_steps=steps, weight_decay=weight_decay,
    )
    state = parallel.replicate(state, mesh)
    train_step = parallel.jit_step(classifier_train_step, mesh, batch_axis=0)
    is_chief = jax.process_index() == 0
    bar = loop.progress_bar(steps, desc=f"train {model}", disable=not (progress and is_chief))

    def place(host_batch: dict, stacked: bool) -> dict:
        host_batch = data.process_slice(host_batch, jax.process_index(), jax.process_count())
        if class_weights is not None:
            host_batch["weights"] = class_weights[host_batch["labels"]]
        return parallel.shard_batch(host_batch, mesh)

    def after_call(state: ModelState, step: int, metrics: dict, stacked: bool) -> tuple[ModelState, bool]:
        if step % LOG_EVERY == 0 or step == steps:
            values = {name: float(value) for name, value in jax.device_get(metrics).items()}
            if not math.isfinite(values["loss"]):
                raise FloatingPointError(
                    f"Classifier loss is {values['loss']} at step {step}; lower learning_rate (now {learning_rate})."
                )
            bar.set_postfix(loss=f"{values['loss']:.3f}", acc=f"{values['accuracy']:.3f}")
        return state, False

    with data.iterate_batches(train_set, batch_size, seed=seed) as batches, bar:
        state, _ = loop.run_steps(
            state, start_step=0, total_steps=steps, next_batch=lambda: next(batches), place=place,
            step_keys=lambda calls: loop.fold_in_steps(step_key, calls), single=train_step, after_call=after_call,
            bar=bar,
        )
    return state


@functools.cache
def _jitted_eval_step(mesh: jax.sharding.Mesh):
    return jax.jit(
        classifier_eval_step,
        in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
        out_shardings=parallel.replicated(mesh),
    )


def predict(
    state: ModelState, images: np.ndarray, batch_size: int = 1000, mesh: jax.sharding.Mesh | None = None
) -> np.ndarray:
    """Inference-mode logits [N, K] float32 for images [N, H, W, C] float32 in [-1, 1].

    Every batch has the same shape (the last is padded and the padding dropped), so the
    network compiles once per image shape.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        raise ValueError("predict expects float images in [-1, 1], got uint8; convert with ganjax.data.to_model_range.")
    if images.ndim != 4:
        raise ValueError(f"predict expects images [N, H, W, C], got shape {images.shape}.")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    images = images.astype(np.float32, copy=False)
    mesh = parallel.make_mesh() if mesh is None else mesh
    eval_step = _jitted_eval_step(mesh)
    state = parallel.replicate(state, mesh)
    logits = parallel.map_in_chunks(lambda chunk: eval_step(state, chunk), images, batch_size, mesh)
    if not logits:
        output = jax.eval_shape(classifier_eval_step, state, jax.ShapeDtypeStruct((1, *images.shape[1:]), np.float32))
        return np.zeros((0, output.shape[-1]), np.float32)
    return np.concatenate(logits).astype(np.float32, copy=False)


def weights_sha256(state: ModelState) -> str:
    """Hex sha256 of the classifier's params and BatchNorm statistics: every array's path,
    dtype, shape and bytes, in path order. Identifies the weights (e.g. of an FID feature
    network) independently of the optimizer state and the file layout."""
    weights = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    hasher = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(weights)[0]
    for path, leaf in sorted(leaves, key=lambda item: jax.tree_util.keystr(item[0])):
        leaf = np.ascontiguousarray(leaf)
        hasher.update(f"{jax.tree_util.keystr(path)}|{leaf.dtype.str}|{leaf.shape}|".encode())
        hasher.update(leaf.tobytes())
    return hasher.hexdigest()


def _checkpointer() -> ocp.Checkpointer:
    return ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def save_classifier(path: str | os.PathLike, state: ModelState, meta: dict) -> dict:
    """Saves the weights (params, BatchNorm statistics, step) and meta to directory `path`,
    replacing any classifier already there; returns the meta as saved.

    `meta` must hold "image_shape" [H, W, C] and may hold anything JSON-able (class names,
    the training data, test accuracy, ...). The saved meta adds the architecture
    (`describe_classifier`), "step", "weights_sha256" and "ganjax_version".
    """
    if "image_shape" not in meta or len(meta["image_shape"]) != 3:
        raise ValueError(
            f"save_classifier meta needs 'image_shape' [height, width, channels], got "
            f"{meta.get('image_shape')!r}; pass e.g. {{'image_shape': train_set.image_shape}}."
        )
    description = describe_classifier(state)
    if "class_names" in meta and len(meta["class_names"]) != description["num_classes"]:
        raise ValueError(
            f"meta['class_names'] names {len(meta['class_names'])} classes but the classifier has "
            f"{description['num_classes']} outputs."
        )
    saved_meta = {
        **meta,
        **description,
        "image_shape": [int(d) for d in meta["image_shape"]],
        "step": int(jax.device_get(state.step)),
        "weights_sha256": weights_sha256(state),
        "format": CLASSIFIER_FORMAT,
        "ganjax_version": ganjax.__version__,
    }
    try:
        # Returned as load_classifier will read it back (tuples become lists, ...).
        saved_meta = json.loads(json.dumps(saved_meta))
    except TypeError as error:
        raise ValueError(f"save_classifier meta must be JSON-serialisable: {error}.") from None
    weights = jax.device_get({"params": state.params, "batch_stats": state.batch_stats, "step": state.step})
    _checkpointer().save(
        os.path.abspath(path),
        args=ocp.args.Composite(state=ocp.args.StandardSave(weights), meta=ocp.args.JsonSave(saved_meta)),
        force=True,
    )
    return saved_meta


def _missing_classifier_error(path: str, problem: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{problem} Train and save one with\n"
        f"  python benchmarks/conditional_accuracy.py --workdir GAN_WORKDIR --classifier-cache {path}\n"
        "or from Python: ganjax.classify.save_classifier(path, ganjax.classify.train_classifier(train_set, "
        "steps=..., batch_size=..., seed=...), {'image_shape': train_set.image_shape})."
    )


def load_classifier(path: str | os.PathLike, tx: optax.GradientTransformation | None = None) -> tuple[ModelState, dict]:
    """(state, meta) of the classifier saved at `path` by `save_classifier`.

    The optimizer state is not saved: the state's optimizer is `tx` (default
    `optax.set_to_zero()`, which leaves the weights frozen); pass an optimizer to fine-tune.

    Raises:
      FileNotFoundError if `path` holds no classifier (the message says how to train one);
      ValueError if the saved weights do not match their recorded sha256.
    """
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise _missing_classifier_error(path, f"No classifier at {path}.")
    if not all(os.path.isdir(os.path.join(path, item)) for item in ("state", "meta")):
        raise _missing_classifier_error(path, f"{path} exists but is not a saved classifier (no state/ and meta/).")
    checkpointer = _checkpointer()
    meta = checkpointer.restore(path, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    architecture = {key: meta[key] for key in ("width", "norm", "dropout", "downsample", "blocks_per_stage") if key in meta}
    module = build_classifier(meta["model"], meta["num_classes"], **architecture)
    tx = optax.set_to_zero() if tx is None else tx
    template = jax.eval_shape(
        lambda key: create_classifier_state(module, 0.0, key, tuple(meta["image_shape"])), jax.random.key(0)
    )
    abstract = {"params": template.params, "batch_stats": template.batch_stats, "step": template.step}
    weights = checkpointer.restore(path, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
    state = ModelState.create(apply_fn=module.apply, params=weights["params"], tx=tx, batch_stats=weights["batch_stats"])
    state = state.replace(step=weights["step"])
    digest = weights_sha256(state)
    if digest != meta["weights_sha256"]:
        raise ValueError(
            f"Classifier weights at {path} have sha256 {digest} but their meta records "
            f"{meta['weights_sha256']}; the files are corrupt or were edited. Retrain or restore a copy."
        )
    return state, meta
