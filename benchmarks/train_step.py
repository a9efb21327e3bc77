"""Times ganjax's GAN and classifier train steps against PyTorch eager, interleaved in one run.

    python benchmarks/train_step.py [--config configs/fashion_mnist.py] [--batch-sizes 64,256]
        [--repeats 7] [--steps 20] [--channels-last auto|on|off] [--torch-threads N] [--smoke]
        [--set KEY=VALUE ...]

--set overrides config keys after loading (repeatable), e.g. `--set model.upsample=subpixel2x2
--set model.discriminator_head=none` times ganjax's lower-FLOP options against their PyTorch twin.

Per batch size it times, round-robin (A, B, C, D, E, A, B, ...) so all see the same load:
  A  ganjax's GAN step: the jitted, donated, sharded per-step function;
  A2 (when the config's train.steps_per_call K > 1) the same steps K per call under
     `lax.scan` (ganjax.steps.make_multi_step), which is what the training loop then runs;
  B  a PyTorch eager twin of the same architecture (benchmarks/torch_reference.py);
  C  PyTorch's usual ConvTranspose conditional DCGAN (ngf = ndf = model.discriminator_width);
  D  ganjax's classifier step (SmallCNN of width classifier.width, BatchNorm, avg_pool);
  E  its PyTorch eager twin.
Every GAN step is one hinge-loss D update and one G update (Adam) on the same labels with
fresh noise, plus the generator EMA. It prints the first-step time (compile for ganjax),
ms/step (median and min-max over repeats of --steps steps, after warm-up) and images/s
(real images through D, or classifier images, per second); the FLOP/s the ganjax GAN step
achieves (XLA's cost analysis) against the measured f32 matmul ceiling; and last
`ratio_same_arch=R1 ratio_convtranspose=R2`: ganjax images/s (A2 if timed, else A) over
PyTorch images/s at batch 64 (the first batch size if 64 is not timed). torch is a benchmark-only dependency.

Run it on a quiet machine. Under load (more runnable threads than cores) torch's OpenMP
threads spin at every barrier while their partner is descheduled, which made a PyTorch step
about 10x slower here; `OMP_WAIT_POLICY=PASSIVE` (set before the run) avoids that.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import torch

from ganjax import data, parallel
from ganjax.config import apply_overrides, load_config
from ganjax.models import SmallCNN
from ganjax.state import create_classifier_state, create_gan_state
from ganjax.steps import classifier_train_step, make_gan_train_step

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference

RATIO_BATCH = 64
TARGET_SAME_ARCH = 1.5  # issue 4: ganjax >= 1.5x PyTorch eager on the same architecture
WARMUP_STEPS = 3


@dataclass
class Timed:
    """A train step to time: `run(n)` runs n steps and waits for the results."""

    name: str
    images_per_step: int
    run: Callable[[int], None]
    first_step_s: float
    per_step_s: list[float] = field(default_factory=list)

    def time(self, steps: int) -> None:
        start = time.perf_counter()
        done = self.run(steps)  # None: all `steps`; a K-steps-per-call loop rounds to whole calls
        self.per_step_s.append((time.perf_counter() - start) / (steps if done is None else done))

    @property
    def images_per_s(self) -> float:
        return self.images_per_step / statistics.median(self.per_step_s)

    def row(self) -> str:
        ms = [1000 * s for s in self.per_step_s]
        return (f"  {self.name:<44s} {self.first_step_s:8.2f}  {statistics.median(ms):8.1f} "
                f"[{min(ms):.1f}-{max(ms):.1f}]  {self.images_per_s:9.0f}")


def check_reference_matches(config) -> None:
    """The PyTorch reference implements ganjax's default GAN and the options below; refuse configs it would not match."""
    implemented = {"gan.loss": ("hinge",), "gan.n_critic": (1,), "gan.r1_gamma": (0.0,), "gan.gp_weight": (0.0,),
                   "gan.diffaugment": ("",),
                   "model.upsample": ("subpixel", "subpixel2x2"), "model.downsample": ("subpixel",),
                   "model.discriminator_head": ("conv3x3", "none"), "model.generator_norm": ("batch",)}
    for name, values in implemented.items():
        section, key = name.split(".")
        if config[section][key] not in values:
            raise ValueError(f"Config key {name!r} is {config[section][key]!r}; the PyTorch reference in "
                             f"benchmarks/torch_reference.py implements {' or '.join(map(repr, values))} only.")


def cost_flops(compiled) -> float:
    """Total FLOPs XLA's cost analysis counts for a compiled step (a dict, or a list of per-program dicts)."""
    analysis = compiled.cost_analysis()
    analyses = analysis if isinstance(analysis, (list, tuple)) else [analysis]
    return float(sum(entry.get("flops", 0.0) for entry in analyses if entry))


