"""What every result file of a ganjax command records about its run, and how it is written.

    results = {..., "provenance": {**run_provenance(workdir, step), "dataset": ..., ...}}
    write_json(path, results)
    print(checkpoint_line(step, workdir, "100 samples vs 1000 real test images"))

Used by `ganjax.evaluate`, `ganjax.attack`, `ganjax.repair` and benchmarks/bn_statistics_fid.py,
so their result files share these keys and are never left half-written.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

import ganjax


def run_provenance(workdir: str, checkpoint_step: int) -> dict[str, Any]:
    """{"workdir": absolute path, "checkpoint_step", "ganjax_version", "jax_version",
    "devices": "N x platform"}: which checkpoint was used, with which software, on what."""
    return {
        "workdir": os.path.abspath(workdir),
        "checkpoint_step": int(checkpoint_step),
        "ganjax_version": ganjax.__version__,
        "jax_version": jax.__version__,
        "devices": f"{jax.device_count()} x {jax.devices()[0].platform}",
    }


def checkpoint_line(step: int, workdir: str, summary: str) -> str:
    """The first line a command prints about its run: "checkpoint step STEP of WORKDIR: SUMMARY"."""
    return f"checkpoint step {step} of {workdir}: {summary}"


def _to_json(value: Any) -> Any:
    # numpy (and jax) scalars and arrays, which the metrics return, as Python numbers and lists.
    if hasattr(value, "__array__"):
        return np.asarray(value).tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def write_json(path: str, payload: Any, indent: int = 2) -> str:
    """Writes `payload` to `path` as JSON, creating its directory; returns `path`.

    Written to a temporary file beside it, then renamed over it, so a reader (or a run that
    dies mid-write) sees the old file or the new one, never part of one.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w") as stream:
            json.dump(payload, stream, indent=indent, default=_to_json)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path
