import numpy as np
import pytest

from ganjax import classify
from ganjax.config import default_config
from ganjax.metrics import features


@pytest.fixture(scope="module")
def digits_config():
    config = default_config()
    config.data.image_size = 16
    return config


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory, digits_config):
    path = str(tmp_path_factory.mktemp("features") / "classifier")
    features.domain_classifier(digits_config.data, path, steps=30, progress=False)
    return path


def test_domain_features_layers_and_provenance(digits_config, classifier_path):
    images = np.random.default_rng(0).uniform(-1, 1, (7, 16, 16, 1)).astype(np.float32)
    pooled = features.domain_feature_extractor(digits_config.data, classifier_path, train_if_missing=False)
    flat = features.domain_feature_extractor(digits_config.data, classifier_path, layer="penultimate",
                                             train_if_missing=False)
    pooled_features, logits = pooled.extract(images, batch_size=4)  # two batches, the last padded
    flat_features, _ = flat.extract(images)
    assert pooled_features.shape == (7, 128) and flat_features.shape == (7, 4 * 4 * 128) and logits.shape == (7, 10)
    # pooled = the spatial mean of the flattened map; logits = the classifier's own.
    np.testing.assert_allclose(pooled_features, flat_features.reshape(7, 4, 4, 128).mean(axis=(1, 2)), atol=1e-5)
    state, meta = classify.load_classifier(classifier_path)
    np.testing.assert_allclose(logits, classify.predict(state, images), atol=1e-4)
    assert pooled.provenance["weights_sha256"] == meta["weights_sha256"]
    assert pooled.provenance["dim"] == 128 and pooled.provenance["layer"] == "pooled"
    assert 0 <= meta["real_test_accuracy"] <= 1 and meta["data_source"] == "digits"


def test_bad_images_and_mismatched_classifiers_raise(digits_config, classifier_path):
    extractor = features.domain_feature_extractor(digits_config.data, classifier_path, train_if_missing=False)
    with pytest.raises(ValueError, match=r"takes images \[N, 16, 16, 1\], got shape \(2, 28, 28, 1\)"):
        extractor.extract(np.zeros((2, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        extractor.extract(np.zeros((2, 16, 16, 1), np.uint8))
    other = default_config()
    other.data.image_size = 24
    with pytest.raises(ValueError, match="image_size 16, not 24"):
        features.domain_classifier(other.data, classifier_path)
    with pytest.raises(ValueError, match="layer 'logits' is unknown"):
        features.domain_feature_extractor(digits_config.data, classifier_path, layer="logits")


def test_missing_classifier_says_how_to_get_it(digits_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="(?s)No domain classifier at .*ganjax.evaluate"):
        features.domain_feature_extractor(digits_config.data, str(tmp_path / "none"), train_if_missing=False)


def test_default_cache_path_follows_ganjax_cache(digits_config, monkeypatch, tmp_path):
    monkeypatch.setenv("GANJAX_CACHE", str(tmp_path))
    assert features.default_classifier_dir(digits_config.data) == str(tmp_path / "domain_classifiers" / "digits_16")


def test_reference_features_are_cached_by_weights_and_images(digits_config, classifier_path, tmp_path, monkeypatch):
    extractor = features.domain_feature_extractor(digits_config.data, classifier_path, train_if_missing=False)
    images = np.random.default_rng(1).uniform(-1, 1, (9, 16, 16, 1)).astype(np.float32)
    cache = str(tmp_path / "reference")
    first, first_logits, info = features.reference_features(extractor, images, cache)
    assert info["cache"] == "written" and info["path"].startswith(cache)
    expected, expected_logits = extractor.extract(images)
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(first_logits, expected_logits)

    # A hit reads the file back without running the network.
    monkeypatch.setattr(extractor, "apply_batch", lambda batch: pytest.fail("the network ran on a cache hit"))
    second, _, info = features.reference_features(extractor, images, cache)
    assert info["cache"] == "hit"
    np.testing.assert_array_equal(second, expected)
    monkeypatch.undo()

    # Other images, or other weights, get another entry.
    _, _, other = features.reference_features(extractor, images[::-1], cache)
    assert other["cache"] == "written" and other["path"] != info["path"]
    reweighted = features.FeatureExtractor(
        extractor.name, extractor.apply_batch, extractor.image_shape, {**extractor.provenance, "weights_sha256": "0" * 64}
    )
    assert features.reference_cache_key(reweighted, images) != info["key"]

    # An unreadable entry is recomputed and rewritten; no cache dir means no file.
    with open(info["path"], "wb") as stream:
        stream.write(b"truncated")
    repaired, _, repaired_info = features.reference_features(extractor, images, cache)
    assert repaired_info["cache"] == "written"
    np.testing.assert_array_equal(repaired, expected)
    assert features.reference_features(extractor, images, None)[2] == {"cache": "off", "path": None, "key": None}
    assert not [name for name in __import__("os").listdir(cache) if name.endswith(".tmp.npz")]
