"""Fashion-MNIST long-tailed (imbalance ratio 100, exponential: 6000 -> 60 images per class,
classes in label order), balanced test set; all six strategies x 5 classifier seeds.

    apt-get install -y dataset-fashion-mnist
    python -m ganjax.experiment --config configs/fashion_mnist_lt.py --workdir workdirs/fashion_mnist_lt

Budget, sized from step times measured on the 2-core CPU machine while it was shared
(load ~5): the GAN, 2500 steps at batch 64 (~0.2 s/step, ~9 min); each strategy, 600 steps
at batch 64 for 5 seeds vmapped together (~0.6-0.9 s/step, SmallCNN width 16: ~6-9 min per
strategy, ~45 min for six); about 60-75 minutes in all. On an idle machine expect roughly
half. 10% of every class's training images (at least one) are held out as validation.
Synthetic fraction 0.5 and no filtering are defaults, not tuned.
"""

from ganjax.config import default_config


def get_config():
    config = default_config()
    config.data.source = "idx:/usr/share/datasets/fashion-mnist"
    config.data.subset = "long_tail"
    config.data.imbalance_ratio = 100.0
    config.data.long_tail_profile = "exp"
    # GAN (two-stage: trained first in WORKDIR/gan, reused if already trained).
    config.model.generator_width = 32
    config.model.discriminator_width = 32
    config.train.steps = 2500
    config.train.batch_size = 64
    config.train.log_every = 100
    config.train.sample_every = 500
    config.train.checkpoint_every = 500
    config.train.steps_per_call = 10  # 10 GAN steps per jitted call (lax.scan): ~14% faster on CPU
    # Classifier, the same for every strategy.
    config.classifier.model = "cnn"
    config.classifier.width = 16
    config.classifier.steps = 600
    config.classifier.batch_size = 64
    config.classifier.learning_rate = 3e-3
    config.experiment.num_seeds = 5
    config.experiment.augment_shift = 2
    config.experiment.augment_flip = True  # clothes are left-right symmetric
    config.experiment.augment_padding = "constant"
    config.experiment.synthetic_fraction = 0.5
    config.experiment.eval_batch_size = 1000
    return config
