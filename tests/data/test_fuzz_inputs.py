"""Fuzzed data files: every loader ends in a sane Dataset or in a ValueError naming the file.

Never an exception from inside NumPy, PIL, gzip or zipfile. Run with
`--hypothesis-show-statistics` to see how many examples loaded and how many were refused.
"""

import gzip
import io
import pathlib
import zipfile

import numpy as np
from data_writers import write_idx_dataset
from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from ganjax.data import load_source

FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                 phases=[Phase.explicit, Phase.generate, Phase.shrink])  # no database, no patch files


def _load_or_refuse(source: str, split: str, named: str, image_size=None) -> str:
    """Loads one split and checks the Dataset is sane, or checks the refusal is a one-line
    ValueError naming `named` (the file or folder); returns "loaded" or "refused"."""
    try:
        dataset = load_source(source, split, image_size)
    except ValueError as error:
        message = str(error)
        assert named in message, message
        assert "\n" not in message, message
        return "refused"
    images, labels = dataset.images, dataset.labels
    assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] in (1, 3)
    assert min(images.shape[1:3]) >= 1 and len(images) == len(labels) > 0
    if image_size:
        assert images.shape[1:3] == (image_size, image_size)
    assert labels.dtype == np.int32 and 0 <= labels.min() and labels.max() < dataset.num_classes
    if split == "train":
        assert np.all(np.bincount(labels, minlength=dataset.num_classes) > 0)
    return "loaded"


# npz

_ODD_DTYPES = [np.uint8, np.int8, np.int16, np.int64, np.uint16, np.float16, np.float32, np.float64,
               np.bool_, np.complex64, "U2", "S2", "M8[s]"]


def _any_array(shapes):
    return st.sampled_from(_ODD_DTYPES).flatmap(lambda dtype: hnp.arrays(np.dtype(dtype), shapes))


@st.composite
def _plausible_arrays(draw):
    """x and y of matching length that are often loadable, with slips in shape, range or length."""
    num_images = draw(st.integers(0, 6))
    label_values = st.integers(0, 1) if draw(st.booleans()) else st.integers(-1, 5)
    side = draw(st.integers(1, 4))
    channels = draw(st.sampled_from([(), (1,), (3,), (), (1,), (3,), (4,), (2,)]))
    image_dtype = draw(st.sampled_from([np.uint8, np.float32, np.int32]))
    images = draw(hnp.arrays(image_dtype, (num_images, side, side, *channels),
                             elements=st.integers(0, 255) if image_dtype != np.float32 else st.floats(0, 1, width=32)))
    num_labels = draw(st.sampled_from([num_images, num_images, max(num_images - 1, 0)]))
    labels = draw(hnp.arrays(np.int64, (num_labels,), elements=label_values))
    return images, labels


@st.composite
def _npz_bytes(draw) -> bytes:
    """An .npz file's bytes: wild or plausible arrays under some of the keys, object arrays,
    or a damaged, empty, non-zip or single-array (.npy) file."""
    images, labels = draw(st.one_of(
        _plausible_arrays(),
        _plausible_arrays(),
        st.tuples(_any_array(hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4)),
                  _any_array(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6))),
    ))
    arrays = {"x": images, "y": labels, "x_test": images[:2] if images.ndim else images,
              "y_test": labels[:2] if labels.ndim else labels}
    arrays["class_names"] = draw(st.sampled_from([
        np.array(["a", "b", "c"]), np.array(["a", "a"]), np.array([], "U1"), np.arange(6), np.array([b"p", b"q"]),
    ]))
    keys = draw(st.one_of(
        st.sampled_from([{"x", "y"}, {"x", "y", "x_test", "y_test"}, {"x", "y", "class_names"}]),
        st.sets(st.sampled_from(sorted(arrays))),
    ))
    chosen = {key: arrays[key] for key in keys}
    if draw(st.sampled_from([False] * 4 + [True])) and keys:
        chosen[draw(st.sampled_from(sorted(keys)))] = np.array([{"a": 1}, None], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **chosen)
    data = buffer.getvalue()
    damage = draw(st.sampled_from(["none"] * 6 + ["truncate", "flip", "random", "empty", "npy"]))
    if damage == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if damage == "flip":
        position = draw(st.integers(0, len(data) - 1))
        return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1:]
    if damage == "random":
        return draw(st.binary(max_size=64))
    if damage == "empty":
        return b""
    if damage == "npy":
        buffer = io.BytesIO()
        np.save(buffer, images)
        return buffer.getvalue()
    return data


@FUZZ
@given(data=_npz_bytes(), split=st.sampled_from(["train", "test"]), image_size=st.sampled_from([None, 3]))
def test_npz_files_load_or_are_refused_by_name(tmp_path_factory, data, split, image_size):
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    path.write_bytes(data)
    event(_load_or_refuse(f"npz:{path}", split, str(path), image_size))


# IDX

