"""Users' own images end to end: train on a folder of mixed-size PNG/JPEG files, then `--mode=predict`."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from helpers import jaxad_main  # pylint: disable=g-bad-import-order


def texture(rng, size, defect=False):
  """A smooth grey-green texture; a defect is a bright magenta square painted on it."""
  h, w = size
  base = (rng.normal(size=(h // 8 + 1, w // 8 + 1, 3)) * 20 + np.array([90, 140, 90])).clip(0, 255)
  img = np.kron(base, np.ones((8, 8, 1)))[:h, :w]
  if defect:
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    img[y:y + h // 3, x:x + w // 3] = (255, 0, 255)
  return Image.fromarray(img.astype(np.uint8))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  root = tmp_path_factory.mktemp("parts")
  rng = np.random.default_rng(0)
  sizes = [(40, 40), (64, 48), (32, 32), (50, 70)]
  layout = {"train": (32, False), "test/good": (12, False), "test/scratch": (12, True)}
  for sub, (n, defect) in layout.items():
    (root / sub).mkdir(parents=True)
    for i in range(n):
      ext = ".png" if i % 2 else ".JPG"
      img = texture(rng, sizes[i % len(sizes)], defect)
      img = img.convert("L") if i % 5 == 0 else img  # some grey files: read as RGB
      img.save(root / sub / f"{i:03d}{ext}", quality=95)
  (root / "new").mkdir()
  for i in range(4):
    texture(rng, (36, 36), defect=i >= 2).save(root / "new" / f"n{i}.png")
  return root


@pytest.fixture(scope="module")
def trained(folders, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("w") / "run"
  out = jaxad_main(f"--config=configs/mocca_folder.py:normal_dir={folders / 'train'},test_dir={folders / 'test'},"
                   "runlocal", f"--workdir={workdir}")
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir


def test_folder_dataset_trains_and_scores_its_test_folders(trained):
  summary = json.loads((trained / "summary.json").read_text())
  scores = np.load(trained / "scores.npz")
  np.testing.assert_array_equal(scores["labels"], [0] * 12 + [1] * 12)  # 'good' first, then the defect folder
  np.testing.assert_array_equal(scores["classes"], [0] * 12 + [1] * 12)
  assert np.isfinite(summary["test/hypersphere/auroc"]) and np.isfinite(summary["test/reconstruction/auroc"])
  # Bright magenta squares are far from the normal textures in pixel space: the autoencoder must notice.
  assert summary["test/reconstruction/auroc"] > 0.8
  spec = json.loads((trained / "data.json").read_text())
  assert spec["shape"] == [32, 32, 3] and spec["preprocess"]["kind"] == "gcn_l1_minmax"


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_predict_scores_a_folder_a_file_and_an_npz(trained, folders):
  thresholds = json.loads((trained / "threshold.json").read_text())
  out = jaxad_main("--mode=predict", f"--workdir={trained}", f"--images={folders / 'new'}")
  assert out.returncode == 0, out.stderr[-3000:]
  rows = read_csv(trained / "predictions.csv")
  assert [r["image"] for r in rows] == [str(folders / "new" / f"n{i}.png") for i in range(4)]
  for r in rows:
    for name, t in thresholds.items():
      s = float(r[name])
      assert r[f"{name}_anomalous"] == ("yes" if s >= t["threshold"] else "no")
      expected = np.clip((s - t["threshold"]) / (t["max"] - t["min"]) + 0.5, 0, 1)
      assert float(r[f"{name}_normalized"]) == pytest.approx(expected, abs=1e-5)
  assert (trained / "predictions_reconstruction.png").exists()
  recon = [float(r["reconstruction"]) for r in rows]
  assert min(recon[2:]) > max(recon[:2])  # the two painted images score above the two clean ones
  # One file: the same score as in the folder run (scoring does not depend on the batch).
  single = jaxad_main("--mode=predict", f"--workdir={trained}", f"--images={folders / 'new' / 'n3.png'}")
  assert single.returncode == 0, single.stderr[-3000:]
  (row,) = read_csv(trained / "predictions.csv")
  assert float(row["reconstruction"]) == pytest.approx(recon[3], rel=1e-5)
  # An .npz of uint8 images at the training size.
  images = np.stack([np.asarray(Image.open(folders / "new" / f"n{i}.png").convert("RGB").resize((32, 32)))
                     for i in range(4)])
  np.savez(folders / "new.npz", images=images)
  npz = jaxad_main("--mode=predict", f"--workdir={trained}", f"--images={folders / 'new.npz'}")
  assert npz.returncode == 0, npz.stderr[-3000:]
  assert [r["image"] for r in read_csv(trained / "predictions.csv")] == ["0", "1", "2", "3"]


@pytest.mark.parametrize("make,message", [
    (lambda p: np.savez(p / "grey.npz", images=np.zeros((2, 32, 32, 1), np.uint8)),
     "the model was trained on 32x32 with 3"),
    (lambda p: np.savez(p / "grey.npz", images=np.zeros((2, 16, 16, 3), np.uint8)),
     "the images are 16x16 with 3 channel(s), but the model was trained on 32x32"),
    (lambda p: (p / "grey.npz").write_text("not an archive"), "is not a readable .npz archive"),
])
def test_predict_rejects_wrong_images_in_one_line(trained, tmp_path, make, message):
  make(tmp_path)
  out = jaxad_main("--mode=predict", f"--workdir={trained}", f"--images={tmp_path / 'grey.npz'}")
  assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
  assert message in out.stderr


def test_predict_without_a_trained_model_is_one_clear_line(tmp_path, folders):
  (tmp_path / "empty").mkdir()
  for workdir, message in [(tmp_path / "empty", "has no trained model"), (tmp_path / "missing", "does not exist")]:
    out = jaxad_main("--mode=predict", f"--workdir={workdir}", f"--images={folders / 'new'}")
    assert out.returncode == 2 and "Traceback" not in out.stderr and message in out.stderr, out.stderr
  assert not (tmp_path / "missing").exists()
