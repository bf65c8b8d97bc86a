"""`--mode=predict`: score new images with a trained workdir.

  python -m jaxad.main --mode=predict --workdir=/tmp/mocca_c3 --images=/path/to/images   # or one file, or an .npz

Reads what training left in the workdir: `config.json` (the method), `data.json` (the input shape and the
preprocessing, e.g. the GCN min-max of the normal class), the phase outputs under `checkpoints/` and
`threshold.json`. Writes `predictions.csv` (one row per image: its path or index, then per scorer the raw score,
the normalised score in [0, 1] (anomalib's min-max normalisation, threshold at 0.5) and whether it is anomalous
under the saved threshold) and `predictions_<scorer>.png` (the most and least anomalous images).

Images: a folder of PNG/JPEG files, one image file, or an .npz holding uint8 images [N, H, W, C] (the array
`images`, else `x_test`, else its only array). They must have the training images' size and channel count; a
model trained on a `folder` / `mvtec` dataset resizes any image to its training size, as training did.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile

import ml_collections
import numpy as np

from jaxad import evaluate, files, parallel, reductions
from jaxad.checkpoint import output_exists, restore_output
from jaxad.data import FOLDER_DATASETS, VIDEO_DATASETS
from jaxad.data.examples import ArrayExamples, Source
from jaxad.data.transforms import Preprocess
from jaxad.errors import ConfigError, DataError
from jaxad.methods import get_method
from jaxad.methods.base import DataSpec


def _read_json(path: str, what: str) -> dict:
  if not os.path.exists(path):
    raise ConfigError(f"--mode=predict needs {what} {path}, which a finished --mode=train run writes; this workdir "
                      "has no trained model (train it first, or pass the workdir of a finished run).")
  with open(path) as f:
    return json.load(f)


def load_images(path: str, *, shape: tuple[int, int, int], resize: bool) -> tuple[np.ndarray, list[str]]:
  """uint8 [N, H, W, C] images from a folder, an image file or an .npz, and a name per image (path or index)."""
  from jaxad.data import folder  # pylint: disable=g-import-not-at-top  (PIL only here)

  h, w, c = shape
  if not os.path.exists(path):
    raise DataError(f"--images={path} does not exist; pass a folder of PNG/JPEG images, one image file or an .npz.")
  if path.lower().endswith(".npz"):
    try:
      with np.load(path, allow_pickle=False) as f:
        key = "images" if "images" in f.files else "x_test" if "x_test" in f.files else (
            f.files[0] if len(f.files) == 1 else None)
        if key is None:
          raise DataError(f"{path} holds {sorted(f.files)}: name the images array 'images' (uint8 [N, H, W, C]).")
        x = f[key]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
      raise DataError(f"{path} is not a readable .npz archive ({e}).") from e
    if x.ndim == 3:
      x = x[..., None]
    if x.dtype != np.uint8 or x.ndim != 4:
      raise DataError(f"{path}: '{key}' is {x.dtype} {x.shape}; expected uint8 images [N, H, W, C].")
    names = [str(i) for i in range(len(x))]
  else:
    paths = folder.list_images(path) if os.path.isdir(path) else [path]
    size = (h, w) if resize else None
    x = np.stack([folder.read_image(p, size=size, channels=c) for p in paths]) if paths else np.zeros((0, h, w, c))
    names = paths
  if not len(x):
    raise DataError(f"--images={path} holds no images.")
  if x.shape[1:] != (h, w, c):
    raise DataError(f"--images={path}: the images are {x.shape[1]}x{x.shape[2]} with {x.shape[3]} channel(s), but the "
                    f"model was trained on {h}x{w} with {c}; resize them (or convert their channels) first.")
  return x.astype(np.uint8), names


def predict(workdir: str, images: str, *, batch_size: int | None = None) -> dict[str, np.ndarray]:
  """Scores `images` with the model in `workdir`; writes predictions.csv and PNGs; returns {scorer: raw scores}."""
  if not os.path.isdir(workdir):
    raise ConfigError(f"--mode=predict: {workdir} does not exist; pass the workdir of a finished --mode=train run.")
  config = ml_collections.ConfigDict(_read_json(os.path.join(workdir, "config.json"), "the run's config"))
  if tuple(config.data.get("normal_classes", ()) or ()):
    raise ConfigError(f"{workdir} holds one run per normal class; pass --workdir={workdir}/class_K for one of them.")
  if config.data.name in VIDEO_DATASETS:
    raise ConfigError(f"--mode=predict scores image files, and {workdir} is a video model: its frame scores come "
                      "from --mode=eval on the test videos of its data.video folders.")
  spec = _read_json(os.path.join(workdir, evaluate.DATA_SPEC_FILE), "the data description")
  thresholds = _read_json(os.path.join(workdir, "threshold.json"), "the decision thresholds")
  method = get_method(config.method)(config, DataSpec(tuple(spec["shape"]), spec["num_classes"]))
  scorers = {k: s for k, s in method.scorers.items() if s.kind == "score"}
  outputs = {}
  for scorer in scorers.values():
    out_dir = os.path.join(workdir, "checkpoints", scorer.phase, "output")
    if not output_exists(out_dir):
      raise ConfigError(f"--mode=predict: {out_dir} is missing, so {workdir} has no trained model; run --mode=train "
                        "to the end first.")
    outputs[scorer.phase] = outputs.get(scorer.phase) or restore_output(out_dir)
  x, names = load_images(images, shape=tuple(spec["raw_shape"]), resize=config.data.name in FOLDER_DATASETS)
  source = Source(ArrayExamples(image=x), Preprocess.from_dict(spec["preprocess"]))
  run_predict = evaluate.make_predict(parallel.make_mesh(), batch_size or config.eval.batch_size)
  raw, columns = {}, {"image": names}
  for name, s in evaluate.raw_scores(run_predict, scorers, outputs, source).items():
    s, _, _ = reductions.reduce(scorers[name].reduction, s, np.zeros(len(s), np.int32))
    raw[name] = s
    t = thresholds[name]
    columns[f"{name}"] = s
    columns[f"{name}_normalized"] = evaluate.normalize(s, t)
    columns[f"{name}_anomalous"] = np.where(s >= t["threshold"], "yes", "no")
  with files.atomic_open(os.path.join(workdir, "predictions.csv"), newline="") as f:
    writer = csv.writer(f)
    writer.writerow(list(columns))
    for row in zip(*columns.values()):
      writer.writerow([f"{v:.6g}" if isinstance(v, (float, np.floating)) else v for v in row])
  if len(x) >= 2:
    for name, s in raw.items():
      evaluate.extremes(os.path.join(workdir, f"predictions_{name}.png"), source, s, title=f"{name} ({images})")
  return raw
