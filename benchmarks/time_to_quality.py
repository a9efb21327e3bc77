"""Time to a good generator: ganjax's main job against the classic PyTorch DCGAN, for the same wall time.

    python benchmarks/time_to_quality.py --workdir workdirs/time_to_quality --minutes 15 \
        [--runs ganjax,torch_dcgan,light,share_forward,batch128] [--score-only] [--inception]

Each run is a separate program started by this script, on the same machine, one after the other:
- `ganjax` and its variants: `python -m ganjax.train --config configs/fashion_mnist_b64.py` (the main job as
  a user ran it when this comparison was recorded: batch 64, Adam 2e-4; 10 steps per call, logging, sample
  grids; `batch32` is today's `configs/fashion_mnist.py`), plus `--config.train.checkpoint_every` small
  enough to put a checkpoint every ~30 s and `keep_checkpoints` large; each checkpoint's wall time is
  the moment its directory appears (this script polls the directory twice a second); when the budget
  ends the run gets Ctrl-C, saves the step reached and exits. The variants add config overrides
  (`VARIANTS`; batch sizes scale the learning rates linearly).
- `torch_dcgan`: the classic conditional DCGAN in PyTorch eager (`torch_reference.ClassicGenerator` and
  `ClassicDiscriminator`: ConvTranspose 4x4 stride 2, widths 64/128, the DCGAN paper's settings: Adam 2e-4,
  beta1 0.5, batch 64, the non-saturating cross-entropy loss, no EMA), reading the same IDX files,
  saving the generator every `--grid-seconds` and at the end (`train-torch` below).
Every run's clock starts when its process is launched (imports, data loading and compilation count;
ganjax gets a fresh, empty XLA compilation cache, as on a first run).

Scoring, after all training (not timed), the same for every checkpoint of every run: 5,000 samples,
500 per class, scored with ganjax's domain features (`ganjax.metrics.features.domain_feature_extractor`:
the SmallCNN trained on the full real training split) against a reference of 10,000 images drawn from the
*training* split (seeded; never the test split): FID on the pooled 128-d features (`fid_domain`) and the
fraction of samples the same classifier assigns to their conditioning class (conditional accuracy). With
`--inception`, the last checkpoint of each run is also scored by Inception FID of 10,000 samples against
the 10,000 test images (the BENCHMARKS.md protocol of the main job's 18.1). ganjax samples from its EMA
generator with running BatchNorm statistics (`ganjax.load_generator`'s default); the DCGAN from its
generator in eval mode (running statistics; `--torch-bn batch` uses batch statistics instead).

Writes WORKDIR/time_to_quality.json, WORKDIR/time_to_quality.png (FID against minutes, one line per run)
and prints a table of FID against minutes. The last line is `time_to_fid_ratio=R`: R = (the DCGAN's wall
time to its best domain FID) / (ganjax's wall time to first reach that FID); `time_to_fid_ratio=<R` when
ganjax did not reach it within the budget (R = DCGAN's time / ganjax's budget is then an upper bound).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from ganjax.provenance import write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
MAIN_CONFIG = os.path.join(REPO, "configs", "fashion_mnist_b64.py")
NUM_SAMPLES = 5000
REFERENCE_SIZE = 10000
INCEPTION_SAMPLES = 10000
SAMPLE_SEED = 0
REFERENCE_SEED = 0
TORCH_RUN = "torch_dcgan"
# Config overrides of each ganjax variant (MAIN_CONFIG's own settings for "ganjax"; "batch32" is configs/fashion_mnist.py).
VARIANTS = {
    "ganjax": [],
    "light": ["model.upsample=subpixel2x2", "model.discriminator_head=none"],
    "share_forward": ["gan.share_generator_forward=True"],
    "light_share": ["model.upsample=subpixel2x2", "model.discriminator_head=none", "gan.share_generator_forward=True"],
    "batch32": ["train.batch_size=32", "optim.generator_lr=1e-4", "optim.discriminator_lr=1e-4"],
    "batch128": ["train.batch_size=128", "optim.generator_lr=4e-4", "optim.discriminator_lr=4e-4"],
    "narrow_d": ["model.discriminator_width=32"],
    "wide_g": ["model.generator_width=64"],
}


# ----------------------------------------------------------------------------- training: PyTorch DCGAN


def torch_reference():
    """benchmarks/torch_reference.py (the PyTorch twins), imported from beside this script."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_reference

    return torch_reference


