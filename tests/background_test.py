"""Per-pixel background models (jaxad.data.background) against OpenCV's MOG2 output and NumPy / SciPy references.

Synthetic videos (`helpers.moving_square`): a static textured background with a little sensor noise and a bright
square moving 3 pixels a frame along rows (it never returns to a pixel); `golden_frames()` for the OpenCV comparison.
"""

import base64

import numpy as np
import pytest
import scipy.ndimage

import helpers
from jaxad.data.background import (MixtureOfGaussians, dilate_mask, median_foreground, mog_background,
                                   mog_foreground, mog_image_foreground)

H, W = 24, 48


def iou(a, b):
  return (a & b).sum(axis=(-2, -1)) / np.maximum((a | b).sum(axis=(-2, -1)), 1)


def test_mog_finds_the_moving_square_and_agrees_with_a_median_reference():
  frames, truth, background = helpers.moving_square(40)
  masks = mog_foreground(frames)
  assert masks.shape == truth.shape and masks.dtype == bool
  assert masks[0].all()  # nothing learnt before frame 0
  # Warm-up: while the learning rate 1/(2t) is high, a square seen twice at a pixel joins the background; from
  # frame 10 on the square is found and the static background is not.
  assert (iou(masks[10:], truth[10:]) > 0.8).all(), iou(masks, truth)
  assert (masks & ~truth)[1:].mean() < 0.01
  # Independent reference: per-pixel median over time as the background, threshold on the channel-mean difference.
  reference = np.abs(frames.astype(np.float64) - np.median(frames, axis=0)).mean(axis=-1) > 40
  assert (iou(reference, truth) > 0.95).all()
  assert (iou(masks[10:], reference[10:]) > 0.8).all()
  # The model's background image is the static texture, except where the square sat during the warm-up.
  settled = ~truth[:10].any(axis=0)
  assert np.abs(mog_background(frames).astype(np.float64) - background)[settled].max() <= 6


# OpenCV 5.0.0 (opencv-python-headless), cv2.createBackgroundSubtractorMOG2(detectShadows=False) with its defaults:
# np.packbits of `apply(frame) > 0` over golden_frames() in order, then getBackgroundImage(), base64.
CV2_FOREGROUND = (
    "////////////////////////////////AAAAAAAAAADMAMwAzADMAAAAAAAAAAAAAAAAAAAAAAAzADMAMwAzAAAAAAAAAAAAgQIECBAgQIEAxA"
    "jQIMCAwgQIECBAgQIEAAAAAAAAAAACMAAwADABMAAAAAAAAAAAAAAAAAAAAAAADBAMAEwADAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAADAAAAAAAIAAAAAAAAAAA"
    "AAAAAAAAAAAADwAAAAAAAAAAAAAAAAAAAAAAAMAEwADAA8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAPAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAADwA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAwAPAAAAAAAAAAAA"
    "AAAAAAAAAAAEwADAAMADwAAAAAAAAAAAAAAAAAAAAAAAAAAPAA8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAPAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAADwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAPAAAAAAAAAAAAAAAAAAAAAAAAwAAAAMADwAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAMAA8ADwAAAAAAAAAAAAAAAAAAAAAAAAAAAAPAA8AAAAAAAAAAAAAAAAAAAAAAAAAAAADwAPAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAA8ADwAAAAAAAAAAAAAAAAAAAAAAAAAAAAFAA8AAAAAAAAAAAAAAAAAAAAAAAAAAMAAwAPAAAAAAAAAAAAAAAAAAAAAAAAMAA8ADwAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAPAA8AAAAAAAAAAAAAAADAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAPAAMAAwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAwAAAAAAAAAAAAAAAAAAA")
