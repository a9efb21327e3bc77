"""ganjax: GANs trained together with image classifiers, in JAX/Flax.

From Python (e.g. Colab):

    import ganjax
    config = ganjax.load_config("configs/digits.py")
    ganjax.train_and_evaluate(config, "workdirs/digits")
    generator = ganjax.load_generator("workdirs/digits")
    images = generator.sample(jax.random.key(0), labels=[0, 1, 2])
    report = ganjax.run_experiment(ganjax.load_config("digits_semi"), "workdirs/digits_semi")
"""

import importlib

__version__ = "0.1.0"

# Resolved on first use, so `python -m ganjax.train` does not import itself twice.
_API = {
    "default_config": "ganjax.config",
    "load_config": "ganjax.config",
    "validate_config": "ganjax.config",
    "load_generator": "ganjax.sample",
    "run_experiment": "ganjax.experiment",
    "train_and_evaluate": "ganjax.train",
}
__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'ganjax' has no attribute {name!r}")