def train_torch(out: str, seconds: float, grid_seconds: float, start: float, seed: int) -> None:
    """The classic conditional DCGAN for `seconds` of wall time from `start` (time.time() at launch)."""
    import torch
    import torch.nn.functional as F

    from ganjax.data.sources import read_idx

    twins = torch_reference()
    torch.manual_seed(seed)
    images = read_idx(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz"))
    images = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)[:, None]
    labels = torch.from_numpy(read_idx(os.path.join(FASHION_DIR, "train-labels-idx1-ubyte.gz")).astype(np.int64))
    generator = twins.ClassicGenerator(10, 28, 1, 64, 64, 128).train()
    discriminator = twins.ClassicDiscriminator(10, 28, 1, 64).train()
    g_opt = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
    os.makedirs(out, exist_ok=True)
    batch, step, next_save = 64, 0, grid_seconds
    order, position = torch.randperm(len(labels)), 0
    while True:
        if position + batch > len(order):
            order, position = torch.randperm(len(labels)), 0
        index = order[position : position + batch]
        position += batch
        real, y = images[index], labels[index]
        fake = generator(torch.randn(batch, 128), y)
        d_loss = F.softplus(-discriminator(real, y)).mean() + F.softplus(discriminator(fake.detach(), y)).mean()
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        discriminator.requires_grad_(False)
        g_loss = F.softplus(-discriminator(fake, y)).mean()  # non-saturating; reuses G's forward, as the paper's code
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        discriminator.requires_grad_(True)
        step += 1
        elapsed = time.time() - start
        if elapsed >= next_save or elapsed >= seconds:
            path = os.path.join(out, f"generator_{step:07d}.pt")
            torch.save(generator.state_dict(), path + ".tmp")
            os.replace(path + ".tmp", path)
            with open(os.path.join(out, "checkpoints.jsonl"), "a") as log:
                log.write(json.dumps({"step": step, "seconds": time.time() - start, "path": path,
                                      "d_loss": d_loss.item(), "g_loss": g_loss.item()}) + "\n")
            next_save += grid_seconds
            if elapsed >= seconds:
                return


# ----------------------------------------------------------------------------- training: ganjax


def ganjax_command(workdir: str, overrides: list[str], checkpoint_every: int) -> list[str]:
    return [sys.executable, "-m", "ganjax.train", "--config", MAIN_CONFIG, "--workdir", workdir,
            "--config.train.steps=1000000", f"--config.train.checkpoint_every={checkpoint_every}",
            "--config.train.keep_checkpoints=100000", *[f"--config.{item}" for item in overrides]]


