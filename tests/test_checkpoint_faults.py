"""Faults on disk: a damaged newest checkpoint is passed over for the newest readable one (training
and sampling), none readable is one clear error, and a full disk stops with one clear error, the
earlier checkpoints intact and a rerun resuming from them. Each test works on a copy of the
session's tiny GAN (conftest.tiny_gan_workdir: checkpoints at steps 2 and 4)."""

import errno
import glob
import hashlib
import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import serialization

from conftest import make_tiny_config
from ganjax import checkpoint, sample, train
from ganjax.state import create_gan_state
from ganjax.train import train_and_evaluate

LABELS = np.arange(10)


def _data_files(step_dir):
    """TensorStore's array data files of a checkpoint step, smallest first."""
    return sorted(glob.glob(os.path.join(step_dir, "state", "ocdbt.process_*", "d", "*")), key=os.path.getsize)


def _garbage(step_dir):
    # 4 KiB of random bytes every 16 KiB of each array file: whatever orbax's layout, it hits arrays that
    # sampling reads too (a 36 KiB kernel of the EMA spans more than 16 KiB).
    rng = np.random.default_rng(0)
    for path in _data_files(step_dir):
        size = os.path.getsize(path)
        with open(path, "r+b") as stream:
            for offset in range(0, size, 16384):
                stream.seek(offset)
                stream.write(rng.bytes(min(4096, size - offset)))


