"""Tiny robust study for tests and a first look: scikit-learn's digits at 16x16, L-inf eps 0.1 (and L2 1.0
on test), the five strategies (standard, pgd_at, trades, pgd_at_generated, defense_gan) x 3 seeds, every
test and validation image attacked by PGD and APGD-CE (Defense-GAN: 60 test and 30 validation images).
The GAN is trained in WORKDIR/gan first (300 steps of a very small model: it checks the plumbing, not
the method). 1.5 min on 2 CPU cores with a warm compilation cache (2026-12-02), several more cold.

    python -m ganjax.experiment --config configs/digits_robust.py --workdir /tmp/digits_robust
"""

from ganjax.config import default_config


def get_config():
    config = default_config()
    config.data.source = "digits"
    config.data.image_size = 16
    config.experiment.study = "robust"
    config.experiment.strategies = "standard,pgd_at,trades,pgd_at_generated,defense_gan"
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
    # Attacks: the MNIST-like budget 0.1 ([0, 1] pixel scale) in training and evaluation; short attacks.
    config.robust.eps = 0.1
    config.robust.train_eps = 0.1
    config.robust.train_steps = 5
    config.robust.eval_steps = 10
    config.robust.apgd_steps = 20
    config.robust.eval_restarts = 1
    config.robust.trades_beta = 6.0
    config.robust.generated_fraction = 0.5
    config.robust.num_test = 0  # all 360 test images
    config.robust.num_validation = 0  # all validation images
    config.robust.extra_budgets = "l2:1.0"
    config.robust.advgan_steps = 200
    # Defense-GAN: a short projection, judged on 60 test and 30 validation images.
    config.defense.steps = 10
    config.defense.restarts = 1
    config.defense.classes = 2
    config.defense.attack_steps = 3
    config.defense.num_test = 60
    config.defense.num_validation = 30
    config.defense.batch_size = 30
    return config
