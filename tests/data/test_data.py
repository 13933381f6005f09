"""Datasets and transforms, on small files the tests create (and the shipped digits)."""

import gzip
import hashlib
import http.server
import threading
from functools import partial

import numpy as np
import pytest

from cnnrun.config.schema import DataConfig
from cnnrun.data import batches, prepare, transforms
from cnnrun.data.idx import parse_idx, read_idx, write_idx
from cnnrun.data.sources import load_split
from cnnrun.errors import UserError


def data_cfg(**kw):
    return DataConfig.model_validate(kw)


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_round_trip(tmp_path, suffix, rng):
    a = rng.integers(0, 256, (5, 3, 4)).astype(np.uint8)
    write_idx(tmp_path / f"x{suffix}", a)
    np.testing.assert_array_equal(read_idx(tmp_path / f"x{suffix}"), a)


def test_idx_header_is_big_endian_with_mnist_magic(tmp_path):
    write_idx(tmp_path / "x", np.zeros((2, 28, 28), np.uint8))
    raw = (tmp_path / "x").read_bytes()
    assert int.from_bytes(raw[:4], "big") == 2051 and int.from_bytes(raw[4:8], "big") == 2


def test_corrupt_and_truncated_idx_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="not an IDX file"):
        parse_idx(b"\x12\x34\x08\x01\x00")
    write_idx(tmp_path / "x", np.zeros((4, 2, 2), np.uint8))
    with pytest.raises(UserError, match="truncated or corrupt"):
        parse_idx((tmp_path / "x").read_bytes()[:-3])
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="cannot read this IDX file"):
        read_idx(tmp_path / "bad.gz")


def test_shipped_mnist_subset():
    train, test = load_split(data_cfg(), "train"), load_split(data_cfg(), "test")
    assert train.images.shape == (8000, 1, 28, 28) and test.images.shape == (2000, 1, 28, 28)
    assert np.bincount(test.labels).tolist() == [200, 225, 198, 206, 196, 173, 203, 214, 189, 196]
    assert train.images.dtype == np.uint8 and train.images.max() == 255


def test_mnist_from_root_reads_raw_and_gz(tmp_path, rng):
    imgs = rng.integers(0, 256, (6, 28, 28)).astype(np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", imgs)  # raw
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(6, dtype=np.uint8))
    split = load_split(data_cfg(root=str(tmp_path)), "train")
    np.testing.assert_array_equal(split.images[:, 0], imgs)
    assert split.labels.tolist() == list(range(6))
    with pytest.raises(UserError, match="no t10k-images-idx3-ubyte"):
        load_split(data_cfg(root=str(tmp_path)), "test")


def test_cifar10_binary(tmp_path, rng):
    def batch(n):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        pixels = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        return labels, pixels, np.concatenate([labels[:, None], pixels], axis=1)
    parts = [batch(3) for _ in range(5)]
    for i, (_, _, rec) in enumerate(parts, 1):
        rec.tofile(tmp_path / f"data_batch_{i}.bin")
    test_labels, test_pixels, rec = batch(4)
    rec.tofile(tmp_path / "test_batch.bin")
    split = load_split(data_cfg(dataset="cifar10", root=str(tmp_path)), "test")
    assert split.images.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(split.images[1, 2], test_pixels[1, 2048:].reshape(32, 32))  # blue
    assert split.labels.tolist() == test_labels.tolist()
    assert len(load_split(data_cfg(dataset="cifar10", root=str(tmp_path)), "train").labels) == 15
    (tmp_path / "test_batch.bin").write_bytes(rec.tobytes()[:-5])
    with pytest.raises(UserError, match="truncated"):
        load_split(data_cfg(dataset="cifar10", root=str(tmp_path)), "test")


def test_image_folder(tmp_path, rng):
    Image = pytest.importorskip("PIL.Image")
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                arr = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
                Image.fromarray(arr).save(tmp_path / split / cls / f"{i}.png")
    expected = np.asarray(Image.open(tmp_path / "train" / "dog" / "1.png")).transpose(2, 0, 1)
    split = load_split(data_cfg(dataset="image_folder", root=str(tmp_path)), "train")
    assert split.classes == ["cat", "dog"] and split.labels.tolist() == [0, 0, 1, 1]
    np.testing.assert_array_equal(split.images[3], expected)


def test_synthetic_is_deterministic_and_learnable_shaped():
    a = load_split(data_cfg(dataset="synthetic"), "train")
    b = load_split(data_cfg(dataset="synthetic"), "train")
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (512, 1, 28, 28) and set(a.labels.tolist()) == set(range(10))