_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
              np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


@st.composite
def _idx_directory_files(draw) -> dict[str, bytes]:
    """train-images/-labels IDX files, often valid, sometimes with a damaged header, cut short,
    padded, gzipped (whole or cut) or replaced by random bytes."""
    num_images = draw(st.integers(0, 5))
    images = draw(hnp.arrays(np.uint8, (num_images, 3, 3)))
    label_dtype = draw(st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]))
    labels = draw(hnp.arrays(label_dtype, (num_images,), elements=st.integers(0, 3).map(label_dtype)
                             if draw(st.booleans()) else None))
    files = {}
    for name, array in [("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)]:
        header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim])
        header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
        files[name] = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    target = draw(st.sampled_from(sorted(files)))
    data = files[target]
    damage = draw(st.sampled_from(["none", "none", "magic", "truncate", "pad", "gzip", "gzip_cut", "random"]))
    if damage == "magic":
        data = draw(st.binary(min_size=4, max_size=4)) + data[4:]
    elif damage == "truncate":
        data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    elif damage == "pad":
        data += draw(st.binary(min_size=1, max_size=8))
    elif damage in ("gzip", "gzip_cut"):
        data = gzip.compress(data)
        if damage == "gzip_cut":
            data = data[: draw(st.integers(2, len(data) - 1))]
    elif damage == "random":
        data = draw(st.binary(max_size=32))
    files[target] = data
    return files


@FUZZ
@given(files=_idx_directory_files(), image_size=st.sampled_from([None, 4]))
def test_idx_files_load_or_are_refused_by_name(tmp_path_factory, files, image_size):
    directory = tmp_path_factory.mktemp("idx")
    for name, data in files.items():
        (directory / name).write_bytes(data)
    event(_load_or_refuse(f"idx:{directory}", "train", str(directory), image_size))


def test_idx_writer_of_the_fuzzer_matches_the_test_writer(tmp_path):
    # The fuzzer's undamaged files are the ones data_writers writes, which the loader reads.
    images, labels = np.arange(18, dtype=np.uint8).reshape(2, 3, 3), np.array([0, 1], np.uint8)
    write_idx_dataset(tmp_path, images, labels)
    dataset = load_source(f"idx:{tmp_path}")
    np.testing.assert_array_equal(dataset.images[..., 0], images)
    header = bytes([0, 0, _IDX_CODES[labels.dtype], 1]) + (2).to_bytes(4, "big")
    assert (tmp_path / "train-labels-idx1-ubyte").read_bytes() == header + labels.tobytes()


# Image folders

_FILE_KINDS = ["gray", "rgb", "rgba", "la", "gray16", "palette", "palette_alpha", "bilevel", "jpeg",
               "cmyk_jpeg", "zero_bytes", "random_bytes", "truncated_png", "flipped_png", "flipped_jpeg", "text_txt",
               "hidden_png", "bmp"]


