"""Image repair by generator inversion (Yeh et al. 2017, "Semantic Image Inpainting with Deep
Generative Models", CVPR): find the latent z (and class) whose image G(z, y) best matches the known
pixels under the GAN's prior, then fill the missing pixels from G(z*, y*).

For each image, each candidate class y and each of R restarts z0 ~ N(0, I), L Adam steps minimise

    L(z) = L_context(z) + lambda * L_prior(z)                               (Yeh et al. eq. 5)
    L_context(z) = || W * (G(z, y) - x) ||_1, summed over pixels and channels       (eq. 3)
    W_i = M_i * sum_{j in N(i)} (1 - M_j) / |N(i)|, N(i) the window x window pixels around i (eq. 2)
    L_prior(z) = the GAN's generator loss on D(G(z, y), y)     (for the non-saturating loss,
                 log(1 + exp(-D)), the form of eq. 4 that the generator trains with)

with x the damaged image and M its mask. The images, classes and restarts are one batch, each
candidate's gradient taken on its own (`jax.vmap`), all L steps one `lax.scan`: one compiled
program per batch shape (inpainting and denoising share it; the last batch of images is padded).
Each image keeps the candidate of lowest final context loss; its known pixels are kept exactly,
M x + (1 - M) G(z*, y*), or, with `blend`, the fill is Poisson-blended into them (Perez et al. 2003,
as Yeh et al. do): the missing pixels solve Laplacian(x) = Laplacian(G(z*)) with the known pixels as
boundary values (a conjugate-gradient solve).

Choices:
- Classes: with `labels=None` every class of the conditional generator is tried and each image keeps
  its best (lowest context loss) class; `labels` [N] fixes each image's class (K times cheaper), and
  `labels` [N, k] tries k candidate classes per image (e.g. a classifier's k likeliest; K/k times cheaper).
- Latent: the generator's N(0, I) noise. Yeh et al. clip their uniform z to [-1, 1]; a Gaussian
  latent has no box, and the prior term keeps z where D finds G(z) real.
- Defaults: lambda = DEFAULT_PRIOR_WEIGHT = 0.003 and window = 7, the paper's; L = DEFAULT_STEPS =
  500 Adam steps at learning rate 0.03 (b1 0.9, b2 0.999) rather than the paper's 1500 (at 0.01 in
  public re-implementations): on a 16x16 digits GAN the context loss after 300 steps at 0.03 about
  matched 1000 steps at 0.01, and CPU time buys restarts and classes instead; R = DEFAULT_RESTARTS = 4.
- Networks: the EMA generator (unless the TrainedGenerator says use_ema=False) with its BatchNorm in
  inference mode (the TrainedGenerator's statistics: by default the checkpoint's running ones), and
  the discriminator's params, all read-only.
- Noise damages (`denoise`): no pixel is missing, so the context loss weighs every pixel by 1 (an L1
  loss, robust to salt and pepper) and the result is G(z*, y*) itself: no pixel is kept.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from ganjax import losses
from ganjax.repair.damage import check_images_and_mask, check_known_pixels
from ganjax.sample import TrainedGenerator
from ganjax.state import GeneratorSource, generator_source
from ganjax.xla_cpu import canonicalize_convs

DEFAULT_STEPS = 500
DEFAULT_RESTARTS = 4
DEFAULT_PRIOR_WEIGHT = 0.003
DEFAULT_LEARNING_RATE = 0.03
IMPORTANCE_WINDOW = 7
DEFAULT_BATCH_SIZE = 16  # images per compiled program; candidates = images x classes x restarts
BLEND_TOLERANCE = 1e-6
BLEND_MAX_ITERATIONS = 2000


class InpaintResult(NamedTuple):
    """What an inversion found for images [N, H, W, C] (numpy arrays).

    images: [N, H, W, C] the repaired images; fills: [N, H, W, C] G(z*, y*);
    labels: [N] the chosen classes y*; latents: [N, Z] the chosen z*;
    context_loss, prior_loss: [N] the chosen candidates' final losses;
    context_loss_history: [N, steps] the chosen candidates' context loss before each step.
    """

    images: np.ndarray
    fills: np.ndarray
    labels: np.ndarray
    latents: np.ndarray
    context_loss: np.ndarray
    prior_loss: np.ndarray
    context_loss_history: np.ndarray


def importance_weights(mask: jax.Array, window: int = IMPORTANCE_WINDOW) -> jax.Array:
    """Yeh et al. eq. 2: [N, H, W] weights of the known pixels of `mask` [N, H, W] (1 = known), the
    fraction of missing pixels in the window x window square around each (outside the image counts
    as known); 0 at missing pixels."""
    mask = jnp.asarray(mask, jnp.float32)
    missing = jax.lax.reduce_window(1.0 - mask, 0.0, jax.lax.add, (1, window, window), (1, 1, 1), "SAME")
    return mask * missing / (window * window)


def _neighbour_sum(images: jax.Array) -> jax.Array:
    """Sum of the 4 neighbours of each pixel of [N, H, W, C]; outside the image, the pixel itself
    (edge padding: zero flux across the image border)."""
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    return padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]


def poisson_blend(images: jax.Array, fills: jax.Array, mask: jax.Array,
                  tolerance: float = BLEND_TOLERANCE, max_iterations: int = BLEND_MAX_ITERATIONS) -> jax.Array:
    """Gradient-domain blending (Perez et al. 2003) of `fills` into the known pixels of `images`
    ([N, H, W, C]; mask [N, H, W], 1 = known): the known pixels kept, the missing ones solving the
    discrete Poisson equation 4 x_p - sum_q x_q = 4 g_p - sum_q g_q (g = fills, q the 4 neighbours,
    zero flux at the image border), by conjugate gradients. A fill that equals the truth plus a
    constant gives the truth back."""
    known = jnp.asarray(mask, jnp.float32)[..., None]
    missing = 1.0 - known

    def laplacian_on_missing(values):  # SPD: identity on the known pixels, -Laplacian on the missing
        inside = missing * values
        return missing * (4.0 * inside - _neighbour_sum(inside)) + known * values

    guidance = 4.0 * fills - _neighbour_sum(fills)
    right_side = missing * (guidance + _neighbour_sum(known * images)) + known * images
    start = known * images + missing * fills
    blended, _ = jax.scipy.sparse.linalg.cg(laplacian_on_missing, right_side, start, tol=tolerance,
                                            maxiter=max_iterations)
    return known * images + missing * blended


_poisson_blend = jax.jit(poisson_blend, static_argnames=("max_iterations",))


@functools.partial(jax.jit, static_argnames=("steps", "gan_loss", "canonical_convs"))
def invert_batch(source: GeneratorSource, images, weights, candidate_labels, initial_latents,
                 learning_rate, prior_weight, *, steps: int, gan_loss: str, canonical_convs: bool | None = None):
    """One compiled inversion of images [n, H, W, C] with context weights [n, H, W] over
    candidate_labels [n, K] x restarts, initial_latents [n, K, R, Z]: each image's best candidate's
    (fill, label, latent, context loss, prior loss, context loss history [steps]). Pure: it may be
    called inside another jitted function (`ganjax.defense_gan` projects with it). canonical_convs:
    rewrite the gradient's convolutions, which sit in the scan's body, into XLA:CPU's fast form
    (`ganjax.xla_cpu`); None: on CPU only (benchmarks/inversion_speed.py measures both)."""
    count, num_labels, restarts, noise_dim = initial_latents.shape
    per_image = num_labels * restarts
    latents = initial_latents.reshape(count * per_image, noise_dim)
    labels = jnp.repeat(candidate_labels, restarts, axis=1).reshape(-1)
    targets = jnp.repeat(images, per_image, axis=0)
    target_weights = jnp.repeat(weights, per_image, axis=0)[..., None]
    variables = {"params": source.generator_params, "batch_stats": source.generator_batch_stats}

    def generate(latent, label):
        return source.generator_apply(variables, latent[None], label[None], train=False)[0]

    def candidate_loss(latent, label, target, weight):
        image = generate(latent, label)
        context = jnp.sum(weight * jnp.abs(image - target))
        logits = source.discriminator_apply({"params": source.discriminator_params}, image[None], label[None])
        prior = losses.generator_loss(gan_loss, logits)
        return context + prior_weight * prior, (context, prior)

    loss_and_grad = jax.vmap(jax.value_and_grad(candidate_loss, has_aux=True))
    if canonical_convs is None:
        canonical_convs = jax.default_backend() == "cpu"
    if canonical_convs:
        loss_and_grad = canonicalize_convs(loss_and_grad)
    optimizer = optax.adam(learning_rate)

    def step(carry, _):
        latents, optimizer_state = carry
        (_, (context, _)), grads = loss_and_grad(latents, labels, targets, target_weights)
        updates, optimizer_state = optimizer.update(grads, optimizer_state, latents)
        return (optax.apply_updates(latents, updates), optimizer_state), context

    (latents, _), history = jax.lax.scan(step, (latents, optimizer.init(latents)), length=steps)
    _, (context, prior) = jax.vmap(candidate_loss)(latents, labels, targets, target_weights)

    best = jnp.argmin(context.reshape(count, per_image), axis=1) + jnp.arange(count) * per_image
    fills = jax.vmap(generate)(latents[best], labels[best])
    return fills, labels[best], latents[best], context[best], prior[best], history[:, best].T


def generator_image_shape(generator: TrainedGenerator) -> tuple[int, int, int]:
    """(H, W, C) of the images `generator` makes."""
    state = generator.state
    shape = jax.eval_shape(
        lambda: state.generator.apply_fn(
            {"params": state.generator_ema, "batch_stats": state.generator.batch_stats},
            jnp.zeros((1, generator.config.model.noise_dim)), jnp.zeros((1,), jnp.int32), train=False,
        )
    ).shape
    return tuple(shape[1:])


def check_generator(generator: TrainedGenerator, images: np.ndarray, labels=None) -> np.ndarray | None:
    """Checks that `generator` makes images of the shape of `images` [N, H, W, C] and knows every class
    of `labels` [N] or [N, k] (if given); returns labels as int32. ValueError naming the mismatch otherwise."""
    made = generator_image_shape(generator)
    if tuple(images.shape[1:]) != made:
        raise ValueError(
            f"The generator makes images of shape {made} but the images to repair are {tuple(images.shape[1:])}; "
            "repair images of the generator's dataset and image size (config.data.image_size), or use a "
            "generator trained on these."
        )
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.shape[:1] != images.shape[:1] or labels.ndim not in (1, 2) or labels.dtype.kind not in "iu" \
            or (labels.ndim == 2 and labels.shape[1] == 0):
        raise ValueError(f"labels must be [N] = {images.shape[:1]} integers, one class per image, or [N, k] "
                         f"candidate classes per image; got shape {labels.shape} dtype {labels.dtype}.")
    if labels.size and (labels.min() < 0 or labels.max() >= generator.num_classes):
        raise ValueError(
            f"labels span [{labels.min()}, {labels.max()}] but the generator has {generator.num_classes} classes; "
            "pass labels of the generator's dataset, or labels=None to try every class."
        )
    return labels.astype(np.int32)


def _check_settings(steps, restarts, prior_weight, learning_rate, window, batch_size) -> None:
    problems = []
    for name, value in (("steps", steps), ("restarts", restarts), ("batch_size", batch_size)):
        if int(value) != value or value < 1:
            problems.append(f"{name} must be a positive integer, got {value}")
    if not prior_weight >= 0:
        problems.append(f"prior_weight must be >= 0, got {prior_weight}")
    if not learning_rate > 0:
        problems.append(f"learning_rate must be positive, got {learning_rate}")
    if int(window) != window or window < 1 or window % 2 == 0:
        problems.append(f"window must be a positive odd integer, got {window}")
    if problems:
        raise ValueError("Inversion settings: " + "; ".join(problems) + ".")


def _invert(generator, images, mask, weights, key, labels, *, keep_known, blend, steps, restarts, prior_weight,
            learning_rate, batch_size, progress, initial_latents=None) -> InpaintResult:
    labels = check_generator(generator, images, labels)
    noise_dim = generator.config.model.noise_dim
    if initial_latents is not None:
        initial_latents = np.asarray(initial_latents, np.float32)
        if initial_latents.shape != (len(images), noise_dim):
            raise ValueError(f"initial_latents must be [N, Z] = {(len(images), noise_dim)} (one latent per image, "
                             f"the generator's noise_dim), got {initial_latents.shape}.")
    source = generator_source(generator.state, generator.use_ema)
    count = len(images)
    chunk = min(batch_size, count)
    starts = range(0, count, chunk)
    outputs = []
    for index, start in enumerate(tqdm(starts, desc="inversion", unit="batch",
                                       disable=not progress or len(starts) < 2, leave=False)):
        rows = np.minimum(np.arange(start, start + chunk), count - 1)  # the last batch padded: one shape
        if labels is None:
            candidate_labels = np.broadcast_to(np.arange(generator.num_classes, dtype=np.int32),
                                               (chunk, generator.num_classes))
        else:
            candidate_labels = labels[rows] if labels.ndim == 2 else labels[rows][:, None]
        starts_at = jax.random.normal(
            jax.random.fold_in(key, index), (chunk, candidate_labels.shape[1], restarts, noise_dim), jnp.float32
        )
        if initial_latents is not None:  # restart 0 of every candidate class starts at the given latent
            starts_at = starts_at.at[:, :, 0].set(jnp.asarray(initial_latents[rows])[:, None])
        result = invert_batch(
            source, images[rows], weights[rows], jnp.asarray(candidate_labels), starts_at,
            jnp.float32(learning_rate), jnp.float32(prior_weight), steps=int(steps), gan_loss=generator.config.gan.loss,
        )
        taken = min(chunk, count - start)
        outputs.append([np.asarray(part)[:taken] for part in result])
    fills, chosen, latents, context, prior, history = (np.concatenate(parts) for parts in zip(*outputs))
    if not keep_known:
        repaired = fills
    elif blend:
        repaired = np.asarray(_poisson_blend(images, fills, mask))
    else:
        repaired = np.where(mask[..., None] > 0, images, fills)
    return InpaintResult(repaired, fills, chosen, latents, context, prior, history)


def inpaint(
    generator: TrainedGenerator,
    images,
    mask,
    key: jax.Array,
    *,
    labels=None,
    steps: int = DEFAULT_STEPS,
    restarts: int = DEFAULT_RESTARTS,
    prior_weight: float = DEFAULT_PRIOR_WEIGHT,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    window: int = IMPORTANCE_WINDOW,
    blend: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
    initial_latents=None,
) -> InpaintResult:
    """Fills the missing pixels of `images` [N, H, W, C] in [-1, 1] (mask [N, H, W], 1 = known) by
    inverting `generator` (module docstring); the known pixels are kept exactly.

    labels: [N] classes of the images, [N, k] candidate classes per image (the best kept), or None to try
      every class and keep the best per image.
    key: draws the restarts' initial latents (batch i of `batch_size` images: fold_in(key, i)).
    initial_latents: [N, Z] or None: restart 0 of every candidate starts there instead (an encoder's
      warm start, `ganjax.repair.encoder.encode`); the other restarts stay random.
    Returns an InpaintResult (result.images are the repaired images).

    Raises ValueError for a mask of another shape, an image with every pixel missing, a generator
    for another image shape, labels outside its classes, or bad settings.
    """
    images, mask = check_images_and_mask(images, mask)
    check_known_pixels(mask, "inversion")
    _check_settings(steps, restarts, prior_weight, learning_rate, window, batch_size)
    weights = np.asarray(importance_weights(mask, window))
    return _invert(generator, images, mask, weights, key, labels, keep_known=True, blend=blend, steps=steps,
                   restarts=restarts, prior_weight=prior_weight, learning_rate=learning_rate,
                   batch_size=batch_size, progress=progress, initial_latents=initial_latents)


def denoise(
    generator: TrainedGenerator,
    images,
    key: jax.Array,
    *,
    labels=None,
    steps: int = DEFAULT_STEPS,
    restarts: int = DEFAULT_RESTARTS,
    prior_weight: float = DEFAULT_PRIOR_WEIGHT,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
    initial_latents=None,
) -> InpaintResult:
    """Denoises `images` [N, H, W, C] in [-1, 1] (noise or salt and pepper) by inverting `generator`:
    the context loss weighs every pixel by 1 and the result is G(z*, y*) (module docstring).
    Arguments as for `inpaint`."""
    mask = np.ones(np.shape(images)[:3], np.float32)
    images, mask = check_images_and_mask(images, mask)
    _check_settings(steps, restarts, prior_weight, learning_rate, IMPORTANCE_WINDOW, batch_size)
    return _invert(generator, images, mask, mask, key, labels, keep_known=False, blend=False, steps=steps,
                   restarts=restarts, prior_weight=prior_weight, learning_rate=learning_rate,
                   batch_size=batch_size, progress=progress, initial_latents=initial_latents)


def inversion_settings(generator: TrainedGenerator, *, labels_given: bool | str = False, steps: int = DEFAULT_STEPS,
                       restarts: int = DEFAULT_RESTARTS, prior_weight: float = DEFAULT_PRIOR_WEIGHT,
                       learning_rate: float = DEFAULT_LEARNING_RATE, window: int = IMPORTANCE_WINDOW,
                       blend: bool = False, noise: bool = False) -> dict:
    """The settings of an inversion, for a record of the run."""
    return {
        "algorithm": "generator inversion (Yeh et al. 2017)",
        "steps": steps,
        "restarts": restarts,
        "prior_weight": prior_weight,
        "prior_loss": f"generator loss '{generator.config.gan.loss}' on D(G(z, y), y)",
        "optimizer": f"adam lr {learning_rate} b1 0.9 b2 0.999",
        "latent": f"z ~ N(0, I), {generator.config.model.noise_dim} dims, unconstrained",
        "classes": (labels_given if isinstance(labels_given, str) else "given labels" if labels_given
                    else f"all {generator.num_classes} tried, best context loss kept"),
        "context_loss": ("L1 on every pixel, weight 1; output G(z*)" if noise else
                         f"L1 on the known pixels, importance-weighted over a {window}x{window} window; "
                         "known pixels kept"),
        "poisson_blend": bool(blend and not noise),
        "generator_weights": "EMA" if generator.use_ema else "raw",
        "generator_bn": f"inference mode ({generator.bn_statistics} statistics)",
    }
