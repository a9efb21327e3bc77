"""python -m ganjax.attack: attacks a saved classifier's test images, writes attack.json and attack.png,
and refuses bad arguments with one line and exit code 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from ganjax import attack, classify

sys.path.insert(0, os.path.join(REPO, "tests", "attacks"))
from tiny_classifier import digits_classifier  # noqa: E402


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    """The tiny digits classifier saved with the meta that names its dataset."""
    state, train_set, _ = digits_classifier()
    path = str(tmp_path_factory.mktemp("classifier"))
    classify.save_classifier(path, state, {"image_shape": train_set.image_shape, "data_source": "digits",
                                           "image_size": 16, "class_names": list(train_set.class_names)})
    return path


def test_attack_writes_scores_grid_and_provenance(classifier_dir, tmp_path, capsys):
    out = str(tmp_path / "pgd")
    code = attack.main(["--classifier", classifier_dir, "--attack", "pgd", "--eps", "0.08", "--steps", "5",
                        "--num", "40", "--batch-size", "32", "--seed", "3", "--out", out])
    assert code == 0, capsys.readouterr().err
    assert "robust accuracy" in capsys.readouterr().out
    with open(os.path.join(out, "attack.json")) as stream:
        results = json.load(stream)
    assert set(results) == {"scores", "per_class", "per_image", "settings", "timings", "provenance"}
    scores = results["scores"]
    assert scores["num_images"] == 40 and scores["clean_accuracy"] > 0.9
    assert scores["robust_accuracy"] < scores["clean_accuracy"] - 0.2
    assert scores["num_fooled"] == round((scores["clean_accuracy"] - scores["robust_accuracy"]) * 40)
    assert scores["perturbation_linf"]["max"] <= 0.08 + 1e-6
    assert set(results["per_class"]["robust_accuracy"]) == {str(digit) for digit in range(10)}
    per_image = results["per_image"]
    assert len(per_image["test_index"]) == 40 and per_image["test_index"] == sorted(per_image["test_index"])
    assert np.mean(np.equal(per_image["adversarial_prediction"], per_image["label"])) == scores["robust_accuracy"]
    settings = results["settings"]
    assert (settings["attack"], settings["norm"], settings["eps"], settings["steps"]) == ("pgd", "linf", 0.08, 5)
    assert settings["eps_on_model_range"] == pytest.approx(0.16) and settings["batch_size"] == 32
    assert {"load_s", "attack_s", "images_per_s", "metrics_s"} <= set(results["timings"])
    provenance = results["provenance"]
    assert provenance["workdir"] == os.path.abspath(classifier_dir) and provenance["checkpoint_step"] == 200
    assert provenance["dataset"] == "digits" and provenance["seed"] == 3 and provenance["split"] == "test"
    assert len(provenance["weights_sha256"]) == 64
    assert {"ganjax_version", "jax_version", "devices", "keys", "eps_scale"} <= set(provenance)
    # Three rows (clean, adversarial, perturbation) of 16 images of 16x16, one-pixel borders, enlarged twice.
    with Image.open(os.path.join(out, "attack.png")) as grid:
        assert grid.size == (2 * (16 * 17 + 1), 2 * (3 * 17 + 1))


@pytest.mark.parametrize("arguments, message", [
    (["--attack", "cw", "--eps", "0.1"], "Attack 'cw' is unknown; choose one of fgsm, pgd, apgd-ce, apgd-t"),
    (["--attack", "pgd", "--eps", "0.1", "--norm", "l1"], "Attack norm 'l1' is unknown; choose one of linf, l2"),
    (["--attack", "pgd", "--eps", "-0.1"], "eps must be a non-negative number"),
    (["--attack", "pgd", "--eps", "8"], "exceeds the [0, 1] pixel range"),
    (["--attack", "pgd", "--eps", "0.1", "--steps", "0"], "steps must be an integer >= 1"),
    (["--attack", "fgsm", "--eps", "0.1", "--steps", "10"], "fgsm takes one step"),
    (["--attack", "pgd", "--eps", "0.1", "--num", "100000"], "--num 100000 exceeds the 359 test images"),
])
def test_bad_arguments_end_in_one_line_and_exit_code_2(classifier_dir, tmp_path, capsys, arguments, message):
    code = attack.main(["--classifier", classifier_dir, *arguments, "--out", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("ganjax.attack: error: ") and message in error, error
    assert not os.path.exists(tmp_path / "attack.json")


def test_a_directory_without_a_classifier_says_how_to_make_one(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ganjax.attack", "--classifier", str(tmp_path / "missing"), "--attack", "apgd-ce",
         "--eps", "0.1", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", "")))
    assert result.returncode == 2
    assert "ganjax.attack: error: No classifier at" in result.stderr and "save_classifier" in result.stderr
