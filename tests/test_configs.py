"""Every experiment file in configs/ loads and passes validation (no data is read)."""

import os

import pytest
from conftest import REPO

from ganjax.config import apply_overrides, default_config, load_config, validate_config

CONFIGS = sorted(name for name in os.listdir(os.path.join(REPO, "configs")) if name.endswith(".py"))


def test_configs_are_found():
    assert {"fashion_mnist.py", "fashion_mnist_lt.py", "fashion_mnist_semi.py", "fashion_mnist_semi_1000.py",
            "seed_mnist.py"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_and_validates(name):
    config = load_config(os.path.join(REPO, "configs", name))
    assert config.data.source  # every experiment names its data


def test_semi_variants_differ_only_where_they_say():
    base = load_config(os.path.join(REPO, "configs", "fashion_mnist_semi.py"))
    more_labels = load_config(os.path.join(REPO, "configs", "fashion_mnist_semi_1000.py"))
    mnist = load_config(os.path.join(REPO, "configs", "mnist_semi.py"))
    assert (base.data.labels_per_class, more_labels.data.labels_per_class) == (10, 100)
    assert mnist.data.source == "tfds:mnist" and not mnist.experiment.augment_flip
    assert more_labels.semi == base.semi


def test_model_options_are_validated():
    config = default_config()
    config.model.upsample, config.model.discriminator_head = "subpixel2x2", "none"
    validate_config(config)
    config.model.discriminator_head = "conv1x1"
    with pytest.raises(ValueError, match="'model.discriminator_head' is 'conv1x1'.*conv3x3"):
        validate_config(config)


def test_apply_overrides_parses_values_as_their_keys_types():
    config = apply_overrides(default_config(), [
        "model.upsample=subpixel2x2", "train.steps=7", "optim.generator_lr=1e-3", "train.class_balanced=True", "seed=3"])
    assert (config.model.upsample, config.train.steps, config.optim.generator_lr) == ("subpixel2x2", 7, 1e-3)
    assert config.train.class_balanced is True and config.seed == 3


@pytest.mark.parametrize("assignment,message", [
    ("model.upsample", "not KEY=VALUE"),
    ("model.upsampel=subpixel", "'model.upsampel' is unknown.*'model.upsample'"),
    ("train.steps=1.5", "'train.steps' must be of type int"),
    ("train.class_balanced=maybe", "'train.class_balanced' must be of type bool"),
    ("model.discriminator_head=conv1x1", "'model.discriminator_head' is 'conv1x1'"),
    ("gan.diffaugment=color,rotate", "DiffAugment transform 'rotate' is unknown"),
    ("experiment.synthetic_top_up=-5", "'experiment.synthetic_top_up' must be >= 0"),
])
def test_apply_overrides_names_bad_assignments(assignment, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(default_config(), [assignment])
