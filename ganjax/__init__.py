"""ganjax: GANs trained together with image classifiers, in JAX/Flax.

From Python (e.g. Colab), one function per job, each returning a typed result (ganjax.api):

    import ganjax
    config = ganjax.load_config("configs/digits.py")
    config.data.source = ganjax.data.from_arrays(images, labels)           # or "digits", "npz:PATH", ...
    run = ganjax.train_gan(config, "workdirs/digits", evaluate="fid")      # TrainResult (+ EvalResult)
    samples = ganjax.sample_images("workdirs/digits", num=30)              # SampleResult
    scores = ganjax.evaluate_generator("workdirs/digits", "fid,classes")   # EvalResult
    study = ganjax.run_study(ganjax.load_config("digits_semi"), "workdirs/digits_semi")  # StudyResult

The older dict-returning functions remain: `train_and_evaluate` (trains only, despite the Flax-example
name: `train_gan(..., evaluate=...)` also scores), `run_experiment`, and `load_generator` for a
generator to sample from directly (`generator.sample(jax.random.key(0), labels=[0, 1, 2])`).
Everything is imported on first use, so `import ganjax` and `ganjax.load_config` stay light.
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
    "train_gan": "ganjax.api",
    "sample_images": "ganjax.api",
    "evaluate_generator": "ganjax.api",
    "run_study": "ganjax.api",
    "TrainResult": "ganjax.api",
    "SampleResult": "ganjax.api",
    "EvalResult": "ganjax.api",
    "StudyResult": "ganjax.api",
    "StrategyResult": "ganjax.api",
}
# Sub-packages reachable as attributes after a bare `import ganjax` (ganjax.data.from_arrays).
_SUBPACKAGES = ("data",)
__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"ganjax.{name}")
    raise AttributeError(f"module 'ganjax' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_API, *_SUBPACKAGES})
