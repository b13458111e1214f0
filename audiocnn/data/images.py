"""Image datasets for the same engine: MNIST from its original IDX files, and folders of image files.

Image batches keep the engine's interface: ``Batch(wave=images, target, clip_index)`` with images
``(batch, channels, height, width)`` float32 in [0, 1] and ``clip_index = arange(batch)``. Augmentation and
normalisation happen on the device, inside the model (:mod:`audiocnn.features.image`).

==============  ===============================================================================================
mnist           ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-*`` in ``root`` (or
                ``root/MNIST/raw``): the official 60,000 / 10,000 split; ``val_fraction`` of the training
                images (stratified, ``split_seed``) validate
imagefolder     ``root/<class>/**/*.png|jpg|...`` (stratified ``test_fraction``, then ``val_fraction``), or
                ``root/train/<class>/...`` with optional ``val/`` (``validation/``) and ``test/`` folders; a
                split without a folder is carved from train, stratified
==============  ===============================================================================================

``data.add_inverted`` adds every training and validation image inverted (pixel -> 255 - pixel);
``data.extra_tests: [test_inverted]`` adds the inverted test split, evaluated after training.

Example:
    >>> splits, store = build_image_splits(DataConfig(name="mnist", root="data/mnist"))
    >>> loaders = build_image_loaders(cfg.data, splits, store, seed=0)
    >>> next(iter(loaders["train"])).wave.shape
    torch.Size([32, 1, 28, 28])
"""
from __future__ import annotations

import gzip
import os
import struct
import threading
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from audiocnn.core.errors import AudiocnnError
from audiocnn.data.loader import Batch, make_loader
from audiocnn.data.splits import DataError, Example, Splits, holdout_fractions, stratified_split
from audiocnn.data.datasets import DATASETS, dataset_modality, register_dataset
from audiocnn.tasks import get_task

