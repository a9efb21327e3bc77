"""The repair study on the engine (ganjax.studies.repair, ganjax.studies.strategies.repair)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_tiny_config
from ganjax import data, names
from ganjax.config import validate_config
from ganjax.repair.damage import MISSING_VALUE, damage_mixture
from ganjax.studies import repair as repair_study


def repair_config(generator_workdir: str):
    config = make_tiny_config()
    config.experiment.study = "repair"
    config.experiment.strategies = "clean,damage_augment"
    config.experiment.generator_workdir = generator_workdir
    config.experiment.num_seeds = 2
    config.experiment.eval_batch_size = 64
    config.classifier.width = 4
    config.classifier.steps = 10
    config.classifier.batch_size = 16
    config.repair.damages = "centre:0.5,pixels:0.5"
    config.repair.num_test = 40
    config.repair.num_validation = 30
    config.repair.steps = 3
    config.repair.restarts = 1
    config.repair.batch_size = 16
    config.repair.candidate_classes = 2
    config.repair.encoder_steps = 5
    return validate_config(config)


@pytest.fixture(scope="module")
def repair_run(tiny_gan_workdir, tmp_path_factory):
    from ganjax.studies import run

    workdir = str(tmp_path_factory.mktemp("repair_study"))
    config = repair_config(tiny_gan_workdir)
    return config, workdir, run(config, workdir, progress=False)


def test_repair_study_writes_one_table_with_every_column(repair_run):
    config, workdir, full = repair_run
    meta = full["meta"]
    assert meta["study"] == "repair"
    table = meta["repair_table"]
    assert list(table) == ["centre:0.5", "pixels:0.5"]
    for row in table.values():
        assert set(row["accuracy"]) == {"clean", "none", "mean", "classic", "inversion", "damage_trained",
                                        "damage_trained_clean"}
        for summary in row["accuracy"].values():
            assert len(summary["per_seed"]) == 2 and all(0.0 <= value <= 1.0 for value in summary["per_seed"])
        for method in ("none", "mean", "classic", "inversion"):
            assert set(row["quality"][method]) == set(repair_study.QUALITY)
        assert row["images_per_second"]["inversion"] > 0
    # A pixel-mask repair that keeps the known pixels scores better on the whole image than on the region.
    pixels = table["pixels:0.5"]["quality"]["classic"]
    assert pixels["psnr"]["mean"] > pixels["psnr_region"]["mean"]
    with open(os.path.join(workdir, "report.md")) as stream:
        text = stream.read()
    assert text.startswith("# Image repair judged by recognition")
    assert "| centre:0.5 |" in text and "damage-trained classifier" in text
    for name in meta["grid_files"].values():
        assert os.path.exists(os.path.join(workdir, name))
    assert meta["scored_images"] == {"validation": 30, "test": 40}
    assert meta["encoder"]["seconds"] > 0 and np.isfinite(meta["encoder"]["final_loss"])
    assert "warm start" in text


def test_repair_study_chooses_the_best_classic_repair_on_validation(repair_run):
    _, workdir, full = repair_run
    with open(os.path.join(workdir, "strategies", "clean.json")) as stream:
        record = json.load(stream)
    # The validation split is scored without the inversion (it needs no generator to choose).
    assert set(record["repair"]["validation"]["damages"]["centre:0.5"]) == {"none", "mean", "classic"}
    for spec, row in full["meta"]["repair_table"].items():
        validation = record["repair"]["validation"]["damages"][spec]
        means = {method: np.mean([seed["accuracy"] for seed in validation[method]]) for method in names.CLASSIC_REPAIRS}
        assert row["best_classic"]["method"] == max(means, key=means.get)
        best = row["best_classic"]["method"]
        test = record["repair"]["test"]["damages"][spec]
        expected = [inv["accuracy"] - classic["accuracy"] for inv, classic in zip(test["inversion"], test[best])]
        assert row["inversion_minus_best_classic"]["per_seed"] == pytest.approx(expected)


def test_repair_study_scores_each_seed_on_its_own_damage_draw(repair_run):
    config, workdir, _ = repair_run
    with open(os.path.join(workdir, "strategies", "damage_augment.json")) as stream:
        record = json.load(stream)
    # damage_augment is scored on the damaged images only, per seed and split.
    assert set(record["repair"]["test"]["damages"]["pixels:0.5"]) == {"none"}
    keys = [repair_study.damage_keys(config.seed, "test", 1, seed) for seed in range(2)]
    assert not np.array_equal(jax.random.key_data(keys[0][0]), jax.random.key_data(keys[1][0]))


def test_repair_study_reuses_records_only_with_equal_repair_keys(repair_run):
    from ganjax.studies import run

    config, workdir, full = repair_run
    again = run(config, workdir, progress=False)
    assert again["meta"]["repair_table"] == full["meta"]["repair_table"]
    changed = repair_config(config.experiment.generator_workdir)
    changed.repair.damages = "centre:0.25"
    with pytest.raises(ValueError, match="repair.damages"):
        run(changed, workdir, progress=False)


def test_damage_mixture_keeps_the_clean_share_and_damages_the_rest():
    images = jnp.full((400, 8, 8, 1), 0.7, jnp.float32)
    mixed = np.asarray(damage_mixture(jax.random.key(0), images, ("centre:0.5",), 0.25))
    clean = np.all(mixed == 0.7, axis=(1, 2, 3))
    assert 0.18 < clean.mean() < 0.32
    damaged = mixed[~clean]
    assert np.all(damaged[:, 2:6, 2:6] == MISSING_VALUE) and np.all(damaged[:, :2] == 0.7)
    # With two damages, both occur.
    mixed = np.asarray(damage_mixture(jax.random.key(1), images, ("centre:0.5", "half:left"), 0.0))
    centre = np.all(mixed[:, 2:6, 2:6] == MISSING_VALUE, axis=(1, 2, 3)) & np.all(mixed[:, :, :2] == 0.7, axis=(1, 2, 3))
    left = np.all(mixed[:, :, :4] == MISSING_VALUE, axis=(1, 2, 3))
    assert np.all(centre | left) and 0.35 < centre.mean() < 0.65


def test_candidate_classes_are_the_likeliest_first():
    logits = np.array([[0.1, 3.0, 2.0, -1.0], [5.0, 0.0, 0.0, 6.0]])
    assert repair_study.candidate_classes(logits, 2).tolist() == [[1, 2], [3, 0]]


def test_scored_subset_is_class_stratified():
    labels = np.repeat(np.arange(4), [50, 30, 10, 10])
    dataset = data.Dataset(np.zeros((100, 4, 4, 1), np.uint8), labels.astype(np.int32), tuple("abcd"))
    subset = repair_study.scored_subset(dataset, 50, 0)
    assert data.class_counts(subset.labels, 4).tolist() == [25, 15, 5, 5]
    assert repair_study.scored_subset(dataset, 0, 0) is dataset


@pytest.mark.parametrize("key, value, message", [
    ("repair.damages", "centre:2", "strictly between 0 and 1"),
    ("repair.damages", "", "names no damage"),
    ("repair.methods", "inversion,paint", "paint"),
    ("repair.window", 4, "odd"),
    ("repair.clean_fraction", 1.0, "clean_fraction"),
    ("data.subset", "long_tail", "data.subset='none'"),
    ("experiment.strategies", "plain", "for long-tailed data"),
    ("experiment.study", "repairs", "experiment.study"),
])
def test_repair_config_errors_name_the_key_and_the_fix(key, value, message):
    config = repair_config("")
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ValueError, match=message):
        validate_config(config)
