"""Tiny recognition experiment for tests: scikit-learn's digits at 16x16, long-tailed
(imbalance ratio 10, exponential), all six strategies x 3 seeds; about a minute on 2 busy CPU
cores, mostly compilation (the GAN is 150 steps of a very small model, so `gan` here checks
the plumbing, not the method). Add --config.experiment.gan_mode=joint for the joint mode.

    python -m ganjax.experiment --config configs/digits_lt.py --workdir /tmp/digits_lt
"""

from ganjax.config import default_config


def get_config():
    config = default_config()
    config.data.source = "digits"
    config.data.image_size = 16
    config.data.subset = "long_tail"
    config.data.imbalance_ratio = 10.0
    # GAN (two-stage: trained in WORKDIR/gan first).
    config.model.noise_dim = 32
    config.model.embed_dim = 16
    config.model.generator_width = 16
    config.model.discriminator_width = 16
    config.train.steps = 150
    config.train.batch_size = 32
    config.train.log_every = 100
    config.train.sample_every = 300
    config.train.checkpoint_every = 300
    config.train.samples_per_class = 4
    # Classifier, shared by every strategy.
    config.classifier.width = 8
    config.classifier.steps = 100
    config.classifier.batch_size = 32
    config.experiment.num_seeds = 3
    config.experiment.augment_flip = False  # mirrored digits are not digits
    config.experiment.synthetic_fraction = 0.5
    config.experiment.eval_batch_size = 256
    return config