CV2_BACKGROUND = (
    "aXeDhLdOPnKomS1jVIi+rkN5aZ4zl3SFf7ZJOXCjlStfUIa6q0B1aJsxkXWDfbFHToG4qDxyY5ctvVKIeK1CaHiJjsVYSH+ypDptX5Upuk+Edq"
    "o/bHmHjcBXR3uxojZscqY8LWGXh7xRcH2LnTRnWI/Cs0l9bqQ4KV+ThblOcHyKnC9mVorAsUV7bKA2xluQlithdICPrEN2Z54xwliMfbNHOG6i"
    "kyhdc4CNqz51ZZkwwFSKe69FNWqgkMZacICQxW6Sj7VbbYuoq8h5YIq0rVB6g49wv12Ldag/L2OZir5URXmvnzRpc4SVtUx/cKY6aI2wrlh7j6"
    "jBx36XmJSPU3icmr5nY4eup0lzbZW/tlSCg5dnxFuOf7ZJOXCklCtfiKtWy3iZrZungJevqsp4d5e7uWKHhadSyG+VlKtvV36koMltSYCzpDpu"
    "XpUoulCEo56UfJi2xICUn7HFx3aWl7VmYoKjoaeIbI+ysF1+eZ/Cv2mMeqlGPGuXgI5yQHSqr0R5bJ82y2mXjrlaUn2qkIKGZpG8tVaBeKZEx2"
    "qTi7hXUX2mhWNzToO4qz51ZpkwNmmgkMRaS3+1hnN9YJUqu1GFdq1AMWibksRdR32xmmV7XZInuk2Ddag/L2OZir5UWo7EjHOAb6Q6Kl+UhbtP"
    "QHeqmjFkVozAlWd+bKE2KFyRhLdOP3KpmS1jVIi+jHB+f7NJOW6jlCpeT4a5qkF0ZZsvmm6De7FFN2ugk8ZcToG4qDxyY5ctkHSCeK1CM2md")

# The same with history=8, varThreshold=9 (createBackgroundSubtractorMOG2 arguments), then setNMixtures(3),
# setComplexityReductionThreshold(0.5), setBackgroundRatio(0.7), setVarThresholdGen(4), setVarInit(10), setVarMin(2),
# setVarMax(40): components are pruned and replaced often.
CV2_FOREGROUND_TUNED = (
    "////////////////////////////////gAAAAAAAAADMAMwAzADMAQAAAAAAAAAAAAAAAAAAAAAzADMAMwAzAIAEAAAAAAAAgQoECBAgQIEAxA"
    "zQIMDAwgQIEDBAgQIEBQoAKCAAAQEG8ADwIPEBcgQIGDBAwUIGBBAAICCAAQAAPBA8IF2APAQICCAAQUECCBAAQECCAggCAAAAAAIABgAYACAA"
    "gIEACCAgQUECAggIAAgBTAKMDAgYAGAAAoAAACAggQEABAAYADMBrwQPCA8oAEABAgAAAUIEiAIABAEKBFPSI8SC0gzoEKBBgQYEIUMFCAIACA"
    "EgAACyIDgBcAz4QIJCAAQAIIEBAAQACAAAAYAcAFwAPABsQQICAAgAAIACAAQAEAAAAQAEABgAMPDgAQAEAAoAAAACAAgAEAAAAowEDBiMMCzg"
    "AgAEABAAAAQAAAgAIABAAgcILzAzEQMAAggIABAAgwYEGBAgIIOABAbYMOAAwYHMBAhIICABAwgMGABgQAOCAAQQIDBBcoE0BPAQICCBBAgIIC"
    "BBAQIACAAQIG1BDAEMCBwQQECChBAQIDCBgQQECAAAwCFAAPEA+BAgQEECCBAQQECCggQEABAATCLMAAwADBAgAIEACCAgQUECAggIEAAAYwJD"
    "AAMAC1AAAoAAESAkiYEkRAkCICARIMCBwgTIOOFBgwIMEEBEgoIkBBAQIAARIDABMAA4CPGBBAQIIEFBAgIICBAQQEACAEwBDAAMQO6CBAQQII"
    "GBBAQICCAgQUACIABAAPAB8cLyCAgQQICCBAQQECAggYAEAACMAAwBzcQMCAggQAACAAgQEEBAgoAEAAATAEMDwwAHEBAggQYECAggYEFDAgAY"
    "IEABw0DKA+AM0RAAAgQEEBAgIICBBAQYAEABscA6AzAEsCABAggIEABAQAKCAAQQEABBDwAsAywEvCCBhAgIICBBAYICCAgAEEBAAvAE8gDwcE"
    "CCBBgQICCBgQQECAAgIAGMAIwMDAAsMEECCBAQQECCggQPEB8gD4EHBIAIACAwoIEACTAkSUEiQogM1BjQY8KDzgQYEGBgg4IEESAkgYEkBAgO"
    "MCDxQbIDOAgYACFBggIMEGBAgoIEBBAQPCDNgdwDPAgoAIFABAYIAEFBggIICBDwcPDC04RCGAAoAAADhAYQIMGBBAQICCA8MW3CjsyMGABAAQ"
    "IACAoQIICDBAQQECAzoeMEr0gPMCBBAAIECAogQYIGCAgwEEBwxqPUBtAZ4CCJgCRAgBok")


