import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from ganjax import metrics


def _gaussian(num, dim, seed, shift=0.0):
    return np.random.default_rng(seed).normal(size=(num, dim)) + shift


def _scipy_fid(real, fake):
    mean1, mean2 = real.mean(0), fake.mean(0)
    cov1, cov2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    sqrt_product = scipy.linalg.sqrtm(cov1 @ cov2).real
    return float(np.sum((mean1 - mean2) ** 2) + np.trace(cov1 + cov2 - 2 * sqrt_product))


@pytest.mark.parametrize("shift", [0.0, 0.3, 2.0])
def test_fid_equals_the_scipy_sqrtm_reference(shift):
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(32, 32))
    real = _gaussian(400, 32, 1) @ mixing
    fake = (_gaussian(300, 32, 2, shift) @ mixing) * 1.2
    reference = _scipy_fid(real, fake)
    assert metrics.fid_from_features(real, fake) == pytest.approx(reference, rel=1e-3)
    # JAX arrays and float32 are accepted too.
    assert metrics.fid_from_features(jnp.asarray(real, jnp.float32), fake) == pytest.approx(reference, rel=1e-3)


def test_fid_of_gaussians_is_the_squared_mean_shift():
    same = metrics.fid_from_features(_gaussian(5000, 8, 0), _gaussian(5000, 8, 1))
    shifted = metrics.fid_from_features(_gaussian(5000, 8, 0), _gaussian(5000, 8, 1, shift=1.0))
    assert same < 0.02
    assert shifted == pytest.approx(8.0, rel=0.05)  # ||mu||^2 = 8, covariances equal
    assert metrics.fid_from_features(_gaussian(50, 4, 0), _gaussian(50, 4, 0)) == pytest.approx(0.0, abs=1e-9)


def test_fid_with_fewer_samples_than_dimensions_is_finite():
    # Singular covariances (N < D) break scipy's sqrtm on some inputs; ours stays finite.
    value = metrics.fid_from_features(_gaussian(20, 64, 0), _gaussian(20, 64, 1))
    assert np.isfinite(value) and value > 0


def test_kid_is_zero_for_one_distribution_and_matches_the_analytic_mmd():
    mean, std = metrics.kid_from_features(_gaussian(2000, 16, 0), _gaussian(2000, 16, 1), num_subsets=20)
    assert abs(mean) < 3 * std + 1e-3 and std > 0
    # 1-D, kernel (xy + 1)^3: with moments of N(a, 1), E k(x, y) = (a^3+3a)(b^3+3b) + 3(a^2+1)(b^2+1) + 3ab + 1,
    # so MMD^2(N(0,1), N(1,1)) = K(0,0) + K(1,1) - 2 K(0,1) = 4 + 32 - 2 * 7 = 22.
    mean, std = metrics.kid_from_features(_gaussian(4000, 1, 0), _gaussian(4000, 1, 1, shift=1.0),
                                          num_subsets=20, subset_size=2000)
    assert mean == pytest.approx(22.0, rel=0.1)


def test_kid_with_one_full_subset_is_the_unbiased_mmd():
    real, fake = _gaussian(50, 3, 0), _gaussian(50, 3, 1, shift=0.5)
    kernel = lambda x, y: (x @ y.T / 3 + 1) ** 3  # noqa: E731
    k_rr, k_ff, k_rf = kernel(real, real), kernel(fake, fake), kernel(real, fake)
    expected = ((k_rr.sum() - np.trace(k_rr)) / (50 * 49) + (k_ff.sum() - np.trace(k_ff)) / (50 * 49)
                - 2 * k_rf.mean())
    mean, std = metrics.kid_from_features(real, fake, num_subsets=1, subset_size=1000)
    assert mean == pytest.approx(expected, rel=1e-9) and std == 0.0


def test_precision_recall_density_coverage_of_matching_gaussians():
    real, fake = _gaussian(2000, 4, 0), _gaussian(2000, 4, 1)
    pr = metrics.precision_recall(real, fake)
    dc = metrics.density_coverage(real, fake)
    assert pr["precision"] > 0.85 and pr["recall"] > 0.85
    assert dc["density"] == pytest.approx(1.0, abs=0.1)
    assert dc["coverage"] == pytest.approx(1 - 2**-5, abs=0.03)  # Naeem et al. 2020, sec. 4
    same = metrics.precision_recall(real, real)
    assert same == {"precision": 1.0, "recall": 1.0}


