"""Kill anywhere: SIGKILL training and studies at random points, rerun the same command, and check
that nothing is lost.

    python benchmarks/fault_injection.py [--kills 20] [--study-kills 5] [--semi-kills 5] [--seed 0] \
        [--workdir DIR]

Three campaigns, each against an uninterrupted reference run of the same command:

  gan        configs/digits.py, 40 steps, logging every 2, sampling and checkpointing every 4 (so
             that kills land inside writes), --kills kills;
  long_tail  configs/digits_lt.py, tiny (a 24-step GAN in WORKDIR/gan, three strategies x 2 seeds),
             killed mid-GAN (its write sites), mid-strategy (strategy_check: trained, not yet recorded;
             wall-clock kills) and inside record and report writes;
  few_label  configs/digits_semi.py, tiny (two strategies x 2 seeds).

A kill is either at a write site of ganjax.faults (GANJAX_FAULT_INJECT=SITE:COUNT[:SECONDS]: the
process kills itself at that visit of the site, or SECONDS after it) or after a random wall-clock
delay ("wall_clock"); counts and delays are drawn with --seed, the sites taken in turn. After each
kill the same command runs again (and may be killed again: up to --kills-per-episode kills, then a
run without faults finishes the episode in its workdir; the next episode starts afresh). A kill that
does not land (the run finished first) is drawn again at its site's first visit in the next episode;
metrics_truncate, visited only by a rerun, gets an uncounted metrics_append kill first when it would
open an episode.

What is counted, per kill:
  resumed        the next run started from the newest checkpoint on disk (its "Resuming from
                 checkpoint step N" line; no damaged checkpoint passed over), was not blocked by a
                 stale lock, did not crash, and (studies) rewrote no finished strategy's record;
  bitwise equal  the episode's final checkpoints (every step kept) equal the reference's leaf for
                 leaf (np.array_equal), its sample PNGs equal byte for byte; studies: report.json
                 and every strategy record equal the reference's, wall times and paths left out;
  metrics exact-once  the final metrics.jsonl holds every logged step once, each line complete JSON,
                 with the reference's values (throughput left out);
  data lost      right after the kill: a sample PNG or strategy record unreadable or not the
                 reference's, a metrics record up to the newest checkpoint missing, repeated or
                 changed (a partial last line is allowed: the rerun repairs it), or the rerun
                 passing over a damaged checkpoint.

Prints a table and exits 1 if any kill failed a check. Runs on CPU; the caches of the compiled
programs and data (GANJAX_COMPILATION_CACHE, GANJAX_CACHE) are fresh ones in the workdir unless set.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from ganjax import faults  # noqa: E402  (after the path fix, when run as a script)

WALL_CLOCK = "wall_clock"
GAN_OVERRIDES = ("train.steps=40", "train.log_every=2", "train.sample_every=4", "train.checkpoint_every=4")
LONG_TAIL_OVERRIDES = (
    "experiment.strategies=plain,oversample,gan", "experiment.num_seeds=2", "classifier.steps=40",
    "train.steps=24", "train.log_every=4", "train.sample_every=8", "train.checkpoint_every=8",
)
FEW_LABEL_OVERRIDES = ("experiment.strategies=semi_gan,supervised", "semi.steps=40")
# Per campaign: the sites taken in turn, each with the highest visit count drawn.
GAN_SITES = {"checkpoint_save": 3, "checkpoint_async": 3, "metrics_append": 6, "metrics_truncate": 1,
             "png_write": 3, "lock_write": 1, WALL_CLOCK: 0}
LONG_TAIL_SITES = {"checkpoint_async": 2, "metrics_append": 4, "png_write": 2, "strategy_check": 3,
                   "record_write": 3, "report_write": 1, WALL_CLOCK: 0}
FEW_LABEL_SITES = {"strategy_check": 2, "png_write": 1, "record_write": 2, "report_write": 1, "lock_write": 1,
                   WALL_CLOCK: 0}
NEEDS_EARLIER_RUN = {"metrics_truncate"}  # visited only when a killed run left metrics behind
RESUMING = re.compile(r"Resuming from checkpoint step (\d+)")
LOCK_REFUSED = "is being written by another live process"
NOT_COMPARED = ("images_per_sec",)


@dataclasses.dataclass
class Kill:
    site: str  # a ganjax.faults site, or WALL_CLOCK
    count: int = 1
    delay: float = 0.0  # seconds: after the visit, or (WALL_CLOCK) after the start

    def __str__(self) -> str:
        if self.site == WALL_CLOCK:
            return f"{WALL_CLOCK}@{self.delay:.1f}s"
        return f"{self.site}:{self.count}" + (f":{self.delay:.3f}" if self.delay else "")


@dataclasses.dataclass
class Run:
    returncode: int
    stderr: str
    seconds: float

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


@dataclasses.dataclass
class Outcome:
    """One kill that landed, and what the checks found."""

    campaign: str
    kill: Kill
    episode: int
    lost: list[str] = dataclasses.field(default_factory=list)
    resumed: bool | None = None  # None until a later run decides it
    resume_problems: list[str] = dataclasses.field(default_factory=list)
    bitwise: bool | None = None
    metrics_once: bool | None = None  # None: no metrics.jsonl in this campaign


def run_command(command: list[str], env: dict, kill: Kill | None, log_path: str) -> Run:
    """Runs `command` from the repository (stderr to `log_path`), killed as `kill` says."""
    env = {name: value for name, value in env.items() if name != faults.ENV}
    if kill is not None and kill.site != WALL_CLOCK:
        env[faults.ENV] = str(kill)
    start = time.perf_counter()
    with open(log_path, "w") as stderr:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            process.wait(timeout=kill.delay if kill is not None and kill.site == WALL_CLOCK else 1800)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)  # our own child, by its pid
            process.wait()
    with open(log_path, errors="replace") as stream:
        return Run(process.returncode, stream.read(), time.perf_counter() - start)


def last_lines(text: str, count: int = 3) -> str:
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip() and "it/s" not in line]
    return " | ".join(lines[-count:])


# --- What a GAN workdir holds.


def checkpoint_steps(workdir: str) -> list[int]:
    """The step directories orbax lists (complete: it renames each when written), oldest first."""
    directory = os.path.join(workdir, "checkpoints")
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit()) if os.path.isdir(directory) else []


def newest_checkpoint(workdir: str) -> int | None:
    steps = checkpoint_steps(workdir)
    return steps[-1] if steps else None


def metrics_lines(workdir: str) -> tuple[list[dict], list[str]]:
    """(records, problems) of workdir/metrics.jsonl: a last line without its newline (a kill
    mid-append) is reported as "partial"; any other line that is not JSON is a problem."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return [], []
    text = open(path).read()
    lines = text.split("\n")
    records, problems = [], []
    if lines[-1]:
        problems.append("partial")
    for number, line in enumerate(lines[:-1], 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            problems.append(f"metrics.jsonl line {number} is not JSON: {line[:60]!r}")
    return records, problems


def comparable(record: dict) -> dict:
    return {name: value for name, value in record.items() if name not in NOT_COMPARED}


def png_problems(directory: str, reference: str | None) -> list[str]:
    """Problems with the PNGs of `directory`: unreadable, or other bytes than the reference's file."""
    from PIL import Image

    problems = []
    for path in sorted(glob.glob(os.path.join(directory, "*.png"))):
        try:
            with Image.open(path) as picture:
                picture.load()
        except Exception as error:  # PIL raises several types for a cut file
            problems.append(f"{os.path.relpath(path, os.path.dirname(directory))} unreadable ({type(error).__name__})")
            continue
        twin = os.path.join(reference, os.path.basename(path)) if reference else None
        if twin and os.path.exists(twin) and open(twin, "rb").read() != open(path, "rb").read():
            problems.append(f"{os.path.basename(path)} differs from the reference's")
    return problems


def gan_states(workdir: str, step: int):
    """The GANState of checkpoint `step`, rebuilt from the config saved with it."""
    import jax

    from ganjax import checkpoint
    from ganjax.config import config_from_dict
    from ganjax.state import create_gan_state

    def template(meta):
        return create_gan_state(config_from_dict(meta["config"]), meta["num_classes"], tuple(meta["image_shape"]),
                                jax.random.key(0))

    return checkpoint.restore(workdir, template, step)[2]


def leaves_equal(a, b) -> bool:
    import jax

    left, right = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(left) == len(right) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(left, right))


