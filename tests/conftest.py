import os
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ganjax's commands turn on JAX's persistent compilation cache (ganjax.cli.enable_compilation_cache):
# the test session's commands share one fresh directory instead of the user's ~/.cache.
os.environ.setdefault("GANJAX_COMPILATION_CACHE", tempfile.mkdtemp(prefix="ganjax_test_jax_cache_"))
# ganjax's data cache (domain classifiers, reference features) too; one per pytest-xdist worker,
# so that two workers never train the same cached classifier at once (compiled programs are
# shared: JAX writes each cache entry atomically).
os.environ.setdefault("GANJAX_CACHE", tempfile.mkdtemp(prefix="ganjax_test_cache_"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["GANJAX_CACHE"] = os.path.join(os.environ["GANJAX_CACHE"], os.environ["PYTEST_XDIST_WORKER"])


def _enable_compilation_cache():
    """In-process tests share the session's compilation cache too: many tests build the same tiny
    programs afresh (a new jit per run), and a cache hit loads the executable instead of compiling."""
    from ganjax.cli import enable_compilation_cache

    enable_compilation_cache(min_compile_seconds=0.2)


_enable_compilation_cache()


def make_tiny_config():
    """A GAN config small enough for a step in milliseconds on CPU (digits at 16x16); a plain
    function for module- and session-scoped fixtures, `tiny_config` for a test's own copy."""
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


@pytest.fixture
def tiny_config():
    return make_tiny_config()


@pytest.fixture(scope="session")
def tiny_gan_workdir(tmp_path_factory):
    """make_tiny_config's GAN trained for its 4 steps, shared by the tests that only read it
    (sampling, evaluation): its EMA weights are ~the initial ones and its running BatchNorm
    statistics (momentum 0.9, 4 updates) are stale for them. Tests must not change its checkpoints."""
    from ganjax.train import train_and_evaluate

    workdir = str(tmp_path_factory.mktemp("tiny_gan"))
    train_and_evaluate(make_tiny_config(), workdir)
    return workdir


def run_python(code: str, env_extra: dict | None = None, timeout: int = 600):
    """Runs `code` in a fresh interpreter (so XLA flags apply) and returns the CompletedProcess."""
    import subprocess

    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