def _image_file(kind: str, height: int, width: int, seed: int) -> tuple[str, bytes]:
    """(file suffix, bytes) of one file of `kind` with random pixels."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    buffer = io.BytesIO()
    if kind in ("zero_bytes", "random_bytes", "text_txt"):
        content = {"zero_bytes": b"", "random_bytes": rng.bytes(24), "text_txt": b"notes"}[kind]
        return (".txt" if kind == "text_txt" else ".png"), content
    image = {
        "gray": lambda: Image.fromarray(pixels[..., 0]),
        "rgb": lambda: Image.fromarray(pixels[..., :3]),
        "rgba": lambda: Image.fromarray(pixels, "RGBA"),
        "la": lambda: Image.fromarray(pixels[..., :2], "LA"),
        "gray16": lambda: Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16)),
        "palette": lambda: Image.fromarray(pixels[..., :3]).convert("P"),
        "palette_alpha": lambda: Image.fromarray(pixels, "RGBA").convert("P"),
        "bilevel": lambda: Image.fromarray(pixels[..., 0]).convert("1"),
        "jpeg": lambda: Image.fromarray(pixels[..., :3]),
        "cmyk_jpeg": lambda: Image.fromarray(pixels[..., :3]).convert("CMYK"),
        "truncated_png": lambda: Image.fromarray(pixels[..., :3]),
        "flipped_png": lambda: Image.fromarray(pixels[..., :3]),
        "flipped_jpeg": lambda: Image.fromarray(pixels[..., :3]),
        "hidden_png": lambda: Image.fromarray(pixels[..., 0]),
        "bmp": lambda: Image.fromarray(pixels[..., 0]),
    }[kind]()
    file_format = {"jpeg": "JPEG", "cmyk_jpeg": "JPEG", "flipped_jpeg": "JPEG", "bmp": "BMP"}.get(kind, "PNG")
    if kind == "palette_alpha":
        image.info["transparency"] = 0
        image.save(buffer, "PNG", transparency=0)
    else:
        image.save(buffer, file_format)
    data = buffer.getvalue()
    if kind == "truncated_png":
        data = data[: len(data) // 2]
    if kind.startswith("flipped"):  # a few bytes after the signature inverted
        damaged = bytearray(data)
        for position in rng.integers(8, len(data), size=3):
            damaged[position] ^= 0xFF
        data = bytes(damaged)
    return {"JPEG": ".jpg", "BMP": ".bmp"}.get(file_format, ".png"), data


# Readable kinds twice as likely as broken ones, so that whole folders load often enough.
_files = st.tuples(st.sampled_from(_FILE_KINDS[:10] * 2 + _FILE_KINDS[10:]), st.integers(1, 5), st.integers(1, 5),
                   st.integers(0, 2**16))


@FUZZ
@given(classes=st.lists(st.lists(_files, max_size=3), min_size=1, max_size=3), image_size=st.sampled_from([None, 4]))
def test_image_folders_load_or_are_refused_by_name(tmp_path_factory, classes, image_size):
    root = tmp_path_factory.mktemp("folder")
    for class_index, files in enumerate(classes):
        class_dir = root / f"class{class_index}"
        class_dir.mkdir()
        for file_index, (kind, height, width, seed) in enumerate(files):
            suffix, data = _image_file(kind, height, width, seed)
            prefix = "." if kind == "hidden_png" else ""
            (class_dir / f"{prefix}{file_index}{suffix}").write_bytes(data)
    event(_load_or_refuse(f"folder:{root}", "train", str(root), image_size))


def _folder_of_one(root: pathlib.Path, image: Image.Image, **save_options) -> str:
    (root / "only").mkdir(parents=True)
    image.save(root / "only" / "0.png", **save_options)
    return f"folder:{root}"


@FUZZ
@given(value=st.integers(0, 65535))
def test_16_bit_png_is_scaled_to_8_bits(tmp_path_factory, value):
    source = _folder_of_one(tmp_path_factory.mktemp("png16"), Image.fromarray(np.full((2, 3), value, np.uint16)))
    images = load_source(source).images
    assert images.shape == (1, 2, 3, 1)
    assert np.all(images == round(value * 255 / 65535))


@FUZZ
@given(color=st.tuples(*[st.integers(0, 255)] * 3), alpha=st.integers(0, 255))
def test_alpha_is_composited_over_black(tmp_path_factory, color, alpha):
    rgba = np.broadcast_to(np.array([*color, alpha], np.uint8), (2, 2, 4))
    root = tmp_path_factory.mktemp("alpha")
    images = load_source(_folder_of_one(root / "rgba", Image.fromarray(rgba, "RGBA"))).images
    np.testing.assert_array_equal(images[0, 0, 0], np.round(np.array(color) * alpha / 255))
    gray_alpha = Image.fromarray(np.ascontiguousarray(rgba[..., [0, 3]]), "LA")
    images = load_source(_folder_of_one(root / "la", gray_alpha)).images
    assert images.shape[-1] == 1 and images[0, 0, 0, 0] == round(color[0] * alpha / 255)


def test_palette_pngs_keep_their_colours_and_gray_palettes_stay_one_channel(tmp_path):
    indices = np.array([[0, 1, 2]], np.uint8)
    colour = Image.fromarray(indices, "P")
    colour.putpalette([10, 20, 30, 200, 100, 0, 7, 7, 7])
    images = load_source(_folder_of_one(tmp_path / "colour", colour)).images
    np.testing.assert_array_equal(images[0, 0], [[10, 20, 30], [200, 100, 0], [7, 7, 7]])
    gray = Image.fromarray(indices, "P")
    gray.putpalette([0, 0, 0, 128, 128, 128, 255, 255, 255])
    images = load_source(_folder_of_one(tmp_path / "gray", gray)).images
    assert images.shape == (1, 1, 3, 1)
    np.testing.assert_array_equal(images[0, 0, :, 0], [0, 128, 255])
    # Palette index 0 transparent: its pixel is black whatever colour index 0 holds.
    transparent = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    transparent.putpalette([250, 250, 250, 60, 60, 60])
    images = load_source(_folder_of_one(tmp_path / "alpha", transparent, transparency=0)).images
    np.testing.assert_array_equal(images[0, 0, :, 0], [0, 60])


def test_hidden_and_unlisted_files_are_skipped_and_broken_images_named(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((2, 2), 9, np.uint8)).save(tmp_path / "a" / "0.png")
    (tmp_path / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    assert len(load_source(f"folder:{tmp_path}")) == 1
    (tmp_path / "a" / "1.png").write_bytes(b"")
    assert _load_or_refuse(f"folder:{tmp_path}", "train", str(tmp_path / "a" / "1.png")) == "refused"


def test_zip_errors_of_npz_are_named(tmp_path):
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"not an npy header")
    assert _load_or_refuse(f"npz:{path}", "train", str(path)) == "refused"
