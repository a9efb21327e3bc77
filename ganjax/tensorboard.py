"""TensorBoard event files beside metrics.jsonl, written with tensorboardX (pure Python, on protobuf).

    tensorboard --logdir WORKDIR        # or a directory of workdirs: one run each

`ganjax.train` writes, from process 0 and unless config.train.tensorboard is False, every number of
every metrics.jsonl record as a scalar of the same name at the same step (losses, images_per_sec,
live_fid_domain, ...), each text value as text (a live_alarm), and each sample grid as the image
"samples", enlarged as the PNGs are.

A resumed run goes on from a checkpoint's step S and metrics.jsonl drops its records past S; the new
event file starts with a SessionLog START at step S + 1 (tensorboardX's purge_step), on which
TensorBoard drops the earlier files' events past S. A NaN recovery back to step S writes the same.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

EVENT_FILE_PREFIX = "events.out.tfevents"
SAMPLES_TAG = "samples"
SAMPLE_SCALE = 2  # as ganjax.visualize.save_image_grid's PNGs: a 28-pixel image shows 56 pixels wide
FLUSH_SECS = 10  # how stale a TensorBoard open on a running job may be


class EventWriter:
    """Writes metrics.jsonl records and sample grids of one training process to `logdir`."""

    def __init__(self, logdir: str, resume_step: int = 0):
        # Imported here, only when TensorBoard is on: tensorboardX also imports torch when it is installed.
        import tensorboardX

        self._summary = tensorboardX.summary
        # A suffix that is unique and sorts in time: runs starting within the same second (a resume in a
        # test, a rerun) each get their own file, and TensorBoard reads the files in name order.
        self._writer = tensorboardX.FileWriter(logdir, flush_secs=FLUSH_SECS, filename_suffix=f".{time.time_ns()}")
        if resume_step:
            self.purge_after(resume_step)

    def purge_after(self, step: int) -> None:
        """Tells TensorBoard to drop the events past `step` written before this call."""
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        self._writer.add_event(Event(step=step + 1, session_log=SessionLog(status=SessionLog.START)))

    def write_record(self, record: dict[str, Any]) -> None:
        """record: a metrics.jsonl record {"step": int, name: value, ...}. Numbers (not booleans) become
        scalars and strings text; other values (the dict of a NaN recovery's bad metrics) are left out."""
        values = []
        for name, value in record.items():
            if name == "step" or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                values.extend(self._summary.scalar(name, float(value)).value)
            elif isinstance(value, str):
                values.extend(self._summary.text(name, value).value)
        if values:
            self._writer.add_summary(self._summary.Summary(value=values), global_step=record["step"])

    def write_samples(self, step: int, grid: np.ndarray) -> None:
        """grid: [H, W, C] uint8, a `ganjax.visualize.image_grid`."""
        enlarged = np.repeat(np.repeat(np.asarray(grid, np.uint8), SAMPLE_SCALE, axis=0), SAMPLE_SCALE, axis=1)
        self._writer.add_summary(self._summary.image(SAMPLES_TAG, enlarged, dataformats="HWC"), global_step=step)

    def close(self) -> None:
        self._writer.close()
