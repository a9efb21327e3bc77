"""The study engine: records reused only on an equal defining config, no choice on the test
split, one validation rule, steps per call for every strategy, a light config import."""

import json
import os

import jax
import numpy as np
import pytest

from conftest import run_python
from ganjax import data, experiment, parallel
from ganjax.config import load_config
from ganjax.studies import engine, long_tail


def _tiny_lt(**overrides):
    config = load_config("digits_lt")
    config.classifier.steps = 12
    config.experiment.num_seeds = 2
    config.experiment.strategies = "plain,oversample"
    for name, value in overrides.items():
        section, key = name.split("__")
        config[section][key] = value
    return config


def _count_training(monkeypatch) -> list[str]:
    trained = []
    real_train = engine.train

    def counting_train(strategy, *args, **kwargs):
        trained.append(strategy.name)
        return real_train(strategy, *args, **kwargs)

    monkeypatch.setattr(engine, "train", counting_train)
    return trained


def test_a_finished_strategy_is_reused_only_when_its_defining_config_is_equal(tmp_path, monkeypatch):
    workdir = os.fspath(tmp_path)
    trained = _count_training(monkeypatch)
    first = experiment.run_experiment(_tiny_lt(experiment__strategies="plain"), workdir, progress=False)
    assert trained == ["plain"]
    assert os.path.exists(engine.record_path(workdir, "plain"))
    assert open(os.path.join(workdir, "report.md")).read().startswith(
        "# Recognition on long-tailed data: digits (long_tail)")  # titled by the study
    saved = json.loads(open(os.path.join(workdir, "report.json")).read())
    assert saved["meta"]["study"] == "long_tail" and saved["meta"]["best_on_validation"] == "plain"
    # Result-neutral keys (the list of strategies, evaluation chunking, steps per call) may change.
    again = experiment.run_experiment(
        _tiny_lt(experiment__eval_batch_size=100, classifier__steps_per_call=4), workdir, progress=False
    )
    assert trained == ["plain", "oversample"]
    assert again["plain"] == first["plain"]
    # A key that defines the strategy refuses, naming the key and both values.
    with pytest.raises(ValueError, match=r"classifier.learning_rate: 0.003 -> 0.001.*delete") as error:
        experiment.run_experiment(_tiny_lt(classifier__learning_rate=1e-3), workdir, progress=False)
    assert "plain" in str(error.value)
    assert trained == ["plain", "oversample"]


def test_config_differences_cover_only_the_strategy_sections_and_skip_neutral_keys():
    config = _tiny_lt()
    saved = config.to_dict()
    changed = _tiny_lt(semi__steps=7, train__log_every=7, experiment__strategies="plain",
                       classifier__width=4)
    differences = engine.config_differences(saved, changed, long_tail.CLASSIFIER_SECTIONS)
    assert differences == {"classifier.width": (8, 4)}
    # A record written before a key existed: the key counts as its default.
    del saved["classifier"]["steps_per_call"]
    assert engine.config_differences(saved, config, long_tail.CLASSIFIER_SECTIONS) == {}


def _replace_test_labels(monkeypatch, label: int):
    """Makes the long-tail study see a test split whose labels are all `label`."""
    real_prepare = long_tail.prepare

    def prepare(*args, **kwargs):
        context = real_prepare(*args, **kwargs)
        test = context.test_set
        context.test_set = data.Dataset(test.images, np.full_like(test.labels, label), test.class_names)
        return context

    monkeypatch.setattr(long_tail, "prepare", prepare)


def test_the_test_split_reaches_no_selection(tmp_path, monkeypatch):
    """Two runs whose test splits disagree completely must choose the same strategy and carve
    the same validation split; only the reported test figures may differ."""
    reports = []
    for label in (0, 1):
        _replace_test_labels(monkeypatch, label)
        reports.append(experiment.run_experiment(_tiny_lt(), os.fspath(tmp_path / f"run{label}"), progress=False))
    first, second = (report["meta"] for report in reports)
    assert first["best_on_validation"] == second["best_on_validation"] is not None
    assert first["validation_mean"] == second["validation_mean"]
    assert first["class_counts"]["validation"] == second["class_counts"]["validation"]
    assert reports[0]["plain"]["accuracy"] != reports[1]["plain"]["accuracy"]
    best = first["best_on_validation"]
    means = first["validation_mean"]
    assert means[best]["balanced_accuracy"] == max(m["balanced_accuracy"] for m in means.values())


