"""One writer per workdir: a lock that a second training, study or evaluation refuses to pass.

    with workdir_lock(workdir):
        ...  # write checkpoints, metrics, reports

The lock is WORKDIR/.ganjax.lock, held with `fcntl.flock` and holding a JSON line about its
holder (pid, host, command, start time) for the refusal message. The kernel drops a flock when
its process dies, however it dies (kill -9 included), so a killed run never blocks the next one;
the file it leaves behind is recognised (same host, lock free) and taken over with a warning.
A clean exit deletes the file, under the lock; whoever then locks the deleted file sees that it
is no longer the one at the path (`_same_file`) and starts again on the new one.

Where flock does not work (some network or FUSE file systems answer ENOLCK or EOPNOTSUPP),
the holder's line alone decides: a holder on this host is alive if its pid is (`_pid_alive`).
A holder on another host can never be checked from here, so its line blocks until removed
by hand; the message says how.

NFS: Linux clients emulate flock with NFS byte-range locks, which other clients see when the
server's lock manager runs (NFSv4, or v3 with lockd); mounted with `nolock` or
`local_lock=flock` the lock is local to each client, and two hosts could both take it. A
client that crashes keeps its lock until the server's lease expires (about 90 s on NFSv4).
The holder's line covers both cases: a line from another host blocks even when flock passes.

Same process: re-entering a workdir this process already holds nests (a count, no deadlock);
other workdirs lock independently (a study's WORKDIR and the GAN it trains in WORKDIR/gan).
Multi-host jax.distributed runs: only process 0 writes, so only it takes the lock (call after
`ganjax.parallel.initialize_distributed`).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
from typing import Iterator

from ganjax import faults

LOCK_FILE = ".ganjax.lock"
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS)
_held: dict[str, list] = {}  # real workdir path -> [file descriptor, depth] of the locks this process holds
_held_guard = threading.Lock()
logger = logging.getLogger("ganjax")


class WorkdirInUseError(ValueError):
    """Another live process writes the workdir. A ValueError, so the command-line programs print
    it as one line, as they do other bad input."""


def lock_path(workdir: str) -> str:
    return os.path.join(workdir, LOCK_FILE)


def _command() -> str:
    """This process's command line (with the interpreter), from /proc where there is one."""
    try:
        with open("/proc/self/cmdline", "rb") as stream:
            words = stream.read().split(b"\0")
        return " ".join(word.decode(errors="replace") for word in words if word)
    except OSError:
        return " ".join([sys.executable, *sys.argv])


def holder_record() -> dict:
    """What this process writes into a lock it takes."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def _read_holder(descriptor: int) -> dict | None:
    """The holder's record in the lock file, or None if empty or unreadable (being written)."""
    os.lseek(descriptor, 0, os.SEEK_SET)
    text = os.read(descriptor, 65536).decode(errors="replace")
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "pid" in record else None


def _write_holder(descriptor: int, record: dict) -> None:
    os.ftruncate(descriptor, 0)
    faults.maybe_kill("lock_write")
    os.pwrite(descriptor, (json.dumps(record) + "\n").encode(), 0)
    os.fsync(descriptor)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _same_file(descriptor: int, path: str) -> bool:
    """Whether `descriptor` is still the file at `path` (a releasing holder deletes it)."""
    try:
        return os.stat(path).st_ino == os.fstat(descriptor).st_ino
    except FileNotFoundError:
        return False


def _describe(holder: dict | None) -> str:
    if holder is None:
        return "a process that has not yet written its details"
    command = " ".join(str(holder.get("command", "?")).split())  # one line, even for python -c "..."
    command = command if len(command) <= 300 else command[:297] + "..."
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}, "
            f"command: {command}")


def _refusal(workdir: str, holder: dict | None) -> WorkdirInUseError:
    path = lock_path(workdir)
    if holder is not None and holder.get("host") != socket.gethostname():
        return WorkdirInUseError(
            f"Workdir {workdir} is locked by {_describe(holder)}: another host, whose process cannot be checked "
            f"from here. If it still runs, wait for it or use another --workdir. If it no longer runs (killed, "
            f"or its machine went down), remove the stale lock: rm {path}"
        )
    return WorkdirInUseError(
        f"Workdir {workdir} is being written by another live process: {_describe(holder)}. Wait for it to "
        f"finish, stop it (kill {holder.get('pid') if holder else 'PID'}), or use another --workdir "
        f"(the lock: {path})."
    )


def _acquire(workdir: str) -> int:
    """A descriptor of the workdir's lock file, locked and holding this process's record.

    Raises:
      WorkdirInUseError naming the holder if another live process (or another host) holds it.
    """
    path = lock_path(workdir)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                flock_works = True
            except BlockingIOError:
                raise _refusal(workdir, _read_holder(descriptor)) from None
            except OSError as error:
                if error.errno not in _UNSUPPORTED:
                    raise
                flock_works = False
                logger.warning("File locks are not supported on %s (%s): the workdir lock relies on the holder's "
                               "pid alone.", workdir, error.strerror)
            if not _same_file(descriptor, path):
                os.close(descriptor)  # the holder released and deleted it meanwhile: lock the new file
                continue
            holder = _read_holder(descriptor)
            if holder is not None and holder.get("pid") != os.getpid():
                on_this_host = holder.get("host") == socket.gethostname()
                if not on_this_host or (not flock_works and _pid_alive(int(holder["pid"]))):
                    raise _refusal(workdir, holder)
                logger.warning("Workdir %s: taking over the lock left by %s, which ended without releasing it "
                               "(killed?).", workdir, _describe(holder))
            _write_holder(descriptor, holder_record())
            return descriptor
        except BaseException:
            os.close(descriptor)
            raise


def _release(workdir: str, descriptor: int) -> None:
    """Deletes the lock file (while still holding it) and unlocks."""
    try:
        if _same_file(descriptor, lock_path(workdir)):
            os.unlink(lock_path(workdir))
    finally:
        os.close(descriptor)


def _is_chief() -> bool:
    import jax

    return jax.process_index() == 0


@contextlib.contextmanager
def workdir_lock(workdir: str) -> Iterator[None]:
    """Holds the lock of `workdir` (an existing directory) for the body; nests within one process.

    Raises:
      WorkdirInUseError naming the other process (pid, host, command, start time) that holds it.
    """
    if not _is_chief():
        yield
        return
    key = os.path.realpath(workdir)
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
        else:
            _held[key] = [_acquire(workdir), 1]
    try:
        yield
    finally:
        with _held_guard:
            _held[key][1] -= 1
            if _held[key][1] == 0:
                _release(workdir, _held.pop(key)[0])
