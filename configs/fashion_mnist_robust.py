"""Adversarial robustness on Fashion-MNIST at L-inf eps 0.1 (the [0, 1] pixel scale; the usual 8/255 is
CIFAR's): standard training, PGD adversarial training (Madry et al. 2018), TRADES (Zhang et al. 2019,
beta 6), PGD adversarial training with half of every batch made by the main job's conditional GAN
(Gowal et al. 2021), and the standard classifier behind Defense-GAN's projection (Samangouei et al.
2018), the long-tail study's SmallCNN x 3 seeds each. The trained four are judged by PGD-20 and APGD-CE
(100 iterations) on 1,000 class-stratified test images at L-inf 0.1 (and on test also at L-inf 0.2 and
L2 1.5), AdvGAN attacks standard and pgd_at, and Defense-GAN meets a naive and a BPDA+EOT attack on 200
test images; the best strategy is chosen on 500 validation images (Defense-GAN: 100).

    python -m ganjax.train --config configs/fashion_mnist.py --workdir workdirs/fashion_mnist  # the GAN, once
    python -m ganjax.experiment --config configs/fashion_mnist_robust.py --workdir workdirs/fashion_mnist_robust

The GAN is the main job's (experiment.generator_workdir, relative to the working directory; its latest
checkpoint). Its model keys are the main job's (the config starts from configs/fashion_mnist.py), which the
study checks before it uses the GAN. The validation images are carved from the training split (the
engine's rule); the main job's GAN saw them in training (it trains on the whole training split), the
classifiers did not. pgd_at_generated's generated fraction is chosen on validation robust accuracy from
0, 0.25 and 0.5 (experiment.grid; 0 is pgd_at itself); only the chosen fraction is attacked on test.

Budget: 2,000 classifier steps at batch 64 (2.4 epochs of the 54,000-image training part) for every
strategy, 7 PGD steps per training step. Measured on 2 CPU cores (BENCHMARKS.md, 2026-12-02): the four
trained strategies 47.6 min with the test suite running beside them (standard 7.0, pgd_at 15.7, trades
12.8, pgd_at_generated 12.1), defense_gan 11.8 min alone: about an hour in all.
"""

import os

from ganjax.config import load_config


def get_config():
    config = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist.py"))
    config.experiment.study = "robust"
    config.experiment.strategies = "standard,pgd_at,trades,pgd_at_generated,defense_gan"
    config.experiment.generator_workdir = "workdirs/fashion_mnist"
    # Classifiers: the long-tail study's network.
    config.classifier.model = "cnn"
    config.classifier.width = 16
    config.classifier.steps = 2000
    config.classifier.batch_size = 64
    config.classifier.learning_rate = 3e-3
    config.experiment.num_seeds = 3
    config.experiment.eval_batch_size = 500
    # Attacks: L-inf eps 0.1 in training and evaluation.
    config.robust.eps = 0.1
    config.robust.train_eps = 0.1
    config.robust.train_steps = 7
    config.robust.train_step_size = 0.0  # 2.5 eps / 7
    config.robust.eval_steps = 20
    config.robust.apgd_steps = 100
    config.robust.eval_restarts = 1
    config.robust.trades_beta = 6.0
    config.robust.generated_fraction = 0.5
    config.experiment.grid = "robust.generated_fraction=0,0.25,0.5"  # chosen on validation
    config.robust.num_test = 1000
    config.robust.num_validation = 500
    # Test-only budgets (PGD-20 and APGD-CE-100 each) and AdvGAN against standard and pgd_at (defaults).
    config.robust.extra_budgets = "linf:0.2,l2:1.5"
    config.robust.advgan_steps = 1000
    config.robust.advgan_against = "standard,pgd_at"
    # Defense-GAN: 20 Adam steps x 1 start x the classifier's 2 likeliest classes per projection (0.049 s per
    # image per projection in the study: the authors' 200 x 10 would be 50 times that), judged on 200 test
    # and 100 validation images by naive PGD-20 and BPDA+EOT PGD-10 (1 draw per step).
    config.defense.steps = 20
    config.defense.restarts = 1
    config.defense.classes = 2
    config.defense.attack_steps = 10
    config.defense.eot_draws = 1
    config.defense.num_test = 200
    config.defense.num_validation = 100
    return config