def run_ganjax(workdir: str, overrides: list[str], seconds: float, checkpoint_every: int) -> list[dict]:
    """Trains for `seconds` of wall time; [{"step", "seconds"}] of each checkpoint, timed on appearance."""
    checkpoints = os.path.join(workdir, "checkpoints")
    env = dict(os.environ, GANJAX_COMPILATION_CACHE=tempfile.mkdtemp(prefix="ganjax_xla_cache_"))
    log = open(os.path.join(workdir, "train.log"), "w")
    start = time.time()
    # A job started in the background inherits an ignored SIGINT, which Python keeps: restore the default.
    process = subprocess.Popen(ganjax_command(workdir, overrides, checkpoint_every), cwd=REPO, env=env,
                               stdout=log, stderr=subprocess.STDOUT,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen: dict[int, float] = {}
    interrupted = None
    while process.poll() is None:
        time.sleep(0.5)
        now = time.time() - start
        if os.path.isdir(checkpoints):
            for name in os.listdir(checkpoints):
                if name.isdigit() and int(name) not in seen:
                    seen[int(name)] = now
        if now >= seconds and interrupted is None:
            process.send_signal(signal.SIGINT)  # ganjax saves the step reached and exits
            interrupted = now
        elif interrupted is not None and now > interrupted + 120:
            process.kill()  # the checkpoints written so far stand
    for name in os.listdir(checkpoints):
        if name.isdigit() and int(name) not in seen:
            seen[int(name)] = time.time() - start
    log.close()
    if process.returncode not in (0, 130):
        raise RuntimeError(f"ganjax training failed ({process.returncode}); see {workdir}/train.log")
    return [{"step": step, "seconds": min(seen[step], seconds)} for step in sorted(seen)]


def run_torch(out: str, seconds: float, grid_seconds: float, seed: int) -> list[dict]:
    os.makedirs(out, exist_ok=True)
    start = time.time()
    with open(os.path.join(out, "train.log"), "w") as log:
        subprocess.run([sys.executable, os.path.abspath(__file__), "train-torch", "--out", out,
                        "--seconds", str(seconds), "--grid-seconds", str(grid_seconds), "--start", repr(start),
                        "--seed", str(seed)], check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                       # As benchmarks/train_step.py: PyTorch's OpenMP threads yield instead of spinning at barriers.
                       env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))
    with open(os.path.join(out, "checkpoints.jsonl")) as stream:
        return [json.loads(line) for line in stream if line.strip()]


# ----------------------------------------------------------------------------- scoring


@dataclasses.dataclass
class Scorer:
    extractor: object
    reference: np.ndarray  # domain features of the training-split reference
    inception: object | None = None
    inception_reference: np.ndarray | None = None

    def domain(self, images: np.ndarray, labels: np.ndarray) -> dict:
        from ganjax.metrics import generative

        feats, logits = self.extractor.extract(images)
        return {"fid_domain": generative.fid_from_features(self.reference, feats),
                "conditional_accuracy": float(np.mean(logits.argmax(-1) == labels))}

    def fid_inception(self, images: np.ndarray) -> float:
        from ganjax.metrics import generative

        feats, _ = self.inception.extract(images)
        return generative.fid_from_features(self.inception_reference, feats)


def make_scorer(with_inception: bool) -> Scorer:
    from ganjax import config as ganjax_config, data
    from ganjax.metrics import features

    data_config = ganjax_config.load_config(MAIN_CONFIG).data
    train_set, test_set = data.load_train_and_test(data_config)
    rng = np.random.default_rng(REFERENCE_SEED)
    reference_images = data.to_model_range(train_set.images[rng.choice(len(train_set.labels), REFERENCE_SIZE, replace=False)])
    extractor = features.domain_feature_extractor(data_config)
    reference, _, _ = features.reference_features(extractor, reference_images, features.default_reference_cache_dir())
    scorer = Scorer(extractor, reference)
    if with_inception:
        scorer.inception = features.inception_feature_extractor()
        scorer.inception_reference, _, _ = features.reference_features(
            scorer.inception, data.to_model_range(test_set.images), features.default_reference_cache_dir())
    return scorer


def balanced_labels(num: int) -> np.ndarray:
    from ganjax import evaluate

    return evaluate.balanced_labels(num, 10)


def ganjax_samples(workdir: str, step: int, num: int) -> np.ndarray:
    """The samples `ganjax.evaluate` scores: balanced labels, key(SAMPLE_SEED), EMA generator."""
    from ganjax import evaluate
    from ganjax.sample import load_generator

    return evaluate.generated_samples(load_generator(workdir, step=step), num, SAMPLE_SEED)[0]


def torch_samples(path: str, num: int, bn: str) -> np.ndarray:
    import torch

    generator = torch_reference().ClassicGenerator(10, 28, 1, 64, 64, 128)
    generator.load_state_dict(torch.load(path))
    generator.train(bn == "batch")
    torch.manual_seed(SAMPLE_SEED)
    labels = torch.from_numpy(balanced_labels(num).astype(np.int64))
    chunks = []
    with torch.no_grad():
        for start in range(0, num, 500):
            chunk = labels[start : start + 500]
            chunks.append(generator(torch.randn(len(chunk), 128), chunk).permute(0, 2, 3, 1).numpy())
    return np.concatenate(chunks)