__all__ = [
    "IMAGE_EXTENSIONS", "IDX_IMAGES", "IDX_LABELS", "ImageDataset", "ImageError",
    "ImageStore", "build_image_loaders", "build_image_splits", "decode_image", "image_collate", "image_shape",
    "read_idx",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
IDX_IMAGES = 2051
"""Magic number of an IDX file of unsigned bytes with 3 dimensions (0x00000803): MNIST images."""
IDX_LABELS = 2049
"""Magic number of an IDX file of unsigned bytes with 1 dimension (0x00000801): MNIST labels."""


EXTRA_TESTS = ("test_inverted",)

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class ImageError(AudiocnnError):
    """An image file cannot be used; ``reason`` says why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


# ---------------------------------------------------------------------------------------------
# IDX files


def read_idx(path: str | os.PathLike, *, magic: int | None = None) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzip-compressed or raw (told apart by content, not name).

    Layout, big-endian: 2 zero bytes, a type code (``0x08`` unsigned byte ... ``0x0E`` float64), the number of
    dimensions ``d``; then ``d`` uint32 sizes; then the values in row-major order. MNIST images have magic
    2051 (``0x00000803``) and sizes ``(n, 28, 28)``; labels 2049 (``0x00000801``) and ``(n,)``.

    Args:
        path: the file.
        magic: the magic number the file must have (:data:`IDX_IMAGES`, :data:`IDX_LABELS`), or None for any.

    Returns:
        The array, in native byte order, shape as in the header.

    Raises:
        DataError: naming the file and what is wrong (unreadable, corrupt gzip, not IDX, another magic number,
            fewer or more bytes than the header announces).

    Example:
        >>> read_idx("mnist/t10k-labels-idx1-ubyte.gz", magic=IDX_LABELS).shape
        (10000,)
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip data ({e}); fetch the file again") from None
    what = {IDX_IMAGES: "3-D unsigned-byte images", IDX_LABELS: "1-D unsigned-byte labels"}
    expect = f"; expected {magic} ({what.get(magic, 'IDX')})" if magic is not None else ""
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes, too short for an IDX header{expect}")
    found = int.from_bytes(raw[:4], "big")
    if raw[:2] != b"\0\0" or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataError(f"{path}: not an IDX file: magic number {found} (0x{found:08x}){expect}. IDX files start "
                        "with two zero bytes, a type code and the number of dimensions")
    if magic is not None and found != magic:
        raise DataError(f"{path}: magic number {found} (0x{found:08x}){expect}; is it the right file?")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: header truncated: {ndim} dimensions need {header} bytes, the file has {len(raw)}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    need = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != need:
        shape = "x".join(map(str, dims))
        raise DataError(f"{path}: the header announces {shape} values ({need:,} bytes) but {len(raw) - header:,} "
                        f"bytes follow it; the file is truncated or corrupt, fetch it again")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


# ---------------------------------------------------------------------------------------------
# Decoding and the store


def decode_image(path: str | os.PathLike | BinaryIO, *, size: tuple[int, int], channels: int, name: str | None = None
                 ) -> np.ndarray:
    """Decode an image file with Pillow (EXIF orientation applied), convert and resize it.

    Args:
        path: a PNG, JPEG, BMP, GIF, WebP or TIFF file (or its bytes as a binary file object).
        name: what errors call it (default: ``path``).
        size: ``(height, width)``; resized with bilinear filtering, aspect ratio not kept (as Keras' ``target_size``).
        channels: 1 (grayscale, ``L``) or 3 (``RGB``).

    Returns:
        ``(channels, height, width)`` uint8.

    Raises:
        ImageError: the file cannot be read or decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    where = path if name is None else name
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im = im.convert("L" if channels == 1 else "RGB")
            height, width = size
            if im.size != (width, height):
                im = im.resize((width, height), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(where, "file not found") from None
    except UnidentifiedImageError:
        raise ImageError(where, "not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
        raise ImageError(where, f"cannot decode ({e})") from None
    return a[None].copy() if channels == 1 else np.ascontiguousarray(a.transpose(2, 0, 1))


def _resize_array(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(n, C, h, w)`` uint8 -> ``(n, C, *size)`` uint8, bilinear with antialiasing, in chunks."""
    if images.shape[-2:] == tuple(size):
        return images
    out = np.empty((*images.shape[:2], *size), dtype=np.uint8)
    for i in range(0, len(images), 4096):
        x = torch.from_numpy(images[i:i + 4096]).float()
        y = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        out[i:i + 4096] = y.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


class ImageStore:
    """Decoded images by ``Example.path``: uint8 ``(channels, height, width)`` at one size.

    Image files are decoded with :func:`decode_image`; decoded files are kept in memory up to ``max_bytes``
    (later ones are decoded again when read). Whole arrays (an IDX file) are registered with
    :meth:`add_array` and addressed as ``"<name>#<index>"``.

    Args:
        size: ``(height, width)``.
        channels: 1 or 3.
        max_bytes: memory for decoded files.

    Example:
        >>> store = ImageStore(size=(28, 28), channels=1)
        >>> store.add_array("mnist/t10k-images-idx3-ubyte.gz", images)       # (n, 1, 28, 28) uint8
        >>> store.load("mnist/t10k-images-idx3-ubyte.gz#7").shape
        (1, 28, 28)
    """

    def __init__(self, *, size: tuple[int, int], channels: int, max_bytes: int = 2 << 30):
        if channels not in (1, 3):
            raise DataError(f"data.channels={channels} must be 1 (grayscale) or 3 (RGB), or 0 for the dataset's own")
        if len(size) != 2 or min(size) < 1:
            raise DataError(f"data.image_size={list(size)} must be [height, width] (or one number), both positive")
        self.size = (int(size[0]), int(size[1]))
        self.channels = int(channels)
        self.max_bytes = int(max_bytes)
        self._arrays: dict[str, np.ndarray] = {}
        self._memory: dict[str, np.ndarray] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ImageStore(size={self.size}, channels={self.channels}, arrays={len(self._arrays)}, files={len(self._memory)})"

    def __getstate__(self) -> dict:  # DataLoader workers
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def add_array(self, name: str, images: np.ndarray) -> None:
        """Register ``(n, C, h, w)`` or ``(n, h, w)`` uint8 images, converted to this store's channels and size."""
        if images.dtype != np.uint8:
            raise DataError(f"{name}: images must be unsigned bytes, got {images.dtype}")
        if images.ndim == 3:
            images = images[:, None]
        if images.shape[1] not in (1, 3):
            raise DataError(f"{name}: images must have 1 or 3 channels, got shape {images.shape}")
        if images.shape[1] != self.channels:
            if images.shape[1] == 1:
                images = np.repeat(images, 3, axis=1)
            else:  # ITU-R 601-2 luma, as Pillow's convert("L")
                w = np.array([299, 587, 114], dtype=np.float32)[None, :, None, None] / 1000
                images = (images * w).sum(1, keepdims=True).round().astype(np.uint8)
        self._arrays[str(name)] = np.ascontiguousarray(_resize_array(images, self.size))

    def array_row(self, path: str) -> tuple[np.ndarray, int] | None:
        """``(array, row)`` when ``path`` is ``"<name>#<index>"`` of a registered array, else None."""
        name, sep, index = path.rpartition("#")
        if sep and name in self._arrays:
            return self._arrays[name], int(index)
        return None

    def load(self, path: str) -> np.ndarray:
        """``(channels, height, width)`` uint8. Raises :class:`ImageError` for a file that cannot be decoded."""
        ref = self.array_row(path)
        if ref is not None:
            return ref[0][ref[1]]
        hit = self._memory.get(path)
        if hit is not None:
            return hit
        image = decode_image(path, size=self.size, channels=self.channels)
        with self._lock:
            if self._bytes + image.nbytes <= self.max_bytes:
                self._memory[path] = image
                self._bytes += image.nbytes
        return image

    def prepare(self, parts: dict[str, list[Example]], *, on_error: str = "raise",
                num_threads: int | None = None) -> dict[str, list[Example]]:
        """Decode every image file once, before any epoch: ``raise`` lists every bad file in one DataError;
        ``skip`` drops them with a warning. Returns the parts without bad files."""
        if on_error not in ("raise", "skip"):
            raise DataError(f"data.on_error={on_error!r} must be 'raise' or 'skip'")
        paths = sorted({ex.path for exs in parts.values() for ex in exs})
        threads = num_threads or min(4, os.cpu_count() or 1)

        def check(path: str) -> ImageError | None:
            try:
                self.load(path)
            except ImageError as e:
                return e
            return None

        with ThreadPoolExecutor(threads) as pool:  # Pillow decodes without the GIL
            errors = {p: e for p, e in zip(paths, pool.map(check, paths)) if e is not None}
        if errors and on_error == "raise":
            lines = "\n".join(f"  {e}" for e in errors.values())
            raise DataError(f"{len(errors)} of {len(paths)} image files cannot be used; nothing was trained:\n{lines}\n"
                            "Fix or remove them, or set data.on_error=skip to skip them.")
        for e in errors.values():
            warnings.warn(f"skipping bad image file {e}", stacklevel=2)
        return {name: [ex for ex in exs if ex.path not in errors] for name, exs in parts.items()}


# ---------------------------------------------------------------------------------------------
# Splits


def image_shape(cfg: Any) -> tuple[int, int, int]:
    """``(channels, height, width)`` of the images a ``DataConfig`` yields (and a model is built for).

    Raises:
        DataError: an unknown image dataset, a bad ``data.image_size``/``data.channels``, or an image folder
            without ``data.image_size``.
    """
    if dataset_modality(cfg.name) != "image":
        image = [n for n in DATASETS.names() if dataset_modality(n) == "image"]
        raise DataError(f"data.name={cfg.name!r} is not an image dataset (frontend.kind: image); "
                        f"use one of {', '.join(image)}")
    channels = cfg.channels or (1 if cfg.name == "mnist" else 3)
    size = list(cfg.image_size) or ([28, 28] if cfg.name == "mnist" else [])
    if not size:
        raise DataError(f"data.image_size is empty; dataset {cfg.name!r} needs a size, e.g. data.image_size=[150, 150]")
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise DataError(f"data.image_size={list(cfg.image_size)} must be [height, width] or one number, both positive")
    if channels not in (1, 3):
        raise DataError(f"data.channels={cfg.channels} must be 1 (grayscale) or 3 (RGB), or 0 for the dataset's own")
    return channels, int(size[0]), int(size[1])


def _inverted(examples: Sequence[Example]) -> list[Example]:
    return [Example(ex.path, ex.target, ex.group, {**ex.meta, "invert": True}) for ex in examples]


def build_image_splits(cfg: Any) -> tuple[Splits, ImageStore]:
    """Splits of the image dataset ``cfg.name`` and the store its examples are read from.

    Every image file is decoded here (bad files stop the run before a run folder exists, or are skipped with
    ``data.on_error=skip``); ``add_inverted`` and ``extra_tests`` are applied last.

    Raises:
        DataError: unknown dataset or extra test, missing or corrupt files, a task the dataset cannot do.
    """
    image_shape(cfg)  # an audio or unknown dataset fails here, naming the image ones
    builder = DATASETS.get(cfg.name)
    unknown = [t for t in cfg.extra_tests if t not in EXTRA_TESTS]
    if unknown:
        raise DataError(f"data.extra_tests: unknown test set(s) {unknown}; available: {', '.join(EXTRA_TESTS)}")
    splits, store = builder(cfg)
    if splits.task != cfg.task:
        raise DataError(f"dataset {cfg.name!r} is a {splits.task} task but data.task={cfg.task!r}; "
                        f"set data.task={splits.task}")
    if not splits.train:
        raise DataError(f"dataset {cfg.name!r} at {cfg.root} has no training images; check data.root")
    if cfg.add_inverted:
        splits.train = splits.train + _inverted(splits.train)
        splits.val = splits.val + _inverted(splits.val)
    if "test_inverted" in cfg.extra_tests:
        splits.extra["test_inverted"] = _inverted(splits.test)
    return splits, store


def _root(cfg: Any, layout: str) -> Path:
    root = Path(os.path.expanduser(cfg.root)) if cfg.root else Path(os.environ.get("AUDIOCNN_DATA") or "data") / cfg.name
    if not root.is_dir():
        raise DataError(f"dataset {cfg.name!r} not found at {root} (data.root={cfg.root!r}): put the files there "
                        f"(layout: {layout}), or set data.root to the folder that holds them")
    return root


_MNIST = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _mnist_file(root: Path, stem: str) -> Path:
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        for name in (f"{stem}.gz", stem):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"dataset 'mnist': {stem}[.gz] not found in {root}; the folder needs the four original IDX files "
                    f"({', '.join(s for pair in _MNIST.values() for s in pair)}, gzip-compressed or not), "
                    "or set data.root to the folder that holds them")


@register_dataset("mnist", modality="image", num_labels=10)
def mnist(cfg: Any) -> tuple[Splits, ImageStore]:
    """The official 60,000 training and 10,000 test digits; ``val_fraction`` of training validates."""
    if cfg.task != "multiclass":
        raise DataError(f"data.task={cfg.task!r} is not available for dataset 'mnist'; use 'multiclass'")
    root = _root(cfg, "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                      "t10k-labels-idx1-ubyte.gz")
    channels, height, width = image_shape(cfg)
    store = ImageStore(size=(height, width), channels=channels)
    labels = [str(d) for d in range(10)]
    parts: dict[str, list[Example]] = {}
    for part, (image_stem, label_stem) in _MNIST.items():
        image_path, label_path = _mnist_file(root, image_stem), _mnist_file(root, label_stem)
        images = read_idx(image_path, magic=IDX_IMAGES)
        targets = read_idx(label_path, magic=IDX_LABELS)
        if len(images) != len(targets):
            raise DataError(f"{image_path} holds {len(images)} images but {label_path} {len(targets)} labels")
        if len(targets) and targets.max() > 9:
            raise DataError(f"{label_path}: label {int(targets.max())} is not a digit 0-9")
        store.add_array(str(image_path), images)
        parts[part] = [Example(f"{image_path}#{i}", int(t), "", {"label": str(int(t)), "index": i})
                       for i, t in enumerate(targets.tolist())]
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise DataError(f"data.val_fraction={cfg.val_fraction} must be in [0, 1)")
    train, val = stratified_split(parts["train"], (1.0 - cfg.val_fraction, cfg.val_fraction), cfg.split_seed)
    return Splits("multiclass", labels, train, val, parts["test"]), store


_SPLIT_DIRS = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _class_files(folder: Path) -> dict[str, list[Path]]:
    classes = {d.name: _image_files(d) for d in sorted(folder.iterdir())
               if d.is_dir() and not d.name.startswith((".", "_"))}
    return {k: v for k, v in classes.items() if v}


@register_dataset("imagefolder", modality="image")
def imagefolder(cfg: Any) -> tuple[Splits, ImageStore]:
    """One subfolder per class, flat or under ``train/`` (``val/``, ``test/``); decoded with Pillow."""
    if cfg.task not in ("multiclass", "binary"):
        raise DataError(f"data.task={cfg.task!r} is not available for dataset 'imagefolder'; use 'multiclass' or 'binary'")
    root = _root(cfg, "<root>/<class>/<image>.jpg, or <root>/train/<class>/... with optional val/ and test/")
    channels, height, width = image_shape(cfg)
    split_dirs = {part: next((root / n for n in names if (root / n).is_dir()), None)
                  for part, names in _SPLIT_DIRS.items()}
    folders = {part: _class_files(d) for part, d in split_dirs.items() if d is not None}
    if "train" not in folders:
        folders = {"all": _class_files(root)}
    first = next(iter(folders))
    labels = sorted(folders[first])
    if len(labels) < 2:
        raise DataError(f"{split_dirs.get('train') or root}: found {len(labels)} class folder(s) with images "
                        f"({', '.join(labels) or 'none'}); an image folder needs one subfolder per class, at least two")
    if cfg.task == "binary" and len(labels) != 2:
        raise DataError(f"{root}: data.task=binary needs exactly 2 class folders, found {labels}")
    for part, classes in folders.items():
        extra = sorted(set(classes) - set(labels))
        if extra:
            raise DataError(f"{split_dirs[part]}: class folder(s) {extra} are not in {split_dirs[first]} ({labels})")

    def examples(classes: dict[str, list[Path]]) -> list[Example]:
        return [Example(str(p), labels.index(c), "", {"label": c}) for c in labels for p in classes.get(c, [])]

    if first == "all":
        train, val, test = stratified_split(examples(folders["all"]), holdout_fractions(
            val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction), cfg.split_seed)
    else:
        train = examples(folders["train"])
        val, test = examples(folders.get("val", {})), examples(folders.get("test", {}))
        # a split without its folder is carved from train
        carve = {"val": cfg.val_fraction if "val" not in folders else 0.0,
                 "test": cfg.test_fraction if "test" not in folders else 0.0}
        if any(carve.values()):
            train, val_c, test_c = stratified_split(train, holdout_fractions(
                val_fraction=carve["val"], test_fraction=carve["test"]), cfg.split_seed)
            val, test = val or val_c, test or test_c
    store = ImageStore(size=(height, width), channels=channels)
    parts = store.prepare({"train": train, "val": val, "test": test}, on_error=cfg.on_error)
    return Splits(cfg.task, labels, **parts), store


# ---------------------------------------------------------------------------------------------
# Batches


class ImageDataset(Dataset):
    """Images of ``examples`` read from ``store``: ``dataset[i]`` is ``(image uint8 (C, H, W), target)``.

    An example with ``meta["invert"]`` is returned inverted (255 - pixel). The index may be ``(i, epoch)``
    (:class:`~audiocnn.data.EpochShuffleSampler`); there is no per-epoch randomness here, augmentation runs on
    the device, in the model. A DataLoader fetches whole batches with :meth:`__getitems__`: rows of one
    registered array (an IDX file) are gathered in one indexing operation, not one Python call per image.
    """

    def __init__(self, examples: Sequence[Example], store: ImageStore, *, task: str):
        self.examples = list(examples)
        self.store = store
        self.task = task
        self.epoch = 0
        targets = [get_task(task).target_tensor(ex.target) for ex in self.examples]
        self.targets = torch.stack(targets) if targets else torch.zeros(0)
        self.invert = np.array([bool(ex.meta.get("invert")) for ex in self.examples], dtype=bool)
        refs = [store.array_row(ex.path) for ex in self.examples]
        arrays = {id(r[0]) for r in refs if r is not None}
        self._array = refs[0][0] if refs and len(arrays) == 1 and all(r is not None for r in refs) else None
        self._rows = np.array([r[1] for r in refs], dtype=np.int64) if self._array is not None else None

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch of the next shuffle (via EpochShuffleSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitems__(self, indices: Sequence[int | tuple[int, int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One block ``[(images (n, C, H, W) uint8, targets (n, ...))]`` for :func:`image_collate`."""
        idx = np.array([i[0] if isinstance(i, tuple) else i for i in indices], dtype=np.int64)
        if self._array is not None:
            images = self._array[self._rows[idx]]  # fancy indexing copies, so inverting in place is safe
        else:
            images = np.stack([self.store.load(self.examples[i].path) for i in idx])
        flip = self.invert[idx]
        if flip.any():
            images[flip] = 255 - images[flip]
        return [(torch.from_numpy(images), self.targets[torch.from_numpy(idx)])]

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = self.__getitems__([index])[0]
        return images[0], targets[0]


def image_collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
    """Join ``(image (C, H, W), target)`` pairs or blocks ``(images (n, C, H, W), targets (n, ...))`` of uint8
    images into ``Batch(wave=(N, C, H, W) float32 in [0, 1], target, clip_index=arange(N))``."""
    images = torch.cat([im if im.dim() == 4 else im[None] for im, _ in batch]).float().div_(255.0)
    targets = torch.cat([t if im.dim() == 4 else t[None] for im, t in batch])
    return Batch(images, targets, torch.arange(len(images), dtype=torch.int64))


def build_image_loaders(cfg: Any, splits: Splits, store: ImageStore, *, seed: int) -> dict[str, DataLoader]:
    """DataLoaders for the non-empty parts (extra test sets included).

    ``train`` is shuffled with (seed, epoch) and drops its last partial batch when it has more than one;
    the others are in order. All yield :class:`~audiocnn.data.Batch`.
    """
    if cfg.batch_size < 1:
        raise DataError(f"data.batch_size={cfg.batch_size} must be at least 1")
    loaders = {}
    for name, examples in splits.parts().items():
        if not examples:
            continue
        ds = ImageDataset(examples, store, task=splits.task)
        loaders[name] = make_loader(ds, train=name == "train", cfg=cfg, seed=seed, collate_fn=image_collate)
    return loaders

