"""Full MNIST from its four idx files (../shared/data/mnist here; torchvision's download for
users with a network), found by ``auto`` without a download, with every file's sha256 recorded."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from pipeline.environments import make_envs
from pipeline.environments.sources import MNIST_DIR_ENV, load_mnist
from pipeline.errors import ConfigError

# $IRM_MNIST_DIR, else the build machines' offline copy beside the checkout
SHARED_MNIST = Path(os.environ.get(MNIST_DIR_ENV) or
                    Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist")
needs_mnist = pytest.mark.skipif(
    not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists(),
    reason=f"full MNIST's gzipped idx files are not at {SHARED_MNIST} (set ${MNIST_DIR_ENV}); "
           "torchvision downloads them where there is a network")
# md5 of the uncompressed files: those of the original MNIST distribution
ORIGINAL_MD5 = {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
                "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624"}


@needs_mnist
def test_the_shared_files_are_the_original_mnist():
    for name, md5 in ORIGINAL_MD5.items():
        data = gzip.decompress((SHARED_MNIST / f"{name}.gz").read_bytes())
        assert hashlib.md5(data).hexdigest() == md5, name


@needs_mnist
def test_a_directory_source_reads_full_mnist_and_hashes_every_file():
    raw = load_mnist(str(SHARED_MNIST))
    assert raw.reduced is False and raw.source == f"directory:{SHARED_MNIST.resolve()}"
    assert tuple(raw.train.images.shape) == (60000, 28, 28) and len(raw.test.labels) == 10000
    assert set(raw.files) == {f"{n}.gz" for n in ("train-images-idx3-ubyte",
                                                  "train-labels-idx1-ubyte",
                                                  "t10k-images-idx3-ubyte",
                                                  "t10k-labels-idx1-ubyte")}
    name = "train-labels-idx1-ubyte.gz"
    assert raw.files[name] == hashlib.sha256((SHARED_MNIST / name).read_bytes()).hexdigest()


@needs_mnist
def test_auto_takes_the_directory_named_by_the_environment(monkeypatch):
    monkeypatch.setenv(MNIST_DIR_ENV, str(SHARED_MNIST))
    raw = load_mnist("auto")
    assert raw.reduced is False and len(raw.train.labels) == 60000
    assert raw.notes == [f"auto: MNIST's idx files from ${MNIST_DIR_ENV} = {SHARED_MNIST}"]


@needs_mnist
def test_auto_finds_torchvisions_layout_in_the_raw_dir_without_a_download(monkeypatch,
                                                                         tmp_path):
    cache = tmp_path / "raw" / "MNIST" / "raw"  # where torchvision keeps its download
    cache.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(SHARED_MNIST / name, cache / name)
    monkeypatch.delenv(MNIST_DIR_ENV, raising=False)
    monkeypatch.setenv("PIPELINE_RAW_DIR", str(tmp_path / "raw"))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # a download would fail at once
    raw = load_mnist("auto")
    assert raw.reduced is False and len(raw.train.labels) == 60000
    assert raw.source == f"directory:{(tmp_path / 'raw' / 'MNIST').resolve()}"


def test_a_named_directory_without_the_files_is_an_error_not_a_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv(MNIST_DIR_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=f"\\${MNIST_DIR_ENV} = {tmp_path}: no MNIST idx"):
        load_mnist("auto")


@needs_mnist
def test_colored_mnist_on_full_mnist_records_its_source_files(tmp_path):
    out = make_envs("colored_mnist", seed=0, out_dir=tmp_path / "envs",
                    params={"source": str(SHARED_MNIST)})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reduced"] is False
    sizes = {e["name"]: e["size"] for e in manifest["environments"]}
    assert sizes == {"train0": 25000, "train1": 25000, "test": 10000, "test_gray": 10000}
    assert set(manifest["source_files"]) >= {"train-images-idx3-ubyte.gz",
                                             "train-labels-idx1-ubyte.gz"}
