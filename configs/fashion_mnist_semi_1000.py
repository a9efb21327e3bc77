"""Fashion-MNIST with 1,000 labels (100 per class): configs/fashion_mnist_semi.py with more labels.

    python -m ganjax.experiment --config configs/fashion_mnist_semi_1000.py --workdir workdirs/fashion_mnist_semi_1000
"""

import os

from ganjax.config import load_config


def get_config():
    config = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_semi.py"))
    config.data.labels_per_class = 100
    return config
