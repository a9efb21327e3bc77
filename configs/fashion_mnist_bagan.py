"""BAGAN-style imbalance (Mariani et al. 2018): Fashion-MNIST with one class (0, T-shirt/top)
cut to 2.5% of its images (150 of 6000), the other nine whole; balanced test set.
Same classifier, budget and seeds as configs/fashion_mnist_lt.py (the larger training
set makes data loading, not compute, differ; about the same wall time).

    python -m ganjax.experiment --config configs/fashion_mnist_bagan.py --workdir workdirs/fashion_mnist_bagan
"""

import os

from ganjax.config import load_config


def get_config():
    config = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_lt.py"))
    config.data.subset = "cut_class"
    config.data.cut_class = 0
    config.data.cut_fraction = 0.025
    config.experiment.rare_classes = 1  # the one cut class
    return config
