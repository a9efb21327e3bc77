"""Cross-check against an independent implementation: torchattacks' PGD and APGD attack the PyTorch
twin of the same trained SmallCNN on the same digits, and ganjax's attacks must be at least as strong.

The twin is benchmarks/torch_reference.py's SmallCNN with the flax weights exported: conv kernels
HWIO -> OIHW, BatchNorm scale/bias/statistics as they are, and the dense layer's rows reordered
from flax's [H, W, C] flatten order to PyTorch's [C, H, W] and transposed. torchattacks takes
images in [0, 1], so the twin maps them to [-1, 1] first, and eps is the same number on both
sides (ganjax's eps is on the [0, 1] scale). torch is a test-only dependency; ganjax never imports it.
"""

import os
import sys

import jax
import numpy as np
import pytest
from conftest import REPO
from tiny_classifier import WIDTH, digits_classifier

from ganjax import attacks, data

torch = pytest.importorskip("torch")
try:
    import torchattacks
except ImportError as error:  # with torch present the cross-check must run, not skip
    raise ImportError(
        "tests/attacks/test_reference.py needs torchattacks beside torch: pip install --no-deps torchattacks "
        "(with its dependencies pip would replace the CPU torch by a CUDA build and pin requests 2.25)."
    ) from error
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import torch_reference  # noqa: E402

# Robust accuracy in the middle (about 55-60%), where a weaker attack would show. Over random
# starts PGD's robust accuracy varies by about a point either way, so PGD compares means over seeds.
EPS = 0.06
PGD_STEPS, APGD_STEPS = 20, 50
TOLERANCE = 0.01  # ganjax's robust accuracy may exceed torchattacks' by at most one point


def export_to_torch(params: dict, num_classes: int, image_size: int, channels: int, width: int):
    """torch_reference.SmallCNN in eval mode holding the flax SmallCNN variables {"params", "batch_stats"}."""
    model = torch_reference.SmallCNN(num_classes, image_size, channels, width)
    weights, statistics = jax.device_get(params["params"]), jax.device_get(params["batch_stats"])
    convs = [layer for layer in model.features if isinstance(layer, torch.nn.Conv2d)]
    norms = [layer for layer in model.features if isinstance(layer, torch.nn.BatchNorm2d)]

    def tensor(array):
        return torch.from_numpy(np.array(array, np.float32))

    with torch.no_grad():
        for level, (conv, norm) in enumerate(zip(convs, norms)):
            conv.weight.copy_(tensor(np.transpose(weights[f"Conv_{level}"]["kernel"], (3, 2, 0, 1))))
            norm.weight.copy_(tensor(weights[f"BatchNorm_{level}"]["scale"]))
            norm.bias.copy_(tensor(weights[f"BatchNorm_{level}"]["bias"]))
            norm.running_mean.copy_(tensor(statistics[f"BatchNorm_{level}"]["mean"]))
            norm.running_var.copy_(tensor(statistics[f"BatchNorm_{level}"]["var"]))
        side = image_size // 4
        kernel = np.asarray(weights["Dense_0"]["kernel"])  # [side * side * features, K], rows in (h, w, c) order
        kernel = kernel.reshape(side, side, -1, num_classes).transpose(3, 2, 0, 1).reshape(num_classes, -1)
        model.linear.weight.copy_(tensor(kernel))
        model.linear.bias.copy_(tensor(weights["Dense_0"]["bias"]))
    return model.eval()


class ZeroOneInput(torch.nn.Module):
    """The classifier on images in [0, 1], as torchattacks feeds them: x -> net(2x - 1)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images):
        return self.net(2 * images - 1)


@pytest.fixture(scope="module")
def twins():
    """(apply_fn, params, images, labels, torch model, torch images, torch labels) on all 360 digits test images."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    state, _, test_set = digits_classifier()
    apply_fn, params = attacks.classifier_apply_fn(state)
    images, labels = data.to_model_range(test_set.images), test_set.labels
    height, _, channels = test_set.image_shape
    model = ZeroOneInput(export_to_torch(params, test_set.num_classes, height, channels, WIDTH)).eval()
    torch_images = torch.from_numpy(np.ascontiguousarray(((images + 1) / 2).transpose(0, 3, 1, 2)))
    yield apply_fn, params, images, labels, model, torch_images, torch.from_numpy(labels.astype(np.int64))
    torch.set_num_threads(threads)


def _torch_accuracy(model, images, labels) -> float:
    with torch.no_grad():
        return float((model(images).argmax(dim=1) == labels).float().mean())


def test_the_twins_give_the_same_logits(twins):
    apply_fn, params, images, _, model, torch_images, _ = twins
    with torch.no_grad():
        torch_logits = model(torch_images).numpy()
    np.testing.assert_allclose(torch_logits, np.asarray(apply_fn(params, images)), atol=1e-4, rtol=0)


