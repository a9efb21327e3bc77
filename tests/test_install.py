"""ganjax installed anywhere: the shipped configs travel in the package (pyproject.toml maps the
top-level configs/ to ganjax/configs), so a config's name works from any directory."""

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
from conftest import REPO

from ganjax.config import find_config_file, load_config, shipped_config_names

TINY_FLAGS = [
    "--config.model.noise_dim=16", "--config.model.embed_dim=8", "--config.model.generator_width=8",
    "--config.model.discriminator_width=8", "--config.train.batch_size=16", "--config.train.steps=2",
    "--config.train.log_every=1", "--config.train.sample_every=2", "--config.train.checkpoint_every=2",
]


def test_shipped_config_loads_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = load_config(os.path.join(REPO, "configs", "digits.py"))
    for name in ("digits", "digits.py", "configs/digits.py"):
        assert load_config(name) == expected, name
    # regime_map.py loads fashion_mnist_lt.py beside it.
    assert load_config("regime_map").data.source == load_config("fashion_mnist_lt").data.source
    assert set(shipped_config_names()) == {name[:-3] for name in os.listdir(os.path.join(REPO, "configs"))
                                           if name.endswith(".py")}


def test_existing_path_wins_and_unknown_name_lists_shipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits.py").write_text("from ganjax.config import default_config\n\n"
                                        "def get_config():\n    config = default_config()\n"
                                        "    config.train.steps = 7\n    return config\n")
    shipped = load_config(os.path.join(REPO, "configs", "digits.py"))
    assert shipped.train.steps != 7
    assert load_config("digits.py").train.steps == 7  # the file here, not the shipped digits
    assert load_config("digits") == shipped
    with pytest.raises(FileNotFoundError) as error:
        find_config_file("nope.py")
    message = str(error.value)
    assert "\n" not in message and "'nope.py'" in message and "digits, digits_lt" in message
    with pytest.raises(FileNotFoundError):
        find_config_file("elsewhere/digits.py")  # a name in another directory is a path, not the shipped config


def test_pyproject_ships_every_package_and_the_configs():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as stream:
        setuptools = tomllib.load(stream)["tool"]["setuptools"]
    packages = {os.path.relpath(directory, REPO).replace(os.sep, ".")
                for directory, _, files in os.walk(os.path.join(REPO, "ganjax")) if "__init__.py" in files}
    assert set(setuptools["packages"]) == packages | {"ganjax.configs"}
    assert setuptools["package-dir"] == {"ganjax.configs": "configs"}


def _run(command, cwd, env, timeout=900):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_wheel_in_fresh_venv_trains_restores_and_samples_from_another_directory(tmp_path):
    # Build from a copy of what the build reads, so the repository gets no build/ directory.
    source = tmp_path / "source"
    for name in ("ganjax", "configs"):
        shutil.copytree(os.path.join(REPO, name), source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), source / name)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    system_ganjax = _run([sys.executable, "-c", "import ganjax; print(ganjax.__file__)"], elsewhere, env).stdout

    # No build isolation: the build uses the installed setuptools, offline.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
          str(source)], tmp_path, env)
    (wheel,) = (tmp_path / "dist").glob("ganjax-*.whl")
    shipped = {name[:-3] for name in os.listdir(os.path.join(REPO, "configs")) if name.endswith(".py")}
    assert {f"ganjax/configs/{name}.py" for name in shipped} <= set(zipfile.ZipFile(wheel).namelist())

    # jax and the rest from the system; ganjax from the wheel, ahead of any system (e.g. editable) ganjax.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], tmp_path, env)
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], elsewhere, env)
    assert _run([sys.executable, "-c", "import ganjax; print(ganjax.__file__)"], elsewhere, env).stdout == system_ganjax

    workdir = str(elsewhere / "run")
    _run([python, "-m", "ganjax.train", "--config", "digits", "--workdir", workdir, *TINY_FLAGS], elsewhere, env)
    check = _run([python, "-c", """
import os, jax, ganjax
from ganjax.config import shipped_config_dir
print(ganjax.__file__)
print(shipped_config_dir())
assert ganjax.load_config("configs/digits.py") == ganjax.load_config("digits")
assert ganjax.load_config("regime_map").data.source == ganjax.load_config("fashion_mnist_lt").data.source
images = ganjax.load_generator("run").sample(jax.random.key(0), labels=[0, 1, 2])
print(images.shape)
"""], elsewhere, env).stdout.splitlines()
    site_packages = os.path.realpath(venv)
    assert os.path.realpath(check[0]).startswith(site_packages), check[0]
    assert os.path.realpath(check[1]) == os.path.join(os.path.dirname(os.path.realpath(check[0])), "configs")
    assert check[2] == "(3, 16, 16, 1)"
    _run([python, "-m", "ganjax.sample", "--workdir", workdir, "--num", "4", "--out", "grid.png"], elsewhere, env)
    assert (elsewhere / "grid.png").stat().st_size > 0
