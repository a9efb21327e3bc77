"""One writer per workdir (ganjax.lock): a second writer refuses naming the first, a killed holder's
lock does not block, one process nests, only process 0 of a multi-host run locks."""

import errno
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from conftest import REPO
from ganjax import lock
from ganjax.evaluate import evaluate
from ganjax.experiment import run_experiment
from ganjax.train import train_and_evaluate

HOLDER = """
import sys, time
from ganjax.lock import workdir_lock
with workdir_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def _start_holder(workdir):
    """A process that holds `workdir`'s lock until killed, started once it holds it."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, workdir], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
    return holder


@pytest.fixture
def holder(tmp_path):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    process = _start_holder(workdir)
    yield workdir, process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_second_writers_refuse_naming_the_holder(holder, tiny_config):
    workdir, process = holder
    named = rf"pid {process.pid} on host {socket.gethostname()}, started .*command: .*workdir_lock.*kill {process.pid}"
    with pytest.raises(lock.WorkdirInUseError, match=named):
        train_and_evaluate(tiny_config, workdir)
    tiny_config.experiment.strategies = "plain"
    with pytest.raises(lock.WorkdirInUseError, match=named):
        run_experiment(tiny_config, workdir, progress=False)
    with pytest.raises(lock.WorkdirInUseError, match=named):
        evaluate(workdir)
    assert sorted(os.listdir(workdir)) == [lock.LOCK_FILE]  # none of them wrote anything
    assert json.loads(open(lock.lock_path(workdir)).read())["pid"] == process.pid


def test_second_train_command_refuses_in_one_line(holder):
    workdir, process = holder
    command = [sys.executable, "-m", "ganjax.train", "--config", os.path.join(REPO, "configs", "digits.py"),
               "--workdir", workdir]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode != 0
    assert f"ganjax.train: error: Workdir {workdir} is being written by another live process: pid {process.pid}" \
        in result.stderr
    assert "Traceback" not in result.stderr


def test_a_killed_holder_does_not_block(holder, tiny_config, caplog):
    workdir, process = holder
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads(open(lock.lock_path(workdir)).read())["pid"] == process.pid  # left behind
    tiny_config.train.steps = 2
    with caplog.at_level("WARNING", logger="ganjax"):
        assert train_and_evaluate(tiny_config, workdir)["step"] == 2
    assert f"taking over the lock left by pid {process.pid}" in caplog.text
    assert not os.path.exists(lock.lock_path(workdir))  # released on exit


def test_one_process_nests_and_locks_subdirectories_apart(tmp_path):
    study, gan = str(tmp_path / "study"), str(tmp_path / "study" / "gan")
    os.makedirs(gan)
    with lock.workdir_lock(study):
        with lock.workdir_lock(gan), lock.workdir_lock(study), lock.workdir_lock(gan):
            assert os.path.exists(lock.lock_path(gan))
        assert not os.path.exists(lock.lock_path(gan))
        assert json.loads(open(lock.lock_path(study)).read())["pid"] == os.getpid()
    assert not os.path.exists(lock.lock_path(study))


def test_a_lock_from_another_host_names_it_and_how_to_remove_it(tmp_path):
    workdir = str(tmp_path)
    record = {"pid": 4242, "host": "elsewhere.example", "command": "python -m ganjax.train", "started": "then"}
    with open(lock.lock_path(workdir), "w") as stream:
        json.dump(record, stream)
    message = rf"pid 4242 on host elsewhere.example.*another host.*remove the stale lock: rm {lock.lock_path(workdir)}"
    with pytest.raises(lock.WorkdirInUseError, match=message):
        with lock.workdir_lock(workdir):
            pass
    os.remove(lock.lock_path(workdir))
    with lock.workdir_lock(workdir):
        pass


def test_without_file_locks_the_pid_decides(tmp_path, monkeypatch):
    """On a file system without flock, a same-host holder blocks while its pid lives."""
    def no_flock(descriptor, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", no_flock)
    workdir = str(tmp_path)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for pid, blocks in ((os.getppid(), True), (int(ended.stdout), False)):
        with open(lock.lock_path(workdir), "w") as stream:
            json.dump({**lock.holder_record(), "pid": pid}, stream)
        if blocks:
            with pytest.raises(lock.WorkdirInUseError, match=f"pid {pid} on host"):
                with lock.workdir_lock(workdir):
                    pass
        else:
            with lock.workdir_lock(workdir):
                assert json.loads(open(lock.lock_path(workdir)).read())["pid"] == os.getpid()


def test_only_process_zero_takes_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "_is_chief", lambda: False)
    with lock.workdir_lock(str(tmp_path)):
        assert not os.path.exists(lock.lock_path(str(tmp_path)))