def _compare(twins, ganjax_attack, torch_attack, name, seeds):
    """Asserts ganjax's mean robust accuracy over `seeds` is at most torchattacks' + TOLERANCE."""
    apply_fn, params, images, labels, model, torch_images, torch_labels = twins
    ours, theirs = [], []
    for seed in seeds:
        adversarial = ganjax_attack(jax.random.key(seed))
        assert attacks.perturbation_size(adversarial, images, "linf").max() <= EPS + 1e-6
        ours.append(attacks.robust_accuracy(apply_fn, params, adversarial, labels))
        torch.manual_seed(seed)
        torch_adversarial = torch_attack(seed)(torch_images, torch_labels).detach()
        assert float((torch_adversarial - torch_images).abs().max()) <= EPS + 1e-6
        theirs.append(_torch_accuracy(model, torch_adversarial, torch_labels))
    clean = attacks.robust_accuracy(apply_fn, params, images, labels)
    message = (f"{name}, L-inf eps {EPS}, {len(labels)} digits (clean accuracy {clean:.3f}), seeds {list(seeds)}: "
               f"robust accuracy ganjax {np.mean(ours):.4f} {np.round(ours, 4).tolist()}, "
               f"torchattacks {np.mean(theirs):.4f} {np.round(theirs, 4).tolist()}")
    print(message)
    assert 0.2 < np.mean(theirs) < 0.9, "eps no longer puts robust accuracy mid-range: " + message
    assert np.mean(ours) <= np.mean(theirs) + TOLERANCE, message


def test_pgd_is_at_least_as_strong_as_torchattacks(twins):
    apply_fn, params, images, labels, model, _, _ = twins
    step_size = attacks.pgd_step_size(EPS, PGD_STEPS)
    _compare(
        twins,
        lambda key: attacks.pgd(apply_fn, params, images, labels, key, eps=EPS, steps=PGD_STEPS, step_size=step_size),
        lambda seed: torchattacks.PGD(model, eps=EPS, alpha=step_size, steps=PGD_STEPS, random_start=True),
        f"PGD ({PGD_STEPS} steps of {step_size:.4f}, random start)", seeds=range(3))


def test_apgd_ce_is_at_least_as_strong_as_torchattacks(twins):
    apply_fn, params, images, labels, model, _, _ = twins
    _compare(
        twins,
        lambda key: attacks.apgd(apply_fn, params, images, labels, key, eps=EPS, steps=APGD_STEPS),
        lambda seed: torchattacks.APGD(model, norm="Linf", eps=EPS, steps=APGD_STEPS, n_restarts=1, loss="ce",
                                       seed=seed),
        f"APGD-CE ({APGD_STEPS} steps)", seeds=range(1))


def test_apgd_ce_from_the_same_start_fools_the_same_images(twins, monkeypatch):
    """Both APGDs started from ganjax's start point (torchattacks draws its L-inf start direction with
    torch.rand, here replaced) make the same decisions: the same images end up fooled."""
    apply_fn, params, images, labels, model, torch_images, torch_labels = twins
    key = jax.random.key(0)
    # ganjax's run 1 draws its start direction t from split(fold_in(key, 1))[0]; torchattacks takes 2 rand - 1.
    start_key = jax.random.split(jax.random.fold_in(key, 1))[0]
    direction = np.asarray(jax.random.uniform(start_key, images.shape, minval=-1.0, maxval=1.0))
    uniform = torch.from_numpy(np.ascontiguousarray((direction.transpose(0, 3, 1, 2) + 1) / 2, np.float32))

    def rand(shape, *args, **kwargs):
        assert tuple(shape) == tuple(uniform.shape), shape
        return uniform.clone()

    monkeypatch.setattr(torch, "rand", rand)
    theirs = torchattacks.APGD(model, norm="Linf", eps=EPS, steps=APGD_STEPS, n_restarts=1, loss="ce", seed=0)
    torch_adversarial = theirs(torch_images, torch_labels).detach()
    with torch.no_grad():
        fooled_theirs = (model(torch_adversarial).argmax(dim=1) != torch_labels).numpy()
    ours = attacks.apgd(apply_fn, params, images, labels, key, eps=EPS, steps=APGD_STEPS)
    fooled_ours = attacks.predict_classes(apply_fn, params, ours) != labels
    message = (f"images fooled of {len(labels)}: ganjax {fooled_ours.sum()}, torchattacks {fooled_theirs.sum()}, "
               f"both {np.sum(fooled_ours & fooled_theirs)}")
    assert 0.2 < fooled_theirs.mean() < 0.8, message
    assert np.mean(fooled_ours == fooled_theirs) >= 0.99, message