def golden_frames():
  """uint8 [40, 12, 16, 3] from integer arithmetic only (no RNG, so the frames never change): a texture with
  pseudo-random noise, flickering pixels (two-mode background) and a square that comes back every 6 frames."""
  t, y, x, c = np.meshgrid(np.arange(40), np.arange(12), np.arange(16), np.arange(3), indexing="ij")
  frames = (y * 37 + x * 91 + c * 53) % 160 + 40 + ((((t * 131 + y * 71 + x * 29 + c * 17) * 2654435761)
                                                     % 2**32) >> 29) - 4
  flicker = ((y * 16 + x) % 7 == 0) & ((t // 3) % 2 == 1)
  frames = np.where(flicker, 255 - frames, frames)
  sx, sy = (2 * t) % 12, 4 + (t // 8) % 4
  frames = np.where((x >= sx) & (x < sx + 4) & (y >= sy) & (y < sy + 4), 235 - 20 * c, frames)
  return frames.astype(np.uint8)


def test_mog_matches_opencv_mog2():
  frames = golden_frames()
  expected = np.unpackbits(np.frombuffer(base64.b64decode("".join(CV2_FOREGROUND)), np.uint8))
  expected = expected[:frames[..., 0].size].reshape(frames.shape[:3]).astype(bool)
  background = np.frombuffer(base64.b64decode("".join(CV2_BACKGROUND)), np.uint8).reshape(frames.shape[1:])
  np.testing.assert_array_equal(mog_foreground(frames), expected)
  assert np.abs(mog_background(frames).astype(int) - background).max() <= 1  # float32 rounding
  tuned = np.unpackbits(np.frombuffer(base64.b64decode("".join(CV2_FOREGROUND_TUNED)), np.uint8))
  tuned = tuned[:frames[..., 0].size].reshape(frames.shape[:3]).astype(bool)
  np.testing.assert_array_equal(
      mog_foreground(frames, history=8, var_threshold=9.0, num_components=3, complexity_reduction=0.5,
                           background_ratio=0.7, var_threshold_gen=4.0, var_init=10.0, var_min=2.0, var_max=40.0),
      tuned)
  # The streaming model gives the same masks one frame at a time; grey frames [N, H, W] are accepted.
  model = MixtureOfGaussians(frames.shape[1:])
  np.testing.assert_array_equal(np.stack([model.apply(f) for f in frames]), expected)
  assert mog_foreground(frames[..., 0]).shape == frames.shape[:3]


def test_median_and_mog_image_against_scipy_references():
  frames, truth, _ = helpers.moving_square(30, seed=3)
  f64 = frames.astype(np.float64)

  def dilate(masks, k):
    return np.stack([scipy.ndimage.binary_dilation(m, iterations=k) for m in masks]) if k else masks

  for threshold, k in ((40.0, 0), (25.0, 2)):
    reference = dilate(np.abs(f64 - np.median(f64, axis=0)).mean(axis=-1) > threshold, k)
    np.testing.assert_array_equal(median_foreground(frames, threshold=threshold, dilate=k), reference)
  assert (iou(median_foreground(frames), truth) > 0.95).all()
  # LSA's rule as LSA writes it: sum over RGB of |frame - MOG background| > 128, then 5 scipy dilations.
  lsa = np.sum(np.abs(frames.astype(np.int32) - mog_background(frames)), axis=-1) > 128
  np.testing.assert_array_equal(mog_image_foreground(frames), dilate(lsa, 5))
  assert (iou(mog_image_foreground(frames), dilate(truth, 5)) > 0.8).all()
  np.testing.assert_array_equal(dilate_mask(truth, 3), dilate(truth, 3))


def test_frames_must_be_a_video():
  with pytest.raises(ValueError, match="expects frames"):
    mog_foreground(np.zeros((4, 4), np.uint8))
  with pytest.raises(ValueError, match="expects frames"):
    median_foreground(np.zeros((0, 4, 4, 3), np.uint8))
