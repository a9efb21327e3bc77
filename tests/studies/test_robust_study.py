"""The robust study on the engine (ganjax.studies.robust, ganjax.studies.strategies.robust)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import make_tiny_config
from ganjax import data, losses, names
from ganjax.attacks import to_model_scale
from ganjax.classify import build_classifier
from ganjax.config import validate_config
from ganjax.state import ModelState
from ganjax.steps import ClassifierStepSpec, classifier_train_step, make_classifier_step
from ganjax.studies import engine
from ganjax.studies import robust as robust_study
from ganjax.studies.strategies import robust as robust_strategies

# The fast run trains three strategies; the slow test adds the other two to a copy of its workdir.
FAST_STRATEGIES = ("standard", "pgd_at", "defense_gan")
ATTACKED = ("standard", "pgd_at", "trades", "pgd_at_generated")  # attacked alone; defense_gan has its own table
STRATEGIES = names.ROBUST_STRATEGIES


def robust_config(generator_workdir: str, strategies=FAST_STRATEGIES):
    config = make_tiny_config()
    config.experiment.study = "robust"
    config.experiment.strategies = ",".join(strategies)
    config.experiment.generator_workdir = generator_workdir
    config.experiment.num_seeds = 2
    config.experiment.eval_batch_size = 64
    config.classifier.width = 4
    config.classifier.steps = 10
    config.classifier.batch_size = 16
    config.robust.train_steps = 2
    config.robust.eval_steps = 3
    config.robust.apgd_steps = 4
    # Equal sizes: one compiled program per attack serves both splits.
    config.robust.num_test = 30
    config.robust.num_validation = 30
    config.robust.extra_budgets = "l2:1.0"
    config.robust.advgan_steps = 20
    config.robust.advgan_against = "standard"
    config.defense.steps = 3
    config.defense.restarts = 1
    config.defense.classes = 2
    config.defense.attack_steps = 2
    config.defense.num_test = 10
    config.defense.num_validation = 10
    config.defense.batch_size = 10
    return validate_config(config)


@pytest.fixture(scope="module")
def robust_run(tiny_gan_workdir, tmp_path_factory):
    from ganjax.studies import run

    workdir = str(tmp_path_factory.mktemp("robust_study"))
    config = robust_config(tiny_gan_workdir)
    return config, workdir, run(config, workdir, progress=False)


def check_table(config, full, strategies):
    """The robustness table's rows and columns, and robust <= each attack <= clean per seed."""
    meta = full["meta"]
    assert meta["study"] == "robust"
    assert meta["scored_images"] == {"validation": 30, "test": 30}
    table = meta["robust_table"]
    assert list(table) == list(strategies)
    for name, row in table.items():
        assert row["max_perturbation"]["linf:0.1"] <= config.robust.eps + 1e-6
        if name == "defense_gan":
            check_defense_row(row, full)
            continue
        advgan = name in names.parse_strategies(config.robust.advgan_against)
        assert set(row["test"]) == {"accuracy", *robust_study.COLUMNS} | ({"advgan_accuracy"} if advgan else set())
        assert set(row["test"]["robust_accuracy"]) == {"mean", "std", "ci95", "per_seed"}
        # The L2 budget: test images only, its own worst case, inside its ball.
        l2 = row["budgets"]["l2:1"]
        assert set(l2) == set(robust_study.COLUMNS)
        assert row["max_perturbation"]["l2:1"] <= 1.0 + 1e-5
        assert np.all(np.asarray(l2["robust_accuracy"]["per_seed"]) <= np.asarray(l2["pgd_accuracy"]["per_seed"]))
        assert l2["clean_accuracy"] == row["test"]["clean_accuracy"]
        if advgan:
            assert np.all(np.asarray(row["test"]["advgan_accuracy"]["per_seed"])
                          <= np.asarray(row["test"]["clean_accuracy"]["per_seed"]))
            assert set(row["success_rate"]) == {"pgd", "advgan"}
        for split in ("test", "validation"):
            columns = {column: np.asarray(row[split][column]["per_seed"]) for column in robust_study.COLUMNS}
            assert all(len(values) == 2 for values in columns.values())
            assert np.all(columns["robust_accuracy"] <= columns["clean_accuracy"])
            assert np.all(columns["robust_accuracy"] <= np.minimum(columns["pgd_accuracy"], columns["apgd_ce_accuracy"]))
            assert np.all(np.maximum(columns["pgd_accuracy"], columns["apgd_ce_accuracy"]) <= columns["clean_accuracy"])
        # The engine's report table reads the same per-seed numbers.
        assert full[name]["robust_accuracy"]["per_seed"] == row["test"]["robust_accuracy"]["per_seed"]


