"""Benchmark scripts that need no torch run and print what they promise (timings are not checked)."""

import json
import os
import sys

import pytest

from conftest import REPO

from ganjax import checkpoint, data, parallel

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import cpu_levers
import inversion_speed
import pool_seeds
import profile_training
import regime_map
import semi_steps_per_call
import few_label_probe


def test_profile_table_covers_every_phase_and_adds_up(capsys):
    originals = (parallel.jit_step, data.iterate_batches, checkpoint.save)
    exit_code = profile_training.main([
        "--config", os.path.join(REPO, "configs", "digits.py"), "--steps", "8",
        "--set", "model.generator_width=8", "--set", "model.discriminator_width=8",
        "--set", "train.log_every=4", "--set", "train.sample_every=4", "--set", "train.checkpoint_every=4",
    ])
    assert exit_code == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        parts = line.rsplit(maxsplit=3)
        if len(parts) == 4 and parts[2].endswith("%"):
            rows[parts[0].strip()] = (float(parts[1]), float(parts[2].rstrip("%")))
    assert set(rows) == set(profile_training.PHASES) | {"total"}
    total = rows.pop("total")[0]
    assert abs(sum(seconds for seconds, _ in rows.values()) - total) < 0.05
    for phase in ("start-up", "first calls", "GAN steps", "sample grids", "checkpoints"):
        assert rows[phase][0] > 0, phase
    assert (parallel.jit_step, data.iterate_batches, checkpoint.save) == originals


@pytest.mark.slow  # runs the benchmark's few-label steps at two K
def test_semi_steps_per_call_prints_a_time_per_k(capsys):
    exit_code = semi_steps_per_call.main([
        "--config", os.path.join(REPO, "configs", "digits_semi.py"), "--strategy", "supervised",
        "--ks", "1,3", "--steps", "3", "--repeats", "1",
    ])
    assert exit_code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[-2:]] == ["K=1", "K=3"]
    assert lines[-1].endswith("x") and "ms/step" in lines[-1]


def _write_report(path, per_strategy):
    path.write_text(json.dumps({name: {"accuracy": {"per_seed": values}} for name, values in per_strategy.items()}))
    return str(path)


