import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from ganjax.repair.__main__ import GRID_FILE, RESULT_FILE, main

SCORE_NAMES = {"psnr", "ssim", "psnr_region", "ssim_region"}


def _results(out):
    with open(os.path.join(out, RESULT_FILE)) as stream:
        return json.load(stream)


def test_inversion_writes_the_grid_and_repair_json(tiny_gan_workdir, tmp_path, capsys):
    out = str(tmp_path / "inversion")
    code = main(["--workdir", tiny_gan_workdir, "--damage", "centre:0.5", "--method", "inversion", "--num", "3",
                 "--steps", "4", "--restarts", "1", "--seed", "1", "--out", out])
    assert code == 0, capsys.readouterr().err
    grid = Image.open(os.path.join(out, GRID_FILE))
    assert grid.size == (2 * (3 * 17 + 1), 2 * (3 * 17 + 1))  # 3 images a row; clean, damaged, repaired rows
    results = _results(out)
    assert set(results) == {"scores", "per_image", "settings", "timings", "provenance"}
    for images in ("repaired", "damaged"):
        assert set(results["scores"][images]) == SCORE_NAMES
        for score in results["scores"][images].values():
            assert set(score) == {"mean", "std", "count"} and score["count"] == 3
    assert len(results["per_image"]["repaired_psnr_region"]) == 3
    np.testing.assert_allclose(results["per_image"]["damaged_fraction"], 0.25)
    settings = results["settings"]
    assert settings["method"] == "inversion" and settings["steps"] == 4 and settings["restarts"] == 1
    assert settings["prior_weight"] == 0.003 and "all 10 tried" in settings["classes"]
    assert results["timings"]["images_per_s"] > 0
    provenance = results["provenance"]
    assert provenance["workdir"] == os.path.abspath(tiny_gan_workdir)
    assert provenance["checkpoint_step"] == 4 and provenance["damage"] == "centre:0.5" and provenance["seed"] == 1
    assert provenance["ganjax_version"] and provenance["jax_version"] and provenance["dataset"] == "digits"
    assert "wrote" in capsys.readouterr().out


def test_classic_denoising_scores_the_whole_image_as_the_damaged_region(tiny_gan_workdir, tmp_path):
    out = str(tmp_path / "classic")
    assert main(["--workdir", tiny_gan_workdir, "--damage", "noise:0.2", "--method", "classic", "--num", "4",
                 "--out", out]) == 0
    results = _results(out)
    repaired, damaged = results["scores"]["repaired"], results["scores"]["damaged"]
    assert repaired["psnr"] == repaired["psnr_region"]
    assert repaired["psnr"]["mean"] > damaged["psnr"]["mean"], "TV denoising did not help"
    assert results["settings"]["algorithm"] == "skimage.restoration.denoise_tv_chambolle"


@pytest.mark.parametrize("arguments, message", [
    (["--damage", "blur:0.5"], "Damage 'blur:0.5' is unknown; write NAME:SEVERITY"),
    (["--damage", "centre:1.5"], "severity '1.5' is not a number strictly between 0 and 1"),
    (["--damage", "centre:0.5", "--method", "magic"], "Repair method 'magic' is unknown; choose one of"),
    (["--damage", "centre:0.5", "--num", "0"], "--num must be positive"),
    (["--damage", "centre:0.5", "--method", "mean", "--num", "100000"], "exceeds the"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(tiny_gan_workdir, tmp_path, capsys, arguments, message):
    code = main(["--workdir", tiny_gan_workdir, "--out", str(tmp_path / "out"), *arguments])
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("ganjax.repair: error: ") and message in error and error.count("\n") == 1
    assert not os.path.exists(tmp_path / "out" / RESULT_FILE)


def test_a_workdir_without_a_generator_says_to_train_one(tmp_path, capsys):
    code = main(["--workdir", str(tmp_path / "empty"), "--damage", "centre:0.5", "--method", "mean",
                 "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 2
    assert "No checkpoint directory" in error and "Train first: python -m ganjax.train" in error


def test_python_dash_m_ganjax_repair_runs(tiny_gan_workdir, tmp_path):
    out = str(tmp_path / "module")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    completed = subprocess.run(
        [sys.executable, "-m", "ganjax.repair", "--workdir", tiny_gan_workdir, "--damage", "half:left",
         "--method", "mean", "--num", "2", "--out", out],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert _results(out)["settings"] == {"method": "mean"}
    assert os.path.exists(os.path.join(out, GRID_FILE))