def check_defense_row(row, full):
    """defense_gan: its own columns, on its subsets; robust only if clean and both attacks fail."""
    assert set(row["test"]) == {"accuracy", "undefended_clean_accuracy", *robust_study.COLUMNS[:1],
                                *robust_study.DEFENSE_COLUMNS, "robust_accuracy"}
    for split in ("test", "validation"):
        values = {column: np.asarray(summary["per_seed"]) for column, summary in row[split].items()}
        assert np.all(values["robust_accuracy"] <= np.minimum(values["naive_accuracy"], values["bpda_accuracy"]))
        assert np.all(np.maximum(values["naive_accuracy"], values["bpda_accuracy"]) <= values["clean_accuracy"])
    defense = full["meta"]["defense_gan"]
    assert defense["scored_images"] == {"validation": 10, "test": 10}
    assert defense["settings"]["attack_steps"] == 2 and defense["gan"]["checkpoint_step"] == 4
    # The classifier behind the projection is standard's: the same stream, steps and batches.
    assert full["defense_gan"]["accuracy"]["per_seed"] == full["standard"]["accuracy"]["per_seed"]
    assert "pgd_accuracy" not in full["defense_gan"]  # the engine's table shows a dash there


def test_robust_study_writes_the_table_and_robust_accuracy_is_at_most_clean(robust_run):
    config, workdir, full = robust_run
    check_table(config, full, FAST_STRATEGIES)
    with open(os.path.join(workdir, "report.md")) as stream:
        text = stream.read()
    assert text.startswith("# Adversarial robustness")
    assert "| strategy | clean | PGD-3 | APGD-CE (4) | worst case | validation worst case |" in text
    assert "BatchNorm in inference mode" in text
    assert "### Other budgets (test images only)" in text and "| l2:1 PGD | l2:1 APGD-CE | l2:1 worst case |" in text
    assert "### AdvGAN beside PGD" in text and "| standard | " in text.split("### AdvGAN beside PGD")[1]
    assert "### Defense-GAN" in text and "BPDA+EOT PGD-2" in text
    assert "| defense_gan | " in text and "| — |" in text  # the engine's table: no PGD column of its own


@pytest.mark.slow  # trains trades and pgd_at_generated too: ~1.5 min more on a busy 2-core machine
def test_robust_study_with_every_strategy(robust_run, tmp_path):
    import shutil

    from ganjax.studies import run

    config, workdir, _ = robust_run
    shutil.copytree(workdir, tmp_path / "run")  # a later run adds strategies; the fast ones are reused
    config = robust_config(config.experiment.generator_workdir, STRATEGIES)
    full = run(config, str(tmp_path / "run"), progress=False)
    check_table(config, full, STRATEGIES)
    meta = full["meta"]
    assert meta["gan"]["workdir"] == config.experiment.generator_workdir
    difference = meta["pgd_at_generated_minus_pgd_at"]["per_seed"]
    table = meta["robust_table"]
    assert difference == pytest.approx(np.subtract(table["pgd_at_generated"]["test"]["robust_accuracy"]["per_seed"],
                                                   table["pgd_at"]["test"]["robust_accuracy"]["per_seed"]))
    text = open(tmp_path / "run" / "report.md").read()
    assert "pgd_at_generated - pgd_at" in text and "made by the conditional GAN" in text


def test_robust_study_chooses_the_best_strategy_on_validation(robust_run):
    _, workdir, full = robust_run
    means = {}
    for name in FAST_STRATEGIES:  # defense_gan competes with its worst case under the adaptive attack
        with open(engine.record_path(workdir, name)) as stream:
            record = json.load(stream)
        assert len(record["validation"]) == 2 and "robust_accuracy" in record["validation"][0]
        means[name] = np.mean([seed["robust_accuracy"] for seed in record["validation"]])
    assert names.SELECTION_METRIC["robust"] == "robust_accuracy"
    assert full["meta"]["best_on_validation"] == max(means, key=means.get)
    assert full["meta"]["best_on_validation_robust_accuracy"] == full["meta"]["best_on_validation"]


def test_the_choice_follows_validation_when_test_disagrees():
    def record(validation, test):
        seed = {metric: 0.5 for metric in names.ROBUST_METRICS}
        return {"validation": [{**seed, "robust_accuracy": validation}], "per_seed": [{**seed, "robust_accuracy": test}]}

    records = {"pgd_at": record(0.6, 0.2), "trades": record(0.4, 0.9)}
    means = engine.validation_means(records, names.STUDY_METRICS["robust"])
    assert engine.best_on_validation(means, names.SELECTION_METRIC["robust"]) == "pgd_at"


