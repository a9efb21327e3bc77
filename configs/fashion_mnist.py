"""The main job: class-conditional GAN on Fashion-MNIST (28x28) from Debian's IDX files.

    apt-get install -y dataset-fashion-mnist
    python -m ganjax.train --config configs/fashion_mnist.py --workdir workdirs/fashion_mnist

Batch 32 at Adam 1e-4 since 2026-12-03: per minute of CPU it gives a better generator than wave 1's batch 64
at 2e-4 (configs/fashion_mnist_b64.py, FID 18.1 at 20,000 steps); BENCHMARKS.md "Time to a good generator".
"""

from ganjax.config import default_config


def get_config():
    config = default_config()
    config.data.source = "idx:/usr/share/datasets/fashion-mnist"
    config.train.steps = 40000  # Inception FID 17.3 at 40,000 steps (BENCHMARKS.md, "The main job at batch 32")
    config.train.batch_size = 32
    config.optim.generator_lr = 1e-4
    config.optim.discriminator_lr = 1e-4
    config.train.log_every = 100
    config.train.sample_every = 1000
    config.train.checkpoint_every = 1000
    config.train.steps_per_call = 10  # 10 GAN steps per jitted call (lax.scan): ~14% faster on CPU
    return config