def _truncated(step_dir):
    for path in _data_files(step_dir):
        os.truncate(path, os.path.getsize(path) // 4)


def _missing(step_dir):
    # Every array data file gone, the metadata intact (a copy that lost its data). Removing only the largest
    # was flaky: orbax's layout varies run to run, and it sometimes held no array that sampling reads.
    for path in _data_files(step_dir):
        os.remove(path)


def _empty(step_dir):
    shutil.rmtree(step_dir)
    os.makedirs(step_dir)


def _bad_meta(step_dir):
    with open(os.path.join(step_dir, "meta", "metadata"), "wb") as stream:
        stream.write(np.random.default_rng(1).bytes(4096))


DAMAGES = {"garbage": _garbage, "truncated": _truncated, "missing": _missing, "empty": _empty, "bad_meta": _bad_meta}


def _copy(workdir, tmp_path):
    copy = str(tmp_path / "run")
    shutil.copytree(workdir, copy)
    return copy


def _step_dir(workdir, step):
    return os.path.join(checkpoint.checkpoint_dir(workdir), str(step))


def _listing(directory):
    """{relative path: sha256} of every file under `directory`."""
    return {
        os.path.relpath(os.path.join(root, name), directory):
            hashlib.sha256(open(os.path.join(root, name), "rb").read()).hexdigest()
        for root, _, names in os.walk(directory) for name in names
    }


def _state(workdir, step=None):
    template = create_gan_state(make_tiny_config(), 10, (16, 16, 1), jax.random.key(0))
    return checkpoint.restore_state(workdir, template, step)


def _assert_same_state(a, b):
    a, b = serialization.to_state_dict(a), serialization.to_state_dict(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _samples(workdir, step=None):
    generator = sample.load_generator(workdir, step, bn_statistics="running")
    return generator.step, generator.sample(jax.random.key(7), LABELS)


@pytest.mark.parametrize("damage", DAMAGES)
def test_training_resumes_from_the_newest_readable_checkpoint(damage, tiny_gan_workdir, tmp_path, caplog):
    workdir = _copy(tiny_gan_workdir, tmp_path)
    DAMAGES[damage](_step_dir(workdir, 4))
    damaged_files = _listing(_step_dir(workdir, 4))
    with caplog.at_level("INFO", logger="ganjax"):
        train_and_evaluate(make_tiny_config(), workdir)
    assert f"Checkpoint step 4 in {checkpoint.checkpoint_dir(workdir)} is damaged" in caplog.text
    assert "Resuming from checkpoint step 2 " in caplog.text
    set_aside = glob.glob(os.path.join(checkpoint.checkpoint_dir(workdir), checkpoint.DAMAGED_PREFIX + "4-*"))
    assert len(set_aside) == 1 and _listing(set_aside[0]) == damaged_files  # kept whole, out of orbax's way
    # Steps 3-4 again from step 2 give the undamaged run's step 4 (resume equals uninterrupted).
    step, state = _state(workdir)
    assert step == 4
    _assert_same_state(state, _state(tiny_gan_workdir, 4)[1])


@pytest.mark.parametrize("damage", DAMAGES)
def test_sampling_falls_back_to_the_newest_readable_checkpoint(damage, tiny_gan_workdir, tmp_path, caplog):
    workdir = _copy(tiny_gan_workdir, tmp_path)
    DAMAGES[damage](_step_dir(workdir, 4))
    damaged_files = _listing(_step_dir(workdir, 4))
    with caplog.at_level("WARNING", logger="ganjax.checkpoint"):
        step, images = _samples(workdir)
    assert f"Checkpoint step 4 in {checkpoint.checkpoint_dir(workdir)} is damaged" in caplog.text
    expected_step, expected = _samples(tiny_gan_workdir, 2)
    assert step == expected_step == 2
    np.testing.assert_array_equal(images, expected)
    assert _listing(_step_dir(workdir, 4)) == damaged_files  # a reader changes nothing


def test_an_array_that_differs_from_its_saved_crc32_is_damage(tiny_gan_workdir, tmp_path, caplog):
    """Orbax reads some overwritten bytes back as other numbers without an error: the crc32 of every
    array, saved in the meta, catches them (here: the meta's crc of one array no longer matches)."""
    workdir = _copy(tiny_gan_workdir, tmp_path)
    path = os.path.join(_step_dir(workdir, 4), "meta", "metadata")
    meta = json.load(open(path))
    meta[checkpoint.STATE_CHECKSUMS]["generator_ema/Dense_0/kernel"] ^= 1
    json.dump(meta, open(path, "w"))
    with pytest.raises(checkpoint.DamagedCheckpointError, match=r"1 arrays differ from the crc32 .*generator_ema/Dense_0"):
        _state(workdir, 4)
    with caplog.at_level("WARNING", logger="ganjax.checkpoint"):
        assert _samples(workdir)[0] == 2
    assert "generator_ema/Dense_0/kernel" in caplog.text


@pytest.mark.slow
def test_garbage_anywhere_in_an_array_file_is_caught_or_harmless(tiny_gan_workdir, tmp_path):
    """4 KiB of garbage at any one offset either fails the restore as damage or reads back the saved
    numbers; never other numbers. Without the crc32s in the meta, some offsets read back other
    numbers (the test fails with the crc check removed)."""
    _, saved = _state(tiny_gan_workdir, 4)
    largest = _data_files(_step_dir(tiny_gan_workdir, 4))[-1]
    caught = 0
    for offset in range(0, os.path.getsize(largest), 16384):
        workdir = str(tmp_path / f"at_{offset}")
        shutil.copytree(checkpoint.checkpoint_dir(tiny_gan_workdir), checkpoint.checkpoint_dir(workdir))
        with open(largest.replace(tiny_gan_workdir, workdir), "r+b") as stream:
            stream.seek(offset)
            stream.write(np.random.default_rng(offset).bytes(4096))
        try:
            _, state = _state(workdir, 4)
        except checkpoint.DamagedCheckpointError as error:
            assert "Checkpoint step 4 in" in str(error)
            caught += 1
            continue
        _assert_same_state(state, saved)
    assert caught >= 3


def test_no_readable_checkpoint_is_one_clear_error_and_nothing_moves(tiny_gan_workdir, tmp_path, capsys):
    workdir = _copy(tiny_gan_workdir, tmp_path)
    _bad_meta(_step_dir(workdir, 4))
    _missing(_step_dir(workdir, 2))
    before = _listing(checkpoint.checkpoint_dir(workdir))
    message = r"No readable checkpoint in .*checkpoints: every one is damaged \(step 4: its meta .*step 2: .*delete"
    with pytest.raises(checkpoint.DamagedCheckpointError, match=message):
        train_and_evaluate(make_tiny_config(), workdir)
    with pytest.raises(checkpoint.DamagedCheckpointError, match=message):
        sample.load_generator(workdir)
    assert sample.main(["--workdir", workdir, "--out", str(tmp_path / "x.png")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("ganjax.sample: error: No readable checkpoint") and "\n" not in error
    assert _listing(checkpoint.checkpoint_dir(workdir)) == before


def test_an_explicitly_requested_damaged_step_is_named(tiny_gan_workdir, tmp_path):
    workdir = _copy(tiny_gan_workdir, tmp_path)
    _truncated(_step_dir(workdir, 4))
    with pytest.raises(checkpoint.DamagedCheckpointError, match="step 4 in .* is damaged.*leave the step out"):
        sample.load_generator(workdir, step=4)
    assert sample.load_generator(workdir, step=2).step == 2


def test_sampling_reads_no_optimizer_state(tiny_gan_workdir, monkeypatch):
    read = []
    deserialize = ocp.type_handlers.ArrayHandler.deserialize

    async def recording(self, infos, args=None):
        read.extend(info.name for info in infos)
        return await deserialize(self, infos, args)

    monkeypatch.setattr(ocp.type_handlers.ArrayHandler, "deserialize", recording)
    generator = sample.load_generator(tiny_gan_workdir, bn_statistics="running")
    assert read and not [name for name in read if "opt_state" in name]
    assert any(name.startswith("generator_ema.") for name in read) and "discriminator.params.Dense_0.kernel" in read
    assert generator.checkpoint_state.generator.opt_state is None
    assert generator.checkpoint_state.discriminator.opt_state is None
    _, full = _state(tiny_gan_workdir, 4)
    _assert_same_state(generator.checkpoint_state.generator_ema, full.generator_ema)
    read.clear()
    _state(tiny_gan_workdir, 4)
    assert any("opt_state" in name for name in read)  # the spy sees what a full restore reads


def _without_step_4(tiny_gan_workdir, tmp_path):
    """A copy of the tiny GAN stopped after its step-2 checkpoint."""
    workdir = _copy(tiny_gan_workdir, tmp_path)
    shutil.rmtree(_step_dir(workdir, 4))
    train._truncate_metrics(os.path.join(workdir, train.METRICS_FILE), 2)
    return workdir


def _no_space(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _assert_full_disk_then_resume(workdir, tiny_gan_workdir, monkeypatch, caplog):
    with pytest.raises(checkpoint.DiskFullError, match=rf"^Disk full: a write in {workdir} failed .*"
                                                       r"rerun resumes from its newest checkpoint, step 2, which is intact"):
        train_and_evaluate(make_tiny_config(), workdir)
    assert "Traceback" not in caplog.text  # orbax's tracebacks of the failed save are dropped
    assert checkpoint.latest_step(workdir) == 2
    _assert_same_state(_state(workdir)[1], _state(tiny_gan_workdir, 2)[1])
    monkeypatch.undo()  # space again
    caplog.clear()
    with caplog.at_level("INFO", logger="ganjax"):
        train_and_evaluate(make_tiny_config(), workdir)
    assert "Resuming from checkpoint step 2 " in caplog.text
    _assert_same_state(_state(workdir, 4)[1], _state(tiny_gan_workdir, 4)[1])
    assert [json.loads(line)["step"] for line in open(os.path.join(workdir, train.METRICS_FILE))] == [1, 2, 3, 4]


def test_full_disk_on_a_checkpoint_write(tiny_gan_workdir, tmp_path, monkeypatch, caplog):
    workdir = _without_step_4(tiny_gan_workdir, tmp_path)
    save_json = ocp.JsonCheckpointHandler._save_fn

    async def full_disk(self, item, directory):
        if os.path.basename(os.path.dirname(str(directory))).startswith("4"):  # checkpoints/4.orbax-checkpoint-tmp*/
            raise _no_space(directory)
        return await save_json(self, item, directory)

    monkeypatch.setattr(ocp.JsonCheckpointHandler, "_save_fn", full_disk)
    _assert_full_disk_then_resume(workdir, tiny_gan_workdir, monkeypatch, caplog)


def test_full_disk_on_a_metrics_write(tiny_gan_workdir, tmp_path, monkeypatch, caplog):
    workdir = _without_step_4(tiny_gan_workdir, tmp_path)
    append = train._append_metrics

    def full_disk(path, record):
        if record["step"] == 3:
            raise _no_space(path)
        append(path, record)

    monkeypatch.setattr(train, "_append_metrics", full_disk)
    _assert_full_disk_then_resume(workdir, tiny_gan_workdir, monkeypatch, caplog)


def test_tensorstore_disk_full_errors_are_recognised():
    # The message TensorStore gave for a checkpoint written to a full 800 KiB tmpfs.
    tensorstore = ValueError(
        'RESOURCE_EXHAUSTED: Error writing "generator.params.Upsample_1.Conv_0.kernel/0.0.0.0" in OCDBT database at '
        'local file "/mnt/full/run/checkpoints/4.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/": '
        "Failed to write 200137 bytes to file 4: No space left on device [os_error_code='28']"
    )
    assert checkpoint.is_disk_full(tensorstore)
    assert checkpoint.is_disk_full(RuntimeError("save failed")) is False
    try:
        try:
            raise _no_space("/x")
        except OSError as error:
            raise RuntimeError("while saving") from error
    except RuntimeError as wrapped:
        assert checkpoint.is_disk_full(wrapped)
    assert not checkpoint.is_disk_full(OSError(errno.EACCES, os.strerror(errno.EACCES), "/x"))
