"""Kill anywhere (benchmarks/fault_injection.py, ganjax.faults): runs SIGKILLed at chosen or random
moments, rerun with the same command, end bitwise where an uninterrupted run does, with nothing lost."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from ganjax import faults, train, visualize
from ganjax.config import load_config, with_overrides

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import fault_injection  # noqa: E402
from fault_injection import Kill  # noqa: E402

TINY_GAN = (
    "model.noise_dim=16", "model.embed_dim=8", "model.generator_width=8", "model.discriminator_width=8",
    "train.batch_size=16", "train.samples_per_class=2", "train.steps=8", "train.log_every=1",
    "train.sample_every=2", "train.checkpoint_every=2",
)


def _hooked(code: str, fault: str | None) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name != faults.ENV}
    if fault is not None:
        env[faults.ENV] = fault
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_the_hook_kills_at_the_counted_visit_of_its_site_only():
    code = "from ganjax import faults\nfor visit in range(1, 5):\n    print(visit, flush=True)\n" \
           "    faults.maybe_kill('png_write')\n"
    killed = _hooked(code, "png_write:3")
    assert killed.returncode == -9 and killed.stdout.split() == ["1", "2", "3"]
    for fault in (None, "metrics_append:1", "png_write:5"):
        untouched = _hooked(code, fault)
        assert untouched.returncode == 0 and untouched.stdout.split() == ["1", "2", "3", "4"], fault
    delayed = _hooked(code.replace("range(1, 5)", "range(1, 3)") + "import time\ntime.sleep(30)\n", "png_write:2:0.2")
    assert delayed.returncode == -9 and delayed.stdout.split() == ["1", "2"]  # killed while it slept
    for bad in ("png_write", "no_such_site:1", "png_write:0", "png_write:1:-1"):
        refused = _hooked(code, bad)
        assert refused.returncode == 1 and f"{faults.ENV}={bad!r}: expected SITE:COUNT" in refused.stderr, bad


def test_resume_drops_a_partial_last_metrics_record_and_names_a_corrupt_one(tmp_path, caplog):
    path = str(tmp_path / train.METRICS_FILE)
    with open(path, "w") as stream:
        stream.write('{"step": 1, "d_loss": 0.5}\n{"step": 2, "d_loss": 0.25}\n{"step": 3, "d_lo')
    with caplog.at_level("WARNING", logger="ganjax"):
        train._truncate_metrics(path, 2)
    assert "dropped the partial last record" in caplog.text
    assert open(path).read() == '{"step": 1, "d_loss": 0.5}\n{"step": 2, "d_loss": 0.25}\n'
    assert train._last_record(path, 2) == {"step": 2, "d_loss": 0.25}
    with open(path, "w") as stream:
        stream.write('{"step": 1}\n{"step": 2,,}\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl line 2 is not a JSON record .*Delete that line"):
        train._truncate_metrics(path, 3)


class _Recording(fault_injection.GanCampaign):
    """Notes what each kill left on disk before the rerun repairs it."""

    def __init__(self, overrides):
        super().__init__(overrides)
        self.left = []

    def after_kill(self, workdir, reference):
        metrics = open(os.path.join(workdir, train.METRICS_FILE)).read()
        self.left.append({
            "partial_metrics": not metrics.endswith("\n"),
            "checkpoint_tmp": [name for name in os.listdir(os.path.join(workdir, "checkpoints")) if not name.isdigit()],
        })
        return super().after_kill(workdir, reference)


def test_a_png_write_cut_halfway_leaves_the_earlier_file_whole(tmp_path, monkeypatch):
    path = str(tmp_path / "samples" / "step_000002.png")
    images = np.linspace(-1, 1, 4 * 8 * 8).reshape(4, 8, 8, 1)
    visualize.save_image_grid(images, 2, path)
    before = open(path, "rb").read()

    def die(site, flush=None):  # as the hook's SIGKILL would, in this process: nothing after it runs
        if site == "png_write":
            flush.flush()
            raise SystemExit("killed")

    monkeypatch.setattr(faults, "maybe_kill", die)
    with pytest.raises(SystemExit):
        visualize.save_image_grid(-images, 2, path)
    assert open(path, "rb").read() == before
    assert 0 < os.path.getsize(path + ".tmp") < len(before)  # the cut-off write went to the temporary file


def test_kills_inside_a_metrics_append_and_a_checkpoint_write_lose_nothing(tmp_path):
    """Two kills, one after the other in one workdir, at moments most likely to lose data: half a
    metrics record on disk (the rerun must drop it, not choke on it), then orbax's asynchronous
    checkpoint write in flight. Every rerun resumes from the newest checkpoint and the last ends
    bitwise where an uninterrupted run does, every step logged once, the sample PNGs byte for byte."""
    campaign = _Recording(TINY_GAN)
    directory = str(tmp_path)
    # The reference in this process: it also fills the session's compilation cache for the killed runs.
    config = with_overrides(load_config(os.path.join(REPO, "configs", "digits.py")), TINY_GAN)
    train.train_and_evaluate(config, os.path.join(directory, "reference"))
    log = []
    outcomes = fault_injection.run_campaign(
        campaign, [Kill("metrics_append", 5), Kill("checkpoint_async", 1)], directory,
        fault_injection.campaign_env(directory), log=log.append)
    assert [(str(outcome.kill), outcome.episode) for outcome in outcomes] == [
        ("metrics_append:5", 0), ("checkpoint_async:1", 0)], log
    for outcome in outcomes:
        assert outcome.resumed and outcome.bitwise and outcome.metrics_once and not outcome.lost, (outcome, log)
    assert campaign.left[0]["partial_metrics"] and campaign.left[1]["checkpoint_tmp"], campaign.left
    # Step 5's record was cut: checkpoint 2 was complete (step 4's save waited for it), so both reruns resumed.
    runs = [open(os.path.join(directory, f"episode_0_run_{index}.stderr")).read() for index in range(3)]
    assert [len(fault_injection.RESUMING.findall(text)) for text in runs] == [0, 1, 1]
    assert "dropped the partial last record" in runs[1]
    records = [json.loads(line) for line in open(os.path.join(directory, "episode_0", train.METRICS_FILE))]
    assert [record["step"] for record in records] == list(range(1, 9))


@pytest.mark.slow
def test_the_fault_injection_benchmark_with_few_kills_finds_nothing_lost(tmp_path, capsys):
    """benchmarks/fault_injection.py, small: 7 random kills of the GAN (one per site), 3 of the long-tail
    study, 2 of the few-label study."""
    assert fault_injection.main(["--kills", "7", "--study-kills", "3", "--semi-kills", "2", "--seed", "1",
                                 "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in out.splitlines()
            if line.split()[:1] in (["gan"], ["long_tail"], ["few_label"])}
    assert sum(int(row[0]) for (campaign, _), row in rows.items() if campaign == "gan") == 7
    assert {site for campaign, site in rows if campaign == "gan"} == set(fault_injection.GAN_SITES)
    assert sum(int(row[0]) for (campaign, _), row in rows.items() if campaign == "long_tail") == 3
    for row in rows.values():
        kills = row[0]
        assert row[1] == row[2] == f"{kills}/{kills}" and row[4] == "0", row
    assert "all checks passed" in out