def _timed_jax_step(name: str, train_step, state, batch, images_per_step: int, seed: int) -> tuple[Timed, dict]:
    """Runs the first (compiling) step and returns Timed(name, ...) plus the holder of the
    donated state, so that later calls continue from it."""
    holder = {"state": state}
    step_key = jax.random.key(seed)
    counter = iter(range(10**9))

    def run(steps: int) -> None:
        metrics = None
        for _ in range(steps):
            holder["state"], metrics = train_step(holder["state"], batch, jax.random.fold_in(step_key, next(counter)))
        jax.block_until_ready(metrics)

    start = time.perf_counter()
    run(1)
    return Timed(name, images_per_step, run, time.perf_counter() - start), holder


def _random_batch(rng, leading: tuple[int, ...], image_shape, num_classes: int) -> dict[str, np.ndarray]:
    return {
        "images": rng.uniform(-1, 1, (*leading, *image_shape)).astype(np.float32),
        "labels": rng.integers(0, num_classes, leading).astype(np.int32),
    }


def _gan_inputs(config, batch_size: int, image_shape, num_classes: int, leading: tuple[int, ...]):
    """(mesh, replicated fresh GANState, random batch [*leading, batch_size, ...] sharded on its
    batch axis) for a ganjax GAN step at `batch_size`."""
    config.train.batch_size = batch_size
    mesh = parallel.make_mesh()
    parallel.check_batch_size(batch_size, mesh)
    state = parallel.replicate(create_gan_state(config, num_classes, image_shape, jax.random.key(0)), mesh)
    host_batch = _random_batch(np.random.default_rng(0), (*leading, batch_size), image_shape, num_classes)
    return mesh, state, parallel.shard_batch(host_batch, mesh, batch_axis=len(leading))


def ganjax_gan(config, batch_size: int, image_shape, num_classes: int) -> tuple[Timed, Callable[[], float]]:
    """Timed A, and a function returning its FLOPs per step from XLA's cost analysis."""
    mesh, state, batch = _gan_inputs(config, batch_size, image_shape, num_classes, (config.gan.n_critic,))
    train_step = parallel.jit_step(make_gan_train_step(config), mesh, batch_axis=1)
    timed, holder = _timed_jax_step("A ganjax GAN step (jit)", train_step, state, batch,
                                    batch_size * config.gan.n_critic, seed=1)
    return timed, lambda: cost_flops(train_step.lower(holder["state"], batch, jax.random.key(1)).compile())


def ganjax_gan_multi(config, batch_size: int, image_shape, num_classes: int) -> Timed:
    """Timed A2: train.steps_per_call = K steps per jitted call, as the training loop runs them."""
    from ganjax.steps import make_multi_step

    k = config.train.steps_per_call
    mesh, state, batch = _gan_inputs(config, batch_size, image_shape, num_classes, (k, config.gan.n_critic))
    multi_step = parallel.jit_step(make_multi_step(make_gan_train_step(config)), mesh, batch_axis=2)
    holder = {"state": state}
    step_key, counter = jax.random.key(1), iter(range(10**9))

    def run(steps: int) -> int:
        calls = max(1, round(steps / k))
        metrics = None
        for _ in range(calls):
            keys = jax.random.split(jax.random.fold_in(step_key, next(counter)), k)
            holder["state"], metrics = multi_step(holder["state"], batch, keys)
        jax.block_until_ready(metrics)
        return calls * k

    start = time.perf_counter()
    run(k)  # one call: the compile
    return Timed(f"A2 ganjax GAN, {k} steps per call (scan)", batch_size * config.gan.n_critic, run,
                 time.perf_counter() - start)


def ganjax_classifier(config, batch_size: int, image_shape, num_classes: int) -> Timed:
    mesh = parallel.make_mesh()
    module = SmallCNN(num_classes=num_classes, width=config.classifier.width)
    state = create_classifier_state(module, config.classifier.learning_rate, jax.random.key(0), image_shape,
                                    total_steps=config.classifier.steps)
    train_step = parallel.jit_step(classifier_train_step, mesh, batch_axis=0)
    batch = parallel.shard_batch(_random_batch(np.random.default_rng(0), (batch_size,), image_shape, num_classes), mesh)
    timed, _ = _timed_jax_step(f"D ganjax SmallCNN w{config.classifier.width} step (jit)", train_step,
                               parallel.replicate(state, mesh), batch, batch_size, seed=2)
    return timed


