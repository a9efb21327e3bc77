"""Every experiment file in configs/ loads and passes validation (no data is read)."""

import os

import pytest
from conftest import REPO

from ganjax.config import load_config

CONFIGS = sorted(name for name in os.listdir(os.path.join(REPO, "configs")) if name.endswith(".py"))


def test_configs_are_found():
    assert {"fashion_mnist.py", "fashion_mnist_lt.py", "fashion_mnist_semi.py", "fashion_mnist_semi_1000.py"} <= set(CONFIGS)


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
