import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ganjax
from ganjax.provenance import checkpoint_line, run_provenance, write_json


def test_write_json_creates_the_directory_and_leaves_no_temporary_file(tmp_path):
    path = str(tmp_path / "results" / "nested" / "eval.json")
    assert write_json(path, {"scores": {"fid": 12.5}, "labels": ["a", "b"]}) == path
    with open(path) as stream:
        assert json.load(stream) == {"scores": {"fid": 12.5}, "labels": ["a", "b"]}
    write_json(path, {"scores": {"fid": 3.0}})  # replaces the old file
    with open(path) as stream:
        assert json.load(stream) == {"scores": {"fid": 3.0}}
    assert os.listdir(os.path.dirname(path)) == ["eval.json"]


def test_write_json_converts_numpy_and_jax_values(tmp_path):
    path = str(tmp_path / "values.json")
    write_json(path, {
        "float32": np.float32(0.5), "int64": np.int64(3), "bool": np.bool_(True),
        "vector": np.arange(3, dtype=np.int32), "matrix": np.eye(2, dtype=np.float32),
        "jax_scalar": jnp.float32(1.5), "jax_array": jnp.arange(2),
    })
    with open(path) as stream:
        values = json.load(stream)
    assert values == {"float32": 0.5, "int64": 3, "bool": True, "vector": [0, 1, 2],
                      "matrix": [[1.0, 0.0], [0.0, 1.0]], "jax_scalar": 1.5, "jax_array": [0, 1]}
    assert isinstance(values["int64"], int) and isinstance(values["bool"], bool)


def test_a_failed_write_keeps_the_old_file_and_no_temporary_file(tmp_path):
    path = str(tmp_path / "eval.json")
    write_json(path, {"scores": {"fid": 1.0}})
    with pytest.raises(TypeError, match="object is not JSON-serialisable"):
        write_json(path, {"scores": {"fid": 2.0}, "extractor": object()})
    with open(path) as stream:
        assert json.load(stream) == {"scores": {"fid": 1.0}}
    assert os.listdir(tmp_path) == ["eval.json"]


def test_run_provenance_names_the_checkpoint_versions_and_devices(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    provenance = run_provenance("workdir", np.int64(4))
    assert provenance == {
        "workdir": str(tmp_path / "workdir"),
        "checkpoint_step": 4,
        "ganjax_version": ganjax.__version__,
        "jax_version": jax.__version__,
        "devices": f"{jax.device_count()} x {jax.devices()[0].platform}",
    }
    assert type(provenance["checkpoint_step"]) is int
    assert json.loads(json.dumps(provenance)) == provenance


def test_checkpoint_line():
    assert checkpoint_line(200, "/runs/digits", "100 samples vs 1797 real test images") == (
        "checkpoint step 200 of /runs/digits: 100 samples vs 1797 real test images"
    )
