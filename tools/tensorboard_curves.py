"""Read a training run's TensorBoard event files back with TensorBoard's own reader, and plot every scalar.

    python tools/tensorboard_curves.py --workdir workdirs/digits --out curves.png

`ganjax.train` writes the event files (`ganjax.tensorboard`, tensorboardX) into the workdir. This reads them
as TensorBoard does: `tensorboard.backend.event_processing.event_accumulator.EventAccumulator` over the
directory, its files in name order, every point kept (no reservoir sampling), and a resumed run's SessionLog
START dropping the earlier files' points past the step resumed from. It prints every scalar tag with its
number of points and its first and last (step, value), and plots every scalar tag (the losses,
images_per_sec, live_fid_domain when live monitoring was on, ...) against the step, one subplot each, in one
PNG. Needs `pip install tensorboard` (in the test extra); TensorFlow is not needed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from ganjax.tensorboard import EVENT_FILE_PREFIX  # light: numpy only, no jax

COLUMNS = 3  # subplots per row


def read_scalars(workdir: str) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[str]]]:
    """({scalar tag: [(step, value), ...] in step order}, {"images"/"tensors": [tag, ...]}) of the event
    files in `workdir`, read by TensorBoard's EventAccumulator."""
    from tensorboard.backend.event_processing import event_accumulator

    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"No workdir {workdir!r}: pass the --workdir of a training run.")
    if not any(name.startswith(EVENT_FILE_PREFIX) for name in os.listdir(workdir)):
        raise FileNotFoundError(f"No TensorBoard event files ({EVENT_FILE_PREFIX}.*) in {workdir!r}: was it "
                                "trained with --config.train.tensorboard=False?")
    accumulator = event_accumulator.EventAccumulator(
        workdir, size_guidance=event_accumulator.STORE_EVERYTHING_SIZE_GUIDANCE)
    accumulator.Reload()
    tags = accumulator.Tags()
    scalars = {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
               for tag in sorted(tags[event_accumulator.SCALARS])}
    others = {kind: sorted(tags[kind]) for kind in (event_accumulator.IMAGES, event_accumulator.TENSORS)}
    return scalars, others


def summary_lines(workdir: str, scalars: dict[str, list[tuple[int, float]]], others: dict[str, list[str]]) -> list[str]:
    """A table of the scalar tags: points, first and last step and value; then the other tags."""
    files = sorted(name for name in os.listdir(workdir) if name.startswith(EVENT_FILE_PREFIX))
    lines = [f"{workdir}: {len(files)} event file(s), {len(scalars)} scalar tag(s), read with TensorBoard's "
             "EventAccumulator"]
    width = max([len("tag")] + [len(tag) for tag in scalars])
    lines.append(f"{'tag':<{width}}  {'points':>6}  {'first step':>10}  {'first value':>12}  {'last step':>9}  "
                 f"{'last value':>12}")
    for tag, points in scalars.items():
        (first_step, first_value), (last_step, last_value) = points[0], points[-1]
        lines.append(f"{tag:<{width}}  {len(points):>6}  {first_step:>10}  {first_value:>12.6g}  {last_step:>9}  "
                     f"{last_value:>12.6g}")
    for kind, tags in others.items():
        if tags:
            lines.append(f"{kind} (not plotted): {', '.join(tags)}")
    return lines


def plot(scalars: dict[str, list[tuple[int, float]]], out: str, title: str = "") -> None:
    """Writes one PNG with a subplot per scalar tag: value against step."""
    from matplotlib.figure import Figure

    if not scalars:
        raise ValueError("No scalar tags to plot.")
    columns = min(COLUMNS, len(scalars))
    rows = math.ceil(len(scalars) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, (tag, points) in enumerate(scalars.items()):
        ax = axes[index // columns][index % columns]
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o" if len(points) <= 30 else None, markersize=3)
        ax.set_title(tag)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for index in range(len(scalars), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    if title:
        figure.suptitle(title)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    figure.savefig(out, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workdir", required=True, help="a training run's directory (holds the event files)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        scalars, others = read_scalars(args.workdir)
        if not scalars:
            raise ValueError(f"The event files in {args.workdir!r} hold no scalars.")
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(summary_lines(args.workdir, scalars, others)))
    plot(scalars, args.out, title=f"TensorBoard scalars of {os.path.basename(os.path.normpath(args.workdir))}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