def test_carve_validation_is_stratified_saved_and_checked(tmp_path):
    labels = np.repeat(np.arange(3), [10, 6, 4])
    candidates = np.arange(2, 20)
    sizes = np.array([2, 1, 3])
    indices = engine.carve_validation(os.fspath(tmp_path), labels, candidates, sizes, 0, {"study": "test"})
    np.testing.assert_array_equal(np.bincount(labels[indices], minlength=3), sizes)
    assert set(indices) <= set(candidates) and np.all(np.diff(indices) > 0)
    again = engine.carve_validation(os.fspath(tmp_path), labels, candidates, sizes, 0, {"study": "test"})
    np.testing.assert_array_equal(again, indices)
    with pytest.raises(ValueError, match="another validation split"):
        engine.carve_validation(os.fspath(tmp_path), labels, candidates, sizes, 1, {"study": "test"})
    with pytest.raises(ValueError, match="more images than some classes have"):
        engine.carve_validation(os.fspath(tmp_path / "other"), labels, candidates, np.array([2, 1, 5]), 0, {})


@pytest.mark.parametrize("name", ["oversample", pytest.param("gan+augment", marks=pytest.mark.slow)])
def test_steps_per_call_gives_the_same_classifiers_for_long_tail_strategies(tmp_path, name):
    config = _tiny_lt(classifier__steps=7, train__steps=4, experiment__strategies=name)
    mesh = parallel.make_mesh()
    context = long_tail.prepare(config, os.fspath(tmp_path), mesh, progress=False)
    per_step = engine.train(engine.build_strategy(name, context), config, mesh, progress=False)
    config.classifier.steps_per_call = 3  # two calls of 3, then one single step
    scanned = engine.train(engine.build_strategy(name, context), config, mesh, progress=False)
    assert int(scanned.step[0]) == 7
    for expected, actual in zip(jax.tree.leaves(jax.device_get(per_step)), jax.tree.leaves(jax.device_get(scanned))):
        np.testing.assert_array_equal(expected, actual)


def test_a_diverging_strategy_stops_with_the_setting_to_change(tmp_path):
    config = _tiny_lt(classifier__learning_rate=1e30, classifier__steps=100, experiment__strategies="plain")
    with pytest.raises(FloatingPointError, match=r"plain: non-finite metrics .* lower classifier.learning_rate"):
        experiment.run_experiment(config, os.fspath(tmp_path), progress=False)


