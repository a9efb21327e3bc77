import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax.models import ResNet, SmallCNN
from ganjax.models.classifier import downsample


def _images(size, channels, batch=3):
    return jax.random.uniform(jax.random.key(0), (batch, size, size, channels), minval=-1.0, maxval=1.0)


@pytest.mark.parametrize("size,channels", [(16, 1), (28, 1), (32, 3)])
@pytest.mark.parametrize(
    "module",
    [
        SmallCNN(num_classes=7, width=8),
        SmallCNN(num_classes=7, width=8, norm="group", downsample="max_pool"),
        SmallCNN(num_classes=7, width=8, norm="none", downsample="subpixel"),
        ResNet(num_classes=7, width=8),
        ResNet(num_classes=7, width=8, blocks_per_stage=(2, 1, 1), norm="group"),
    ],
    ids=["cnn", "cnn-group-maxpool", "cnn-none-subpixel", "resnet", "resnet-group"],
)
def test_classifier_logit_shapes(module, size, channels):
    images = _images(size, channels)
    variables = module.init(jax.random.key(1), images, train=False)
    logits = module.apply(variables, images, train=False)
    assert logits.shape == (3, 7)
    assert bool(jnp.all(jnp.isfinite(logits)))
    train_logits, _ = module.apply(variables, images, train=True, mutable=["batch_stats"])
    assert train_logits.shape == (3, 7)


@pytest.mark.parametrize("module", [SmallCNN(num_classes=3, width=4), ResNet(num_classes=3, width=4)])
def test_classifier_rejects_sizes_not_divisible_by_four(module):
    with pytest.raises(ValueError, match="divisible by 4"):
        module.init(jax.random.key(0), jnp.zeros((1, 30, 30, 1)), train=False)


def test_resnet_rejects_bad_stage_counts():
    with pytest.raises(ValueError, match="blocks_per_stage"):
        ResNet(num_classes=3, width=4, blocks_per_stage=(1, 1)).init(
            jax.random.key(0), jnp.zeros((1, 16, 16, 1)), train=False
        )


def test_batch_norm_statistics_move_only_in_training():
    module = SmallCNN(num_classes=3, width=4)
    images = _images(16, 1, batch=8)
    variables = module.init(jax.random.key(0), images, train=False)
    _, mutated = module.apply(variables, images, train=True, mutable=["batch_stats"])
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), variables["batch_stats"], mutated["batch_stats"])
    assert max(jax.tree.leaves(moved)) > 0


def test_dropout_acts_only_in_training():
    module = SmallCNN(num_classes=3, width=8, norm="none", dropout=0.5)
    images = _images(16, 1)
    variables = module.init(jax.random.key(0), images, train=False)
    np.testing.assert_array_equal(module.apply(variables, images, train=False), module.apply(variables, images, train=False))
    first = module.apply(variables, images, train=True, rngs={"dropout": jax.random.key(1)})
    second = module.apply(variables, images, train=True, rngs={"dropout": jax.random.key(2)})
    assert float(jnp.max(jnp.abs(first - second))) > 1e-6


def test_pool_downsampling_values():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(downsample(x, "avg_pool")[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(downsample(x, "max_pool")[0, :, :, 0], [[5, 7], [13, 15]])
    with pytest.raises(ValueError, match="downsample 'bilinear'"):
        downsample(x, "bilinear")
