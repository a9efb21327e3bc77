"""Does an encoder warm start pay for the inversion, in quality per second? On TRAINING images.

    python benchmarks/inversion_warm_start.py --workdir workdirs/fashion_mnist --damage centre:0.5 \
        [--num 200] [--encoder-steps 1000] [--steps 25,50,100] [--restarts 1] [--out RESULT.json]

Damages `--num` class-stratified images of the training split (data.seed; the test split is not
read) and inverts the GAN of `--workdir` (conditioned on the images' true classes, so that only the
latent search is compared) with random starts and with one start at E(x) from an encoder trained
`--encoder-steps` steps on the generator's damaged samples (`ganjax.repair.encoder`), for each
number of Adam steps. Prints, per setting, the damaged-region PSNR and SSIM (mean over images),
the final context loss and the wall time (the encoder's training time reported on its own), and
the classic repair's PSNR and SSIM on the same images for reference.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

from ganjax import checkpoint, data
from ganjax.cli import enable_compilation_cache
from ganjax.config import config_from_dict
from ganjax.metrics.image_quality import image_quality
from ganjax.provenance import run_provenance, write_json
from ganjax.repair import classic_repair, damage, damaged_region, inpaint
from ganjax.repair.encoder import encode, train_encoder
from ganjax.sample import load_generator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--damage", default="centre:0.5")
    parser.add_argument("--num", type=int, default=200)
    parser.add_argument("--encoder-steps", type=int, default=1000)
    parser.add_argument("--steps", default="25,50,100")
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    enable_compilation_cache()
    step, meta = checkpoint.restore_meta(args.workdir)
    config = config_from_dict(meta["config"])
    config.data.subset = "none"
    train_set, _ = data.load_train_and_test(config.data)
    _, indices = data.stratified_split_indices(train_set.labels, args.num / len(train_set), config.data.seed)
    images, labels = data.to_model_range(train_set.images[indices]), train_set.labels[indices].astype(np.int32)
    generator = load_generator(args.workdir)
    damage_key, repair_key, encoder_key = jax.random.split(jax.random.key(args.seed), 3)
    damaged, mask = (np.asarray(part) for part in damage(args.damage, damage_key, images))
    region = damaged_region(args.damage, mask)

    start = time.perf_counter()
    encoder, losses = train_encoder(generator, encoder_key, damages=(args.damage,), steps=args.encoder_steps,
                                    progress=True)
    warm_latents = encode(encoder, damaged)
    encoder_seconds = time.perf_counter() - start
    print(f"checkpoint step {step}: {len(images)} training images under {args.damage}; encoder "
          f"{args.encoder_steps} steps in {encoder_seconds:.0f} s (loss {losses[0]:.3f} -> {np.mean(losses[-50:]):.3f})")
    classic = image_quality(images, classic_repair(damaged, mask, args.damage), region)
    classic_row = {"psnr_region": float(np.mean(classic["psnr_region"])),
                   "ssim_region": float(np.mean(classic["ssim_region"]))}
    print(f"  classic repair (reference): PSNR region {classic_row['psnr_region']:6.2f} dB, SSIM region "
          f"{classic_row['ssim_region']:.3f}")
    rows = []
    for steps in (int(part) for part in args.steps.split(",")):
        for start_at in ("random", "encoder"):
            inpaint(generator, damaged[:2], mask[:2], repair_key, labels=labels[:2], steps=steps,
                    restarts=args.restarts, batch_size=50,
                    initial_latents=warm_latents[:2] if start_at == "encoder" else None)  # compile outside the timing
            begin = time.perf_counter()
            result = inpaint(generator, damaged, mask, repair_key, labels=labels, steps=steps, restarts=args.restarts,
                             batch_size=50, initial_latents=warm_latents if start_at == "encoder" else None)
            seconds = time.perf_counter() - begin
            quality = image_quality(images, result.images, region)
            row = {"steps": steps, "start": start_at, "restarts": args.restarts, "seconds": seconds,
                   "images_per_s": len(images) / seconds,
                   "psnr_region": float(np.mean(quality["psnr_region"])),
                   "ssim_region": float(np.mean(quality["ssim_region"])),
                   "context_loss": float(np.mean(result.context_loss))}
            rows.append(row)
            print(f"  {steps:4d} steps, {start_at:>7s} start: PSNR region {row['psnr_region']:6.2f} dB, SSIM region "
                  f"{row['ssim_region']:.3f}, context loss {row['context_loss']:8.2f}, {seconds:6.1f} s "
                  f"({row['images_per_s']:.2f} images/s)")
    if args.out:
        write_json(args.out, {"rows": rows, "classic": classic_row, "encoder_seconds": encoder_seconds, "damage": args.damage,
                              "num_images": len(images), "images": "training split, class-stratified (data.seed)",
                              "provenance": run_provenance(args.workdir, step)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
