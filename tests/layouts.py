"""Tiny stand-ins for the real datasets' folder layouts, for recipe smoke tests.

Each class is a tone at its own frequency, so a few steps can learn something; files are short.
"""
from __future__ import annotations

import csv
import gzip
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from audiocnn.cli import main


def tone(path: Path, cls: int, *, sr: int, seconds: float, seed: int, fmt: str | None = None) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    freq = 200 * (cls + 1) * (1 + 0.02 * rng.standard_normal())
    x = 0.4 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr, format=fmt)


def fsdd(root: Path) -> None:
    for d in range(10):
        for i in range(12):
            tone(root / "recordings" / f"{d}_alice_{i}.wav", d, sr=8000, seconds=0.4, seed=100 * d + i)


def fsdd_speakers(root: Path) -> None:
    """FSDD with two speakers, for the recipes that hold one out (digits_speakers.yaml holds out theo)."""
    for s, speaker in enumerate(("alice", "theo")):
        for d in range(10):
            for i in range(12):
                tone(root / "recordings" / f"{d}_{speaker}_{i}.wav", d, sr=8000, seconds=0.4, seed=1000 * s + 100 * d + i)


def esc10(root: Path) -> None:
    rows = []
    for fold in range(1, 6):
        for target, category in ((0, "dog"), (1, "rooster"), (38, "clock_tick")):
            stem = f"{fold}-{1000 + target}-A-{target}"
            tone(root / "audio" / f"{stem}.flac", target % 7, sr=16000, seconds=1.0, seed=fold * 100 + target, fmt="FLAC")
            rows.append([f"{stem}.wav", fold, target, category, "True", 1000 + target, "A"])
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with open(root / "meta" / "esc10.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)


def ravdess(root: Path) -> None:
    for actor in range(1, 17):
        for emotion in range(1, 9):
            tone(root / f"Actor_{actor:02d}" / f"03-01-{emotion:02d}-01-01-01-{actor:02d}.wav", emotion, sr=16000,
                 seconds=0.8, seed=actor * 10 + emotion)


def gtzan(root: Path) -> None:
    for g, genre in enumerate(("blues", "classical", "jazz")):
        for i in range(10):
            tone(root / "genres" / genre / f"{genre}.{i:05d}.wav", g, sr=22050, seconds=3.5, seed=g * 100 + i)


def speech_commands(root: Path) -> None:
    words = ("yes", "no", "up")
    for w, word in enumerate(words):
        for spk in ("aa11", "bb22", "cc33", "dd44"):
            for n in range(2):
                tone(root / word / f"{spk}_nohash_{n}.wav", w, sr=16000, seconds=1.0, seed=hash((w, spk, n)) % 1000)
    (root / "validation_list.txt").write_text("".join(f"{word}/cc33_nohash_{n}.wav\n" for word in words for n in range(2)))
    (root / "testing_list.txt").write_text("".join(f"{word}/dd44_nohash_{n}.wav\n" for word in words for n in range(2)))


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An IDX file: big-endian magic and sizes, then the unsigned bytes."""
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def digit_images(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 28, 28)`` uint8 stand-ins for digits: class ``c`` is a bright bar at row ``2 + 2.4 c``, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), n_per_class)
    rng.shuffle(labels)
    images = rng.integers(0, 40, (len(labels), 28, 28))
    for i, c in enumerate(labels):
        row = 2 + int(2.4 * c)
        images[i, row:row + 3, 4 + rng.integers(0, 4):22 + rng.integers(0, 4)] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def mnist(root: Path, *, n_train: int = 8, n_test: int = 3) -> None:
    """The four MNIST IDX files: training ones gzip-compressed, test ones raw (both are read)."""
    root.mkdir(parents=True, exist_ok=True)
    for stem, n, compress, seed in (("train", n_train, True, 0), ("t10k", n_test, False, 1)):
        images, labels = digit_images(n, seed)
        for kind, array, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
            data = idx_bytes(array, magic)
            name = f"{stem}-{kind}-ubyte"
            if compress:
                (root / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (root / name).write_bytes(data)


def images(root: Path, *, n_train: int = 8, n_val: int = 3, classes: tuple[str, ...] = ("cats", "dogs")) -> None:
    """``train/<class>/`` and ``validation/<class>/`` image files of mixed formats and sizes (cats_vs_dogs layout):
    class 0 reddish, class 1 bluish."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for part, n in (("train", n_train), ("validation", n_val)):
        for c, name in enumerate(classes):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = int(rng.integers(30, 60)), int(rng.integers(30, 60))
                pixels = rng.integers(0, 60, (h, w, 3))
                pixels[..., 0 if c == 0 else 2] += 150
                ext = ".png" if i % 2 else ".jpg"
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{name[:-1]}.{i}{ext}")


LAYOUTS = {"fsdd": fsdd, "fsdd_speakers": fsdd_speakers, "esc10": esc10, "ravdess": ravdess, "gtzan": gtzan, "speech_commands": speech_commands,
           "mnist": mnist, "images": images}


def quickstart_run(tmp: Path, *overrides: str, num_per_class: int = 10, epochs: int = 3) -> Path:
    """A tiny run of ``recipes/quickstart.yaml`` (synthetic data, 3 classes, a width-8 cnn) trained in ``tmp``
    through the command line; returns its run folder."""
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    code = main(["train", str(recipe), f"data.root={tmp / 'syn'}", f"data.cache_dir={tmp / 'cache'}",
                 f"trainer.output_dir={tmp / 'runs'}", "data.num_classes=3", f"data.num_per_class={num_per_class}",
                 f"trainer.epochs={epochs}", "model.args.width=8", "trainer.progress=never", *overrides])
    assert code == 0
    (run,) = (tmp / "runs" / "quickstart").iterdir()
    return run