def test_robust_study_reuses_records_only_with_equal_robust_keys(robust_run):
    from ganjax.studies import run

    config, workdir, full = robust_run
    again = run(config, workdir, progress=False)
    assert again["meta"]["robust_table"] == full["meta"]["robust_table"]
    changed = robust_config(config.experiment.generator_workdir)
    changed.robust.eps = 0.2
    with pytest.raises(ValueError, match="robust.eps"):
        run(changed, workdir, progress=False)


def test_the_engine_chooses_a_grid_strategys_setting_on_validation_and_reads_test_once(robust_run, tmp_path,
                                                                                          monkeypatch):
    import shutil

    from ganjax.studies import run

    config, workdir, _ = robust_run
    shutil.copytree(workdir, tmp_path / "run")  # pgd_at is reused
    workdir = str(tmp_path / "run")
    config = robust_config(config.experiment.generator_workdir, ("pgd_at", "pgd_at_generated"))
    config.experiment.grid = "robust.generated_fraction=0,0.5"
    evaluated = []
    real_evaluate = engine.evaluate_strategy

    def recording_evaluate(strategy, states, context, splits=engine.SPLITS):
        evaluated.append((strategy.name, context.config.robust.generated_fraction, splits))
        return real_evaluate(strategy, states, context, splits)

    monkeypatch.setattr(engine, "evaluate_strategy", recording_evaluate)
    full = run(config, workdir, progress=False)
    points = [("robust.generated_fraction=0",), ("robust.generated_fraction=0.5",)]
    records = {point: json.load(open(engine.record_path(workdir, engine.point_name("pgd_at_generated", point))))
               for point in points}
    for record in records.values():
        assert "per_seed" not in record and len(record["validation"]) == 2  # the points never see the test split
    # Share 0 is pgd_at itself: the same batches, keys and step.
    pgd_at = json.load(open(engine.record_path(workdir, "pgd_at")))
    timeless = lambda seeds: [{key: value for key, value in seed.items() if key != "seconds"} for seed in seeds]  # noqa: E731
    assert timeless(records[points[0]]["validation"]) == timeless(pgd_at["validation"])
    scores = [np.mean([seed["robust_accuracy"] for seed in records[point]["validation"]]) for point in points]
    chosen = points[int(np.argmax(scores))]
    record = json.load(open(engine.record_path(workdir, "pgd_at_generated")))
    assert record["grid"]["chosen"] == list(chosen) and record["validation"] == records[chosen]["validation"]
    assert [point["validation_mean"] for point in record["grid"]["points"]] == pytest.approx(scores)
    fraction = float(chosen[0].split("=")[1])
    assert evaluated == [("pgd_at_generated", 0.0, ("validation",)), ("pgd_at_generated", 0.5, ("validation",)),
                         ("pgd_at_generated", fraction, ("test",))]
    assert len(record["per_seed"]) == 2 and "robust_accuracy" in record["per_seed"][0]
    assert full["meta"]["grid"]["pgd_at_generated"]["chosen"] == list(chosen)
    assert full["meta"]["training_attack"]["generated_per_step"]["generated_fraction"] == fraction
    text = open(os.path.join(workdir, "report.md")).read()
    assert f"pgd_at_generated: settings chosen on validation robust_accuracy" in text and f"chosen {chosen[0]}" in text
    # A rerun trains nothing and reads the records; another grid is refused, naming the way out.
    evaluated.clear()
    assert run(config, workdir, progress=False)["meta"]["grid"] == full["meta"]["grid"] and evaluated == []
    config.experiment.grid = "robust.generated_fraction=0,0.25"
    with pytest.raises(ValueError, match="on another grid.*delete"):
        run(config, workdir, progress=False)
    config.experiment.grid = ""
    with pytest.raises(ValueError, match="chosen on a grid"):
        run(config, workdir, progress=False)


# --- The steps.


