"""configs/seed_mnist.py, the seed example repaired: an unconditional MLP GAN whose G and D both
train, sampled from its checkpoint as a plain grid, and what refuses or skips class metrics."""

import json
import os

import jax
import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from ganjax import checkpoint, evaluate, sample, visualize
from ganjax.config import load_config, with_overrides
from ganjax.state import create_gan_state
from ganjax.studies import long_tail
from ganjax.train import train_and_evaluate

NUM_CLASSES, STEPS = 10, 4


def _seed_config(source: str):
    config = load_config(os.path.join(REPO, "configs", "seed_mnist.py"))
    return with_overrides(config, [
        f"data.source={source}", f"train.steps={STEPS}", "train.batch_size=16", "train.log_every=2",
        "train.sample_every=2", "train.checkpoint_every=2", "train.steps_per_call=2", "train.samples_per_class=2",
    ])


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    """(config, workdir) of configs/seed_mnist.py trained for STEPS steps on a tiny 28x28 npz dataset."""
    root = tmp_path_factory.mktemp("seed_mnist")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(160, 28, 28), dtype=np.uint8)
    labels = np.arange(160) % NUM_CLASSES
    np.savez(root / "tiny.npz", x=images, y=labels, x_test=images[:40], y_test=labels[:40])
    config = _seed_config(f"npz:{root / 'tiny.npz'}")
    workdir = str(root / "run")
    train_and_evaluate(config, workdir)
    return config, workdir


def test_seed_config_is_the_unconditional_seed_design_and_switches_to_tfds_mnist():
    config = load_config(os.path.join(REPO, "configs", "seed_mnist.py"))
    assert (config.model.architecture, config.model.conditional, config.gan.loss) == ("seed_mlp", False, "non_saturating")
    assert config.data.source == "idx:/usr/share/datasets/fashion-mnist"  # offline by default
    assert (config.model.noise_dim, config.model.generator_width, config.model.generator_norm) == (100, 128, "batch")
    assert with_overrides(config, ["data.source=tfds:mnist"]).data.source == "tfds:mnist"
    with pytest.raises(ValueError, match="'model.architecture' is 'mlp'.*seed_mlp"):
        with_overrides(config, ["model.architecture=mlp"])


def test_training_the_seed_updates_both_generator_and_discriminator(seed_run):
    config, workdir = seed_run
    initial = create_gan_state(config, NUM_CLASSES, (28, 28, 1), jax.random.fold_in(jax.random.key(config.seed), 0))
    trained = sample.load_generator(workdir, bn_statistics="running")
    assert trained.step == STEPS
    for name, before, after in [("G", initial.generator.params, trained.checkpoint_state.generator.params),
                                ("D", initial.discriminator.params, trained.checkpoint_state.discriminator.params)]:
        assert jax.tree.structure(before) == jax.tree.structure(after)
        unchanged = [jax.tree_util.keystr(path) for path, old, new in zip(
            *zip(*jax.tree_util.tree_leaves_with_path(before)), jax.tree.leaves(after)) if np.array_equal(old, new)]
        assert not unchanged, f"{name} parameters left untouched by training (the seed's bug): {unchanged}"
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [record["step"] for record in records] == [2, 4]
    assert all(np.isfinite(record[key]) for record in records for key in ("d_loss", "g_loss"))


def test_an_unconditional_checkpoint_samples_plain_grids_whatever_the_labels(seed_run, tmp_path, capsys):
    _, workdir = seed_run
    # The training loop's grid: samples_per_class 2 x 10 classes = 20 images in 4 rows of 5, not 10 rows of 2.
    cell = 28 + 1
    assert Image.open(os.path.join(workdir, "samples", f"step_{STEPS:06d}.png")).size == (2 * (5 * cell + 1),
                                                                                         2 * (4 * cell + 1))
    out, npz = str(tmp_path / "grid.png"), str(tmp_path / "samples.npz")
    assert sample.main(["--workdir", workdir, "--num", "7", "--out", out, "--npz", npz]) == 0
    assert Image.open(out).size == (2 * (3 * cell + 1), 2 * (3 * cell + 1))  # 7 samples padded to 3 x 3
    saved = np.load(npz)
    assert saved["x"].shape == (7, 28, 28, 1) and set(saved["y"].tolist()) == {-1}
    assert sample.main(["--workdir", workdir, "--label", "3", "--out", out]) == 2
    assert "unconditional" in capsys.readouterr().err
    generator = sample.load_generator(workdir, bn_statistics="running")
    assert not generator.conditional
    key = jax.random.key(5)
    np.testing.assert_array_equal(generator.sample(key, np.zeros(6)), generator.sample(key, np.arange(6) % NUM_CLASSES))


def test_resuming_the_unconditional_run_as_a_conditional_one_is_refused(seed_run):
    config, workdir = seed_run
    conditional = config.copy_and_resolve_references()
    conditional.model.conditional = True
    with pytest.raises(ValueError, match="model.conditional"):
        checkpoint.check_workdir_config(workdir, conditional)


def test_class_conditional_metrics_are_skipped_for_an_unconditional_gan():
    assert evaluate.metrics_for_generator(evaluate.DEFAULT_METRICS, True) == (evaluate.DEFAULT_METRICS, {})
    kept, skipped = evaluate.metrics_for_generator(evaluate.DEFAULT_METRICS, False)
    assert kept == ("fid", "kid", "pr", "dc", "classes")
    assert set(skipped) == {"ic_fid", "cas", "conditional_accuracy"}
    assert all("model.conditional=False" in reason for reason in skipped.values())
    with pytest.raises(ValueError, match="ic_fid,cas need a class-conditional GAN.*Choose from fid,kid"):
        evaluate.metrics_for_generator(("ic_fid", "cas"), False)


def test_studies_refuse_an_unconditional_gan():
    config = load_config(os.path.join(REPO, "configs", "seed_mnist.py"))
    with pytest.raises(ValueError, match="per class.*model.conditional=False"):
        long_tail.check_conditional_gan(config)
    config.model.conditional = True
    long_tail.check_conditional_gan(config)


@pytest.mark.parametrize("count,rows", [(100, 10), (20, 4), (12, 3), (7, 1), (1, 1)])
def test_square_grid_rows(count, rows):
    assert visualize.square_grid_rows(count) == rows


def test_square_grid_rows_needs_an_image():
    with pytest.raises(ValueError, match="at least one image, got 0"):
        visualize.square_grid_rows(0)