def torch_timed(name: str, make_step: Callable[[bool], Callable], batch_size: int, image_shape, num_classes: int,
                channels_last: str, probe_steps: int) -> Timed:
    """A PyTorch eager step; with channels_last "auto", the faster memory format over `probe_steps` steps."""
    height, width, channels = image_shape
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, channels, height, width, generator=generator) * 2 - 1
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
    choices = {"auto": (False, True), "on": (True,), "off": (False,)}[channels_last]
    candidates = []
    for use_channels_last in choices:
        torch.manual_seed(0)
        step = make_step(use_channels_last)
        step_images = step.prepare(images)
        start = time.perf_counter()
        step(step_images, labels)
        first_step_s = time.perf_counter() - start

        def run(steps: int, step=step, step_images=step_images) -> None:
            for _ in range(steps):
                step(step_images, labels)

        seconds = float("nan")
        if len(choices) > 1:
            run(WARMUP_STEPS)
            start = time.perf_counter()
            run(probe_steps)
            seconds = time.perf_counter() - start
        candidates.append((seconds, use_channels_last, run, first_step_s))
    seconds, use_channels_last, run, first_step_s = min(candidates, key=lambda c: c[0])
    layout = "channels_last" if use_channels_last else "NCHW"
    probe = ""
    if len(candidates) > 1:
        probe = " (faster: " + " vs ".join(
            f"{'channels_last' if c[1] else 'NCHW'} {1000 * c[0] / probe_steps:.0f}ms" for c in candidates) + ")"
    print(f"  {name}: memory format {layout}{probe}")
    return Timed(f"{name} ({layout})", batch_size, run, first_step_s)


def torch_gan_step(config, generator_module, discriminator_module) -> Callable[[bool], Callable]:
    def make(channels_last: bool):
        return torch_reference.GANStep(
            generator_module(), discriminator_module(), config.model.noise_dim, config.optim.generator_lr,
            config.optim.b1, config.optim.b2, config.gan.ema_decay, channels_last=channels_last,
            share_generator_forward=config.gan.share_generator_forward,
        )

    return make


