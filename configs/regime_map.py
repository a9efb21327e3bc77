"""The base cell of the regime map (benchmarks/regime_map.py): Fashion-MNIST, the long-tail study's
classifier and a smaller, shorter GAN, 3 classifier seeds; every GAN strategy validated.

    python benchmarks/regime_map.py --workdir workdirs/regime_map            # every cell
    python -m ganjax.experiment --config configs/regime_map.py --workdir DIR  # this cell alone: 1% of Fashion

The map's cells change the data (the training-set size, the imbalance, the dataset) and the
classifier; this file holds what they share. The GAN strategies (gan, gan+augment, and on long-tailed
cells gan+oversample) choose their synthetic share from 0, 0.25 and 0.5 on the validation split
(experiment.grid; share 0 is the classic twin, step for step), so a validated GAN strategy can lose to
its twin only by validation noise.

Budget per cell on 2 CPU cores (measured in BENCHMARKS.md): the GAN 4,000 steps at batch 64 (width 32,
class-balanced batches, DiffAugment), each strategy 2,000 classifier steps at batch 64 x 3 seeds.
"""

from ganjax.config import default_config


def get_config():
    config = default_config()
    config.data.source = "idx:/usr/share/datasets/fashion-mnist"
    config.data.subset = "balanced"
    config.data.images_per_class = 60  # 1% of Fashion-MNIST's 60,000 training images
    # GAN (two-stage: trained first in WORKDIR/gan on the training part, reused if already trained).
    config.model.generator_width = 32
    config.model.discriminator_width = 32
    config.train.steps = 4000
    config.train.batch_size = 64
    config.train.class_balanced = True
    config.gan.diffaugment = "color,translation,cutout"  # small and long-tailed sets: the GAN's D over-fits
    config.train.log_every = 100
    config.train.sample_every = 1000
    config.train.checkpoint_every = 1000
    config.train.steps_per_call = 10
    # Classifiers, the same in every strategy.
    config.classifier.model = "cnn"
    config.classifier.width = 16
    config.classifier.steps = 2000
    config.classifier.batch_size = 64
    config.classifier.learning_rate = 3e-3
    config.experiment.num_seeds = 3
    config.experiment.strategies = "plain,augment,gan,gan+augment"
    config.experiment.augment_shift = 2
    config.experiment.augment_flip = True  # clothes are left-right symmetric
    config.experiment.augment_padding = "constant"
    config.experiment.grid = "experiment.synthetic_fraction=0,0.25,0.5"
    config.experiment.eval_batch_size = 1000
    return config
