"""Where images come from: MNIST-format IDX files, CIFAR-10 binaries, image folders, synthetic.

Every source returns a ``Split``: uint8 images (N, C, H, W), int64 labels (N,)
and class names. Nothing is unpickled: CIFAR-10 is read from its binary version.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from ..errors import ConfigValueError, UserError
from ..safe_io import MB, memory_shortfall, read_bytes

IMAGE_LIMIT = 256 * MB  # one image file; PIL's pixel limit guards the decoded size
from .download import fetch
from .idx import read_idx

SHIPPED_MNIST = Path(__file__).parent / "mnist_subset"
MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


@dataclass
class Split:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)
    classes: list[str]
    names: np.ndarray | None = None  # each image's file, where it has one (image folders)

    def take(self, index) -> "Split":
        names = None if self.names is None else self.names[index]
        return Split(self.images[index], self.labels[index], self.classes, names)


def load_split(cfg, split: str) -> Split:
    """The 'train' or 'test' split of the configured dataset."""
    kind = cfg.dataset
    if kind in ("mnist", "fashion_mnist"):
        out = _idx_split(cfg, split)
    elif kind == "cifar10":
        out = _cifar10(_need_root(cfg), split)
    elif kind == "image_folder":
        out = _image_folder(_need_root(cfg), split)
    else:
        out = synthetic(cfg.synthetic, split)
    limit = cfg.train_limit if split == "train" else cfg.test_limit
    return out.take(slice(0, limit)) if limit else out


# How the user names the data directory in the command they ran: ``data.root`` in a config
# (train), ``--data`` for eval, which sets this while it reads; advice names what they can type.
ROOT_OPTION: ContextVar[str] = ContextVar("root_option", default="data.root")


def _point_root_at(what: str) -> str:
    if ROOT_OPTION.get() == "data.root":
        return f"Point data.root at the directory with {what}, or set data.download: true."
    return f"Give {ROOT_OPTION.get()} the directory with {what}."


def _need_root(cfg) -> Path:
    if not cfg.root:
        raise UserError(f"data.root: dataset {cfg.dataset!r} has no shipped copy; set data.root "
                        f"to the directory that holds its files.")
    return Path(cfg.root).expanduser()


def _idx_file(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (directory / name).exists():
            return directory / name
    raise UserError(f"{directory}: no {stem}(.gz) here. "
                    f"{_point_root_at('the four MNIST-format files')}")


def _idx_split(cfg, split: str) -> Split:
    prefix = "train" if split == "train" else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    if cfg.download:
        if cfg.dataset != "mnist":
            raise UserError("data.download: only MNIST has built-in checksums; download "
                            "Fashion-MNIST yourself and set data.root.")
        cache = Path(cfg.cache_dir or Path.home() / ".cache" / "cnnrun" / "mnist").expanduser()
        base = (cfg.mirror or MNIST_MIRROR).rstrip("/") + "/"
        files = [fetch(base + f"{s}.gz", cache / f"{s}.gz", MNIST_SHA256[f"{s}.gz"]) for s in stems]
    else:
        if cfg.root is None and cfg.dataset == "fashion_mnist":
            _need_root(cfg)
        directory = Path(cfg.root).expanduser() if cfg.root else SHIPPED_MNIST
        files = [_idx_file(directory, s) for s in stems]
    images, labels = read_idx(files[0]), read_idx(files[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"{files[0]}: expected (N, H, W) images and N labels, got "
                        f"{images.shape} and {labels.shape}.")
    classes = FASHION_CLASSES if cfg.dataset == "fashion_mnist" else [str(i) for i in range(10)]
    return Split(images[:, None], labels.astype(np.int64), classes)


def _cifar10(root: Path, split: str) -> Split:
    directory = root / "cifar-10-batches-bin" if (root / "cifar-10-batches-bin").is_dir() else root
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    chunks = []
    for name in names:
        path = directory / name
        if not path.exists():
            raise UserError(f"{path}: missing. {ROOT_OPTION.get()} must hold CIFAR-10's binary "
                            f"version (data_batch_1.bin … test_batch.bin).")
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % 3073:
            raise UserError(f"{path}: {raw.size} bytes is not a whole, non-zero number of "
                            f"3,073-byte records; the file is empty or truncated.")
        chunks.append(raw.reshape(-1, 3073))  # (N, label + 3·32·32)
    records = np.concatenate(chunks)
    images = records[:, 1:].reshape(-1, 3, 32, 32)  # stored channel by channel, row-major
    return Split(np.ascontiguousarray(images), records[:, 0].astype(np.int64), CIFAR10_CLASSES)


def _image_folder(root: Path, split: str) -> Split:
    """Images in root/<split>/<class>/. The classes are the training split's (numbered in
    sorted order), so a test folder holding only some of them keeps their numbers; a class
    the training split does not have is an error."""
    directory = root / split
    try:
        from PIL import Image
    except ImportError as e:
        raise UserError("dataset image_folder needs Pillow: pip install 'cnnrun[images]'.") from e
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory. An image folder holds train/ and "
                        f"test/, each with one sub-folder per class.")
    own = sorted(p.name for p in directory.iterdir() if p.is_dir())
    train = root / "train"
    classes = sorted(p.name for p in train.iterdir() if p.is_dir()) if train.is_dir() else own
    unknown = [c for c in own if c not in classes]
    if unknown:
        raise UserError(f"{directory}: class folders {', '.join(unknown)} are not among the "
                        f"training split's classes ({', '.join(classes)}); a network cannot "
                        f"be scored on classes it was not trained for.")
    images, labels, names = [], [], []
    for cls in own:
        k = classes.index(cls)
        for f in sorted((directory / cls).iterdir()):
            if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif"):
                images.append(load_image(f, Image))
                labels.append(k)
                names.append(str(f))
    if not images:
        raise UserError(f"{directory}: no images found in its class sub-folders.")
    if len({im.shape for im in images}) > 1:
        raise UserError(f"{directory}: images differ in size; resize them to one size first.")
    return Split(np.stack(images), np.array(labels, dtype=np.int64), classes, np.array(names))


def load_image(path: Path, Image=None) -> np.ndarray:
    """(C, H, W) uint8 of an image file: grey stays one channel, anything else becomes RGB."""
    if Image is None:
        from PIL import Image
    raw = read_bytes(path, "image", IMAGE_LIMIT)  # a regular file: a FIFO would block open()
    try:
        with Image.open(io.BytesIO(raw)) as im:
            im = im.convert("L" if im.mode in ("L", "1", "I;16", "I") else "RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{path}: cannot read this image ({e}).") from e
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy()


def synthetic(cfg, split: str) -> Split:
    """A learnable toy set: one smooth random template per class, plus noise (seeded, fixed)."""
    shape, K = tuple(cfg.shape), cfg.num_classes
    n = cfg.train_size if split == "train" else cfg.test_size
    short = memory_shortfall((n + K) * math.prod(shape) * 8 * 2)  # float64 templates, noise
    if short:
        raise ConfigValueError(("data", "synthetic"),
                               f"data.synthetic: {n} images of {shape} {short} to draw.")
    templates = np.random.default_rng(20261123).normal(size=(K, *shape))
    rng = np.random.default_rng(1 if split == "train" else 2)
    labels = rng.integers(0, K, n)
    images = 128 + 50 * templates[labels] + 40 * rng.normal(size=(n, *shape))
    return Split(np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64),
                 [f"class{k}" for k in range(K)])