def test_precision_recall_density_coverage_of_disjoint_gaussians_are_zero():
    real, fake = _gaussian(500, 4, 0), _gaussian(500, 4, 1, shift=20.0)
    assert metrics.precision_recall(real, fake) == {"precision": 0.0, "recall": 0.0}
    assert metrics.density_coverage(real, fake) == {"density": 0.0, "coverage": 0.0}


def test_mode_dropping_lowers_recall_and_coverage_not_precision():
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 10
    real = centres[rng.integers(0, 4, 2000)] + rng.normal(size=(2000, 4))
    fake = centres[rng.integers(0, 2, 2000)] + rng.normal(size=(2000, 4))  # two of four modes
    pr, dc = metrics.precision_recall(real, fake), metrics.density_coverage(real, fake)
    # Kept modes are as dense as the real ones: fidelity stays, diversity halves.
    assert pr["precision"] > 0.85 and dc["density"] == pytest.approx(1.0, abs=0.15)
    assert pr["recall"] == pytest.approx(0.5, abs=0.05) and dc["coverage"] == pytest.approx(0.5, abs=0.05)


def test_inception_score_known_values():
    one_hot = np.eye(10)[np.arange(1000) % 10]
    assert metrics.inception_score(one_hot)[0] == pytest.approx(10.0, rel=1e-6)
    assert metrics.inception_score(np.tile(np.eye(10)[:1], (1000, 1)))[0] == pytest.approx(1.0)
    assert metrics.inception_score(np.full((100, 10), 0.1))[0] == pytest.approx(1.0)


def test_class_histogram_metrics():
    conditioning = np.repeat(np.arange(10), 100)
    perfect = metrics.class_histogram_metrics(conditioning, conditioning, 10)
    assert perfect["classes_covered"] == 10 and perfect["class_coverage"] == 1.0
    assert perfect["class_kl"] == pytest.approx(0.0, abs=1e-9)
    collapsed = metrics.class_histogram_metrics(np.zeros(1000, int) + (np.arange(1000) % 2), conditioning, 10)
    assert collapsed["classes_covered"] == 2
    assert collapsed["class_kl"] == pytest.approx(np.log(5), rel=1e-4)  # KL(half/half || uniform over 10)
    assert collapsed["generated_class_counts"][:3] == [500, 500, 0]


def test_intra_class_fid_averages_per_class_fids():
    real, fake = _gaussian(400, 4, 0), _gaussian(400, 4, 1)
    labels = np.arange(400) % 2
    fake[labels == 1] += 3.0
    mean, per_class = metrics.intra_class_fid(real, labels, fake, labels, 2)
    assert per_class[0] < 0.3 and per_class[1] == pytest.approx(36.0, rel=0.15)
    assert mean == pytest.approx(np.mean(per_class))


@pytest.mark.parametrize(
    "function", [metrics.fid_from_features, metrics.kid_from_features, metrics.precision_recall,
                 metrics.density_coverage],
)
def test_bad_inputs_raise_value_errors_naming_the_shapes(function):
    good = _gaussian(50, 8, 0)
    with pytest.raises(ValueError, match=r"\(50, 8\).*\(50, 6\)"):
        function(good, _gaussian(50, 6, 1))
    with pytest.raises(ValueError, match=r"at least \d+ generated samples, got shape \(1, 8\)"):
        function(good, good[:1])
    with_nan = good.copy()
    with_nan[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf in 1 rows"):
        function(with_nan, good)
    with pytest.raises(ValueError, match=r"\[num_samples, dim\], got shape \(50,\)"):
        function(good[:, 0], good)


def test_too_few_samples_for_the_neighbourhood_size():
    with pytest.raises(ValueError, match=r"k=5\) needs at least 6 real samples, got shape \(5, 8\)"):
        metrics.density_coverage(_gaussian(5, 8, 0), _gaussian(50, 8, 1))
    with pytest.raises(ValueError, match="rows summing to 1"):
        metrics.inception_score(np.ones((20, 3)))
    with pytest.raises(ValueError, match="must lie in"):
        metrics.class_histogram_metrics([0, 11], [0, 1], 10)
