"""Start-up time of a ganjax command: the wall time of a 2-step training run, with JAX's
persistent compilation cache off, cold (empty directory) and warm (second run).

    python benchmarks/startup.py [--config configs/fashion_mnist.py] [--repeats 2]

Every ganjax command turns the cache on (ganjax.cli.enable_compilation_cache; directory
$GANJAX_COMPILATION_CACHE, default ~/.cache/ganjax/jax_compilation_cache). This benchmark
uses throwaway directories. Prints one line per run and the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed_run(config: str, cache: str, workdir: str, overrides: tuple[str, ...] = ("--config.train.steps=2",)) -> float:
    """Seconds of `python -m ganjax.train --config CONFIG --workdir WORKDIR OVERRIDES...` with the
    compilation cache in `cache` ("off" for none)."""
    env = dict(os.environ, GANJAX_COMPILATION_CACHE=cache, JAX_COMPILATION_CACHE_DIR="")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "ganjax.train", "--config", config, "--workdir", workdir, *overrides]
    start = time.perf_counter()
    result = subprocess.run(command, check=False, env=env, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return seconds


def median_line(label: str, values: list[float], unit: str) -> str:
    """"LABEL: median M UNIT [min-max] over N" for a benchmark's last lines."""
    return f"{label}: median {statistics.median(values):.1f} {unit} [{min(values):.1f}-{max(values):.1f}] over {len(values)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/fashion_mnist.py")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"off": [], "cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):  # interleaved, so all three see the same machine load
            cache = os.path.join(scratch, f"cache{repeat}")
            for mode in ("off", "cold", "warm"):
                workdir = os.path.join(scratch, f"{mode}{repeat}")
                seconds = timed_run(args.config, "off" if mode == "off" else cache, workdir)
                times[mode].append(seconds)
                print(f"repeat {repeat} cache {mode:>4s}: {seconds:6.1f} s", flush=True)
    load = os.getloadavg()[0]
    print(f"config {args.config}, 2 training steps, {os.cpu_count()} CPUs, load average {load:.1f}")
    for mode, values in times.items():
        print(median_line(f"wall time, cache {mode:>4s}", values, "s"))


if __name__ == "__main__":
    main()
