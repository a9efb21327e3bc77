"""The PyTorch reference of benchmarks/train_step.py is ganjax's architecture, and the script runs.

torch is a benchmark-only dependency (CI installs it); these tests skip without it.
"""

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO

from ganjax.config import load_config
from ganjax.models import SmallCNN
from ganjax.state import build_models

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import torch_reference

# (image_size, channels, num_classes): Fashion-MNIST's shape (two up-samplings from 7x7), and CIFAR's (three from 4x4).
SHAPES = [(28, 1, 10), (32, 3, 5)]
# (model.upsample, model.discriminator_head): the default, and the options the twin follows.
OPTIONS = [("subpixel", "conv3x3"), ("subpixel2x2", "conv3x3"), ("subpixel", "none"), ("subpixel2x2", "none")]


def _flax_layer_counts(params: dict) -> list[int]:
    """Parameter count of each layer (innermost dict of arrays), in creation order."""
    counts = []
    for value in params.values():
        if isinstance(value, dict) and any(isinstance(leaf, dict) for leaf in value.values()):
            counts += _flax_layer_counts(value)
        elif isinstance(value, dict):
            counts.append(sum(int(np.prod(leaf.shape)) for leaf in value.values()))
    return counts


def _models(size, channels, num_classes, upsample="subpixel", head="conv3x3"):
    config = load_config(os.path.join(REPO, "configs", "fashion_mnist.py"))
    model = config.model
    model.upsample, model.discriminator_head = upsample, head
    generator, discriminator = build_models(config, num_classes, (size, size, channels))
    noise, labels = jnp.zeros((2, model.noise_dim)), jnp.zeros((2,), jnp.int32)
    generator_variables = generator.init(jax.random.key(0), noise, labels, train=False)
    discriminator_variables = discriminator.init(jax.random.key(1), jnp.zeros((2, size, size, channels)), labels)
    torch_generator = torch_reference.Generator(
        num_classes, size, channels, model.generator_width, model.embed_dim, model.noise_dim, upsample)
    torch_discriminator = torch_reference.Discriminator(num_classes, size, channels, model.discriminator_width, head)
    return (generator, generator_variables, torch_generator), (discriminator, discriminator_variables,
                                                               torch_discriminator)


@pytest.mark.parametrize("upsample,head", OPTIONS)
@pytest.mark.parametrize("size,channels,num_classes", SHAPES)
def test_torch_reference_has_ganjax_parameter_count_per_layer(size, channels, num_classes, upsample, head):
    (_, generator_variables, torch_generator), (_, discriminator_variables, torch_discriminator) = _models(
        size, channels, num_classes, upsample, head)
    assert torch_reference.layer_parameter_counts(torch_generator) == _flax_layer_counts(generator_variables["params"])
    assert torch_reference.layer_parameter_counts(torch_discriminator) == _flax_layer_counts(
        discriminator_variables["params"])
    classifier_params = SmallCNN(num_classes, width=16).init(
        jax.random.key(2), jnp.zeros((2, size, size, channels)), train=False)["params"]
    assert torch_reference.layer_parameter_counts(torch_reference.SmallCNN(num_classes, size, channels, 16)) == (
        _flax_layer_counts(classifier_params))


def _tensor(array) -> "torch.Tensor":
    return torch.from_numpy(np.asarray(array, np.float32).copy())


