"""The persistent compilation cache every ganjax command turns on (ganjax.cli)."""

import os

from conftest import run_python

PROGRAM = """
import logging, os
import jax, jax.numpy as jnp
logging.basicConfig(level=logging.WARNING)
logging.getLogger("jax._src.compiler").setLevel(logging.DEBUG)
from ganjax.cli import enable_compilation_cache
path = enable_compilation_cache(min_compile_seconds=0)
jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.ones((8, 8))).block_until_ready()
print("CACHE", path)
"""


def _run(env):
    result = run_python(PROGRAM, env_extra=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_cache_is_written_then_hit(tmp_path):
    cache = os.fspath(tmp_path / "cache")
    first = _run({"GANJAX_COMPILATION_CACHE": cache, "JAX_COMPILATION_CACHE_DIR": ""})
    assert f"CACHE {cache}" in first.stdout
    assert any(name.startswith("jit_") for name in os.listdir(cache))
    assert "cache hit for 'jit__lambda" not in first.stderr
    second = _run({"GANJAX_COMPILATION_CACHE": cache, "JAX_COMPILATION_CACHE_DIR": ""})
    assert "cache hit for 'jit__lambda" in second.stderr


def test_cache_off_and_jax_setting_kept(tmp_path):
    off = _run({"GANJAX_COMPILATION_CACHE": "off", "JAX_COMPILATION_CACHE_DIR": ""})
    assert "CACHE None" in off.stdout
    own = os.fspath(tmp_path / "jax_own")
    kept = _run({"GANJAX_COMPILATION_CACHE": os.fspath(tmp_path / "ganjax"), "JAX_COMPILATION_CACHE_DIR": own})
    assert f"CACHE {own}" in kept.stdout
    assert not os.path.exists(tmp_path / "ganjax")