def gan_after_kill(workdir: str, reference: str) -> list[str]:
    """Data lost right after a kill: sample PNGs, and metrics records up to the newest checkpoint."""
    lost = png_problems(os.path.join(workdir, "samples"), os.path.join(reference, "samples"))
    records, problems = metrics_lines(workdir)
    lost += [problem for problem in problems if problem != "partial"]
    newest = newest_checkpoint(workdir) or 0
    kept = [comparable(record) for record in records if record["step"] <= newest]
    expected = [comparable(record) for record in metrics_lines(reference)[0] if record["step"] <= newest]
    if kept != expected:
        lost.append(f"metrics.jsonl up to checkpoint step {newest}: steps {[r['step'] for r in kept]}, "
                    f"expected {[r['step'] for r in expected]}")
    return lost


def gan_final(workdir: str, reference: str) -> tuple[bool, bool, list[str]]:
    """(bitwise equal, metrics exactly once, other problems) of a finished GAN workdir."""
    problems = []
    steps, expected_steps = checkpoint_steps(workdir), checkpoint_steps(reference)
    bitwise = steps == expected_steps and all(
        leaves_equal(gan_states(workdir, step), gan_states(reference, step)) for step in steps)
    if steps != expected_steps:
        problems.append(f"checkpoint steps {steps}, expected {expected_steps}")
    records, line_problems = metrics_lines(workdir)
    expected = metrics_lines(reference)[0]
    metrics_once = not line_problems and [comparable(r) for r in records] == [comparable(r) for r in expected]
    samples, expected_samples = (sorted(os.listdir(os.path.join(w, "samples"))) for w in (workdir, reference))
    if samples != expected_samples:
        problems.append(f"samples/ holds {sorted(set(samples) ^ set(expected_samples))} unlike the reference")
    problems += png_problems(os.path.join(workdir, "samples"), os.path.join(reference, "samples"))
    unfinished = [name for name in os.listdir(os.path.join(workdir, "checkpoints")) if not name.isdigit()]
    if unfinished:
        problems.append(f"left in checkpoints/: {unfinished}")
    return bitwise, metrics_once, problems


