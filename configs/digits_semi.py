"""Tiny few-label experiment for tests: scikit-learn's digits (8x8 upscaled to 16x16), 5 labels
per class, all five strategies x 2 seeds, a small network and 60 steps: it checks the
plumbing in well under a minute, not the method.

    python -m ganjax.experiment --config configs/digits_semi.py --workdir /tmp/digits_semi
"""

from ganjax.config import default_config


def get_config():
    config = default_config()
    config.data.source = "digits"
    config.data.image_size = 16
    config.data.subset = "few_label"
    config.data.labels_per_class = 5
    config.experiment.strategies = "semi_gan,acgan,supervised,supervised_augment,vat,pseudo_label"
    config.experiment.num_seeds = 2
    config.experiment.augment_flip = False  # mirrored digits are not digits
    config.experiment.eval_batch_size = 256
    config.semi.hidden = "64,32"
    config.semi.noise_dim = 16
    config.semi.generator_hidden = 64
    config.semi.steps = 60
    config.semi.batch_size = 20
    config.semi.labelled_batch_size = 20
    config.semi.generator_eval_samples = 0  # no domain classifier in the tiny run
    return config
