"""Tests for jaxad.plots: valid PNGs, readable histogram axes, and the image grid's choice of images."""

import os
import subprocess
import sys

import matplotlib.figure
import matplotlib.image
import matplotlib.text
import numpy as np
import pytest

from jaxad import plots


def _read_png(path):
  """The PNG as an [H, W, 4] float array; fails the test unless it is a real, non-trivial image."""
  assert os.path.getsize(path) > 2000
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  pixels = matplotlib.image.imread(path)
  assert pixels.shape[0] >= 200 and pixels.shape[1] >= 200
  assert pixels.std() > 0.01  # not a blank canvas
  return pixels


@pytest.fixture
def figure_texts(monkeypatch):
  """Every text drawn on the figures saved during the test (titles, labels, legends, annotations)."""
  texts = []
  save = matplotlib.figure.Figure.savefig

  def recording_savefig(fig, *args, **kwargs):
    texts.extend(t.get_text() for t in fig.findobj(matplotlib.text.Text))
    return save(fig, *args, **kwargs)

  monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording_savefig)
  return texts


def _labelled_scores(seed=0, n=300):
  rng = np.random.default_rng(seed)
  labels = (rng.uniform(size=n) < 0.3).astype(int)
  return {"svdd": rng.normal(size=n) + 1.5 * labels, "recon": rng.gamma(2.0, size=n) + labels}, labels


def test_import_is_cheap():
  # Plotting libraries load only when a figure is drawn.
  code = "import sys, jaxad.plots; print('matplotlib' in sys.modules, 'sklearn' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
  assert out.split() == ["False", "False"]


def test_roc_writes_png(tmp_path, figure_texts):
  scores, labels = _labelled_scores()
  path = str(tmp_path / "roc.png")
  plots.roc(path, scores, labels)
  _read_png(path)
  assert "ROC (label 1 = anomalous)" in figure_texts
  assert any(t.startswith("svdd (AUROC 0.") for t in figure_texts)
  assert any(t.startswith("recon (AUROC 0.") for t in figure_texts)


def test_roc_needs_both_classes(tmp_path):
  with pytest.raises(ValueError, match="normal"):
    plots.roc(str(tmp_path / "roc.png"), {"s": np.arange(4.0)}, np.zeros(4, int))


def test_score_histograms_writes_png(tmp_path, figure_texts):
  scores, labels = _labelled_scores()
  path = str(tmp_path / "scores.png")
  ranges = plots.score_histograms(path, scores, labels, thresholds={"svdd": 0.8, "recon": 1e6})
  _read_png(path)
  assert set(ranges) == {"svdd", "recon"}
  assert "threshold 0.8" in figure_texts
  assert "threshold 1e+06 (beyond the axis)" in figure_texts


def test_score_histograms_clips_heavy_tail(tmp_path, figure_texts):
  # Deep SVDD-like: 995 distances in [0, 1] and 5 outliers at 40.
  rng = np.random.default_rng(0)
  scores = np.concatenate([rng.uniform(0, 1, size=995), np.full(5, 40.0)])
  labels = np.concatenate([np.zeros(600, int), np.ones(400, int)])
  path = str(tmp_path / "scores.png")
  ranges = plots.score_histograms(path, {"svdd": scores}, labels)
  _read_png(path)

  low, high = ranges["svdd"]
  assert low == scores.min()
  assert high == pytest.approx(np.quantile(scores, 0.99))
  assert 0.95 < high < 1.0  # the bulk fills the axis, not 40
  num_clipped = int(np.sum(scores > high))
  assert num_clipped >= 5  # at least the outliers, about 1% of the scores
  assert any(f"\n{num_clipped} score(s) > {high:.3g} drawn in the last bin" in t for t in figure_texts)

  axis = plots.histogram_axis(scores)
  assert (axis.low, axis.high, axis.log, axis.num_clipped) == (low, high, False, num_clipped)
  # clip_quantile=1 shows everything.
  assert plots.histogram_axis(scores, clip_quantile=1.0) == (scores.min(), 40.0, False, 0)