def _conv(kernel, sub_pixel_out: int = 0, sub_pixel_in: int = 0) -> "torch.Tensor":
    """flax kernel [kh, kw, in, out] -> torch weight [out, in, kh, kw], reordering channels where flax
    puts a 2x2 sub-pixel offset before the channel and PixelShuffle/PixelUnshuffle after it."""
    kernel = np.asarray(kernel)
    kh, kw, fan_in, fan_out = kernel.shape
    if sub_pixel_out:
        kernel = kernel.reshape(kh, kw, fan_in, 4, fan_out // 4).transpose(0, 1, 2, 4, 3).reshape(kernel.shape)
    if sub_pixel_in:
        kernel = kernel.reshape(kh, kw, 4, fan_in // 4, fan_out).transpose(0, 1, 3, 2, 4).reshape(kernel.shape)
    return _tensor(kernel.transpose(3, 2, 0, 1))


def _conv_transpose(kernel) -> "torch.Tensor":
    """Upsample "subpixel2x2"'s flax kernel [2, 2, in, 4 * out] -> ConvTranspose2d(k=4, s=2, p=1)'s weight
    [in, out, 4, 4]: transposed-conv tap k is tap t = 1 - k // 2 of sub-position a = k % 2 (ganjax.models.Upsample)."""
    kernel = np.asarray(kernel)
    fan_in, fan_out = kernel.shape[2], kernel.shape[3] // 4
    kernel = kernel.reshape(2, 2, fan_in, 2, 2, fan_out)  # [ty, tx, in, ay, ax, out]
    taps, positions = 1 - np.arange(4) // 2, np.arange(4) % 2
    weight = kernel[taps[:, None], taps[None, :], :, positions[:, None], positions[None, :]]  # [ky, kx, in, out]
    return _tensor(weight.transpose(2, 3, 0, 1))


def _load_batch_norm(layer, params, stats):
    layer.weight.data, layer.bias.data = _tensor(params["scale"]), _tensor(params["bias"])
    layer.running_mean.data, layer.running_var.data = _tensor(stats["mean"]), _tensor(stats["var"])


@pytest.mark.parametrize("upsample,head", [OPTIONS[0], OPTIONS[-1]])
@pytest.mark.parametrize("size,channels,num_classes", SHAPES)
def test_torch_reference_computes_ganjax_functions(size, channels, num_classes, upsample, head):
    """With ganjax's weights (reordered where the layouts differ) the PyTorch twins give ganjax's outputs."""
    (generator, generator_variables, torch_generator), (discriminator, discriminator_variables,
                                                        torch_discriminator) = _models(
        size, channels, num_classes, upsample, head)
    params, stats = generator_variables["params"], generator_variables["batch_stats"]
    torch_generator.embedding.weight.data = _tensor(params["Embed_0"]["embedding"])
    base, top = torch_generator.base, torch_generator.top_width
    dense = np.asarray(params["Dense_0"]["kernel"])  # output units [H, W, C] in flax, [C, H, W] in torch
    torch_generator.dense.weight.data = _tensor(dense.reshape(-1, base, base, top).transpose(3, 1, 2, 0).reshape(
        -1, dense.shape[0]))
    _load_batch_norm(torch_generator.dense_norm, params["BatchNorm_0"], stats["BatchNorm_0"])
    convs = [m for m in torch_generator.blocks if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    norms = [m for m in torch_generator.blocks if isinstance(m, torch.nn.BatchNorm2d)]
    for level, (conv, norm) in enumerate(zip(convs, norms)):
        kernel = params[f"Upsample_{level}"]["Conv_0"]["kernel"]
        conv.weight.data = _conv_transpose(kernel) if upsample == "subpixel2x2" else _conv(kernel, sub_pixel_out=True)
        _load_batch_norm(norm, params[f"BatchNorm_{level + 1}"], stats[f"BatchNorm_{level + 1}"])
    torch_generator.to_image.weight.data = _conv(params["Conv_0"]["kernel"])
    torch_generator.to_image.bias.data = _tensor(params["Conv_0"]["bias"])

    params = discriminator_variables["params"]
    convs = [m for m in torch_discriminator.encoder if isinstance(m, torch.nn.Conv2d)]
    downsamples = sorted(name for name in params if name.startswith("Downsample_"))
    assert len(convs) == len(downsamples) + (head == "conv3x3")
    for conv, name in zip(convs, downsamples):
        conv.weight.data = _conv(params[name]["Conv_0"]["kernel"], sub_pixel_in=True)
        conv.bias.data = _tensor(params[name]["Conv_0"]["bias"])
    if head == "conv3x3":
        convs[-1].weight.data, convs[-1].bias.data = _conv(params["Conv_0"]["kernel"]), _tensor(params["Conv_0"]["bias"])
    torch_discriminator.linear.weight.data = _tensor(np.asarray(params["Dense_0"]["kernel"]).T)
    torch_discriminator.linear.bias.data = _tensor(params["Dense_0"]["bias"])
    torch_discriminator.embedding.weight.data = _tensor(params["Embed_0"]["embedding"])

    rng = np.random.default_rng(0)
    noise = rng.normal(size=(4, torch_generator.dense.in_features - torch_generator.embedding.embedding_dim))
    noise = noise.astype(np.float32)
    labels = rng.integers(0, num_classes, 4).astype(np.int32)
    images = np.asarray(generator.apply(generator_variables, noise, labels, train=False))
    with torch.no_grad():
        torch_images = torch_generator.eval()(_tensor(noise), torch.from_numpy(labels).long())
    # float32 through five layers and BatchNorm: the two libraries' convolution kernels sum in other
    # orders (3e-5 seen at 28x28 on an Intel Xeon); a wrong weight mapping is off by tenths.
    np.testing.assert_allclose(torch_images.numpy().transpose(0, 2, 3, 1), images, rtol=1e-4, atol=1e-4)

    logits = np.asarray(discriminator.apply(discriminator_variables, images, labels))
    with torch.no_grad():
        torch_logits = torch_discriminator(_tensor(images.transpose(0, 3, 1, 2)), torch.from_numpy(labels).long())
    np.testing.assert_allclose(torch_logits.numpy(), logits, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_train_step_benchmark_smoke_run_prints_ratios():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # Keeps torch's OpenMP threads from spinning on a loaded machine (see the script's docstring).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "train_step.py"), "--smoke",
         "--config", os.path.join(REPO, "configs", "digits.py")],
        check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"ratio_same_arch=\d+\.\d+ ratio_convtranspose=\d+\.\d+", lines[-1]), lines[-3:]
    assert "ratios below at batch 8" in lines[-2]


@pytest.mark.parametrize("share,forwards", [(False, 2), (True, 1)])
def test_torch_gan_step_shares_the_generator_forward_when_asked(share, forwards):
    (_, _, generator), (_, _, discriminator) = _models(28, 1, 10)
    calls = []
    generator.register_forward_hook(lambda *args: calls.append(1))
    step = torch_reference.GANStep(generator, discriminator, 128, 2e-4, 0.5, 0.999, 0.999,
                                   share_generator_forward=share)
    before = [p.detach().clone() for p in generator.parameters()]
    metrics = step(torch.zeros(4, 1, 28, 28), torch.arange(4))
    assert len(calls) == forwards
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, generator.parameters()))
