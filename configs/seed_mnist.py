"""The seed example, repaired: the unconditional GAN ganjax grew from, with both players updated.

The seed: an MLP generator noise -> 128 -> 128 -> 784 (28x28x1, tanh), a discriminator of two
strided convolutions, the non-saturating loss and Adam; its original TF1 code updated only D.
Here G and D alternate as in every ganjax GAN (model.architecture="seed_mlp",
model.conditional=False; ganjax.models.seed), and G has BatchNorm after its hidden layers
(without it, it collapses; below). Samples are plain grids (no classes).

Offline by default, on Fashion-MNIST from Debian's IDX files; MNIST, the seed's own data, comes
through TensorFlow Datasets (internet on first use, then TFDS's cache):

    apt-get install -y dataset-fashion-mnist
    python -m ganjax.train --config configs/seed_mnist.py --workdir workdirs/seed_fashion
    pip install -e '.[tfds]'
    python -m ganjax.train --config configs/seed_mnist.py --workdir workdirs/seed_mnist \
        --config.data.source=tfds:mnist
    python -m ganjax.sample --workdir workdirs/seed_mnist --num 100 --out seed_mnist.png
"""

from ganjax.config import default_config


def get_config():
    config = default_config()
    config.data.source = "idx:/usr/share/datasets/fashion-mnist"  # or "tfds:mnist" (see above)
    config.model.architecture = "seed_mlp"
    config.model.conditional = False
    config.model.noise_dim = 100
    config.model.generator_width = 128  # both hidden layers: 100 -> 128 -> 128 -> 784
    # BatchNorm after each hidden layer: with the seed's plain MLP (generator_norm="none") G collapses to
    # one image within 1,000 steps on Fashion-MNIST (pixel std over samples 0.06, with BatchNorm 0.42, real 0.55).
    config.model.generator_norm = "batch"
    config.model.discriminator_width = 32  # 4x4 stride-2 convs to 32, then 64 channels (28 -> 14 -> 7)
    config.model.downsample = "strided"
    config.gan.loss = "non_saturating"
    config.gan.ema_decay = 0.0  # the seed samples its raw generator
    config.train.steps = 5000
    config.train.batch_size = 64
    config.train.log_every = 100
    config.train.sample_every = 1000
    config.train.checkpoint_every = 1000
    config.train.steps_per_call = 10  # 10 GAN steps per jitted call (lax.scan): the same states, faster on CPU
    return config