@pytest.fixture
def mnist_server(tmp_path, rng):
    """A loopback HTTP server holding four small MNIST-format files."""
    served = tmp_path / "served"
    served.mkdir()
    for prefix, n in (("train", 10), ("t10k", 4)):
        write_idx(served / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(served / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_verifies_sha256_on_loopback(tmp_path, mnist_server, monkeypatch):
    served, url = mnist_server
    digests = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in served.iterdir()}
    monkeypatch.setattr("cnnrun.data.sources.MNIST_SHA256", digests)
    cfg = data_cfg(download=True, mirror=url, cache_dir=str(tmp_path / "cache"))
    split = load_split(cfg, "train")
    assert split.images.shape == (10, 1, 28, 28)
    assert (tmp_path / "cache" / "train-images-idx3-ubyte.gz").exists()
    # a file whose checksum does not match is refused and not kept
    bad = dict(digests, **{"t10k-images-idx3-ubyte.gz": "0" * 64})
    monkeypatch.setattr("cnnrun.data.sources.MNIST_SHA256", bad)
    with pytest.raises(UserError, match="SHA-256 mismatch"):
        load_split(cfg, "test")
    assert not (tmp_path / "cache" / "t10k-images-idx3-ubyte.gz").exists()
    assert not list((tmp_path / "cache").glob("*.part"))


def test_download_failure_is_a_clear_error(tmp_path):
    cfg = data_cfg(download=True, mirror="http://127.0.0.1:9/", cache_dir=str(tmp_path))
    with pytest.raises(UserError, match="download failed"):
        load_split(cfg, "train")


def test_validation_split_is_seeded_and_disjoint():
    cfg = data_cfg(train_limit=500, test_limit=10, val_split=0.2)
    a, b, c = prepare(cfg, 0), prepare(cfg, 0), prepare(cfg, 1)
    assert len(a.train) == 400 and len(a.val) == 100
    np.testing.assert_array_equal(a.val.x, b.val.x)
    assert not np.array_equal(a.val.y, c.val.y)


def test_normalisation_uses_training_statistics():
    d = prepare(data_cfg(train_limit=300, test_limit=10, preprocess={"normalize": {}}), 0)
    assert abs(d.train.x.mean()) < 1e-5 and abs(d.train.x.std() - 1) < 1e-4
    assert d.train.x.dtype == np.float32


def test_lenet_background_mapping():
    d = prepare(data_cfg(train_limit=50, test_limit=5,
                         preprocess={"background": [-0.1, 1.175], "pad": 2}), 0)
    assert d.train.x.shape[2:] == (32, 32)
    assert d.train.x.min() == pytest.approx(-0.1) and d.train.x.max() == pytest.approx(1.175)
    assert d.train.x[0, 0, 0, 0] == pytest.approx(-0.1)  # the padding is background too


class UpperBound:
    """A stand-in generator whose uniform draws are always the top of the range."""

    def uniform(self, low, high, size):
        return np.full(size, float(high))


def test_affine_identity_and_exact_quarter_turn(rng):
    x = rng.random((2, 1, 5, 5)).astype(np.float32)
    ident = DataConfig.model_validate({"augment": {"affine": {}}}).augment.affine
    np.testing.assert_allclose(transforms.affine(x, ident, rng, [0.0]), x, atol=1e-6)
    quarter = DataConfig.model_validate({"augment": {"affine": {"rotation": 90}}}).augment.affine
    out = transforms.affine(x, quarter, UpperBound(), [0.0])
    np.testing.assert_allclose(out, np.rot90(x, 1, axes=(2, 3)), atol=1e-5)


def test_affine_translation_moves_content_and_fills(rng):
    x = rng.random((1, 1, 4, 4)).astype(np.float32)
    shift = DataConfig.model_validate({"augment": {"affine": {"translate": 0.25}}}).augment.affine
    out = transforms.affine(x, shift, UpperBound(), [-1.0])  # +1 pixel down and right
    np.testing.assert_allclose(out[0, 0, 1:, 1:], x[0, 0, :3, :3], atol=1e-6)
    assert (out[0, 0, 0, :] == -1.0).all() and (out[0, 0, :, 0] == -1.0).all()


def test_augmentation_is_seeded_per_batch():
    cfg = data_cfg(train_limit=64, test_limit=5, augment={"random_crop_padding": 2, "hflip": True,
                                                          "affine": {"rotation": 10}})
    d = prepare(cfg, 0)
    run = lambda: [x for _, x, _ in batches(d.train, 16, 0, 0, augment_cfg=cfg.augment, fill=d.fill)]
    first, second = run(), run()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    plain = [x for _, x, _ in batches(d.train, 16, 0, 0)]
    assert not np.array_equal(first[0], plain[0])
    assert first[0].shape == plain[0].shape


def test_batches_resume_mid_epoch_with_the_same_order():
    d = prepare(data_cfg(train_limit=100, test_limit=5), 0)
    full = [(b, y) for b, _, y in batches(d.train, 16, 3, 2)]
    tail = [(b, y) for b, _, y in batches(d.train, 16, 3, 2, start=4)]
    assert [b for b, _ in tail] == [4, 5, 6]
    for (b1, y1), (b2, y2) in zip(full[4:], tail):
        np.testing.assert_array_equal(y1, y2)


def test_gzip_is_detected_by_suffix(tmp_path):
    write_idx(tmp_path / "a.gz", np.ones((2, 2), np.uint8))
    assert gzip.open(tmp_path / "a.gz").read()[:4] == bytes([0, 0, 8, 2])


def test_fashion_mnist_reads_idx_from_root_with_its_class_names(tmp_path, rng):
    for prefix, n in (("train", 4), ("t10k", 2)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.array([9] * n))
    split = load_split(data_cfg(dataset="fashion_mnist", root=str(tmp_path)), "test")
    assert split.classes[9] == "ankle boot" and split.images.shape == (2, 1, 28, 28)
    with pytest.raises(UserError, match="has no shipped copy"):
        load_split(data_cfg(dataset="fashion_mnist"), "test")


def test_resize_keeps_constant_images_constant_and_sizes():
    x = np.full((2, 3, 8, 8), 0.25, np.float32)
    out = transforms.resize(x, (5, 11))
    assert out.shape == (2, 3, 5, 11) and np.allclose(out, 0.25)


def test_validation_split_by_count():
    d = prepare(data_cfg(train_limit=100, test_limit=5, val_split=30), 0)
    assert (len(d.train), len(d.val)) == (70, 30)
