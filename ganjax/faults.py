"""A testing hook: SIGKILL this process at a named write site, to check that a run killed anywhere
loses nothing (benchmarks/fault_injection.py, tests/test_fault_injection.py). Not for normal use.

    GANJAX_FAULT_INJECT=metrics_append:3 python -m ganjax.train --config configs/digits.py --workdir DIR

kills the process at its 3rd visit of the site "metrics_append" (with half a metrics line on disk).
"SITE:COUNT:SECONDS" starts a timer at that visit instead and kills SECONDS later while the process
goes on, e.g. somewhere inside orbax's asynchronous checkpoint write. The variable is read once, at
import; unset (the normal case), `maybe_kill` returns at once.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import IO, NamedTuple

ENV = "GANJAX_FAULT_INJECT"
# Where `maybe_kill` is called, and what is on disk when it kills there.
SITES = {
    "checkpoint_save": "ganjax.checkpoint.save: before orbax's save of the step starts",
    "checkpoint_async": "ganjax.checkpoint.save: orbax's save returned, its asynchronous write in flight",
    "metrics_append": "ganjax.train: half a metrics.jsonl record written",
    "metrics_truncate": "ganjax.train: the repaired metrics.jsonl in its temporary file, not yet renamed",
    "png_write": "ganjax.visualize.save_image_grid: half of a PNG's bytes written",
    "lock_write": "ganjax.lock: the lock file emptied, its holder's record not yet written",
    "strategy_check": "ganjax.studies.engine.train: a strategy's finite check (every CHECK_EVERY steps and at "
                      "its last), its record not yet written",
    "record_write": "ganjax.studies.engine.save_record: a strategy's record in its temporary file, not yet renamed",
    "report_write": "ganjax.report.write_report: report.json in its temporary file, not yet renamed",
}


class Fault(NamedTuple):
    site: str
    count: int  # the visit of `site` that kills, from 1
    delay: float  # seconds from that visit to the kill


def parse(text: str) -> Fault:
    """"SITE:COUNT" or "SITE:COUNT:SECONDS" -> Fault; ValueError naming the variable otherwise."""
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3) or parts[0] not in SITES:
            raise ValueError
        fault = Fault(parts[0], int(parts[1]), float(parts[2]) if len(parts) == 3 else 0.0)
        if fault.count < 1 or fault.delay < 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"{ENV}={text!r}: expected SITE:COUNT or SITE:COUNT:SECONDS (COUNT >= 1, SECONDS >= 0) "
                         f"with SITE one of {sorted(SITES)}.") from None
    return fault


_FAULT = parse(os.environ[ENV]) if os.environ.get(ENV) else None
_visits = 0


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def maybe_kill(site: str, flush: IO | None = None) -> None:
    """SIGKILLs this process if $GANJAX_FAULT_INJECT names `site` and this is the visit it counts;
    `flush`: a stream whose buffered writes reach the file first."""
    global _visits
    if _FAULT is None or _FAULT.site != site:
        return
    _visits += 1
    if _visits != _FAULT.count:
        return
    if flush is not None:
        flush.flush()
    if _FAULT.delay:
        timer = threading.Timer(_FAULT.delay, _kill)
        timer.daemon = True  # a process that ends first is not killed
        timer.start()
    else:
        _kill()
