"""ganjax: GANs trained together with image classifiers, in JAX/Flax.

From Python (e.g. Colab):

    import ganjax
    config = ganjax.load_config("configs/digits.py")
    ganjax.train_and_evaluate(config, "workdirs/digits")
    generator = ganjax.load_generator("workdirs/digits")
    images = generator.sample(jax.random.key(0), labels=[0, 1, 2])
"""

__version__ = "0.1.0"

from ganjax.config import default_config, load_config, validate_config  # noqa: E402
from ganjax.sample import load_generator  # noqa: E402
from ganjax.train import train_and_evaluate  # noqa: E402

__all__ = ["default_config", "load_config", "validate_config", "load_generator", "train_and_evaluate"]