def run_problems(run: Run) -> list[str]:
    """What went wrong with a run whatever it resumed from: a crash, the lock, a damaged checkpoint."""
    problems = []
    if run.returncode not in (0, -signal.SIGKILL):
        problems.append(f"exit code {run.returncode}: {last_lines(run.stderr)}")
    if LOCK_REFUSED in run.stderr:
        problems.append("blocked by the lock")
    if "is damaged" in run.stderr:
        problems.append("passed over a damaged checkpoint")
    return problems


def gan_resume_verdict(before: int | None, run: Run) -> tuple[bool | None, list[str]]:
    """(whether a run started right from `before`, the newest checkpoint when it started; problems):
    None when it was killed before it said where it resumed from."""
    problems = run_problems(run)
    resumed = RESUMING.findall(run.stderr)
    if resumed and int(resumed[0]) != before:
        problems.append(f"resumed from step {resumed[0]}, the newest checkpoint was {before}")
    if not resumed and before is not None:
        if run.killed and not problems:
            return None, []
        problems.append(f"did not resume from step {before}")
    return not problems, problems


# --- Campaigns.


class GanCampaign:
    """ganjax.train on configs/digits.py (`GAN_OVERRIDES`)."""

    name = "gan"
    program = "ganjax.train"
    config = "configs/digits.py"

    def __init__(self, overrides=GAN_OVERRIDES):
        self.overrides = tuple(overrides)

    def command(self, workdir: str) -> list[str]:
        return [sys.executable, "-m", self.program, "--config", os.path.join(REPO, self.config),
                "--workdir", workdir, *(f"--config.{assignment}" for assignment in self.overrides)]

    def snapshot(self, workdir: str) -> Any:
        return newest_checkpoint(workdir)

    def verdict(self, workdir: str, before: Any, run: Run) -> tuple[bool | None, list[str]]:
        return gan_resume_verdict(before, run)

    def after_kill(self, workdir: str, reference: str) -> list[str]:
        return gan_after_kill(workdir, reference)

    def final(self, workdir: str, reference: str) -> tuple[bool, bool | None, list[str]]:
        return gan_final(workdir, reference)


def _without_volatile(value: Any, paths: tuple[str, ...]) -> Any:
    """`value` without wall times ("*seconds*" keys) and with the workdirs in strings made "WORKDIR"."""
    if isinstance(value, dict):
        return {key: _without_volatile(item, paths) for key, item in value.items() if "seconds" not in key}
    if isinstance(value, list):
        return [_without_volatile(item, paths) for item in value]
    if isinstance(value, str):
        for path in paths:
            value = value.replace(path, "WORKDIR")
    return value


