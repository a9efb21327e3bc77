"""Every FID/KID/precision-recall key names its feature extractor; readers of older files still read them."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO
from ganjax import evaluate, live
from ganjax.metrics import features
from ganjax.metrics.features import FeatureExtractor, score_key

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import regime_map


@pytest.mark.parametrize("score, feature_name, key", [
    ("fid", "inception", "fid_inception"),
    ("fid", "domain", "fid_domain"),
    ("kid_mean", "inception", "kid_inception_mean"),
    ("kid_std", "domain", "kid_domain_std"),
    ("precision", "domain", "precision_domain"),
    ("intra_class_fid", "domain", "intra_class_fid_domain"),
    ("inception_score_mean", "domain", "inception_score_domain_mean"),
])
def test_score_key_names_the_features(score, feature_name, key):
    assert score_key(score, feature_name) == key


def test_score_key_rejects_unknown_features():
    with pytest.raises(ValueError, match="'pixels'.*'domain', 'inception'"):
        score_key("fid", "pixels")


def test_the_live_fid_key_names_domain_features_and_old_best_checkpoints_still_read(monkeypatch, tmp_path):
    assert live.LIVE_FID == "live_fid_domain"
    monkeypatch.setattr(live.checkpoint, "latest_step", lambda workdir: 6)
    for record, expected in [({"live_fid_domain": 2.5}, 2.5), ({"live_fid": 3.5}, 3.5), ({}, float("inf"))]:
        monkeypatch.setattr(live.checkpoint, "restore_meta", lambda workdir, record=record: (6, {"live": record}))
        assert live.best_fid(str(tmp_path)) == expected


def _results(scores, extractor="domain"):
    return {"scores": scores, "provenance": {"feature_extractor": {"name": extractor}}}


def test_read_score_reads_new_keys_and_old_files_only_for_their_own_features():
    assert evaluate.read_score(_results({"fid_inception": 18.1, "fid_domain": 1.1}), "fid", "inception") == 18.1
    assert evaluate.read_score(_results({"fid_domain": 1.1}), "fid", "domain") == 1.1
    # An eval.json written before the keys named their features: "fid" is the extractor's FID.
    old_inception = _results({"fid": 18.1, "kid_mean": 0.01}, extractor="inception")
    assert evaluate.read_score(old_inception, "fid", "inception") == 18.1
    assert evaluate.read_score(old_inception, "kid_mean", "inception") == 0.01
    with pytest.raises(KeyError, match="fid_domain.*--features domain"):
        evaluate.read_score(old_inception, "fid", "domain")


def test_the_shipped_old_inception_results_read_as_inception():
    with open(os.path.join(REPO, "benchmarks", "results", "fashion_mnist_eval_inception.json")) as stream:
        results = json.load(stream)
    assert evaluate.read_score(results, "fid", "inception") == results["scores"]["fid"]
    with pytest.raises(KeyError):
        evaluate.read_score(results, "fid", "domain")


@pytest.mark.parametrize("scores", [
    {"fid": 4.0, "intra_class_fid": 9.0, "conditional_accuracy": 0.8},  # a cache from before the rename
    {"fid_domain": 4.0, "intra_class_fid_domain": 9.0, "conditional_accuracy": 0.8},
])
def test_the_regime_map_reads_its_cached_gan_quality_in_either_naming(tmp_path, scores):
    with open(tmp_path / "regime_map_eval.json", "w") as stream:
        json.dump(_results(scores), stream)
    assert regime_map.gan_quality(str(tmp_path)) == {
        "fid_domain": 4.0, "intra_class_fid_domain": 9.0, "conditional_accuracy": 0.8}


def _stand_in_inception(weights_path=None, batch_size=50):
    """A cheap extractor under the name "inception": 4x4-pooled pixels, no logits."""

    def apply_batch(images):
        pooled = images[..., :1].reshape(images.shape[0], 4, 4, 4, 4).mean(axis=(2, 4))
        return pooled.reshape(images.shape[0], 16), jnp.zeros((images.shape[0], 0))

    provenance = {"name": "inception", "weights_sha256": "0" * 64, "resizer": "none (test stand-in)"}
    return FeatureExtractor("inception", jax.jit(apply_batch), (16, 16, 1), provenance, batch_size=batch_size)


def test_evaluate_names_inception_features_in_eval_json_and_on_the_command_line(
        tiny_gan_workdir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(features, "inception_feature_extractor", _stand_in_inception)
    out = str(tmp_path / "eval.json")
    assert evaluate.main(["--workdir", tiny_gan_workdir, "--metrics", "fid,kid,pr,dc,ic_fid", "--num", "100",
                          "--features", "inception", "--no-reference-cache", "--out", out]) == 0
    with open(out) as stream:
        results = json.load(stream)
    expected = {"fid_inception", "kid_inception_mean", "kid_inception_std", "precision_inception",
                "recall_inception", "density_inception", "coverage_inception", "intra_class_fid_inception"}
    assert set(results["scores"]) == expected
    assert all(np.isfinite(value) for value in results["scores"].values())
    assert set(results["per_class"]) == {"fid_inception"}
    printed = {line.split(":")[0].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert printed == expected
    assert evaluate.read_score(results, "fid", "inception") == results["scores"]["fid_inception"]
