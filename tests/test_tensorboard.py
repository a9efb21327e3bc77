"""TensorBoard event files hold what metrics.jsonl holds (same names, steps and values) and the sample grids."""

import io
import json
import os
import struct
import sys

import jax
import numpy as np
import pytest
from PIL import Image
from tensorboardX.proto import event_pb2
from tensorboardX.record_writer import masked_crc32c

from conftest import REPO, make_tiny_config

from ganjax import checkpoint, live, tensorboard
from ganjax.metrics.features import FeatureExtractor
from ganjax.train import METRICS_FILE, train_and_evaluate


def _records(path):
    """The TFRecords of an event file, their checksums checked."""
    with open(path, "rb") as stream:
        data = stream.read()
    offset = 0
    while offset < len(data):
        header = data[offset: offset + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[offset + 8: offset + 12])[0] == masked_crc32c(header)
        payload = data[offset + 12: offset + 12 + length]
        assert struct.unpack("<I", data[offset + 12 + length: offset + 16 + length])[0] == masked_crc32c(payload)
        offset += 16 + length
        yield payload


def read_events(logdir):
    """{"scalars": {tag: [(step, value)]}, "images": {tag: [(step, Summary.Image)]}, "texts": {tag: [step]}} of
    the event files in `logdir`, read as TensorBoard reads them: files in name order, and a SessionLog START
    at step S drops the events read so far whose step is >= S (a resumed run's purge)."""
    events = []
    names = sorted(name for name in os.listdir(logdir) if name.startswith(tensorboard.EVENT_FILE_PREFIX))
    for name in names:
        for payload in _records(os.path.join(logdir, name)):
            event = event_pb2.Event.FromString(payload)
            if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
                events = [kept for kept in events if kept.step < event.step]
            events.append(event)
    found = {"scalars": {}, "images": {}, "texts": {}}
    for event in events:
        for value in event.summary.value:
            if value.HasField("image"):
                found["images"].setdefault(value.tag, []).append((event.step, value.image))
            elif value.HasField("tensor"):
                found["texts"].setdefault(value.tag, []).append(event.step)
            else:
                found["scalars"].setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def _jsonl_scalars(workdir):
    """{name: [(step, value)]} of every number (not boolean) in metrics.jsonl."""
    scalars = {}
    with open(os.path.join(workdir, METRICS_FILE)) as stream:
        for record in map(json.loads, stream):
            for name, value in record.items():
                if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    scalars.setdefault(name, []).append((record["step"], value))
    return scalars


def _pixel_extractor(*args, **kwargs):
    """A stand-in for the live FID's domain classifier: 4x4-pooled pixels of 16x16 images."""

    def apply_batch(images):
        pooled = images.reshape(images.shape[0], 4, 4, 4, 4).mean(axis=(2, 4))
        return pooled.reshape(images.shape[0], 16), jax.nn.one_hot(jax.numpy.arange(images.shape[0]) % 10, 10)

    return FeatureExtractor("domain", jax.jit(apply_batch), (16, 16, 1), {"name": "domain"})


def _event_files(workdir):
    return sorted(name for name in os.listdir(workdir) if name.startswith(tensorboard.EVENT_FILE_PREFIX))


def _pixel_live_fid(monkeypatch):
    monkeypatch.setattr(live.feature_extractors, "domain_feature_extractor", _pixel_extractor)
    monkeypatch.setattr(live, "LIVE_REFERENCE_SIZE", 200)


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """(config, workdir) of make_tiny_config's run with live FID every 2 steps, interrupted and resumed: as if
    it had died after logging steps 3 and 4 but before checkpoint 4 was saved, the rerun resumes from step 2,
    metrics.jsonl drops steps 3 and 4, and TensorBoard must drop the first file's too (step 3's images_per_sec
    is not logged again: the resumed run's step 3 compiles). Tests only read it."""
    config = make_tiny_config()
    config.eval.live_every = 2
    config.eval.live_num_samples = 20
    workdir = str(tmp_path_factory.mktemp("tensorboard") / "run")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _pixel_live_fid(monkeypatch)
        train_and_evaluate(config, workdir)
        checkpoint.set_aside(workdir, 4)
        train_and_evaluate(config, workdir)
    return config, workdir


