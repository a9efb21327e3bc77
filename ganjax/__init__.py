"""ganjax: GANs trained together with image classifiers, in JAX/Flax."""

__version__ = "0.1.0"