def score_run(name: str, run: dict, scorer: Scorer, bn: str, inception: bool) -> None:
    for point in run["points"]:
        if "fid_domain" in point:
            continue
        images = (torch_samples(point["path"], NUM_SAMPLES, bn) if name == TORCH_RUN
                  else ganjax_samples(run["workdir"], point["step"], NUM_SAMPLES))
        point.update(scorer.domain(images, balanced_labels(NUM_SAMPLES)))
        print(f"  {name} step {point['step']:>7} {point['seconds'] / 60:6.2f} min  fid_domain {point['fid_domain']:.4f}  "
              f"conditional accuracy {point['conditional_accuracy']:.3f}", flush=True)
    if inception and "fid_inception_last" not in run:
        last = run["points"][-1]
        images = (torch_samples(last["path"], INCEPTION_SAMPLES, bn) if name == TORCH_RUN
                  else ganjax_samples(run["workdir"], last["step"], INCEPTION_SAMPLES))
        run["fid_inception_last"] = scorer.fid_inception(images)
        print(f"  {name} last checkpoint (step {last['step']}): fid_inception {run['fid_inception_last']:.2f}", flush=True)


def time_to_reach(points: list[dict], fid: float) -> float | None:
    """Wall seconds of the first point at or below `fid`, None if never."""
    return next((p["seconds"] for p in points if p["fid_domain"] <= fid), None)


def ratio_line(runs: dict, budget: float) -> tuple[str, dict]:
    torch_points = runs[TORCH_RUN]["points"]
    best = min(torch_points, key=lambda p: p["fid_domain"])
    summary = {"torch_best_fid_domain": best["fid_domain"], "torch_seconds_to_best": best["seconds"]}
    for name, run in runs.items():
        if name != TORCH_RUN:
            reached = time_to_reach(run["points"], best["fid_domain"])
            summary[f"{name}_seconds_to_torch_best"] = reached
            summary[f"{name}_ratio"] = best["seconds"] / reached if reached else None
    reached = summary.get("ganjax_seconds_to_torch_best")
    if reached:
        return f"time_to_fid_ratio={best['seconds'] / reached:.2f}", summary
    return f"time_to_fid_ratio=<{best['seconds'] / budget:.2f}", summary