def test_event_files_equal_metrics_jsonl_through_a_resume_and_hold_the_sample_grids(resumed_run, monkeypatch):
    config, workdir = resumed_run
    assert len(_event_files(workdir)) == 2

    events = read_events(workdir)
    expected = _jsonl_scalars(workdir)
    assert {"d_loss", "g_loss", "images_per_sec", live.LIVE_FID} <= set(expected)
    assert [step for step, _ in expected["d_loss"]] == [1, 2, 3, 4]
    assert [step for step, _ in expected["images_per_sec"]] == [2, 4]
    assert set(events["scalars"]) == set(expected)
    for name, values in expected.items():
        steps, numbers = zip(*values)
        tb_steps, tb_numbers = zip(*events["scalars"][name])
        assert tb_steps == steps, name
        np.testing.assert_allclose(tb_numbers, np.float32(numbers), rtol=1e-6, err_msg=name)

    assert [step for step, _ in events["images"][tensorboard.SAMPLES_TAG]] == [2, 4]
    step, image = events["images"][tensorboard.SAMPLES_TAG][-1]
    pixels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)))
    png = np.asarray(Image.open(os.path.join(workdir, "samples", "step_000004.png")))  # grayscale, enlarged 2x
    assert (image.height, image.width) == png.shape and pixels.shape == (*png.shape, 3)
    np.testing.assert_array_equal(pixels[..., 0], png)

    _pixel_live_fid(monkeypatch)
    train_and_evaluate(config, workdir)  # a finished run: nothing to train, no new event file
    assert len(_event_files(workdir)) == 2


def test_tensorboard_off_writes_no_event_file(tiny_config, tmp_path):
    tiny_config.train.tensorboard = False
    tiny_config.train.steps = 2
    workdir = str(tmp_path / "run")
    train_and_evaluate(tiny_config, workdir)
    assert os.path.exists(os.path.join(workdir, METRICS_FILE)) and _event_files(workdir) == []


def test_a_live_alarm_is_text_and_booleans_and_dicts_are_left_out(tmp_path):
    writer = tensorboard.EventWriter(str(tmp_path), resume_step=5)
    writer.write_record({"step": 6, "live_fid_domain": 2.0, "live_alarm": "class coverage fell", "live_best": True,
                         "non_finite": {"d_loss": "nan"}})
    writer.close()
    events = read_events(str(tmp_path))
    assert events["scalars"] == {"live_fid_domain": [(6, 2.0)]}
    assert events["texts"] == {"live_alarm/text_summary": [6]}


@pytest.mark.parametrize("resume_step", [0, 3])
def test_a_resumed_writer_drops_earlier_events_past_its_step(tmp_path, resume_step):
    first = tensorboard.EventWriter(str(tmp_path))
    for step in (1, 2, 3, 4):
        first.write_record({"step": step, "d_loss": float(step)})
    first.close()
    second = tensorboard.EventWriter(str(tmp_path), resume_step=resume_step)
    second.write_record({"step": 4, "d_loss": 40.0})
    second.close()
    expected = [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (4, 40.0)] if resume_step == 0 else \
        [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]
    assert read_events(str(tmp_path))["scalars"]["d_loss"] == expected


def test_tensorboard_curves_reads_back_the_tags_and_steps_of_metrics_jsonl_and_plots_them(resumed_run, tmp_path,
                                                                                        capsys):
    """tools/tensorboard_curves.py reads the event files with TensorBoard's own EventAccumulator: through the
    resume (its purge) it finds the names and steps of metrics.jsonl, live FID included."""
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import tensorboard_curves

    _, workdir = resumed_run
    out = str(tmp_path / "curves.png")
    assert tensorboard_curves.main(["--workdir", workdir, "--out", out]) == 0
    expected = _jsonl_scalars(workdir)
    scalars, others = tensorboard_curves.read_scalars(workdir)
    assert list(scalars) == sorted(expected) and live.LIVE_FID in scalars
    for name, values in expected.items():
        assert [step for step, _ in scalars[name]] == [step for step, _ in values], name
        np.testing.assert_allclose([value for _, value in scalars[name]], np.float32([v for _, v in values]),
                                   rtol=1e-6, err_msg=name)
    assert tensorboard.SAMPLES_TAG in others["images"]
    printed = capsys.readouterr().out.splitlines()
    for name, values in expected.items():
        row = next(line.split() for line in printed if line.split()[:1] == [name])
        assert int(row[1]) == len(values) and (int(row[2]), int(row[4])) == (values[0][0], values[-1][0]), row
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 400

    assert tensorboard_curves.main(["--workdir", str(tmp_path / "missing"), "--out", out]) == 1
    assert "No workdir" in capsys.readouterr().err
