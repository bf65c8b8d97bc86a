"""The tfds route: tensorflow_datasets prepares CIFAR-10 from its real archive format, offline, and jaxad reads it.

A tiny `cifar-10-binary.tar.gz` in the real binary layout (5 train batches + a test batch of records `1 label byte
+ 3072 pixel bytes, channel-major`, plus `batches.meta.txt`) is put where tfds keeps a finished download, so tfds's
own CIFAR-10 builder extracts, decodes, encodes and writes it exactly as after a real download (only the fetch and
its checksum are skipped). Preparing needs TensorFlow (tfds extracts archives and encodes images with it) and
`importlib_resources`: both come with `pip install -e '.[test]'` (the `tfds` extra).
"""

import io
import os
import tarfile

import numpy as np
import pytest

from jaxad.data import sources

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
IMAGES_PER_FILE = 2


@pytest.fixture(scope="module")
def tfds():
  """tensorflow_datasets with what preparing a dataset needs, or a failure saying how to install it."""
  try:
    import importlib_resources  # pylint: disable=g-import-not-at-top,unused-import
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    pytest.fail(f"Preparing tfds datasets needs TensorFlow and importlib_resources ({e}); install them with "
                "`pip install -e '.[test]'` (or '.[tfds]').")
  import tensorflow_datasets  # pylint: disable=g-import-not-at-top
  return tensorflow_datasets


def cifar10_binary_archive(path, rng):
  """Writes a small cifar-10-binary.tar.gz and returns {'train' | 'test': (uint8 [N, 32, 32, 3] HWC, labels [N])}."""
  written, members = {"train": ([], []), "test": ([], [])}, {}
  for split, names in (("train", TRAIN_FILES), ("test", ("test_batch.bin",))):
    for name in names:
      labels = rng.integers(0, 10, IMAGES_PER_FILE).astype(np.uint8)
      images = rng.integers(0, 256, (IMAGES_PER_FILE, 32, 32, 3), dtype=np.uint8)
      # The real layout: per record the label byte, then the red plane, green plane, blue plane (row-major each).
      records = np.concatenate([labels[:, None], images.transpose(0, 3, 1, 2).reshape(IMAGES_PER_FILE, -1)], axis=1)
      assert records.shape[1] == 1 + 3072
      members[name] = records.tobytes()
      written[split][0].append(images)
      written[split][1].append(labels)
  members["batches.meta.txt"] = ("\n".join(CIFAR10_CLASSES) + "\n\n").encode()
  with tarfile.open(path, "w:gz") as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")  # the real archive's folder
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return {split: (np.concatenate(x), np.concatenate(y).astype(np.int64)) for split, (x, y) in written.items()}


def cifar10_download(tfds):
  """(url, UrlInfo) of CIFAR-10's archive as registered in tfds (size, sha256, file name)."""
  ((url, url_info),) = tfds.builder_cls("cifar10").url_infos.items()
  return url, url_info


def place_as_downloaded(tfds, archive, data_dir):
  """Puts `archive` where tfds's download manager keeps a finished, checksum-verified download of CIFAR-10."""
  from tensorflow_datasets.core.download import resource  # pylint: disable=g-import-not-at-top
  url, url_info = cifar10_download(tfds)
  assert url_info.filename == "cifar-10-binary.tar.gz"
  # <data_dir>/downloads/<dataset>/<sanitised url><sha256 in base64>.tar.gz, with its .INFO beside it.
  cached = tfds.core.Path(data_dir) / "downloads" / "cifar10" / resource.get_dl_fname(url, url_info.checksum)
  cached.parent.mkdir(parents=True)
  cached.write_bytes(open(archive, "rb").read())
  resource.write_info_file(url, cached, "cifar10", url_info.filename, url_info)


def offline_config(tfds, **kwargs):
  # try_download_gcs=False: never look for a pre-built copy on Google Cloud Storage (no network in tests).
  return {"download_config": tfds.download.DownloadConfig(try_download_gcs=False, **kwargs)}


def test_tfds_prepares_cifar10_from_its_real_archive_format_offline(tfds, tmp_path):
  written = cifar10_binary_archive(tmp_path / "cifar-10-binary.tar.gz", np.random.default_rng(0))
  data_dir = str(tmp_path / "tensorflow_datasets")
  place_as_downloaded(tfds, tmp_path / "cifar-10-binary.tar.gz", data_dir)
  # Prepare as ArrayRecord: with an explicit data_dir, tfds 4.9.10's data_source would otherwise prepare TFRecord,
  # which it then cannot read (NotImplementedError).
  tfds.data_source("cifar10", split="train", data_dir=data_dir, builder_kwargs={"file_format": "array_record"},
                   download_and_prepare_kwargs=offline_config(tfds))
  assert sorted(os.listdir(os.path.join(data_dir, "cifar10", "3.0.2"))) == [
      "cifar10-test.array_record-00000-of-00001", "cifar10-train.array_record-00000-of-00001", "dataset_info.json",
      "features.json", "label.labels.txt"]

  for split, n in (("train", 5 * IMAGES_PER_FILE), ("test", IMAGES_PER_FILE)):
    source = tfds.data_source("cifar10", split=split, data_dir=data_dir)  # reading back: the plain user call
    assert len(source) == n
    x, y = written[split]
    seen = set()
    for i in range(n):
      record = source[i]
      # tfds shuffles records when writing; 'id' = '<split>_<index in file order>' says which image this is.
      index = int(record["id"].decode().removeprefix(f"{split}_"))
      seen.add(index)
      assert record["image"].shape == (32, 32, 3) and record["image"].dtype == np.uint8
      np.testing.assert_array_equal(record["image"], x[index])  # HWC: channel-major bytes were transposed
      assert record["label"] == y[index]
    assert seen == set(range(n))
  assert tfds.builder("cifar10", data_dir=data_dir).info.features["label"].names == list(CIFAR10_CLASSES)

  # jaxad's tfds source reads the prepared data (no TensorFlow needed for this part).
  arrays = sources.load_tfds("cifar10", data_dir=data_dir)
  assert arrays.x_train.shape == (10, 32, 32, 3) and arrays.x_test.shape == (2, 32, 32, 3)
  by_pixels = {img.tobytes(): label for img, label in zip(*written["train"])}
  assert [by_pixels[img.tobytes()] for img in arrays.x_train] == arrays.y_train.tolist()


def test_manual_archive_is_checked_against_the_registered_checksum(tfds, tmp_path):
  """The offline route for the real archive: <data_dir>/downloads/manual/cifar-10-binary.tar.gz, verified by sha256.

  Our small archive is not the real one, so tfds must refuse it; that it gets as far as the checksum shows tfds
  looked for the file under this name and did not try to download.
  """
  data_dir = tmp_path / "tensorflow_datasets"
  manual = data_dir / "downloads" / "manual"
  manual.mkdir(parents=True)
  cifar10_binary_archive(manual / "cifar-10-binary.tar.gz", np.random.default_rng(1))
  _, url_info = cifar10_download(tfds)
  assert url_info.size == 170_052_171  # the real archive's size, for the README
  with pytest.raises(tfds.download.download_manager.NonMatchingChecksumError, match="cifar-10-binary.tar.gz"):
    tfds.data_source("cifar10", split="train", data_dir=str(data_dir), builder_kwargs={"file_format": "array_record"},
                     download_and_prepare_kwargs=offline_config(tfds))