def table(runs: dict, grid_minutes: list[float]) -> str:
    """FID (domain) of each run's newest checkpoint at or before each grid time (up to 1 s late: the DCGAN
    saves at the first step past each grid time)."""
    names = list(runs)
    lines = ["| minutes | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for minute in grid_minutes:
        cells = []
        for name in names:
            done = [p for p in runs[name]["points"] if p["seconds"] <= minute * 60 + 1.0]
            cells.append(f"{done[-1]['fid_domain']:.3f} ({done[-1]['step']})" if done else "-")
        lines.append(f"| {minute:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: dict, path: str, torch_best: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_fid, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, run in runs.items():
        minutes = [p["seconds"] / 60 for p in run["points"]]
        style = dict(marker=".", linestyle="--" if name == TORCH_RUN else "-", label=name)
        ax_fid.plot(minutes, [p["fid_domain"] for p in run["points"]], **style)
        ax_acc.plot(minutes, [p["conditional_accuracy"] for p in run["points"]], **style)
    ax_fid.axhline(torch_best, color="gray", linewidth=0.8, linestyle=":", label="DCGAN's best")
    ax_fid.set(yscale="log", xlabel="wall time (minutes, 2 CPU cores)", ylabel="FID, domain features (log)",
               title="FID of 5,000 samples vs 10,000 training images")
    ax_acc.set(xlabel="wall time (minutes)", ylabel="conditional accuracy", title="samples classified as their class",
               ylim=(0, 1))
    for ax in (ax_fid, ax_acc):
        ax.grid(alpha=0.3)
    ax_fid.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=110)
    os.replace(path + ".tmp.png", path)
    plt.close(fig)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="workdirs/time_to_quality")
    parser.add_argument("--minutes", type=float, default=15.0,
                        help="wall-time budget of each run trained now (runs already in WORKDIR keep theirs)")
    parser.add_argument("--runs", default="ganjax,torch_dcgan",
                        help=f"comma-separated, in order: {TORCH_RUN} and ganjax variants {sorted(VARIANTS)}")
    parser.add_argument("--grid-seconds", type=float, default=30.0, help="the DCGAN's checkpoint interval")
    parser.add_argument("--checkpoint-every", type=int, default=200,
                        help="ganjax's checkpoint interval in steps (~30 s for the main config on 2 cores)")
    parser.add_argument("--score-only", action="store_true", help="score the runs already trained in --workdir")
    parser.add_argument("--inception", action="store_true", help="also Inception FID (10,000 samples) of each last checkpoint")
    parser.add_argument("--torch-bn", choices=("running", "batch"), default="running")
    parser.add_argument("--seed", type=int, default=0, help="the DCGAN's seed (ganjax uses its config's)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train-torch"]:
        parser = argparse.ArgumentParser()
        for flag in ("--out", "--seconds", "--grid-seconds", "--start", "--seed"):
            parser.add_argument(flag, required=True)
        args = parser.parse_args(argv[1:])
        train_torch(args.out, float(args.seconds), float(args.grid_seconds), float(args.start), int(args.seed))
        return 0
    args = parse_args(argv)
    names = [name.strip() for name in args.runs.split(",") if name.strip()]
    unknown = [name for name in names if name != TORCH_RUN and name not in VARIANTS]
    if unknown or TORCH_RUN not in names or "ganjax" not in names:
        raise SystemExit(f"--runs must include ganjax and {TORCH_RUN}; unknown: {unknown} (known: {sorted(VARIANTS)})")
    os.makedirs(args.workdir, exist_ok=True)
    results_path = os.path.join(args.workdir, "time_to_quality.json")
    results = {"runs": {}}
    if os.path.exists(results_path):
        with open(results_path) as stream:
            results = json.load(stream)
    budget = args.minutes * 60
    for name in names:
        if args.score_only or name in results["runs"]:
            continue
        run_dir = os.path.join(args.workdir, name)
        if os.path.exists(run_dir):
            raise SystemExit(f"{run_dir} exists from an unfinished run; delete it to train {name} again.")
        os.makedirs(run_dir)
        load_before = os.getloadavg()
        print(f"training {name} for {args.minutes:g} min (load average {load_before[0]:.2f})", flush=True)
        if name == TORCH_RUN:
            points = run_torch(run_dir, budget, args.grid_seconds, args.seed)
        else:
            points = run_ganjax(run_dir, VARIANTS[name], budget, args.checkpoint_every)
        results["runs"][name] = {
            "workdir": run_dir, "overrides": VARIANTS.get(name, []), "budget_seconds": budget, "points": points,
            "load_average_before": load_before[0], "load_average_after_1min": os.getloadavg()[0],
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
        write_json(results_path, results)
        print(f"  {len(points)} checkpoints, last step {points[-1]['step']}, "
              f"load average over the last minute {results['runs'][name]['load_average_after_1min']:.2f}", flush=True)

    scorer = make_scorer(args.inception)
    runs = {name: results["runs"][name] for name in names if name in results["runs"]}
    for name, run in runs.items():
        score_run(name, run, scorer, args.torch_bn, args.inception)
        write_json(results_path, results)
    line, summary = ratio_line(runs, runs["ganjax"]["budget_seconds"])
    results["summary"] = summary
    write_json(results_path, results)
    longest = max(run["budget_seconds"] for run in runs.values()) / 60
    grid = [m for m in (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 60) if m <= longest + 1e-9]
    print(table(runs, grid))
    for name, run in runs.items():
        if "fid_inception_last" in run:
            print(f"{name}: last step {run['points'][-1]['step']}, fid_inception {run['fid_inception_last']:.2f}")
    print(json.dumps(summary))
    plot(runs, os.path.join(args.workdir, "time_to_quality.png"), summary["torch_best_fid_domain"])
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
