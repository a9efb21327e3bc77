"""Defense-GAN (Samangouei et al. 2018, "Defense-GAN: Protecting Classifiers Against Adversarial Attacks
Using Generative Models", ICLR): classify the projection of an input onto the generator's range.

    from ganjax import defense_gan
    defense = defense_gan.DefenseGAN(classifier_apply, steps=25, restarts=2, classes=2)
    params = defense_gan.defense_params(classifier_params, generator)        # a TrainedGenerator
    logits = defense(params, images, key)                                     # the defended model
    adversarial = attacks.pgd(attacks.EOT(defense.straight_through, draws=1), params, images, labels, key,
                              eps=0.1, steps=10)                            # BPDA + EOT through the projection

The projection P(x) = G(z*, y*): for every candidate class y and each of R random starts z0 ~ N(0, I),
L Adam steps minimise ||G(z, y) - x||_1 (`ganjax.repair.inversion.invert_batch` with every pixel weighed
1 and no discriminator prior), and the candidate of lowest loss is kept. The paper's generator is
unconditional; ganjax's is class-conditional, so the candidates are the classifier's `classes` likeliest
classes of x (0: every class, K times the work of one). The paper minimises the squared L2 distance;
the L1 distance here is the repair module's (one inversion in ganjax) and is as easy for an attacker to
see through. The authors' code uses L = 200, R = 10; the study measures what fewer cost in clean accuracy.

The projection is random (its starts come from `key`) and iterative (L inner gradient steps), so
attacks see through it by BPDA (Athalye et al. 2018, sec. 4.1: the identity in the backward pass,
`straight_through`) and average over its randomness by EOT (`ganjax.attacks.EOT`). The naive attack
differentiates the classifier alone and then meets the projection; the adaptive one is the honest figure.

Networks: the classifier in inference mode; the generator's EMA weights (unless the TrainedGenerator says
otherwise) with the TrainedGenerator's BatchNorm statistics; all read-only.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ganjax.attacks.wrappers import bpda
from ganjax.repair.inversion import check_generator, invert_batch
from ganjax.sample import TrainedGenerator
from ganjax.state import generator_source

# The study's defaults (configs' defense section): fewer than the authors' L = 200, R = 10 (see the study).
DEFAULT_STEPS = 20
DEFAULT_RESTARTS = 1
DEFAULT_CLASSES = 2
DEFAULT_LEARNING_RATE = 0.05


def candidate_classes(logits: jax.Array, classes: int) -> jax.Array:
    """[B, k] candidate classes of each image: its `classes` likeliest under logits [B, K], or every
    class (classes 0 or >= K)."""
    num_classes = logits.shape[-1]
    if classes <= 0 or classes >= num_classes:
        return jnp.broadcast_to(jnp.arange(num_classes, dtype=jnp.int32), logits.shape)
    return jax.lax.top_k(logits, classes)[1].astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class DefenseGAN:
    """The defended classifier x -> classifier(P(x)) (module docstring); hashable, so the jitted
    attacks compile once per defence.

    classifier_apply: (classifier params, images) -> logits [B, K], e.g. `ganjax.attacks.classifier_apply_fn`'s;
    steps, restarts, classes, learning_rate: the projection's L, R, candidate classes (0: all) and Adam rate.
    gan_loss: the GAN's loss name (the inversion's unused prior term needs it; the weight is 0).
    Its params are `defense_params`'s {"classifier", "generator"}.
    """

    classifier_apply: Any
    steps: int = DEFAULT_STEPS
    restarts: int = DEFAULT_RESTARTS
    classes: int = DEFAULT_CLASSES
    learning_rate: float = DEFAULT_LEARNING_RATE
    gan_loss: str = "hinge"

    def __post_init__(self):
        problems = [f"{name} must be an integer >= {low}, got {value!r}"
                    for name, value, low in (("steps", self.steps, 1), ("restarts", self.restarts, 1),
                                             ("classes", self.classes, 0))
                    if not isinstance(value, (int, np.integer)) or value < low]
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be positive, got {self.learning_rate!r}")
        if problems:
            raise ValueError("Defense-GAN settings: " + "; ".join(problems) + ".")

    def project(self, params: dict, images: jax.Array, key: jax.Array) -> jax.Array:
        """P(images) [B, H, W, C]: the best of the candidates' inversions (module docstring)."""
        source = params["generator"]
        logits = self.classifier_apply(params["classifier"], images)
        labels = candidate_classes(jax.lax.stop_gradient(logits), self.classes)
        count, num_labels = labels.shape
        noise_dim = source.noise_dim
        starts = jax.random.normal(key, (count, num_labels, self.restarts, noise_dim), jnp.float32)
        weights = jnp.ones(images.shape[:3], jnp.float32)
        projected, *_ = invert_batch(source.source, jax.lax.stop_gradient(images), weights, labels, starts,
                                     jnp.float32(self.learning_rate), jnp.float32(0.0), steps=int(self.steps),
                                     gan_loss=self.gan_loss)
        return projected

    def __call__(self, params: dict, images: jax.Array, key: jax.Array) -> jax.Array:
        """Logits [B, K] of the classifier at P(images), projected with `key`'s starts."""
        return self.classifier_apply(params["classifier"], self.project(params, images, key))

    def straight_through(self, params: dict, images: jax.Array, key: jax.Array) -> jax.Array:
        """The same logits, with the projection's backward pass the identity (BPDA): for attacks."""
        projected = bpda(lambda x, p, k: self.project(p, x, k))(images, params, key)
        return self.classifier_apply(params["classifier"], projected)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Projector:
    """The generator side of `defense_params`: a GeneratorSource and its latent size (static)."""

    source: Any
    noise_dim: int = dataclasses.field(metadata={"static": True})


def defense_params(classifier_params: Any, generator: TrainedGenerator) -> dict:
    """DefenseGAN's params: {"classifier": classifier_params, "generator": Projector}."""
    return {"classifier": classifier_params,
            "generator": Projector(generator_source(generator.state, generator.use_ema),
                                   int(generator.config.model.noise_dim))}


def check_defense(generator: TrainedGenerator, images: np.ndarray, num_classes: int) -> None:
    """ValueError unless `generator` makes images of `images`' shape [N, H, W, C] and has the
    classifier's `num_classes` classes."""
    check_generator(generator, images)
    if generator.num_classes != num_classes:
        raise ValueError(
            f"The generator has {generator.num_classes} classes but the classifier {num_classes}; Defense-GAN "
            "projects onto the generator's classes, so use a generator and a classifier of the same dataset."
        )


@functools.partial(jax.jit, static_argnames="defense")
def _defended_classes(defense: DefenseGAN, params: dict, images: jax.Array, key: jax.Array) -> jax.Array:
    return jnp.argmax(defense(params, images, key), axis=-1)


def defended_predictions(defense: DefenseGAN, params: dict, images, key: jax.Array, batch_size: int = 100
                         ) -> np.ndarray:
    """Defended class predictions [N] of images [N, H, W, C] in [-1, 1]; batch i projects with
    fold_in(key, i) (the last batch padded: one compiled shape)."""
    images = np.asarray(images, np.float32)
    count = len(images)
    chunk = min(batch_size, count)
    predictions = []
    for index, start in enumerate(range(0, count, chunk)):
        rows = np.minimum(np.arange(start, start + chunk), count - 1)
        predictions.append(np.asarray(_defended_classes(defense, params, images[rows], jax.random.fold_in(key, index)))[
            :min(chunk, count - start)])
    return np.concatenate(predictions) if predictions else np.zeros((0,), np.int32)
