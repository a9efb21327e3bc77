"""The config-driven commands (ganjax.cli) end in one line, not a traceback: a missing config file,
and Ctrl-C, which stops training after the step in flight with a checkpoint to resume from."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO

from ganjax import loop
from ganjax.cli import resolve_config_flag


@pytest.mark.parametrize("program,flag", [("train", ["--config", "nope.py"]), ("experiment", ["--config=configs/nope"])])
def test_missing_config_is_one_line(tmp_path, program, flag):
    result = subprocess.run([sys.executable, "-m", f"ganjax.{program}", *flag, "--workdir", str(tmp_path / "run")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"ganjax.{program}: error: Config ") and "nope" in line and "digits, digits_lt" in line


def test_config_flag_resolves_names_and_keeps_the_rest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    digits = os.path.join(REPO, "configs", "digits.py")
    assert resolve_config_flag(["--config", "digits", "--workdir", "w"]) == ["--config", digits, "--workdir", "w"]
    assert resolve_config_flag(["--config=configs/digits.py:arg"]) == [f"--config={digits}:arg"]
    assert resolve_config_flag(["-config", digits, "--config.train.steps=3"]) == ["-config", digits,
                                                                                  "--config.train.steps=3"]
    assert resolve_config_flag(["--", "--config", "nope"]) == ["--", "--config", "nope"]  # absl's positionals
    for argv in (["--config", "nope"], ["-config=nope:arg"]):
        with pytest.raises(FileNotFoundError, match="'nope'"):
            resolve_config_flag(argv)


def test_run_steps_stops_after_the_call_in_flight_on_sigint():
    """A step that receives Ctrl-C is finished and handed to after_call; then on_interrupt saves it and the
    loop raises Interrupted; the SIGINT handler is the previous one again."""
    # Python's own handler, as in a terminal: a job started in the background (CI under `&`) inherits an
    # ignored SIGINT, which the loop rightly leaves ignored.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_run_steps()
    finally:
        signal.signal(signal.SIGINT, inherited)


def _interrupt_run_steps():
    previous = signal.getsignal(signal.SIGINT)
    seen, saved = [], []

    def single(state, batch, key):
        if int(state) == 3:
            signal.raise_signal(signal.SIGINT)
        return state + 1, {"loss": jnp.float32(0)}

    def after_call(state, step, metrics, stacked):
        seen.append(step)
        return state, False

    def on_interrupt(state, step):
        saved.append((int(state), step))
        return f"state {int(state)}"

    with pytest.raises(loop.Interrupted) as interrupted:
        loop.run_steps(jnp.int32(0), start_step=0, total_steps=100, next_batch=lambda: np.zeros(1),
                       place=lambda batch, stacked: batch, step_keys=lambda steps: steps, single=single,
                       after_call=after_call, on_interrupt=on_interrupt)
    assert (interrupted.value.step, interrupted.value.saved) == (4, "state 4")
    assert seen == [1, 2, 3, 4] and saved == [(4, 4)]
    assert isinstance(interrupted.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGINT) is previous


def _train_command(workdir, steps):
    return [sys.executable, "-m", "ganjax.train", "--config", "digits", "--workdir", workdir,
            "--config.model.noise_dim=16", "--config.model.embed_dim=8", "--config.model.generator_width=8",
            "--config.model.discriminator_width=8", "--config.train.batch_size=16", f"--config.train.steps={steps}",
            "--config.train.log_every=5", "--config.train.sample_every=100000",
            "--config.train.checkpoint_every=100000"]


def _records(path):
    with open(path) as stream:
        return [json.loads(line) for line in stream if line.strip()]


def test_ctrl_c_stops_training_in_one_line_and_rerun_resumes(tmp_path):
    workdir = str(tmp_path / "run")
    metrics = os.path.join(workdir, "metrics.jsonl")
    # SIGINT handled as in a terminal even when this test runs in a background job (which ignores it).
    process = subprocess.Popen(_train_command(workdir, 100000), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 600
    while not (os.path.exists(metrics) and len(_records(metrics)) >= 2):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    seconds_to_stop = time.monotonic() - sent
    output = stdout + stderr
    assert process.returncode == 130, output
    assert seconds_to_stop < 10, seconds_to_stop
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if "resume" in line]
    match = re.fullmatch(r"ganjax\.train: stopped by Ctrl-C at step (\d+); a rerun resumes from checkpoint step "
                         r"\1 in (\S+): python -m ganjax\.train (.*)", line)
    assert match, line
    step, directory = int(match.group(1)), match.group(2)
    assert directory == os.path.join(workdir, "checkpoints") and os.listdir(directory) == [str(step)]
    assert match.group(3).split() == _train_command(workdir, 100000)[3:]

    logged = [record["step"] for record in _records(metrics)]
    rerun = subprocess.run(_train_command(workdir, step + 2), cwd=tmp_path, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"Resuming from checkpoint step {step} " in rerun.stderr
    # A fresh start would have dropped the records of the interrupted run.
    assert [record["step"] for record in _records(metrics)][:len(logged)] == logged
    assert sorted(os.listdir(directory), key=int) == [str(step), str(step + 2)]
