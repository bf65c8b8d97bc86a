"""MOCCA on video: the end-to-end method on a generated ShanghaiTech-layout frame folder, and its config."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from jaxad import train
from jaxad.config import load_config
from jaxad.data import make_sources, synthetic
from jaxad.methods import mocca_video
from jaxad.methods.base import DataSpec


def _config(arg: str):
  return load_config(f"{helpers.config_file('mocca_shanghaitech.py')}:{arg}")


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> tuple[str, dict]:
  root = str(tmp_path_factory.mktemp("shanghaitech"))
  return root, synthetic.write_video_dataset(root, size=(32, 64), train_videos=3, test_videos=2, num_frames=40)


def test_recipe_validates():
  from jaxad import validate  # pylint: disable=g-import-not-at-top
  c = _config("root=/data/shanghaitech")
  validate.validate(c)
  assert (c.data.video.size, c.data.video.clip_len, c.train.batch_size) == ((256, 512), 16, 4)
  assert c.data.video.background == "mog_image" and c.keep == "min_loss" and c.model.rep_dim == 1024


def test_loss_is_reconstruction_plus_summed_hyperspheres(frames):
  """The phase loss against NumPy: batch mean of the clip's summed squared error + sum over layers of mean d."""
  root, _ = frames
  c = _config(f"root={root},runlocal,boundary=hard")
  c.data.video.background = "none"
  sources = make_sources(c)
  method = mocca_video.method(c, DataSpec(sources["normal"].shape))
  _, phase = method.phases
  batch = sources["normal"].batch(np.arange(2))
  x = jnp.asarray(batch["image"])
  variables = phase.model.init(jax.random.key(0), x, train=False)
  layers = c.objective.layers
  centers = {l: jnp.full((8,), 0.3) for l in layers}
  from jaxad.methods.base import Context  # pylint: disable=g-import-not-at-top
  ctx = Context(batch_stats=variables["batch_stats"], extra={"centers": centers, "radii": {}}, step=jnp.int32(0),
                epoch=jnp.int32(0), rng=jax.random.key(1))
  total, (_, _, metrics) = phase.loss(variables["params"], ctx, {"image": x})
  (x_hat, feats), _ = phase.model.apply(variables, x, train=True, mutable=["batch_stats"])
  x, x_hat = np.asarray(x, np.float64), np.asarray(x_hat, np.float64)
  recon = np.mean(np.sum((x - x_hat) ** 2, axis=(1, 2, 3, 4)))
  one_class = sum(np.mean(np.sum((np.asarray(feats[f"lstm_{l}"], np.float64) - 0.3) ** 2, axis=-1)) for l in layers)
  np.testing.assert_allclose(float(metrics["loss/reconstruction"]), recon, rtol=1e-4)
  np.testing.assert_allclose(float(metrics["loss/one_class"]), one_class, rtol=1e-4)
  np.testing.assert_allclose(float(total), recon + one_class, rtol=1e-4)


def test_end_to_end_frame_scores(frames, tmp_path):
  root, labels = frames
  c = _config(f"root={root},runlocal")
  c.objective.center_clips = 5  # centres from a fixed random subset of the training clips, read lazily
  summary = train.train_and_evaluate(c, str(tmp_path / "run"))
  saved = np.load(tmp_path / "run" / "scores.npz")
  # One score per test frame covered by a clip (clips of 8 frames every 2: all 40 frames of each video).
  assert saved["labels"].tolist() == [int(v) for y in labels.values() for v in y]
  for name in ("hypersphere", "reconstruction"):
    s = saved[f"score/{name}"]
    for video in range(2):  # Eq. 8: each video's frame scores span [0, 1]
      part = s[40 * video:40 * (video + 1)]
      assert part.min() == pytest.approx(0.0) and part.max() == pytest.approx(1.0)
    assert 0.0 <= summary[f"test/{name}/auroc"] <= 1.0
  # A block four times the walkers' size and speed: reconstruction error finds it.
  assert summary["test/reconstruction/auroc"] > 0.8, summary
  assert os.path.isfile(tmp_path / "run" / "roc.png")


def test_missing_data_is_one_line(tmp_path):
  code, err = helpers.jaxad_main_in_process(
      f"--config={helpers.config_file('mocca_shanghaitech.py')}:root={tmp_path / 'nowhere'},runlocal",
      f"--workdir={tmp_path / 'missing'}")
  assert code != 0 and "nowhere" in err and "svip-lab" in err and "Traceback" not in err, err
  assert not os.path.exists(tmp_path / "missing")