class StudyCampaign(GanCampaign):
    """ganjax.experiment on a tiny study config; with a two-stage GAN (WORKDIR/gan) for long_tail."""

    program = "ganjax.experiment"

    def __init__(self, name: str, config: str, overrides, has_gan: bool):
        super().__init__(overrides)
        self.name, self.config, self.has_gan = name, config, has_gan

    def records(self, workdir: str) -> dict[str, tuple[int, bytes]]:
        return {os.path.basename(path): (os.stat(path).st_mtime_ns, open(path, "rb").read())
                for path in glob.glob(os.path.join(workdir, "strategies", "*.json"))}

    def snapshot(self, workdir: str) -> Any:
        return self.records(workdir), newest_checkpoint(os.path.join(workdir, "gan"))

    def verdict(self, workdir: str, before: Any, run: Run) -> tuple[bool | None, list[str]]:
        """Rewrote no finished record, resumed its GAN (if it trained it) from the newest checkpoint."""
        records, gan_step = before
        now = self.records(workdir)
        rewritten = sorted(name for name, facts in records.items() if now.get(name) != facts)
        problems = [f"recomputed finished strategies {rewritten}"] if rewritten else []
        problems += run_problems(run)
        resumed = RESUMING.findall(run.stderr)
        if resumed and int(resumed[0]) != gan_step:
            problems.append(f"resumed its GAN from step {resumed[0]}, the newest checkpoint was {gan_step}")
        return not problems, problems

    def after_kill(self, workdir: str, reference: str) -> list[str]:
        lost = []
        for name in os.listdir(os.path.join(workdir, "strategies")) if os.path.isdir(
                os.path.join(workdir, "strategies")) else []:
            if not name.endswith(".json"):
                continue
            try:
                record = json.load(open(os.path.join(workdir, "strategies", name)))
            except json.JSONDecodeError:
                lost.append(f"strategies/{name} is not JSON")
                continue
            expected = json.load(open(os.path.join(reference, "strategies", name)))
            if _without_volatile(record, (workdir,)) != _without_volatile(expected, (reference,)):
                lost.append(f"strategies/{name} differs from the reference's")
        lost += png_problems(workdir, None)
        if self.has_gan and os.path.isdir(os.path.join(workdir, "gan")):
            lost += [f"gan: {problem}" for problem in gan_after_kill(os.path.join(workdir, "gan"),
                                                                     os.path.join(reference, "gan"))]
        return lost

    def final(self, workdir: str, reference: str) -> tuple[bool, bool | None, list[str]]:
        problems = []
        report, expected = (json.load(open(os.path.join(w, "report.json"))) for w in (workdir, reference))
        bitwise = _without_volatile(report, (workdir,)) == _without_volatile(expected, (reference,))
        names = sorted(os.listdir(os.path.join(reference, "strategies")))
        if sorted(os.listdir(os.path.join(workdir, "strategies"))) != names:
            problems.append(f"strategies/ holds {sorted(os.listdir(os.path.join(workdir, 'strategies')))}")
        for name in names:
            record, twin = (json.load(open(os.path.join(w, "strategies", name))) for w in (workdir, reference))
            bitwise &= _without_volatile(record, (workdir,)) == _without_volatile(twin, (reference,))
        problems += png_problems(workdir, None)
        metrics_once = None
        if self.has_gan:
            gan_bitwise, metrics_once, gan_problems = gan_final(os.path.join(workdir, "gan"),
                                                                os.path.join(reference, "gan"))
            bitwise &= gan_bitwise
            problems += [f"gan: {problem}" for problem in gan_problems]
        return bitwise, metrics_once, problems


def draw_kills(rng: np.random.Generator, count: int, sites: dict[str, int], run_seconds: float) -> list[Kill]:
    """`count` kills: the sites in a shuffled turn, visit counts and delays drawn with `rng` (wall-clock
    ones within a run from scratch, `run_seconds`)."""
    order = list(sites)
    rng.shuffle(order)
    kills = []
    for index in range(count):
        site = order[index % len(order)]
        if site == WALL_CLOCK:
            kills.append(Kill(site, delay=float(rng.uniform(0.2, 0.9) * run_seconds)))
        else:
            delay = float(rng.uniform(0.0, 0.4)) if site == "checkpoint_async" and rng.random() < 0.5 else 0.0
            kills.append(Kill(site, int(rng.integers(1, sites[site] + 1)), delay))
    return kills


def leftovers(workdir: str) -> list[str]:
    """Temporary files and a lock file left in `workdir` (not counting orbax's, checked apart)."""
    found = []
    for directory, _, names in os.walk(workdir):
        found += [os.path.relpath(os.path.join(directory, name), workdir) for name in names
                  if name.endswith(".tmp") or name == ".ganjax.lock"]
    return found


