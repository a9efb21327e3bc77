"""benchmarks/profile_training.py: the phase table adds up and the patched functions are restored."""

import os
import sys

from conftest import REPO

from ganjax import checkpoint, data, parallel

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import profile_training


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
