"""Tiny first run: scikit-learn's bundled 8x8 digits resized to 16x16; about a minute on 2 CPU cores.

    python -m ganjax.train --config configs/digits.py --workdir workdirs/digits
"""

from ganjax.config import default_config


def get_config():
    config = default_config()
    config.data.source = "digits"
    config.data.image_size = 16
    config.model.generator_width = 32
    config.model.discriminator_width = 32
    config.train.steps = 600
    config.train.batch_size = 64
    config.train.log_every = 50
    config.train.sample_every = 200
    config.train.checkpoint_every = 200
    return config