def test_loading_a_config_imports_no_step_model_or_study_code():
    result = run_python(
        "import sys, ganjax\n"
        "config = ganjax.load_config('digits_lt')\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('ganjax.steps', 'ganjax.models', 'ganjax.studies', "
        "'flax', 'optax')))\n"
        "print('HEAVY', heavy)\n"
        "assert not heavy, heavy\n"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HEAVY []" in result.stdout


def test_an_unknown_strategy_name_is_refused_naming_the_choices(tmp_path):
    context = engine.StudyContext("long_tail", _tiny_lt(), os.fspath(tmp_path), None, None, None, None, np.array([]))
    with pytest.raises(ValueError, match="Strategy 'mixup' is unknown"):
        engine.build_strategy("mixup", context)


def test_a_finish_hooks_seed_metrics_join_the_engines_and_a_seed_count_mismatch_is_refused():
    merged = engine.merge_seed_metrics([{"accuracy": 0.9}, {"accuracy": 0.8}], [{"robust": 0.5}, {"robust": 0.4}])
    assert merged == [{"accuracy": 0.9, "robust": 0.5}, {"accuracy": 0.8, "robust": 0.4}]
    assert engine.merge_seed_metrics([{"accuracy": 0.9}], None) == [{"accuracy": 0.9}]
    with pytest.raises(ValueError, match="metrics of 1 seeds for a split the engine evaluated for 2 seeds"):
        engine.merge_seed_metrics([{"accuracy": 0.9}, {"accuracy": 0.8}], [{"robust": 0.5}])
    with pytest.raises(ValueError, match="not at all"):
        engine.merge_seed_metrics(None, [{"robust": 0.5}])


def _tiny_long_tail_with_gan(strategies: str):
    """The tiny GAN config on long-tailed digits (its GAN: 4 steps, trained in WORKDIR/gan), 2 tiny classifiers."""
    from conftest import make_tiny_config

    config = make_tiny_config()
    config.data.subset = "long_tail"
    config.data.imbalance_ratio = 10.0
    config.experiment.strategies = strategies
    config.experiment.num_seeds = 2
    config.classifier.width = 4
    config.classifier.steps = 10
    config.classifier.batch_size = 16
    config.experiment.eval_batch_size = 64
    return config


def test_a_validated_gan_strategy_at_share_0_is_its_classic_twin_and_grids_unite(tmp_path):
    from ganjax.config import validate_config

    config = _tiny_long_tail_with_gan("plain,gan")
    # Two grids: the share of uniform batches (0 included), or a top-up level (the share then unused).
    config.experiment.grid = "experiment.synthetic_fraction=0,0.5 | experiment.synthetic_top_up=100"
    workdir = os.fspath(tmp_path)
    full = experiment.run_experiment(validate_config(config), workdir, progress=False)
    points = [("experiment.synthetic_fraction=0",), ("experiment.synthetic_fraction=0.5",),
              ("experiment.synthetic_top_up=100",)]
    records = [json.load(open(engine.record_path(workdir, engine.point_name("gan", point)))) for point in points]
    plain = json.load(open(engine.record_path(workdir, "plain")))
    assert records[0]["validation"] == plain["validation"]  # share 0: plain's batches, keys and step
    assert records[1]["validation"] != plain["validation"]
    assert records[2]["config"]["experiment"]["synthetic_top_up"] == 100
    scores = [np.mean([seed["balanced_accuracy"] for seed in record["validation"]]) for record in records]
    grid = full["meta"]["grid"]["gan"]
    assert [point["point"] for point in grid["points"]] == [list(point) for point in points]
    assert grid["chosen"] == list(points[int(np.argmax(scores))])
    assert full["gan"]["balanced_accuracy"]["per_seed"] == [
        seed["balanced_accuracy"] for seed in json.load(open(engine.record_path(workdir, "gan")))["per_seed"]]
    # Another choice rule on the same grid chooses again from the saved points: none is retrained.
    point_times = [os.path.getmtime(engine.record_path(workdir, engine.point_name("gan", p))) for p in points]
    config.experiment.grid_choice = "significant"
    again = experiment.run_experiment(validate_config(config), workdir, progress=False)
    per_seed = [[seed["balanced_accuracy"] for seed in record["validation"]] for record in records]
    assert again["meta"]["grid"]["gan"]["choice"] == "significant"
    assert again["meta"]["grid"]["gan"]["chosen"] == list(points[engine.choose_point(per_seed, "significant")])
    # "strict" also redraws the validation images; each point's predictions come from its saved states.
    config.experiment.grid_choice = "strict"
    strict = experiment.run_experiment(validate_config(config), workdir, progress=False)["meta"]["grid"]["gan"]
    lower = [point["validation_image_lower"] for point in strict["points"]]
    assert lower[0] == 0.0 and all(-1.0 <= value <= 1.0 for value in lower[1:])
    assert strict["chosen"] == list(points[engine.choose_point(per_seed, "strict", lower)])
    assert point_times == [os.path.getmtime(engine.record_path(workdir, engine.point_name("gan", p))) for p in points]


def test_the_significant_grid_choice_keeps_the_first_point_unless_the_seeds_agree_on_a_better_one():
    first = [0.80, 0.82, 0.81]
    noisy = [0.83, 0.80, 0.84]  # a higher mean, but one seed below the first point: the interval holds 0
    steady = [0.815, 0.835, 0.825]  # 1.5 points above on every seed
    assert engine.choose_point([first, noisy], "best") == 1
    assert engine.choose_point([first, noisy], "significant") == 0
    assert engine.choose_point([first, noisy, steady], "significant") == 2
    assert engine.choose_point([first, steady, [0.9, 0.92, 0.91]], "significant") == 2  # the best of the better
    assert engine.choose_point([[0.8], [0.8]], "significant") == 0
    # "strict": the seeds' test and the validation images' (image_lower, the lower ends of their intervals).
    assert engine.choose_point([first, noisy, steady], "strict", [0.0, 0.01, -0.002]) == 0
    assert engine.choose_point([first, noisy, steady], "strict", [0.0, 0.01, 0.001]) == 2
    with pytest.raises(ValueError, match="image_lower"):
        engine.choose_point([first, steady], "strict")
    with pytest.raises(ValueError, match="grid choice"):
        engine.choose_point([first], "median")


def test_grid_points_are_the_union_of_each_grids_product_over_a_strategys_keys():
    from ganjax import names

    grids = names.parse_grid("experiment.synthetic_top_up=0;experiment.synthetic_fraction=0,0.25 | "
                             "experiment.synthetic_top_up=500,1000;experiment.filter=none,confidence")
    assert names.grid_assignments(grids)[:3] == [
        ("experiment.synthetic_top_up=0", "experiment.synthetic_fraction=0"),
        ("experiment.synthetic_top_up=0", "experiment.synthetic_fraction=0.25"),
        ("experiment.synthetic_top_up=500", "experiment.filter=none")]
    assert len(names.grid_assignments(grids)) == 6
    # Only the axes a strategy may vary count, and a repeated point is tried once.
    assert names.grid_assignments(grids, ("experiment.synthetic_top_up",)) == [
        ("experiment.synthetic_top_up=0",), ("experiment.synthetic_top_up=500",), ("experiment.synthetic_top_up=1000",)]
    assert names.grid_assignments(grids, ("robust.generated_fraction",)) == []
    with pytest.raises(ValueError, match="empty grid"):
        names.parse_grid("experiment.filter=none | ")


def test_teacher_labels_come_from_the_plain_classifiers_and_a_grid_may_choose_them(tmp_path, monkeypatch):
    from ganjax.config import validate_config
    from ganjax.steps import classifier_eval_step
    from ganjax.studies.strategies import synthetic

    config = _tiny_long_tail_with_gan("plain,gan+oversample")
    config.experiment.grid = "experiment.synthetic_labels=conditioning,teacher"
    config = validate_config(config)
    workdir = os.fspath(tmp_path)
    teachers = []
    real_taught = synthetic.taught

    def recording_taught(strategy, spec, context):
        strategy = real_taught(strategy, spec, context)
        teachers.append(context.resources["teacher"])
        return strategy

    monkeypatch.setattr(synthetic, "taught", recording_taught)
    full = experiment.run_experiment(config, workdir, progress=False)
    assert len(teachers) == 1  # the teacher point alone builds a taught strategy
    points = [point["point"] for point in full["meta"]["grid"]["gan+oversample"]["points"]]
    assert points == [["experiment.synthetic_labels=conditioning"], ["experiment.synthetic_labels=teacher"]]
    # The teachers are the plain strategy's classifiers: the same validation predictions, seed by seed.
    context = long_tail.prepare(config, workdir, parallel.make_mesh(), progress=False)
    teacher_metrics = engine.evaluator(context, classifier_eval_step)(teachers[0], context.validation_set)
    plain = json.load(open(engine.record_path(workdir, "plain")))
    assert json.loads(json.dumps(teacher_metrics, default=engine._json_default)) == plain["validation"]
