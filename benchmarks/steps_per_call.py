"""Training throughput with K GAN steps per jitted call (train.steps_per_call), end to end.

    python benchmarks/steps_per_call.py [--config configs/fashion_mnist.py] [--ks 1,10] [--steps 200] [--repeats 3]

Runs `python -m ganjax.train` for each K, interleaved, in fresh workdirs (one shared, warmed
compilation cache), and reads images_per_sec from metrics.jsonl (logged every 50 steps; the
first call of each compiled step is left out of it). Prints the median and range per K.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

from startup import median_line, timed_run


def throughput(workdir: str) -> list[float]:
    """images_per_sec of every logging window after the first in workdir/metrics.jsonl."""
    with open(os.path.join(workdir, "metrics.jsonl")) as stream:
        records = [json.loads(line) for line in stream if line.strip()]
    return [record["images_per_sec"] for record in records[1:] if "images_per_sec" in record]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/fashion_mnist.py")
    parser.add_argument("--ks", default="1,10", help="comma-separated steps_per_call values")
    parser.add_argument("--steps", type=int, default=200, help="training steps per run (a multiple of 50 and of every K)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    rates: dict[int, list[float]] = {k: [] for k in ks}
    with tempfile.TemporaryDirectory() as scratch:
        cache = os.path.join(scratch, "cache")
        for repeat in range(args.repeats):
            for k in ks:
                workdir = os.path.join(scratch, f"r{repeat}_k{k}")
                overrides = (f"--config.train.steps={args.steps}", "--config.train.log_every=50",
                             "--config.train.sample_every=100000", "--config.train.checkpoint_every=100000",
                             f"--config.train.steps_per_call={k}")
                seconds = timed_run(args.config, cache, workdir, overrides)
                windows = throughput(workdir)
                rates[k].extend(windows)
                print(f"repeat {repeat} K={k:>3d}: {seconds:6.1f} s wall, images/s per window "
                      f"{[round(rate) for rate in windows]} (load {os.getloadavg()[0]:.1f})", flush=True)
    print(f"config {args.config}, {args.steps} steps per run, {os.cpu_count()} CPUs")
    for k, values in rates.items():
        print(median_line(f"K={k}", values, "images/s") + " logging windows")


if __name__ == "__main__":
    main()
