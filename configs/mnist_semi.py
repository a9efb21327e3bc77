"""MNIST with 100 labels via TensorFlow Datasets (needs internet on first use, then TFDS's
cache): Salimans et al. 2016's setting, where they report 93 +- 6.5 test errors out of 10,000
for the feature-matching GAN after 300 epochs. Same strategies and network as
configs/fashion_mnist_semi.py.

    pip install -e '.[tfds]'
    python -m ganjax.experiment --config configs/mnist_semi.py --workdir workdirs/mnist_semi
"""

import os

from ganjax.config import load_config


def get_config():
    config = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_semi.py"))
    config.data.source = "tfds:mnist"
    config.experiment.augment_flip = False  # mirrored digits are not digits
    return config