def fresh_classifier(num_classes: int, image_shape: tuple[int, int, int]) -> ModelState:
    """A SmallCNN of width 4 with LeCun-normal kernels drawn by numpy (a jitted Flax init of even a
    tiny CNN takes XLA:CPU many seconds to compile), unit BatchNorm, Adam."""
    module = build_classifier("cnn", num_classes, 4)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, *image_shape)), train=False))
    rng = np.random.default_rng(0)

    def initial(path, leaf):
        name = jax.tree_util.keystr(path)
        if "kernel" in name:
            return jnp.asarray(rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1])), jnp.float32)
        return jnp.full(leaf.shape, 1.0 if ("scale" in name or "var" in name) else 0.0, jnp.float32)

    variables = jax.tree_util.tree_map_with_path(initial, shapes)
    return ModelState.create(apply_fn=module.apply, params=variables["params"], tx=optax.adam(3e-3),
                             batch_stats=variables["batch_stats"])


@pytest.fixture(scope="module")
def digits_state_and_batch():
    """A fresh SmallCNN (width 4) on 16x16 digits and one batch of 16 real images."""
    train_set, _ = data.load_train_and_test(make_tiny_config().data)
    state = fresh_classifier(train_set.num_classes, train_set.image_shape)
    batch = {"images": jnp.asarray(data.to_model_range(train_set.images[:16])),
             "labels": jnp.asarray(train_set.labels[:16]), "weights": jnp.ones(16, jnp.float32)}
    return state, batch


def test_pgd_at_trains_on_perturbed_images_within_eps(digits_state_and_batch):
    state, batch = digits_state_and_batch
    spec = robust_strategies.AdversarialSpec("pgd_at", eps=0.1, steps=3, step_size=0.05)
    key = jax.random.key(1)
    attacked = jax.jit(lambda state, batch, key: robust_strategies.training_batch(state, batch, key, spec))(
        state, batch, jax.random.split(key)[0])
    change = np.abs(np.asarray(attacked["adversarial"]) - np.asarray(batch["images"]))
    assert change.max() <= to_model_scale(0.1) + 1e-6  # eps 0.1 on the [0, 1] scale is 0.2 on the images
    assert change.max() > 0.5 * to_model_scale(0.1)  # perturbed, not the clean batch
    assert np.all(np.abs(np.asarray(attacked["adversarial"])) <= 1.0)
    np.testing.assert_array_equal(attacked["images"], batch["images"])
    # The step is a cross-entropy step on exactly that adversarial batch.
    stepped, metrics = jax.jit(robust_strategies.make_adversarial_step(spec))(state, batch, key)
    expected, _ = jax.jit(make_classifier_step(ClassifierStepSpec()))(
        state, {**batch, "images": attacked["adversarial"]}, jax.random.split(key)[1])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), stepped.params, expected.params)
    assert float(metrics["perturbation"]) == pytest.approx(0.1, abs=1e-6)


def test_pgd_at_generated_attacks_real_and_generated_images(digits_state_and_batch, tiny_gan_workdir):
    from ganjax.sample import load_generator
    from ganjax.state import generator_source

    state, batch = digits_state_and_batch
    generator = load_generator(tiny_gan_workdir)
    source = generator_source(generator.state, use_ema=generator.use_ema)
    synthetic = ClassifierStepSpec(num_synthetic=8, synthetic_label_probs=(0.1,) * 10,
                                   noise_dim=make_tiny_config().model.noise_dim)
    spec = robust_strategies.AdversarialSpec("pgd_at", eps=0.1, steps=2, step_size=0.05, synthetic=synthetic)
    attacked = jax.jit(lambda state, batch, key, source: robust_strategies.training_batch(
        state, batch, key, spec, source))(state, batch, jax.random.key(4), source)
    assert attacked["images"].shape == (24, 16, 16, 1) and attacked["labels"].shape == (24,)
    np.testing.assert_array_equal(attacked["images"][:16], batch["images"])
    np.testing.assert_array_equal(attacked["labels"][:16], batch["labels"])
    assert np.all((np.asarray(attacked["labels"][16:]) >= 0) & (np.asarray(attacked["labels"][16:]) < 10))
    np.testing.assert_array_equal(attacked["weights"], np.ones(24))
    change = np.abs(np.asarray(attacked["adversarial"]) - np.asarray(attacked["images"])).reshape(24, -1).max(axis=1)
    assert np.all(change <= to_model_scale(0.1) + 1e-6) and np.all(change[16:] > 0)


