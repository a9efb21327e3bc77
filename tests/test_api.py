"""ganjax.api: one function per job, each returning a typed result; the README's Python API snippet runs."""

import json
import os
import re

import numpy as np
import pytest

import ganjax
import ganjax.config
from conftest import REPO, make_tiny_config, run_python
from ganjax import api, checkpoint, data, report
from ganjax.metrics import features

API_NAMES = ("train_gan", "sample_images", "evaluate_generator", "run_study", "TrainResult", "SampleResult",
             "EvalResult", "StudyResult", "StrategyResult")


def _tiny_arrays_config(tmp_path):
    """The tiny GAN config on 150 synthetic 16x16 images of 3 classes given as arrays (enough for a domain
    classifier batch of 128), and those arrays."""
    rng = np.random.default_rng(0)
    images = rng.random((150, 16, 16)).astype(np.float32)
    labels = np.arange(150) % 3
    config = make_tiny_config()
    config.data.source = data.from_arrays(images, labels, class_names=["a", "b", "c"], directory=tmp_path / "arrays")
    return config, images, labels


def test_dir_lists_every_job_and_importing_ganjax_loads_none_of_them():
    assert set(API_NAMES) <= set(dir(ganjax)) and "data" in dir(ganjax)
    assert all(callable(getattr(ganjax, name)) for name in API_NAMES)
    assert ganjax.data.from_arrays is data.from_arrays
    result = run_python(
        "import sys, ganjax\n"
        "names = dir(ganjax)\n"
        "print('LOADED', sorted(m for m in sys.modules if m in ('ganjax.api', 'ganjax.data', 'jax')))\n"
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout


def test_train_gan_trains_then_scores_and_its_result_matches_the_files(tmp_path):
    config, _, _ = _tiny_arrays_config(tmp_path)
    workdir = str(tmp_path / "run")
    result = ganjax.train_gan(config, workdir, evaluate="fid,classes",
                              evaluate_options={"num": 60, "classifier_steps": 20})
    assert isinstance(result, api.TrainResult)
    assert result.step == config.train.steps and result.workdir == os.path.abspath(workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as stream:
        assert result.metrics == json.loads(stream.readlines()[-1])
    assert checkpoint.latest_step(workdir) == config.train.steps
    assert result.checkpoint_dir == checkpoint.checkpoint_dir(workdir) and os.path.isdir(result.checkpoint_dir)
    assert os.listdir(result.samples_dir)
    evaluation = result.evaluation
    with open(os.path.join(workdir, "eval.json")) as stream:
        assert json.load(stream)["scores"] == evaluation.scores
    assert evaluation.path == os.path.join(result.workdir, "eval.json") and evaluation.step == config.train.steps
    assert evaluation.provenance["num_generated"] == 60
    assert all(np.isfinite(value) for value in evaluation.scores.values())
    assert json.loads(json.dumps(result.to_dict()))["evaluation"]["scores"] == evaluation.scores


def test_a_bad_metric_name_is_refused_before_training(tmp_path):
    config, _, _ = _tiny_arrays_config(tmp_path)
    with pytest.raises(ValueError, match="Unknown metrics"):
        ganjax.train_gan(config, str(tmp_path / "run"), evaluate="fod")
    assert not os.path.exists(tmp_path / "run")


def test_a_from_arrays_checkpoint_samples_without_its_data_and_resumes_once_the_arrays_are_given_again(tmp_path):
    config, images, labels = _tiny_arrays_config(tmp_path)
    workdir = str(tmp_path / "run")
    ganjax.train_gan(config, workdir)
    os.remove(config.data.source[len("npz:"):])
    samples = ganjax.sample_images(workdir, num=6, seed=3)  # the checkpoint alone
    assert samples.class_names == ("a", "b", "c") and samples.images.shape == (6, 16, 16, 1)
    config.train.steps = 6
    with pytest.raises(FileNotFoundError, match="from_arrays again"):
        ganjax.train_gan(config, workdir)
    # The same arrays make the same source string, so the config is unchanged and the run resumes.
    assert data.from_arrays(images, labels, class_names=["a", "b", "c"],
                            directory=tmp_path / "arrays") == config.data.source
    resumed = ganjax.train_gan(config, workdir)
    assert resumed.step == 6
    with open(os.path.join(workdir, "metrics.jsonl")) as stream:
        assert [json.loads(line)["step"] for line in stream] == [1, 2, 3, 4, 5, 6]


def test_sample_images_returns_what_it_writes(tiny_gan_workdir, tmp_path):
    out, npz = str(tmp_path / "grid.png"), str(tmp_path / "samples.npz")
    result = ganjax.sample_images(tiny_gan_workdir, num=20, seed=1, out=out, npz=npz)
    assert isinstance(result, api.SampleResult) and result.step == 4
    assert result.images.shape == (20, 16, 16, 1) and result.images.min() >= -1 and result.images.max() <= 1
    np.testing.assert_array_equal(result.labels, np.repeat(np.arange(10), 2))  # sorted: one grid row per class
    saved = np.load(npz)
    np.testing.assert_array_equal(saved["x"], result.images)
    np.testing.assert_array_equal(saved["y"], result.labels)
    assert result.path == out and os.path.getsize(out) > 0
    assert json.loads(json.dumps(result.to_dict()))["image_shape"] == [20, 16, 16, 1]
    one_class = ganjax.sample_images(tiny_gan_workdir, num=3, label=7)
    assert one_class.labels.tolist() == [7, 7, 7] and one_class.path is None
    with pytest.raises(ValueError, match=r"Labels must be in \[0, 9\]"):
        ganjax.sample_images(tiny_gan_workdir, num=3, label=10)


def test_evaluate_generator_returns_the_eval_json_it_writes(tiny_gan_workdir, tmp_path):
    output = str(tmp_path / "eval.json")
    result = ganjax.evaluate_generator(tiny_gan_workdir, ("fid", "classes"), num=50, output=output,
                                       classifier=str(tmp_path / "classifier"), classifier_steps=20)
    assert isinstance(result, api.EvalResult) and result.path == output and result.step == 4
    with open(output) as stream:
        saved = json.load(stream)
    assert saved["scores"] == result.scores and saved["per_class"] == result.per_class
    assert result.provenance["feature_extractor"]["name"] == "domain" and len(result.scores) >= 3
    with pytest.raises(ValueError, match="Unknown metrics"):
        ganjax.evaluate_generator(tiny_gan_workdir, "fod", output=output)


def test_study_result_holds_the_report_per_strategy_with_the_choice(tmp_path):
    per_seed = {"plain": [{"accuracy": 0.5}, {"accuracy": 0.7}], "gan": [{"accuracy": 0.8}, {"accuracy": 0.8}]}
    meta = {"study": "few_label", "num_seeds": 2, "best_on_validation": "gan",
            "validation_mean": {"plain": {"accuracy": 0.6}, "gan": {"accuracy": 0.9}}}
    result = api.StudyResult.from_report(report.build_report(per_seed, meta, metrics=("accuracy",)), str(tmp_path))
    assert result.chosen == "gan" and result.selection_metric == "accuracy" and result.num_seeds == 2
    plain = result.strategies["plain"]
    assert plain.mean["accuracy"] == pytest.approx(0.6) and plain.per_seed["accuracy"] == (0.5, 0.7)
    assert plain.std["accuracy"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    low, high = plain.ci95["accuracy"]
    assert low < 0.6 < high and result.strategies["gan"].ci95["accuracy"] == (0.8, 0.8)
    assert plain.validation_mean == {"accuracy": 0.6} and plain.per_class_recall is None
    assert result.report_path == os.path.join(str(tmp_path), "report.json")
    assert json.loads(json.dumps(result.to_dict()))["strategies"]["gan"]["mean"] == {"accuracy": 0.8}


def test_run_study_returns_the_report_it_writes(tmp_path):
    config = ganjax.load_config("digits_lt")
    config.classifier.steps = 12
    config.experiment.num_seeds = 2
    config.experiment.strategies = "plain,oversample"
    result = ganjax.run_study(config, str(tmp_path), progress=False)
    with open(result.report_path) as stream:
        saved = json.load(stream)
    assert result.study == "long_tail" and set(result.strategies) == {"plain", "oversample"}
    assert result.chosen == saved["meta"]["best_on_validation"] in result.strategies
    for name, strategy in result.strategies.items():
        assert strategy.mean == {metric: value["mean"] for metric, value in saved[name].items()
                                 if metric != "per_class_recall"}
        assert len(strategy.per_class_recall) == 10 and len(strategy.per_seed["balanced_accuracy"]) == 2
    assert os.path.join(str(tmp_path), report.CONFUSION_PNG) in result.figures
    assert all(os.path.isfile(path) for path in (*result.figures, result.markdown_path))


def _readme_snippet() -> str:
    with open(os.path.join(REPO, "README.md")) as stream:
        readme = stream.read()
    section = readme[readme.index("### Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_python_api_snippet_runs(tmp_path, monkeypatch, capsys):
    """The README's snippet as written, from a fresh directory, on the tiny model (its config loader returns
    the shipped config with make_tiny_config's network sizes) and a domain classifier of 20 steps."""
    snippet = _readme_snippet()
    assert "ganjax.data.from_arrays" in snippet and len(snippet.splitlines()) <= 15
    load_config = ganjax.config.load_config

    def load_tiny(name):
        config, tiny = load_config(name), make_tiny_config()
        config.model, config.train.batch_size = tiny.model, tiny.train.batch_size
        return config

    monkeypatch.setattr(ganjax.config, "load_config", load_tiny)
    monkeypatch.setattr(features, "DOMAIN_CLASSIFIER_STEPS", 20)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    run, samples, scores = namespace["run"], namespace["samples"], namespace["scores"]
    assert run.step == 100 and run.workdir == str(tmp_path / "workdirs" / "my_digits")
    assert samples.images.shape == (30, 16, 16, 1) and os.path.isfile(tmp_path / "my_digits.png")
    assert scores.provenance["num_generated"] == 1000 and scores.provenance["dataset"].startswith("npz:")
    assert all(np.isfinite(value) for value in scores.scores.values())
    assert "(30, 16, 16, 1)" in capsys.readouterr().out
