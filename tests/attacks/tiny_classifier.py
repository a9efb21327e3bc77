"""A small classifier trained on 16x16 digits, shared by the attack tests (and tests/test_attack_cli.py).

Not a test module: test files import it (`from tiny_classifier import digits_classifier`); the
trained state is cached, so a test session trains it once.
"""

import functools

import jax
import numpy as np
import optax
from conftest import make_tiny_config

from ganjax import classify, data
from ganjax.state import ModelState
from ganjax.steps import classifier_train_step

TRAIN_STEPS, BATCH_SIZE, WIDTH, LEARNING_RATE = 200, 64, 8, 3e-3


def initial_variables(module, image_shape: tuple[int, int, int], seed: int) -> dict:
    """LeCun-normal kernels, zero biases, unit BatchNorm, drawn with numpy: flax's jitted init of
    even a tiny CNN takes XLA:CPU tens of seconds to compile."""
    shapes = jax.eval_shape(lambda key: module.init(key, np.zeros((1, *image_shape), np.float32), train=False),
                            jax.random.key(0))
    rng = np.random.default_rng(seed)

    def initial(path, shape):
        name = jax.tree_util.keystr(path)
        if "kernel" in name:
            return (rng.standard_normal(shape.shape) / np.sqrt(np.prod(shape.shape[:-1]))).astype(np.float32)
        return np.full(shape.shape, 1.0 if ("scale" in name or "var" in name) else 0.0, np.float32)

    return jax.tree_util.tree_map_with_path(initial, shapes)


def train_tiny_classifier(train_set: data.Dataset, steps: int = TRAIN_STEPS, width: int = WIDTH,
                          seed: int = 0) -> ModelState:
    """A SmallCNN of `width` after `steps` Adam steps on batches of BATCH_SIZE drawn from train_set."""
    module = classify.build_classifier("cnn", train_set.num_classes, width)
    variables = initial_variables(module, train_set.image_shape, seed)
    state = ModelState.create(apply_fn=module.apply, params=variables["params"], tx=optax.adam(LEARNING_RATE),
                              batch_stats=variables["batch_stats"])
    train_step = jax.jit(classifier_train_step)
    images, labels = data.to_model_range(train_set.images), train_set.labels
    rng = np.random.default_rng(seed)
    for step in range(steps):
        batch = rng.integers(0, len(images), BATCH_SIZE)
        state, _ = train_step(state, {"images": images[batch], "labels": labels[batch]}, jax.random.key(step))
    return state


@functools.cache
def digits_classifier() -> tuple[ModelState, data.Dataset, data.Dataset]:
    """(state, train_set, test_set): `train_tiny_classifier` on the digits (16x16) train split
    (about 99% test accuracy), and the splits."""
    train_set, test_set = data.load_train_and_test(make_tiny_config().data)
    return train_tiny_classifier(train_set), train_set, test_set
