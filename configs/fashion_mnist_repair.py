"""Image repair on Fashion-MNIST: a centre block (half the side) and half the pixels missing,
repaired by mean fill, scikit-image's biharmonic inpainting and by inverting the main job's
conditional GAN, all judged by a classifier trained on clean images; beside them a classifier
trained with the same damages as augmentation. 3 seeds, 1,000 class-stratified test images.

    python -m ganjax.train --config configs/fashion_mnist.py --workdir workdirs/fashion_mnist  # the GAN, once
    python -m ganjax.experiment --config configs/fashion_mnist_repair.py --workdir workdirs/fashion_mnist_repair

The GAN is the main job's (experiment.generator_workdir, relative to the working directory; its
latest checkpoint). Its model keys are the main job's (the config starts from
configs/fashion_mnist.py), which the study checks before it uses the GAN. The best classic repair
of each damage is chosen on 1,000 validation images, carved from the training split (the engine's
rule); note that the main job's GAN saw the validation images in training (it trains on the whole
training split), the classifiers did not.

Budget (BENCHMARKS.md, "Image repair"): the inversion's steps, restarts and candidate classes are
sized so that the study takes under an hour on 2 CPU cores.
"""

import os

from ganjax.config import load_config


def get_config():
    config = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist.py"))
    config.experiment.study = "repair"
    config.experiment.strategies = "clean,damage_augment"
    config.experiment.generator_workdir = "workdirs/fashion_mnist"
    # Classifiers: the long-tail study's network and budget.
    config.classifier.model = "cnn"
    config.classifier.width = 16
    config.classifier.steps = 2000
    config.classifier.batch_size = 64
    config.classifier.learning_rate = 3e-3
    config.experiment.num_seeds = 3
    config.experiment.eval_batch_size = 500
    # Repairs.
    config.repair.damages = "centre:0.5,pixels:0.5"
    config.repair.num_test = 1000
    config.repair.num_validation = 1000
    # Inversion: 25 Adam steps, one restart, each image's 2 likeliest classes for the clean classifier
    # on its classic repair, the restart warm-started by an encoder (1,000 steps). On 200 training
    # images under centre:0.5 the warm start gave 15.3 dB damaged-region PSNR against 14.4 dB from a
    # random start at 25 steps (benchmarks/inversion_warm_start.py; BENCHMARKS.md, "Image repair").
    config.repair.steps = 25
    config.repair.restarts = 1
    config.repair.candidate_classes = 2
    config.repair.encoder_steps = 1000
    config.repair.batch_size = 50
    return config