def test_score_histograms_log_axis_for_many_decades(tmp_path, figure_texts):
  rng = np.random.default_rng(1)
  scores = 10.0 ** rng.uniform(-3, 3, size=500)  # positive, six decades
  labels = (rng.uniform(size=500) < 0.5).astype(int)
  path = str(tmp_path / "scores.png")
  ranges = plots.score_histograms(path, {"ratio": scores}, labels)
  _read_png(path)
  assert ranges["ratio"] == (scores.min(), scores.max())  # log axis: nothing clipped
  assert plots.histogram_axis(scores).log
  assert any("log axis" in t for t in figure_texts)
  assert not any("last bin" in t for t in figure_texts)


def test_histogram_axis_log_rule():
  # Two decades stay linear; a few tiny scores do not switch [0, 1]-like scores to a log axis.
  assert not plots.histogram_axis(np.linspace(0.1, 10.0, 200)).log
  spread = np.concatenate([np.full(20, 1e-6), np.linspace(0.01, 1.0, 980)])
  assert not plots.histogram_axis(spread).log
  # Any score <= 0 keeps the axis linear, however wide the range.
  assert not plots.histogram_axis(np.concatenate([[0.0], 10.0 ** np.linspace(-3, 3, 200)])).log
  assert plots.histogram_axis(10.0 ** np.linspace(-3, 3, 200)).log


def test_histogram_axis_degenerate_ranges():
  # More than 99% tie at the minimum: fall back to the max so the range is not empty.
  assert plots.histogram_axis(np.concatenate([np.zeros(995), np.ones(5)]))[:2] == (0.0, 1.0)
  assert plots.histogram_axis(np.full(10, 3.0))[:2] == (2.5, 3.5)


def test_score_histograms_one_class(tmp_path):
  path = str(tmp_path / "scores.png")
  plots.score_histograms(path, {"s": np.linspace(0, 1, 50)}, np.zeros(50, int))
  _read_png(path)


@pytest.mark.parametrize("channels, dtype", [(1, np.uint8), (3, np.uint8), (3, np.float32), (1, np.float64)])
def test_image_grid_picks_extremes(tmp_path, channels, dtype):
  rng = np.random.default_rng(channels)
  images = rng.integers(0, 256, size=(20, 16, 16, channels)).astype(np.uint8)
  if np.issubdtype(dtype, np.floating):
    images = (images / 255).astype(dtype)
  # Ties at both ends: indices 3 and 12 share the top score, 0, 5 and 9 the bottom one.
  scores = np.array([0.0, 0.5, 0.4, 0.9, 0.3, 0.0, 0.6, 0.2, 0.8, 0.0,
                     0.45, 0.55, 0.9, 0.35, 0.65, 0.25, 0.7, 0.15, 0.75, 0.1])
  labels = (scores > 0.5).astype(int)
  path = str(tmp_path / "grid.png")
  picked = plots.image_grid(path, images, scores, labels=labels, k=4, title="most / least anomalous")
  _read_png(path)
  np.testing.assert_array_equal(picked["most"], [3, 12, 8, 18])
  np.testing.assert_array_equal(picked["least"], [0, 5, 9, 19])
  # The same as a stable argsort: ties go to the lower index.
  np.testing.assert_array_equal(picked["most"], np.argsort(-scores, kind="stable")[:4])
  np.testing.assert_array_equal(picked["least"], np.argsort(scores, kind="stable")[:4])


def test_image_grid_clips_k_for_few_images(tmp_path, figure_texts):
  images = np.zeros((5, 8, 8, 3), np.uint8)
  images[:, :4] = 255
  scores = np.array([0.2, 0.9, 0.1, 0.5, 0.7])
  picked = plots.image_grid(str(tmp_path / "grid.png"), images, scores, k=8)
  assert picked["most"].tolist() == [1, 4]  # k = 5 // 2 = 2
  assert picked["least"].tolist() == [2, 0]
  assert "0.9" in figure_texts and "normal" not in " ".join(figure_texts)  # no labels given


def test_image_grid_rejects_bad_input(tmp_path):
  path = str(tmp_path / "grid.png")
  with pytest.raises(ValueError, match="N = 0"):
    plots.image_grid(path, np.zeros((0, 8, 8, 3), np.uint8), np.zeros(0))
  with pytest.raises(ValueError, match="C = 1 or 3"):
    plots.image_grid(path, np.zeros((4, 8, 8, 2), np.uint8), np.zeros(4))
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    plots.image_grid(path, np.full((4, 8, 8, 3), 2.0), np.zeros(4))
  with pytest.raises(ValueError, match="scores"):
    plots.image_grid(path, np.zeros((4, 8, 8, 3), np.uint8), np.zeros(5))
