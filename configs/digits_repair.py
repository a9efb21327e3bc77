"""Tiny repair study for tests and a first look: scikit-learn's digits at 16x16, a centre block
and missing pixels, every repair, both classifiers x 3 seeds. The GAN is trained in WORKDIR/gan
first (300 steps of a very small model: it checks the plumbing, not the method); a few minutes on
2 CPU cores, mostly compilation.

    python -m ganjax.experiment --config configs/digits_repair.py --workdir /tmp/digits_repair
"""

from ganjax.config import default_config


def get_config():
    config = default_config()
    config.data.source = "digits"
    config.data.image_size = 16
    config.experiment.study = "repair"
    config.experiment.strategies = "clean,damage_augment"
    # GAN (trained in WORKDIR/gan on the training part).
    config.model.noise_dim = 32
    config.model.embed_dim = 16
    config.model.generator_width = 16
    config.model.discriminator_width = 16
    config.train.steps = 300
    config.train.batch_size = 32
    config.train.log_every = 100
    config.train.sample_every = 300
    config.train.checkpoint_every = 300
    config.train.samples_per_class = 4
    # Classifiers.
    config.classifier.width = 8
    config.classifier.steps = 200
    config.classifier.batch_size = 32
    config.experiment.num_seeds = 3
    config.experiment.eval_batch_size = 256
    # Repairs: every test image (360), 200 validation images; a short inversion over the clean
    # classifier's 2 likeliest classes.
    config.repair.damages = "centre:0.5,pixels:0.5"
    config.repair.num_test = 0
    config.repair.num_validation = 200
    config.repair.steps = 30
    config.repair.restarts = 2
    config.repair.batch_size = 64
    config.repair.candidate_classes = 2
    return config
