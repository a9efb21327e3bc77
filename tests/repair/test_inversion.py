import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax.repair import denoise, importance_weights, inpaint, poisson_blend, repair
from ganjax.repair.classic import mean_fill
from ganjax.repair.damage import damage
from ganjax.repair.inversion import invert_batch
from ganjax.sample import load_generator

NUM_CLASSES = 10
# Inpainting with blending and denoising share one compiled program: 4 images, given labels, FAST.
FAST = {"steps": 60, "restarts": 1, "learning_rate": 0.05}


@pytest.fixture(scope="module")
def generator(tiny_gan_workdir):
    """conftest's tiny 16x16 digits GAN (4 training steps): its EMA generator and its discriminator."""
    generator = load_generator(tiny_gan_workdir)
    assert generator.num_classes == NUM_CLASSES and generator.config.model.noise_dim == 16
    return generator


@pytest.fixture(scope="module")
def generated(generator):
    """(images, labels): images the generator made, the truths to repair."""
    labels = np.array([0, 3, 5, 7], np.int32)
    return generator.sample(jax.random.key(1), labels), labels


def _hole_error(images, truth, mask):
    hole = np.broadcast_to((np.asarray(mask) == 0)[..., None], truth.shape)
    return np.sqrt(np.mean((np.asarray(images) - truth)[hole] ** 2))


def test_importance_weights_count_missing_neighbours_in_a_7x7_window():
    mask = np.ones((1, 16, 16), np.float32)
    mask[0, 8, 8] = 0
    weights = np.asarray(importance_weights(mask))
    near = np.zeros((16, 16), bool)
    near[5:12, 5:12] = True
    np.testing.assert_allclose(weights[0][near & (mask[0] > 0)], 1 / 49, rtol=1e-6)
    assert weights[0, 8, 8] == 0 and np.all(weights[0][~near] == 0)


def test_inversion_fits_the_known_pixels_keeps_them_and_beats_mean_fill(generator, generated):
    truth, labels = generated[0][1::2], generated[1][1::2]
    damaged, mask = damage("centre:0.5", jax.random.key(2), truth)
    result = inpaint(generator, damaged, mask, jax.random.key(3), steps=100, restarts=2, learning_rate=0.05)
    known = np.asarray(mask, bool)
    np.testing.assert_array_equal(result.images[known], np.asarray(damaged)[known])
    assert result.images.shape == truth.shape and result.latents.shape == (2, 16)
    np.testing.assert_array_equal(result.labels, labels)  # every class tried, the right one kept
    history = result.context_loss_history
    assert history.shape == (2, 100)
    assert np.all(history[:, -1] < 0.2 * history[:, 0]), "the context loss did not fall"
    inversion_error = _hole_error(result.images, truth, mask)
    mean_error = _hole_error(mean_fill(damaged, mask), truth, mask)
    assert inversion_error < 0.25 * mean_error, (inversion_error, mean_error)


def test_inversion_compiles_one_program_for_every_batch(generator, generated):
    truth, labels = generated
    images = np.concatenate([truth, truth[:1]])  # 5 images in batches of 2: the last one padded
    damaged, mask = damage("pixels:0.5", jax.random.key(4), images)
    before = invert_batch._cache_size()
    result = inpaint(generator, damaged, mask, jax.random.key(5), labels=np.concatenate([labels, labels[:1]]),
                     steps=7, restarts=3, batch_size=2)
    assert invert_batch._cache_size() == before + 1
    assert result.images.shape == images.shape
    np.testing.assert_array_equal(result.labels, np.concatenate([labels, labels[:1]]))