def test_pool_seeds_pools_runs_and_pairs_the_gain(tmp_path, capsys):
    first = _write_report(tmp_path / "a.json", {"semi_gan": [0.8, 0.7], "supervised": [0.6, 0.6]})
    second = _write_report(tmp_path / "b.json", {"semi_gan": [0.9], "supervised": [0.6]})
    assert pool_seeds.main([first, second]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(":")[1].startswith(" 80.00 ± 10.00")  # semi_gan over the 3 pooled seeds
    assert lines[-1].startswith("gain=20.00 std=10.00 ci95=") and lines[-1].endswith("seeds=3")  # gains 20, 10, 30


def test_pool_seeds_names_a_strategy_a_run_lacks(tmp_path):
    first = _write_report(tmp_path / "a.json", {"semi_gan": [0.8], "supervised": [0.6]})
    second = _write_report(tmp_path / "b.json", {"semi_gan": [0.9]})
    with pytest.raises(ValueError, match="no 'accuracy' for strategy 'supervised'"):
        pool_seeds.main([first, second])


def test_inversion_speed_times_both_convolution_forms_and_they_agree(tiny_gan_workdir, capsys):
    assert inversion_speed.main(["--workdir", tiny_gan_workdir, "--num", "4", "--steps", "3", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "canonical_convs=False" in out and "canonical_convs=True" in out and out.count("images/s") == 2
    difference = float(out.rsplit("largest difference between the two projections:", 1)[1])
    assert difference < 1e-4


def test_the_regime_map_chooses_best_classic_and_best_gan_on_validation_and_pairs_them(tmp_path):
    from ganjax.report import summarize

    def entry(validation, test):
        return validation, {"balanced_accuracy": summarize(test)}

    strategies = {"plain": entry(0.70, [0.70, 0.72, 0.74]), "augment": entry(0.75, [0.60, 0.61, 0.62]),
                  "oversample": entry(0.72, [0.90, 0.90, 0.90]),  # best on test, not on validation
                  "gan": entry(0.74, [0.71, 0.73, 0.75]), "gan+augment": entry(0.73, [0.99, 0.99, 0.99])}
    full = {name: test for name, (_, test) in strategies.items()}
    full["meta"] = {"validation_mean": {name: {"balanced_accuracy": value} for name, (value, _) in strategies.items()},
                    "grid": {"gan": {"chosen": ["experiment.synthetic_fraction=0.25"], "choice": "significant",
                                     "points": [{"point": ["experiment.synthetic_fraction=0"], "validation_mean": 0.71,
                                                 "validation_per_seed": [0.70, 0.71, 0.72]},
                                                {"point": ["experiment.synthetic_fraction=0.25"], "validation_mean": 0.74,
                                                 "validation_per_seed": [0.73, 0.74, 0.75],
                                                 "validation_image_lower": 0.012}]}}, "num_seeds": 3}
    row = regime_map.summarize_cell(full)
    assert (row["best_classic"], row["best_gan"]) == ("augment", "gan")
    assert row["difference"]["per_seed"] == pytest.approx([0.11, 0.12, 0.13])
    assert row["best_gan_minus_plain"]["mean"] == pytest.approx(0.01)
    assert row["gan_minus_twin"]["gan+augment"]["mean"] == pytest.approx(0.38)
    row.update(minutes=3.0, gan_quality={"fid_domain": 1.0, "intra_class_fid_domain": 2.0, "conditional_accuracy": 0.9})
    table = regime_map.markdown({"fashion_1pct-cnn": row})
    assert "| fashion_1pct-cnn | augment 61.0 ± 1.0 | gan 73.0 ± 2.0 | +12.0 [" in table
    assert "gan: synthetic_fraction=0.25 (by significant)" in table
    levers = regime_map.grid_markdown({"fashion_1pct-cnn": row})
    assert "| fashion_1pct-cnn | gan | synthetic_fraction=0.25 * | 74.0 | +3.0 [+3.0, +3.0] | +1.2 |" in levers
    assert "| fashion_1pct-cnn | gan | synthetic_fraction=0 | 71.0 | +0.0 [+0.0, +0.0] | — |" in levers
    assert os.path.exists(regime_map.plot({"fashion_1pct-cnn": row}, str(tmp_path / "map.png")))
    config = regime_map.cell_config("fashion_lt10", "resnet", "somewhere", ["classifier.steps=5"])
    assert (config.data.imbalance_ratio, config.classifier.model, config.classifier.steps) == (10.0, "resnet", 5)
    assert "gan+oversample" in config.experiment.strategies and config.experiment.generator_workdir == "somewhere"


def test_gan_twins_name_every_gan_strategy_and_a_classic_twin_of_its_study():
    from ganjax import names
    from ganjax.studies.few_label import GAN_STRATEGIES
    from ganjax.studies.long_tail import COMPOSITIONS

    synthetic = {name for name, composition in COMPOSITIONS.items() if composition.synthetic}
    for study, gans in (("long_tail", synthetic), ("few_label", set(GAN_STRATEGIES))):
        strategies = set(names.STUDY_STRATEGIES[study])
        assert set(names.GAN_TWINS) & strategies == gans, study
        assert all(names.GAN_TWINS[name] in strategies - gans for name in gans), study
        assert names.PLAIN_STRATEGY[study] in strategies - gans


def test_the_regime_maps_few_label_cell_pits_the_k_plus_1_gan_against_vat(tmp_path):
    from ganjax.report import summarize

    tests = {"supervised": [0.60, 0.61, 0.62], "supervised_augment": [0.58, 0.59, 0.60],
             "vat": [0.70, 0.70, 0.70], "semi_gan": [0.75, 0.77, 0.79]}
    validation = {"supervised": 0.61, "supervised_augment": 0.60, "vat": 0.72, "semi_gan": 0.76}
    full = {name: {"balanced_accuracy": summarize(values)} for name, values in tests.items()}
    full["meta"] = {"study": "few_label", "num_seeds": 3,
                    "validation_mean": {name: {"balanced_accuracy": value} for name, value in validation.items()}}
    row = regime_map.summarize_cell(full)
    assert (row["best_classic"], row["best_gan"]) == ("vat", "semi_gan")
    assert row["difference"]["per_seed"] == pytest.approx([0.05, 0.07, 0.09])
    assert row["best_gan_minus_plain"]["mean"] == pytest.approx(0.16)  # plain is supervised here
    assert set(row["gan_minus_twin"]) == {"semi_gan"}
    row.update(minutes=1.0, gan_quality=None)
    assert "| fashion_100labels-mlp | vat 70.0 ± 0.0 | semi_gan 77.0 ± 2.0 | +7.0 [" in regime_map.markdown(
        {"fashion_100labels-mlp": row})
    assert os.path.exists(regime_map.plot({"fashion_100labels-mlp": row}, str(tmp_path / "map.png")))
    config = regime_map.cell_config("fashion_100labels", "mlp", "", ["semi.steps=5"])
    assert (config.data.subset, config.semi.steps, config.semi.validation_per_class) == ("few_label", 5, 100)
    assert {"vat", "pseudo_label"} <= set(config.experiment.strategies.split(","))
    assert config.experiment.grid.startswith("semi.vat_epsilon=") and config.semi.entropy_weight == 0.0
    for regime, classifier in (("fashion_100labels", "cnn"), ("fashion_5pct", "mlp")):
        with pytest.raises(ValueError, match="no cell"):
            regime_map.cell_config(regime, classifier)
    with pytest.raises(SystemExit):  # no cell to run: named, not silently nothing
        regime_map.main(["--workdir", str(tmp_path), "--cells", "fashion_100labels", "--classifiers", "cnn"])


@pytest.mark.parametrize("strategy,metric", [("vat", "vat_divergence"), ("pseudo_label", "pseudo_label_kept"),
                                             ("semi_gan", "d_unsupervised")])
def test_few_label_probe_prints_held_out_accuracy_at_each_checkpoint(tmp_path, capsys, strategy, metric):
    assert few_label_probe.main(["--config", os.path.join(REPO, "configs", "digits_semi.py"), "--strategy", strategy,
                                 "--epsilon", "1", "--noise", "0", "--steps", "5", "--every", "2",
                                 "--held-out", "50", "--workdir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"strategy={strategy}" in lines[0] and "input_noise=0.0" in lines[0] and "held_out=50" in lines[0]
    steps = [line for line in lines if line.startswith("step=")]
    assert [line.split()[0] for line in steps] == ["step=0", "step=2", "step=4"]
    for line in steps:
        accuracy = float(line.split()[1].split("=")[1])
        assert 0.0 <= accuracy <= 1.0 and f"{metric}=" in line


def test_cpu_levers_weight_gradient_formulations_agree_and_the_script_runs(capsys):
    import jax
    import numpy as np

    for shape in ((2, 7, 4, 8), (3, 5, 3, 1)):
        x, kernel, g = cpu_levers.conv_inputs(*shape, seed=1)
        errors = cpu_levers.check_weight_grads(x, kernel, g)  # asserts each matches XLA's
        assert set(errors) == set(cpu_levers.WEIGHT_GRADS) and errors["xla"] == 0.0
        padded = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
        size = shape[1]
        expected = np.stack([np.einsum("nhwc,nhwo->co", padded[:, i:i + size, j:j + size], np.asarray(g, np.float64))
                             for i in range(3) for j in range(3)]).reshape(kernel.shape)
        reference = jax.jit(cpu_levers.weight_grad_xla)(x, kernel, g)
        np.testing.assert_allclose(np.asarray(reference), expected, rtol=1e-4, atol=1e-4)
    assert cpu_levers.main(["--repeats", "1", "--steps", "1", "--matmul-size", "32", "--matmul-steps", "1",
                            "--shapes", "2x7x4x8", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert out.count("| 2x7x7, 4->8 |") == len(cpu_levers.WEIGHT_GRADS)
    assert out.splitlines()[-1].startswith("bf16_speedup_max=") and "weight_grad_best_alternative=" in out
