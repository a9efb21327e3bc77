import os
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ganjax's commands turn on JAX's persistent compilation cache (ganjax.cli.enable_compilation_cache):
# the test session's commands share one fresh directory instead of the user's ~/.cache.
os.environ.setdefault("GANJAX_COMPILATION_CACHE", tempfile.mkdtemp(prefix="ganjax_test_jax_cache_"))
# ganjax's data cache (domain classifiers, reference features) too.
os.environ.setdefault("GANJAX_CACHE", tempfile.mkdtemp(prefix="ganjax_test_cache_"))


@pytest.fixture
def tiny_config():
    """A GAN config small enough for a step in milliseconds on CPU (digits at 16x16)."""
    from ganjax.config import default_config

    config = default_config()
    config.data.source = "digits"
    config.data.image_size = 16
    config.model.noise_dim = 16
    config.model.embed_dim = 8
    config.model.generator_width = 8
    config.model.discriminator_width = 8
    config.train.steps = 4
    config.train.batch_size = 16
    config.train.log_every = 1
    config.train.sample_every = 2
    config.train.checkpoint_every = 2
    config.train.samples_per_class = 2
    return config


def run_python(code: str, env_extra: dict | None = None, timeout: int = 600):
    """Runs `code` in a fresh interpreter (so XLA flags apply) and returns the CompletedProcess."""
    import subprocess

    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