def reference_run(campaign, directory: str, env: dict) -> float:
    """Runs `campaign` uninterrupted in directory/reference, then again in a scratch workdir, which must
    end the same (else the checks would blame the kills for nondeterminism); returns the second run's
    wall time (compiled programs cached: what a killed run's rerun takes from scratch)."""
    os.makedirs(directory, exist_ok=True)
    reference, again = os.path.join(directory, "reference"), os.path.join(directory, "reference_again")
    for workdir in (reference, again):
        run = run_command(campaign.command(workdir), env, None, workdir + ".stderr")
        if run.returncode != 0:
            raise RuntimeError(f"{campaign.name}: the uninterrupted run in {workdir} failed: "
                               f"{last_lines(run.stderr, 10)}")
    bitwise, metrics_once, problems = campaign.final(again, reference)
    if not bitwise or metrics_once is False or problems:
        raise RuntimeError(f"{campaign.name}: two uninterrupted runs differ (bitwise {bitwise}, metrics "
                           f"{metrics_once}, {problems}): the kills cannot be judged against the reference.")
    shutil.rmtree(again)
    return run.seconds


def run_campaign(campaign, kills: list[Kill], directory: str, env: dict, kills_per_episode: int = 4,
                 log=print) -> list[Outcome]:
    """Kills `campaign`'s command as `kills` say and checks each kill against directory/reference
    (`reference_run`). Episode e runs in directory/episode_e: up to kills_per_episode kills, each run
    after a kill the same command, then a run without faults; a kill that does not land (the run
    finished first) is drawn again, at its site's first visit, in the next episode."""
    reference = os.path.join(directory, "reference")
    pending, outcomes, episode, misses = list(kills), [], 0, 0
    while pending:
        workdir = os.path.join(directory, f"episode_{episode}")
        episode_outcomes: list[Outcome] = []
        undecided: list[Outcome] = []  # kills whose next run has not yet said where it resumed from
        runs: list[Run] = []

        def launch(kill: Kill | None) -> Run:
            before = campaign.snapshot(workdir)
            run = run_command(campaign.command(workdir), env, kill,
                              os.path.join(directory, f"episode_{episode}_run_{len(runs)}.stderr"))
            runs.append(run)
            resumed, problems = campaign.verdict(workdir, before, run)
            log(f"[{campaign.name}] episode {episode} run {len(runs)}: {kill or 'no fault'} -> exit {run.returncode} "
                f"in {run.seconds:.1f} s; resumed: {'not yet known' if resumed is None else problems or 'right'}")
            if resumed is not None:
                for outcome in undecided:
                    outcome.resumed, outcome.resume_problems = resumed, problems
                    outcome.lost += [problem for problem in problems if "damaged" in problem]
                undecided.clear()
            return run

        while pending and len(episode_outcomes) < kills_per_episode:
            index = 0
            if not runs:  # a site visited only on a rerun cannot kill an episode's first run
                index = next((i for i, kill in enumerate(pending) if kill.site not in NEEDS_EARLIER_RUN), 0)
                if pending[index].site in NEEDS_EARLIER_RUN:
                    launch(Kill("metrics_append", 2))  # not counted: leaves metrics behind for the rerun to repair
            kill = pending.pop(index)
            run = launch(kill)
            if run.returncode not in (0, -signal.SIGKILL):  # it crashed: the episode fails, the kill is dropped
                break
            if not run.killed:
                misses += 1
                if misses > 2 * len(kills) + 5:
                    raise RuntimeError(f"{campaign.name}: {misses} kills did not land; draw smaller counts or delays")
                pending.insert(0, Kill(WALL_CLOCK, delay=kill.delay / 2) if kill.site == WALL_CLOCK
                               else Kill(kill.site, 1, kill.delay))
                break
            outcome = Outcome(campaign.name, kill, episode, lost=campaign.after_kill(workdir, reference))
            if outcome.lost:
                log(f"[{campaign.name}]   data lost after {kill}: {outcome.lost}")
            episode_outcomes.append(outcome)
            undecided.append(outcome)
        if not runs or runs[-1].killed:
            launch(None)
        if runs[-1].returncode == 0:
            bitwise, metrics_once, problems = campaign.final(workdir, reference)
            problems += [f"left behind: {name}" for name in leftovers(workdir)]
        else:
            bitwise, metrics_once = False, False
            problems = [f"the episode did not finish: {last_lines(runs[-1].stderr)}"]
        log(f"[{campaign.name}] episode {episode}: {len(episode_outcomes)} kills; bitwise equal {bitwise}, metrics "
            f"exactly once {metrics_once}" + (f"; problems {problems}" if problems else ""))
        for outcome in episode_outcomes:
            outcome.bitwise, outcome.metrics_once = bitwise, metrics_once
            outcome.lost += [f"at the end: {problem}" for problem in problems]
            if outcome.resumed is None:
                outcome.resumed, outcome.resume_problems = False, ["no later run said where it resumed from"]
        outcomes += episode_outcomes
        episode += 1
    return outcomes