def test_trades_loss_is_cross_entropy_when_beta_is_zero(digits_state_and_batch):
    logits = jax.random.normal(jax.random.key(0), (8, 10))
    adversarial_logits = jax.random.normal(jax.random.key(1), (8, 10))
    labels = jnp.arange(8) % 10
    loss, (cross_entropy, kl) = robust_strategies.trades_loss(logits, adversarial_logits, labels, 0.0)
    assert float(loss) == pytest.approx(float(losses.cross_entropy(logits, labels)))
    assert float(kl) > 0
    loss_6, _ = robust_strategies.trades_loss(logits, adversarial_logits, labels, 6.0)
    assert float(loss_6) == pytest.approx(float(cross_entropy + 6.0 * kl), rel=1e-6)
    assert float(robust_strategies.trades_loss(logits, logits, labels, 6.0)[1][1]) == pytest.approx(0.0, abs=1e-6)
    # The whole update at beta 0: the clean batch's cross-entropy and the plain step's gradient.
    state, batch = digits_state_and_batch
    attacked = {**batch, "adversarial": jnp.clip(batch["images"] + 0.1, -1, 1)}
    stepped, metrics = jax.jit(robust_strategies.trades_update, static_argnums=3)(state, attacked, jax.random.key(2), 0.0)
    plain, plain_metrics = jax.jit(classifier_train_step)(state, batch, jax.random.key(3))
    assert float(metrics["loss"]) == pytest.approx(float(plain_metrics["loss"]), rel=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), stepped.params, plain.params)


@pytest.mark.parametrize("key, value, message", [
    ("robust.eps", 0.0, "'robust.eps'.*in \\(0, 1\\]"),
    ("robust.eps", 8.0, "'robust.eps'.*8/255"),
    ("robust.train_eps", -0.1, "'robust.train_eps'"),
    ("robust.train_steps", 0, "'robust.train_steps' must be at least 1"),
    ("robust.apgd_steps", 0, "'robust.apgd_steps'"),
    ("robust.train_step_size", -0.01, "'robust.train_step_size'"),
    ("robust.trades_beta", -1.0, "'robust.trades_beta' must be >= 0"),
    ("robust.generated_fraction", 1.0, "'robust.generated_fraction' must be in \\[0, 1\\)"),
    ("robust.num_test", -1, "'robust.num_test'"),
    ("robust.generated_fraction", 0.99, "'robust.generated_fraction'=0.99 of classifier.batch_size=16.*one real"),
    ("experiment.grid", "robust.generated_fraction=0,1.5", "point robust.generated_fraction=1.5 is not a valid"),
    ("experiment.grid", "robust.trades_beta=1,6", "varies 'robust.trades_beta'.*generated_fraction"),
    ("experiment.grid", "robust.generated_fractoin=0", "'robust.generated_fractoin' is unknown"),
    ("experiment.grid", "robust.generated_fraction", "is not KEY=VALUES"),
    ("experiment.grid", "robust.generated_fraction=0,0", "lists a value of 'robust.generated_fraction' twice"),
    ("data.subset", "long_tail", "data.subset='none'"),
    ("experiment.strategies", "plain", "for long-tailed data"),
    ("robust.extra_budgets", "linf:2", "'robust.extra_budgets'.*outside \\[0, 1\\]"),
    ("robust.extra_budgets", "l2", "'robust.extra_budgets'.*NORM:EPS"),
    ("robust.advgan_steps", -1, "'robust.advgan_steps' must be >= 0"),
    ("robust.advgan_against", "standard,plain", "'robust.advgan_against' names \\['plain'\\]"),
    ("defense.steps", 0, "'defense.steps' must be at least 1"),
    ("defense.classes", -1, "'defense.classes' must be >= 0"),
    ("defense.learning_rate", 0.0, "'defense.learning_rate' must be positive"),
])
def test_robust_config_errors_name_the_key_and_the_fix(key, value, message):
    config = robust_config("", STRATEGIES)
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ValueError, match=message):
        validate_config(config)


def test_a_robust_strategy_in_another_study_names_the_robust_study():
    config = make_tiny_config()
    config.experiment.strategies = "plain,pgd_at"
    with pytest.raises(ValueError, match="adversarial robustness \\(experiment.study='robust'\\)"):
        validate_config(config)


def test_defense_gan_refuses_a_generator_of_another_image_size_before_training(tiny_gan_workdir, tmp_path):
    from ganjax.studies import run

    config = robust_config(tiny_gan_workdir, ("defense_gan",))
    config.data.image_size = 12  # the classifiers see 12x12 digits; the GAN makes 16x16 images
    # The GAN's saved config names the mismatch (ganjax.defense_gan.check_defense backs it for a generator
    # passed by hand: tests/test_defense_gan.py).
    with pytest.raises(ValueError, match=r"data.image_size: 16 -> 12"):
        run(config, str(tmp_path / "run"), progress=False)
    assert not os.path.exists(engine.record_path(str(tmp_path / "run"), "defense_gan"))