def torch_step_flops(make_step: Callable[[bool], Callable], batch_size: int, image_shape, num_classes: int) -> float:
    """Convolution and matmul FLOPs of one PyTorch step (forward and backward), by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    height, width, channels = image_shape
    step = make_step(False)
    images = torch.zeros(batch_size, channels, height, width)
    labels = torch.zeros(batch_size, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        step(images, labels)
    return float(counter.get_total_flops())


def matmul_ceiling(size: int = 2048, repeats: int = 5) -> float:
    """f32 FLOP/s of the best of `repeats` jitted size x size matmuls."""
    matmul = jax.jit(jnp.matmul)
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/fashion_mnist.py")
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed repetition")
    parser.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                        help="PyTorch memory format; auto keeps the faster of NCHW and channels_last")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    parser.add_argument("--smoke", action="store_true", help="batch 8, 1 repeat of 2 steps: checks the script runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a config key after loading, e.g. --set model.upsample=subpixel2x2 (repeatable)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_sizes, args.repeats, args.steps = "8", 1, 2
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.repeats < 1 or args.steps < 1 or min(batch_sizes) < 1:
        raise ValueError(f"--repeats {args.repeats}, --steps {args.steps} and --batch-sizes {args.batch_sizes} "
                         "must be positive.")
    config = apply_overrides(load_config(args.config), args.overrides)
    check_reference_matches(config)
    torch.set_num_threads(args.torch_threads)
    train_set, _ = data.load_train_and_test(config.data)
    image_shape, num_classes = train_set.image_shape, train_set.num_classes
    model = config.model
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} "
          f"(devices {jax.devices()}), torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')!r}, load average {os.getloadavg()[0]:.1f}")
    print(f"config: {args.config} (overrides: {' '.join(args.overrides) or 'none'}): images {image_shape}, "
          f"{num_classes} classes, G width {model.generator_width}, upsample {model.upsample}, "
          f"D width {model.discriminator_width}, D head {model.discriminator_head}, noise {model.noise_dim}, "
          f"loss {config.gan.loss}; repeats {args.repeats} x {args.steps} steps after {WARMUP_STEPS} warm-up steps")
    height = image_shape[0]
    same_generator = lambda: torch_reference.Generator(
        num_classes, height, image_shape[2], model.generator_width, model.embed_dim, model.noise_dim, model.upsample)
    same_discriminator = lambda: torch_reference.Discriminator(
        num_classes, height, image_shape[2], model.discriminator_width, model.discriminator_head)
    classic_generator = lambda: torch_reference.ClassicGenerator(
        num_classes, height, image_shape[2], model.discriminator_width, model.embed_dim, model.noise_dim)
    classic_discriminator = lambda: torch_reference.ClassicDiscriminator(
        num_classes, height, image_shape[2], model.discriminator_width)
    make_same = torch_gan_step(config, same_generator, same_discriminator)
    make_classic = torch_gan_step(config, classic_generator, classic_discriminator)
    make_classifier = lambda channels_last: torch_reference.ClassifierStep(
        torch_reference.SmallCNN(num_classes, height, image_shape[2], config.classifier.width),
        config.classifier.learning_rate, channels_last=channels_last)

    results, flops = {}, {}
    for batch_size in batch_sizes:
        print(f"batch {batch_size}: setting up (first steps, memory-format probes)")
        gan, gan_flops = ganjax_gan(config, batch_size, image_shape, num_classes)
        probe = max(2, args.steps // 4)
        multi = [ganjax_gan_multi(config, batch_size, image_shape, num_classes)] if config.train.steps_per_call > 1 else []
        timed = [
            gan,
            torch_timed("B torch same arch", make_same, batch_size, image_shape, num_classes, args.channels_last, probe),
            torch_timed("C torch ConvTranspose DCGAN", make_classic, batch_size, image_shape, num_classes,
                        args.channels_last, probe),
            ganjax_classifier(config, batch_size, image_shape, num_classes),
            torch_timed(f"E torch SmallCNN w{config.classifier.width}", make_classifier, batch_size, image_shape,
                        num_classes, args.channels_last, probe),
        ] + multi
        for entry in timed:
            entry.run(WARMUP_STEPS)
        for _ in range(args.repeats):
            for entry in timed:
                entry.time(args.steps)
        results[batch_size] = timed
        flops[batch_size] = {
            "ganjax": gan_flops(),
            "same": torch_step_flops(make_same, batch_size, image_shape, num_classes),
            "classic": torch_step_flops(make_classic, batch_size, image_shape, num_classes),
        }
        print(f"batch {batch_size}    {'':<36s} first_step_s  ms/step median [min-max]  images/s")
        for entry in timed:
            print(entry.row())

    ceiling = matmul_ceiling(repeats=2 if args.smoke else 5)
    print(f"f32 matmul ceiling (jax, 2048x2048, best of {2 if args.smoke else 5}): {ceiling / 1e9:.1f} GFLOP/s")
    for batch_size, timed in results.items():
        counts = flops[batch_size]
        achieved = counts["ganjax"] / statistics.median(timed[0].per_step_s)
        print(f"batch {batch_size}: ganjax GAN step {counts['ganjax'] / 1e9:.2f} GFLOP/step (XLA cost analysis), "
              f"{achieved / 1e9:.1f} GFLOP/s = {achieved / ceiling:.3f} of the matmul ceiling; torch conv+matmul "
              f"FLOPs/step: same arch {counts['same'] / 1e9:.2f} G, ConvTranspose DCGAN {counts['classic'] / 1e9:.2f} G")
        same_step_s = statistics.median(timed[1].per_step_s)
        needed = counts["ganjax"] / (same_step_s / TARGET_SAME_ARCH)
        print(f"batch {batch_size}: torch same arch runs {counts['same'] / same_step_s / 1e9:.1f} GFLOP/s "
              f"({counts['same'] / same_step_s / ceiling:.3f} of the ceiling); {TARGET_SAME_ARCH}x its speed at "
              f"ganjax's FLOPs needs {needed / 1e9:.1f} GFLOP/s = {needed / ceiling:.3f} of the ceiling")
    ratio_batch = RATIO_BATCH if RATIO_BATCH in results else batch_sizes[0]
    loop = 5 if len(results[ratio_batch]) > 5 else 0  # A2 when timed: the loop training runs
    ganjax_rate = results[ratio_batch][loop].images_per_s
    same_rate, classic_rate = (entry.images_per_s for entry in results[ratio_batch][1:3])
    for batch_size, timed in results.items():
        rates = [entry.images_per_s for entry in timed]
        print(f"batch {batch_size}: ganjax/torch images/s: same arch {rates[0] / rates[1]:.2f}, ConvTranspose DCGAN "
              f"{rates[0] / rates[2]:.2f}, classifier {rates[3] / rates[4]:.2f}")
        if len(rates) > 5:
            print(f"batch {batch_size}: with {config.train.steps_per_call} GAN steps per call: same arch "
                  f"{rates[5] / rates[1]:.2f}, ConvTranspose DCGAN {rates[5] / rates[2]:.2f}")
    print(f"ratios below at batch {ratio_batch} (ganjax images/s, {results[ratio_batch][loop].name.split(' ')[0]}, "
          "/ PyTorch eager images/s)")
    print(f"ratio_same_arch={ganjax_rate / same_rate:.2f} ratio_convtranspose={ganjax_rate / classic_rate:.2f}")


if __name__ == "__main__":
    main()