def test_candidate_classes_per_image_keep_one_of_them(generator, generated):
    truth, labels = generated
    damaged, mask = damage("centre:0.5", jax.random.key(10), truth)
    # Each image's true class and a wrong one, in either order: the chosen class is one of the two.
    wrong = (labels + 1) % 10
    candidates = np.stack([np.where(np.arange(len(labels)) % 2, labels, wrong),
                           np.where(np.arange(len(labels)) % 2, wrong, labels)], axis=1).astype(np.int32)
    result = inpaint(generator, damaged, mask, jax.random.key(11), labels=candidates, **FAST)
    assert np.all((result.labels == candidates[:, 0]) | (result.labels == candidates[:, 1]))
    with pytest.raises(ValueError, match=r"or \[N, k\] candidate classes"):
        inpaint(generator, damaged, mask, jax.random.key(11), labels=candidates[:, :0], **FAST)


def test_poisson_blend_recovers_the_truth_from_a_fill_off_by_a_constant():
    rows, columns = jnp.meshgrid(jnp.linspace(-0.6, 0.6, 16), jnp.linspace(-0.5, 0.5, 16), indexing="ij")
    truth = jnp.tile((rows + 0.5 * columns)[None, ..., None], (4, 1, 1, 1))
    damaged, mask = damage("centre:0.5", jax.random.key(0), truth)
    blended = poisson_blend(damaged, truth + 0.3, mask)
    np.testing.assert_allclose(blended, truth, atol=1e-4)
    known = np.asarray(mask, bool)
    np.testing.assert_array_equal(np.asarray(blended)[known], np.asarray(damaged)[known])


def test_inpaint_with_blending_keeps_known_pixels(generator, generated):
    truth, labels = generated
    damaged, mask = damage("half:left", jax.random.key(6), truth)
    result = inpaint(generator, damaged, mask, jax.random.key(7), labels=labels, blend=True, **FAST)
    known = np.asarray(mask, bool)
    np.testing.assert_array_equal(result.images[known], np.asarray(damaged)[known])
    assert not np.array_equal(result.images[~known], result.fills[~known])


def test_denoising_returns_the_generated_image_closer_to_the_truth(generator, generated):
    truth, labels = generated
    noisy, mask = damage("noise:0.2", jax.random.key(8), truth)
    result = denoise(generator, noisy, jax.random.key(9), labels=labels, **FAST)
    np.testing.assert_array_equal(result.images, result.fills)
    error = lambda images: np.sqrt(np.mean((np.asarray(images) - truth) ** 2))  # noqa: E731
    assert error(result.images) < 0.6 * error(noisy)
    via_repair = repair("inversion", noisy, mask, jax.random.key(9), damage="noise:0.2", generator=generator,
                        labels=labels, **FAST)
    np.testing.assert_array_equal(via_repair, result.images)


def test_bad_inputs_name_the_problem_and_the_fix(generator, generated):
    truth, labels = generated
    damaged, mask = damage("centre:0.5", jax.random.key(0), truth)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"mask has shape \(4, 16\) but the images \(4, 16, 16, 1\)"):
        inpaint(generator, damaged, np.asarray(mask)[:, 0], key, **FAST)
    empty = np.asarray(mask).copy()
    empty[2] = 0
    with pytest.raises(ValueError, match=r"\(index 2\) have every pixel missing; the inversion repair .* cannot work"):
        inpaint(generator, damaged, empty, key, **FAST)
    larger = np.zeros((2, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match=r"generator makes images of shape \(16, 16, 1\) but the images to repair "
                                         r"are \(28, 28, 1\)"):
        inpaint(generator, larger, np.ones((2, 28, 28)), key, **FAST)
    colour = np.zeros((2, 16, 16, 3), np.float32)
    with pytest.raises(ValueError, match=r"shape \(16, 16, 1\) but the images to repair are \(16, 16, 3\)"):
        denoise(generator, colour, key, **FAST)
    with pytest.raises(ValueError, match=r"labels span \[0, 12\] but the generator has 10 classes"):
        inpaint(generator, damaged, mask, key, labels=np.array([0, 1, 2, 12]), **FAST)
    with pytest.raises(ValueError, match=r"steps must be a positive integer, got 0; window must be a positive odd"):
        inpaint(generator, damaged, mask, key, steps=0, window=4)
