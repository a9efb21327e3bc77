"""Sample from a trained generator using only its checkpoint (no dataset needed).

    python -m ganjax.sample --workdir DIR [--step N] [--num 64] [--label K] [--seed S] \
        [--bn-statistics running|standing] --out grid.png [--npz samples.npz]

BatchNorm statistics for sampling (`bn_statistics`): "running" uses the running averages
that training kept, which belong to the raw generator's weights even when sampling with
their EMA; "standing" replaces them by standing statistics of the weights that sample
(`standing_batch_stats`, as PyTorch-StudioGAN's `standing_statistics`). Standing is the default
(DEFAULT_BN_STATISTICS): on the main job's checkpoint it gave the lower FID against training images
(BENCHMARKS.md, "BatchNorm statistics for sampling").
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ganjax import checkpoint, visualize
from ganjax.cli import enable_compilation_cache
from ganjax.config import config_from_dict
from ganjax.state import GANState, ModelState, create_gan_state

BN_STATISTICS = ("running", "standing")
# What sampling uses unless told otherwise (chosen on a training-split FID: BENCHMARKS.md, "BatchNorm
# statistics for sampling").
DEFAULT_BN_STATISTICS = "standing"
STANDING_NUM_BATCHES = 100  # batches of the training batch size: 6,400 images at batch 64
# Standing statistics draw their noise from their own stream of `standing_seed`, so that
# sampling with `jax.random.key(seed)` never reuses their key when the two seeds are equal.
_STANDING_SEED_STREAM = 17
_STANDING_COLLECTION = "standing_statistics"


@functools.partial(jax.jit, static_argnums=0)
def _generate(apply_fn, variables, noise, labels):
    return apply_fn(variables, noise, labels, train=False)


def generate_images(state: GANState, noise: jax.Array, labels: jax.Array, use_ema: bool = True) -> jax.Array:
    """Inference-mode images [B, S, S, C] in [-1, 1] from noise [B, Z] and labels [B]."""
    params = state.generator_ema if use_ema else state.generator.params
    variables = {"params": params, "batch_stats": state.generator.batch_stats}
    return _generate(state.generator.apply_fn, variables, noise, labels)


def _sow_batch_norm_input_statistics(next_fun, args, kwargs, context):
    """Flax method interceptor: each BatchNorm call also sows the mean and biased variance of
    its input over every axis but the feature axis, the statistics a training-mode call
    normalises with and feeds into its running averages."""
    module = context.module
    if isinstance(module, nn.BatchNorm) and context.method_name == "__call__":
        inputs = jnp.asarray(args[0], jnp.float32)
        feature_axes = {int(axis) % inputs.ndim for axis in np.atleast_1d(module.axis)}
        reduction_axes = tuple(axis for axis in range(inputs.ndim) if axis not in feature_axes)
        module.sow(_STANDING_COLLECTION, "mean", jnp.mean(inputs, reduction_axes))
        module.sow(_STANDING_COLLECTION, "var", jnp.var(inputs, reduction_axes))
    return next_fun(*args, **kwargs)


@functools.partial(jax.jit, static_argnames=("apply_fn", "num_batches", "batch_size", "num_classes", "noise_dim"))
def _standing_batch_stats(apply_fn, params, batch_stats, key, num_batches, batch_size, num_classes, noise_dim):
    def batch_statistics(key):
        noise_key, label_key = jax.random.split(key)
        noise = jax.random.normal(noise_key, (batch_size, noise_dim), jnp.float32)
        labels = jax.random.randint(label_key, (batch_size,), 0, num_classes, jnp.int32)
        with nn.intercept_methods(_sow_batch_norm_input_statistics):
            _, sown = apply_fn(
                {"params": params, "batch_stats": batch_stats}, noise, labels, train=True,
                mutable=["batch_stats", _STANDING_COLLECTION],
            )
        statistics = jax.tree.map(lambda values: values[0], sown.get(_STANDING_COLLECTION, {}),
                                  is_leaf=lambda node: isinstance(node, tuple))
        if jax.tree.structure(statistics) != jax.tree.structure(batch_stats):
            raise ValueError(
                "Standing statistics need each BatchNorm layer of the generator called once per "
                f"forward pass; got statistics {jax.tree.structure(statistics)} for running "
                f"statistics {jax.tree.structure(batch_stats)}."
            )
        return statistics

    def accumulate(total, key):
        return jax.tree.map(jnp.add, total, batch_statistics(key)), None

    zeros = jax.tree.map(jnp.zeros_like, batch_stats)
    total, _ = jax.lax.scan(accumulate, zeros, jax.random.split(key, num_batches))
    return jax.tree.map(lambda value: value / num_batches, total)


def standing_batch_stats(
    generator_state: ModelState,
    params: Any,
    key: jax.Array,
    num_batches: int,
    batch_size: int,
    num_classes: int,
    noise_dim: int,
) -> Any:
    """Standing BatchNorm statistics of the generator with weights `params` (as BigGAN-PyTorch's
    `accumulate_standing_stats` and PyTorch-StudioGAN's `standing_statistics`).

    Runs the generator in training mode on `num_batches` fresh batches of `batch_size` noise
    vectors [batch_size, noise_dim] ~ N(0, I) and labels uniform in [0, num_classes), and
    returns a tree like `generator_state.batch_stats` whose "mean" and "var" are the exact
    averages over the batches of each BatchNorm layer's per-batch mean and biased variance
    (Flax's convention for the running variance; each batch's statistics are those its
    training-mode forward pass normalises with). Batch i takes its noise and labels from the two
    halves of `jax.random.split(jax.random.split(key, num_batches)[i])`. The running statistics
    in `generator_state` give only the tree's structure; they do not change the result.
    Unlike StudioGAN, whose batch sizes are random in [1, max], the batch size is fixed (static
    shapes under jit); the training batch size matches the statistics the weights learnt with.
    """
    if num_batches <= 0 or batch_size <= 0:
        raise ValueError(f"Standing statistics need positive num_batches and batch_size, got {num_batches} and {batch_size}.")
    if not jax.tree.leaves(generator_state.batch_stats):
        return generator_state.batch_stats  # no BatchNorm ("group" or "none" norm): nothing to stand
    return _standing_batch_stats(
        generator_state.apply_fn, params, generator_state.batch_stats, key,
        num_batches=num_batches, batch_size=batch_size, num_classes=num_classes, noise_dim=noise_dim,
    )


def standing_key(standing_seed: int) -> jax.Array:
    """The key of `standing_batch_stats` for `standing_seed`: its own stream of the seed."""
    return jax.random.key(np.random.SeedSequence([int(standing_seed), _STANDING_SEED_STREAM]).generate_state(1)[0])


def check_bn_statistics(bn_statistics: str) -> str:
    """`bn_statistics` if it is one of BN_STATISTICS, else a ValueError naming them."""
    if bn_statistics not in BN_STATISTICS:
        raise ValueError(f"bn_statistics {bn_statistics!r} is unknown; choose one of {BN_STATISTICS}.")
    return bn_statistics


def class_grid_labels(num_classes: int, per_class: int) -> np.ndarray:
    """[num_classes * per_class] labels, one row per class in a grid of `per_class` columns."""
    return np.repeat(np.arange(num_classes, dtype=np.int32), per_class)


def sample_grid(num_classes: int, per_class: int, conditional: bool) -> tuple[np.ndarray, int]:
    """(labels [N], rows) of the training loop's grid of N = num_classes * per_class samples: one row
    per class (`class_grid_labels`), or for an unconditional generator, which ignores its labels
    (zeros), a plain near-square grid (`visualize.square_grid_rows`)."""
    if conditional:
        return class_grid_labels(num_classes, per_class), num_classes
    count = num_classes * per_class
    return np.zeros((count,), np.int32), visualize.square_grid_rows(count)


@dataclasses.dataclass
class TrainedGenerator:
    """A generator restored from a checkpoint. `sample(key, labels)` gives images.

    state.generator.batch_stats are the BatchNorm statistics sampling uses: the checkpoint's
    running statistics (bn_statistics "running") or standing statistics of the sampling
    weights ("standing"; `standing` then records how they were made). Standing statistics are
    computed on the first read of `state` (sampling, inversion, a study's generator source), so
    that loading a generator to read its step or config costs no forward passes. Neither network's
    optimizer state is restored (`load_generator`): their opt_state is None.
    """

    checkpoint_state: GANState
    config: ml_collections.ConfigDict
    num_classes: int
    class_names: tuple[str, ...]
    step: int
    use_ema: bool = True
    bn_statistics: str = DEFAULT_BN_STATISTICS
    standing: dict | None = None
    _state: GANState | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def conditional(self) -> bool:
        """Whether the generator is class-conditional (model.conditional); an unconditional one ignores labels."""
        return self.config.model.conditional

    @property
    def state(self) -> GANState:
        """The GANState that samples: the checkpoint's, with standing statistics if bn_statistics
        is "standing" (computed once, on first read)."""
        if self._state is None:
            state = self.checkpoint_state
            if self.standing is not None:
                batch_stats = standing_batch_stats(
                    state.generator, state.generator_ema if self.use_ema else state.generator.params,
                    standing_key(self.standing["seed"]), self.standing["num_batches"], self.standing["batch_size"],
                    self.num_classes, self.config.model.noise_dim,
                )
                state = state.replace(generator=state.generator.replace(batch_stats=batch_stats))
            self._state = state
        return self._state

    def sample(self, key: jax.Array, labels: Any) -> np.ndarray:
        """labels: [N] ints in [0, num_classes) -> images [N, S, S, C] float32 in [-1, 1]."""
        labels = np.asarray(labels, np.int32).reshape(-1)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"Labels must be in [0, {self.num_classes - 1}] for this generator, got "
                f"min {labels.min()} max {labels.max()}."
            )
        noise = jax.random.normal(key, (labels.size, self.config.model.noise_dim), jnp.float32)
        return np.asarray(generate_images(self.state, noise, jnp.asarray(labels), self.use_ema))

    def sample_many(self, key: jax.Array, labels: Any, batch_size: int = 500) -> np.ndarray:
        """`sample` for many labels, in fixed-size chunks (the last padded) so it compiles once;
        chunk i uses fold_in(key, i). labels: [N] -> images [N, S, S, C] float32 in [-1, 1]."""
        labels = np.asarray(labels, np.int32).reshape(-1)
        chunks = []
        for index, start in enumerate(range(0, len(labels), batch_size)):
            chunk = labels[start : start + batch_size]
            images = self.sample(jax.random.fold_in(key, index), np.resize(chunk, batch_size))
            chunks.append(images[: len(chunk)])
        return np.concatenate(chunks)


def _sampling_template(meta: dict) -> GANState:
    """The abstract GANState of a checkpoint's meta without the optimizer states (None): the part of
    the checkpoint that `load_generator` restores."""
    config = config_from_dict(meta["config"])
    state = jax.eval_shape(
        lambda key: create_gan_state(config, meta["num_classes"], tuple(meta["image_shape"]), key), jax.random.key(0)
    )
    return state.replace(
        generator=state.generator.replace(opt_state=None), discriminator=state.discriminator.replace(opt_state=None)
    )


def load_generator(
    workdir: str,
    step: int | None = None,
    use_ema: bool = True,
    bn_statistics: str = DEFAULT_BN_STATISTICS,
    *,
    standing_num_batches: int = STANDING_NUM_BATCHES,
    standing_batch_size: int | None = None,
    standing_seed: int = 0,
) -> TrainedGenerator:
    """Restores the generator of checkpoint `step` (default: the newest readable one: a damaged newer
    one is passed over with a warning, `checkpoint.restore`) in `workdir`.

    The networks are rebuilt from the config saved with the checkpoint. Only what sampling and the
    generator's users read is restored: G's params, EMA and BatchNorm statistics, D's params (for
    inversion and filtering); not the optimizer states (orbax's partial restore), about half the
    bytes of a GAN trained with Adam (55% for configs/fashion_mnist.py). bn_statistics: one of
    BN_STATISTICS (module docstring). "standing" computes `standing_batch_stats` of the
    sampling weights (EMA unless use_ema=False) over `standing_num_batches` batches of
    `standing_batch_size` (default: the training batch size) with `standing_key(standing_seed)`.
    """
    check_bn_statistics(bn_statistics)
    step, meta, state = checkpoint.restore(workdir, _sampling_template, step, partial=True)
    config = config_from_dict(meta["config"])
    use_ema = use_ema and config.gan.ema_decay > 0
    standing = None
    if bn_statistics == "standing":
        standing = {
            "num_batches": standing_num_batches,
            "batch_size": config.train.batch_size if standing_batch_size is None else standing_batch_size,
            "seed": standing_seed,
            "labels": "uniform",
        }
    return TrainedGenerator(
        checkpoint_state=state,
        config=config,
        num_classes=meta["num_classes"],
        class_names=tuple(meta["class_names"]),
        step=step,
        use_ema=use_ema,
        bn_statistics=bn_statistics,
        standing=standing,
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ganjax.sample", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="training directory holding checkpoints/")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest readable one)")
    parser.add_argument("--num", type=int, default=64, help="number of samples")
    parser.add_argument("--label", type=int, default=None, help="class to sample (default: cycle classes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="samples.png", help="PNG grid path")
    parser.add_argument("--npz", default=None,
                        help="also write x (float32 in [-1, 1]) and y (labels; -1 for an unconditional GAN) here")
    parser.add_argument("--no-ema", action="store_true", help="use raw generator weights, not the EMA")
    parser.add_argument("--bn-statistics", default=DEFAULT_BN_STATISTICS, choices=BN_STATISTICS,
                        help="BatchNorm statistics: the checkpoint's running averages, or standing statistics of "
                             f"the sampling weights ({STANDING_NUM_BATCHES} training-size batches; the default)")
    args = parser.parse_args(argv)
    if args.num <= 0:
        parser.error(f"--num must be positive, got {args.num}")
    return args


def sample_labels(generator: TrainedGenerator, num: int, label: int | None = None) -> np.ndarray:
    """[num] conditioning labels: every class in turn (label None), all `label`, or zeros for an
    unconditional generator (which has no class to choose: a `label` raises ValueError)."""
    if num <= 0:
        raise ValueError(f"The number of samples must be positive, got {num}.")
    if not generator.conditional:
        if label is not None:
            raise ValueError("The GAN is unconditional (model.conditional=False): it has no class to choose with "
                             "--label (label=); drop it.")
        return np.zeros((num,), np.int32)
    if label is None:
        return np.arange(num, dtype=np.int32) % generator.num_classes
    return np.full((num,), label, np.int32)


def write_samples(
    generator: TrainedGenerator, num: int, *, label: int | None = None, seed: int = 0, out: str | None = None,
    npz: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws `num` samples with `jax.random.key(seed)` (labels: `sample_labels`) and writes them.

    Returns (images [num, S, S, C] float32 in [-1, 1], labels [num] int32; -1 for an unconditional GAN),
    sorted by class when they cycle the classes. out: a PNG grid, one row per class when the samples
    cycle the classes and their number is a multiple of the class count, else a near-square grid.
    npz: x (the images) and y (the labels). Either may be None (not written).
    """
    labels = sample_labels(generator, num, label)
    images = generator.sample(jax.random.key(seed), labels)
    per_class_rows = generator.conditional and label is None and num % generator.num_classes == 0
    rows = generator.num_classes if per_class_rows else 1
    if label is None and rows > 1:
        order = np.argsort(labels, kind="stable")
        images, labels = images[order], labels[order]
    if out is not None:
        columns = int(np.ceil(np.sqrt(num))) if rows == 1 else num // rows
        grid_rows = int(np.ceil(num / columns)) if rows == 1 else rows
        padded = np.concatenate([images, -np.ones((grid_rows * columns - num, *images.shape[1:]), np.float32)])
        visualize.save_image_grid(padded, grid_rows, out)
    labels = labels if generator.conditional else np.full_like(labels, -1)  # -1: no class
    if npz is not None:
        os.makedirs(os.path.dirname(os.path.abspath(npz)), exist_ok=True)
        np.savez_compressed(npz, x=images.astype(np.float32), y=labels.astype(np.int32))
    return images, labels


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    enable_compilation_cache()
    try:
        generator = load_generator(args.workdir, args.step, use_ema=not args.no_ema, bn_statistics=args.bn_statistics)
        write_samples(generator, args.num, label=args.label, seed=args.seed, out=args.out, npz=args.npz)
    except (FileNotFoundError, ValueError) as error:
        print(f"ganjax.sample: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({args.num} samples, checkpoint step {generator.step})")
    if args.npz:
        print(f"wrote {args.npz}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