def _fraction(values: list[bool | None]) -> str:
    known = [value for value in values if value is not None]
    return f"{sum(known)}/{len(known)}" if known else "-"


def table(outcomes: list[Outcome]) -> str:
    """One row per campaign and site: kills, resumed, bitwise equal, metrics exact-once, data lost."""
    rows = collections.defaultdict(list)
    for outcome in outcomes:
        rows[(outcome.campaign, outcome.kill.site)].append(outcome)
    header = (f"{'campaign':<10} {'fault site':<17} {'kills':>5} {'resumed':>8} {'bitwise':>8} {'metrics 1x':>10} "
              f"{'data lost':>9}")
    lines = [header, "-" * len(header)]
    for (campaign, site), group in list(rows.items()) + [(("all", ""), outcomes)]:
        lines.append(f"{campaign:<10} {site:<17} {len(group):>5} {_fraction([o.resumed for o in group]):>8} "
                     f"{_fraction([o.bitwise for o in group]):>8} {_fraction([o.metrics_once for o in group]):>10} "
                     f"{sum(bool(o.lost) for o in group):>9}")
    return "\n".join(lines)


def all_good(outcomes: list[Outcome]) -> bool:
    return all(o.resumed and o.bitwise and o.metrics_once is not False and not o.lost for o in outcomes)


def campaign_env(root: str) -> dict:
    env = dict(os.environ)
    env.setdefault("GANJAX_COMPILATION_CACHE", os.path.join(root, "jax_cache"))
    env.setdefault("GANJAX_CACHE", os.path.join(root, "ganjax_cache"))
    env.pop(faults.ENV, None)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills of the GAN")
    parser.add_argument("--study-kills", type=int, default=5, help="kills of the long-tail study")
    parser.add_argument("--semi-kills", type=int, default=5, help="kills of the few-label study (0: skip it)")
    parser.add_argument("--kills-per-episode", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="default: a temporary directory, deleted at the end")
    args = parser.parse_args(argv)
    root = args.workdir or tempfile.mkdtemp(prefix="ganjax_fault_injection_")
    os.makedirs(root, exist_ok=True)
    env = campaign_env(root)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    outcomes = []
    campaigns = [(GanCampaign(), args.kills, GAN_SITES)] if args.kills else []
    if args.study_kills:
        campaigns.append((StudyCampaign("long_tail", "configs/digits_lt.py", LONG_TAIL_OVERRIDES, True),
                          args.study_kills, LONG_TAIL_SITES))
    if args.semi_kills:
        campaigns.append((StudyCampaign("few_label", "configs/digits_semi.py", FEW_LABEL_OVERRIDES, False),
                          args.semi_kills, FEW_LABEL_SITES))
    for campaign, count, sites in campaigns:
        directory = os.path.join(root, campaign.name)
        seconds = reference_run(campaign, directory, env)
        kills = draw_kills(rng, count, sites, seconds)
        print(f"[{campaign.name}] an uninterrupted run: {seconds:.1f} s; kills: {', '.join(map(str, kills))}",
              flush=True)
        outcomes += run_campaign(campaign, kills, directory, env, args.kills_per_episode,
                                 log=lambda line: print(line, flush=True))
    print()
    print(table(outcomes))
    print(f"\nseed {args.seed}; wall time {time.perf_counter() - start:.0f} s; "
          f"{'all checks passed' if all_good(outcomes) else 'SOME CHECKS FAILED'}")
    for outcome in outcomes:
        if outcome.lost or not outcome.resumed or not outcome.bitwise or outcome.metrics_once is False:
            print(f"  {outcome.campaign} {outcome.kill} (episode {outcome.episode}): lost {outcome.lost}, "
                  f"resume {outcome.resume_problems}, bitwise {outcome.bitwise}, metrics once {outcome.metrics_once}")
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all_good(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
