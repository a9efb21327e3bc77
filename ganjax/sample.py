"""Sample from a trained generator using only its checkpoint (no dataset needed).

    python -m ganjax.sample --workdir DIR [--step N] [--num 64] [--label K] [--seed S] \
        --out grid.png [--npz samples.npz]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ganjax import checkpoint, visualize
from ganjax.cli import enable_compilation_cache
from ganjax.config import config_from_dict
from ganjax.state import GANState, create_gan_state


@functools.partial(jax.jit, static_argnums=0)
def _generate(apply_fn, variables, noise, labels):
    return apply_fn(variables, noise, labels, train=False)


def generate_images(state: GANState, noise: jax.Array, labels: jax.Array, use_ema: bool = True) -> jax.Array:
    """Inference-mode images [B, S, S, C] in [-1, 1] from noise [B, Z] and labels [B]."""
    params = state.generator_ema if use_ema else state.generator.params
    variables = {"params": params, "batch_stats": state.generator.batch_stats}
    return _generate(state.generator.apply_fn, variables, noise, labels)


def class_grid_labels(num_classes: int, per_class: int) -> np.ndarray:
    """[num_classes * per_class] labels, one row per class in a grid of `per_class` columns."""
    return np.repeat(np.arange(num_classes, dtype=np.int32), per_class)


@dataclasses.dataclass
class TrainedGenerator:
    """A generator restored from a checkpoint. `sample(key, labels)` gives images."""

    state: GANState
    config: ml_collections.ConfigDict
    num_classes: int
    class_names: tuple[str, ...]
    step: int
    use_ema: bool = True

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


def load_generator(workdir: str, step: int | None = None, use_ema: bool = True) -> TrainedGenerator:
    """Restores the generator of checkpoint `step` (default: latest) in `workdir`.

    The networks are rebuilt from the config saved with the checkpoint.
    """
    step, meta = checkpoint.restore_meta(workdir, step)
    config = config_from_dict(meta["config"])
    image_shape = tuple(meta["image_shape"])
    template = jax.eval_shape(
        lambda key: create_gan_state(config, meta["num_classes"], image_shape, key), jax.random.key(0)
    )
    _, state = checkpoint.restore_state(workdir, template, step)
    return TrainedGenerator(
        state=state,
        config=config,
        num_classes=meta["num_classes"],
        class_names=tuple(meta["class_names"]),
        step=step,
        use_ema=use_ema and config.gan.ema_decay > 0,
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ganjax.sample", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="training directory holding checkpoints/")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--num", type=int, default=64, help="number of samples")
    parser.add_argument("--label", type=int, default=None, help="class to sample (default: cycle classes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="samples.png", help="PNG grid path")
    parser.add_argument("--npz", default=None, help="also write x (float32 in [-1, 1]) and y here")
    parser.add_argument("--no-ema", action="store_true", help="use raw generator weights, not the EMA")
    args = parser.parse_args(argv)
    if args.num <= 0:
        parser.error(f"--num must be positive, got {args.num}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    enable_compilation_cache()
    try:
        generator = load_generator(args.workdir, args.step, use_ema=not args.no_ema)
        if args.label is None:
            labels = np.arange(args.num, dtype=np.int32) % generator.num_classes
        else:
            labels = np.full((args.num,), args.label, np.int32)
        images = generator.sample(jax.random.key(args.seed), labels)
    except (FileNotFoundError, ValueError) as error:
        print(f"ganjax.sample: error: {error}", file=sys.stderr)
        return 2
    rows = generator.num_classes if args.label is None and args.num % generator.num_classes == 0 else 1
    if args.label is None and rows > 1:
        order = np.argsort(labels, kind="stable")
        images, labels = images[order], labels[order]
    columns = int(np.ceil(np.sqrt(args.num))) if rows == 1 else args.num // rows
    rows = int(np.ceil(args.num / columns)) if rows == 1 else rows
    padded = np.concatenate([images, -np.ones((rows * columns - args.num, *images.shape[1:]), np.float32)])
    visualize.save_image_grid(padded, rows, args.out)
    print(f"wrote {args.out} ({args.num} samples, checkpoint step {generator.step})")
    if args.npz:
        os.makedirs(os.path.dirname(os.path.abspath(args.npz)), exist_ok=True)
        np.savez_compressed(args.npz, x=images.astype(np.float32), y=labels.astype(np.int32))
        print(f"wrote {args.npz}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
