"""benchmarks/time_to_quality.py's bookkeeping: which time reaches which FID, the ratio line and the table."""

import os
import sys

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import time_to_quality as ttq


def _run(points):
    return {"points": [{"seconds": s, "step": i * 100, "fid_domain": f} for i, (s, f) in enumerate(points, 1)]}


def test_ratio_is_the_dcgans_time_to_its_best_over_ganjaxs_time_to_reach_it():
    runs = {
        "ganjax": _run([(60, 3.0), (120, 0.9), (180, 0.4)]),
        "torch_dcgan": _run([(60, 2.0), (240, 0.8), (300, 1.1)]),  # best 0.8 at 4 min, then worse
        "light": _run([(60, 1.0), (120, 0.85), (180, 0.79)]),
    }
    line, summary = ttq.ratio_line(runs, budget=300)
    assert summary["torch_best_fid_domain"] == 0.8 and summary["torch_seconds_to_best"] == 240
    assert summary["ganjax_seconds_to_torch_best"] == 180  # 0.9 at 2 min is not yet 0.8
    assert line == "time_to_fid_ratio=1.33"
    assert summary["light_ratio"] == 240 / 180


def test_ratio_is_an_upper_bound_when_ganjax_never_reaches_the_dcgans_best():
    runs = {"ganjax": _run([(60, 3.0), (300, 1.0)]), "torch_dcgan": _run([(150, 0.5), (300, 0.7)])}
    line, summary = ttq.ratio_line(runs, budget=300)
    assert summary["ganjax_seconds_to_torch_best"] is None
    assert line == "time_to_fid_ratio=<0.50"


def test_table_shows_the_newest_checkpoint_at_or_before_each_minute():
    runs = {"ganjax": _run([(50, 3.0), (110, 2.0)]), "torch_dcgan": _run([(62, 5.0)]), "late": _run([(60.4, 4.0)])}
    rows = ttq.table(runs, [1, 2]).splitlines()
    assert rows[2] == "| 1 | 3.000 (100) | - | 4.000 (100) |"  # 0.4 s past the minute counts, 2 s does not
    assert rows[3] == "| 2 | 2.000 (200) | 5.000 (100) | 4.000 (100) |"


def test_every_variant_overrides_known_config_keys():
    from ganjax.config import load_config

    config = load_config(ttq.MAIN_CONFIG)
    for name, overrides in ttq.VARIANTS.items():
        for item in overrides:
            key, _ = item.split("=", 1)
            section, field = key.split(".")
            assert field in config[section], (name, item)


def test_batch32_variant_is_the_main_config_and_ganjax_run_the_batch64_one():
    from ganjax.config import apply_overrides, load_config

    main = load_config(os.path.join(REPO, "configs", "fashion_mnist.py"))
    batch32 = apply_overrides(load_config(ttq.MAIN_CONFIG), ttq.VARIANTS["batch32"])
    keys = [("train", "batch_size"), ("optim", "generator_lr"), ("optim", "discriminator_lr")]
    assert [batch32[s][k] for s, k in keys] == [main[s][k] for s, k in keys] == [32, 1e-4, 1e-4]
    assert batch32.model == main.model and batch32.gan == main.gan
    recorded = load_config(ttq.MAIN_CONFIG)
    assert (recorded.train.batch_size, recorded.optim.generator_lr, recorded.train.steps) == (64, 2e-4, 20000)
