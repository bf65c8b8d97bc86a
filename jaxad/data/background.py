"""Per-pixel background models for videos (pure NumPy): which pixels of each frame are foreground.

Each `*_foreground` function takes one video's frames in time order, uint8 [N, H, W, C] (or [N, H, W]), and returns
its foreground masks, bool [N, H, W] (True = foreground). `jaxad.data.video.ClipExamples` sets the other pixels of its
clips to 0 and picks the model by name (`background=`, one of `BACKGROUNDS`; `FOREGROUNDS` maps each name but 'none'
to its function, which `background_params` go to as keyword arguments):

* 'mog': a per-pixel mixture of Gaussians updated online over the video's frames in order (Stauffer & Grimson 1999,
  with Zivkovic's MOG2 rules and OpenCV's default parameters: 5 components, history 500, variance threshold 16);
  a pixel is foreground when it matches none of the components that make up the background (`MixtureOfGaussians`,
  `mog_foreground`). The first frame is all foreground (nothing is learnt yet); while the learning rate 1/(2t) is
  high (the first ~10 frames) a value seen in two consecutive frames already joins the background.
* 'mog_image': what MOCCA's preprocessing reference (LSA, Abati et al. 2019, whose code MOCCA follows) does: run the
  same MOG over the whole video, take its background image (`mog_background`), and mark foreground where a frame's
  mean absolute difference to it over the channels exceeds 128/3 (`LSA_THRESHOLD`; LSA: the channel sum exceeds
  128), dilated by 5 steps of 4-connected dilation (`mog_image_foreground`). It uses future frames (an offline
  estimate per video).
* 'median': the per-pixel median over the video's frames as the background, same difference rule (no dilation by
  default; `median_foreground`); a simple, robust baseline.
* 'none': frames as decoded (no model; `ClipExamples` skips the masks).

Cost: about 16 ms a frame for 'mog' at 256x512 RGB on one CPU core. 'median' and 'mog_image' hold a whole video in
memory while computing (n_v x H x W x C bytes: ~0.4 GB for 1,000 frames at 256x512 RGB); 'mog' needs one frame at a
time (`MixtureOfGaussians.apply`), so `ClipExamples` streams decoded frames through it.

References:
  Massoli, Falchi, Kantarci, Akti, Ekenel & Amato. MOCCA: Multilayer One-Class Classification for Anomaly Detection.
  IEEE TNNLS 2021, section IV-C.
  Abati, Porrello, Calderara & Cucchiara. Latent Space Autoregression for Novelty Detection. CVPR 2019.
  Stauffer & Grimson. Adaptive background mixture models for real-time tracking. CVPR 1999.
  Zivkovic. Improved adaptive Gaussian mixture model for background subtraction. ICPR 2004.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

LSA_THRESHOLD = 128.0 / 3.0  # LSA's "sum over RGB of |frame - background| > 128" as a mean over the channels


class MixtureOfGaussians:
  """A per-pixel adaptive mixture-of-Gaussians background model, updated one frame at a time.

  Each pixel keeps up to K components (weight w_k, mean mu_k [C], isotropic variance var_k), sorted by weight. For a
  new pixel value x, with learning rate a = 1 / min(2 t, history) at frame t = 1, 2, ... (fast at first, then
  1/history):
    1. every weight decays, w_k <- (1 - a) w_k - a c_T (c_T = `complexity_reduction`, Zivkovic's prior that prunes
       unused components: a weight that falls below a c_T is dropped; like OpenCV, when several are dropped in one
       frame the first stays, with weight 0, for one more frame);
    2. the first component (in weight order) with |x - mu_k|^2 < `var_threshold_gen` * var_k matches: w_k += a, and
       mu_k, var_k move towards x with rate a / w_k (var_k kept in [var_min, var_max]);
    3. x is background if, among the components up to the match (all, without one), some component k with
       |x - mu_k|^2 < `var_threshold` * var_k has less than `background_ratio` of weight in front of it (the
       heaviest components that add up to `background_ratio` model the background);
    4. weights are renormalised; without a match a new component (mean x, variance `var_init`, weight a, or 1 when
       it is the only one) replaces the lightest when all K are in use.
  These are the rules and default parameters of OpenCV's `BackgroundSubtractorMOG2` with `detectShadows=False`, so
  `history`, `var_threshold` etc. mean what they mean there; the masks match OpenCV's pixel for pixel
  (tests/background_test.py holds an OpenCV 5.0 output to compare with).

  Args:
    shape: a frame's (H, W, C) (or (H, W) for grey).
    history: frames after which the learning rate is 1/history.
    num_components: K.
    var_threshold: squared Mahalanobis distance under which a value is explained by a background component.
    var_threshold_gen: squared distance under which a value updates a component instead of creating one.
    var_init, var_min, var_max: variance of a new component and the bounds of every variance (pixel values 0..255).
    background_ratio: the share of weight that makes up the background.
    complexity_reduction: c_T above.

  References:
    Stauffer & Grimson, CVPR 1999; Zivkovic, ICPR 2004; Zivkovic & van der Heijden, Pattern Recognition Letters 2006.
  """

  def __init__(self, shape: Sequence[int], *, history: int = 500, num_components: int = 5,
               var_threshold: float = 16.0, var_threshold_gen: float = 9.0, var_init: float = 15.0,
               var_min: float = 4.0, var_max: float = 75.0, background_ratio: float = 0.9,
               complexity_reduction: float = 0.05):
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
      shape = (*shape, 1)
    if len(shape) != 3 or min(shape) < 1:
      raise ValueError(f"MixtureOfGaussians needs a frame shape (H, W, C), got {shape}.")
    if history < 1 or num_components < 1:
      raise ValueError(f"history and num_components must be >= 1, got {history} and {num_components}.")
    if not 0.0 < var_min <= var_init <= var_max:
      raise ValueError(f"Need 0 < var_min <= var_init <= var_max, got {var_min}, {var_init}, {var_max}.")
    if var_threshold <= 0 or var_threshold_gen <= 0 or not 0.0 < background_ratio <= 1.0 or complexity_reduction < 0:
      raise ValueError(f"Need var_threshold > 0, var_threshold_gen > 0, 0 < background_ratio <= 1 and "
                       f"complexity_reduction >= 0, got {var_threshold}, {var_threshold_gen}, {background_ratio}, "
                       f"{complexity_reduction}.")
    self.shape = shape
    self.history, self.num_components = int(history), int(num_components)
    self.var_threshold, self.var_threshold_gen = float(var_threshold), float(var_threshold_gen)
    self.var_init, self.var_min, self.var_max = float(var_init), float(var_min), float(var_max)
    self.background_ratio, self.complexity_reduction = float(background_ratio), float(complexity_reduction)
    pixels, k, channels = shape[0] * shape[1], self.num_components, shape[2]
    # Component-major state ([K, P], [C, K, P]) so every step works on contiguous planes of P pixels. Components
    # [0, count) of a pixel are in use, heaviest first (a pruned one can linger with weight 0 for a frame, as in
    # OpenCV).
    self.weight = np.zeros((k, pixels), np.float32)
    self.mean = np.zeros((channels, k, pixels), np.float32)
    self.var = np.zeros((k, pixels), np.float32)
    self.count = np.zeros(pixels, np.int64)
    self.frames_seen = 0

  def apply(self, frame: np.ndarray) -> np.ndarray:
    """Updates the model with one frame and returns its foreground, bool [H, W]."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
      frame = frame[..., None]
    if frame.shape != self.shape:
      raise ValueError(f"MixtureOfGaussians was built for frames of shape {self.shape}, got {frame.shape}.")
    self.frames_seen += 1
    # float32 throughout, in OpenCV's order of operations, so that threshold decisions come out the same.
    a = np.float32(1.0 / min(2 * self.frames_seen, self.history))
    keep = np.float32(1) - a
    prune = -a * np.float32(self.complexity_reduction)
    x = frame.reshape(-1, self.shape[2]).T.astype(np.float32)  # [C, P]
    w, mean, var, count = self.weight, self.mean, self.var, self.count
    k, pixels = w.shape
    fitted = np.zeros(pixels, bool)
    background = np.zeros(pixels, bool)
    total = np.zeros(pixels, np.float32)
    fit_index = np.full(pixels, -1, np.int64)

    for m in range(k):  # components in weight order; `count` can shrink on the way (pruning)
      active = m < count
      if not active.any():
        break
      weight = keep * w[m] + prune
      diff = mean[:, m] - x  # [C, P]
      dist2 = np.square(diff[0])
      for c in range(1, len(diff)):
        dist2 += np.square(diff[c])
      examined = active & ~fitted
      background |= examined & (total < self.background_ratio) & (dist2 < self.var_threshold * var[m])
      fit = examined & (dist2 < self.var_threshold_gen * var[m])
      if fit.any():
        weight = np.where(fit, weight + a, weight)
        rate = np.where(fit, a / np.where(fit, weight, 1), np.float32(0))
        mean[:, m] -= rate * diff
        var[m] = np.where(fit, np.clip(var[m] + rate * (dist2 - var[m]), self.var_min, self.var_max), var[m])
        fitted |= fit
        fit_index[fit] = m
      pruned = active & (weight < -prune)
      weight = np.where(pruned, np.float32(0), weight)
      count -= pruned
      w[m] = np.where(active, weight, w[m])
      total += np.where(active, weight, np.float32(0))

    in_use = np.arange(k)[:, None] < count
    w[~in_use] = 0
    # The matched component moves up past the lighter (or equal) ones in front of it.
    self._move_up(np.flatnonzero(fitted), fit_index[fitted])
    inverse = np.divide(np.float32(1), total, out=np.zeros_like(total), where=np.abs(total) > np.finfo(np.float32).eps)
    w *= inverse

    new = np.flatnonzero(~fitted)
    if len(new):  # a new component, with mean x: in a free slot, or replacing the lightest
      slot = np.minimum(count[new], k - 1)
      count[new] = np.minimum(count[new] + 1, k)
      w[:, new] *= keep
      w[slot, new] = np.where(count[new] == 1, np.float32(1), a)
      mean[:, slot, new] = x[:, new]
      var[slot, new] = self.var_init
      self._move_up(new, slot, weight=a)
    return ~background.reshape(self.shape[:2])

  def _move_up(self, pixels: np.ndarray, source: np.ndarray, weight: np.float32 | None = None) -> None:
    """Moves component `source` of each of `pixels` up past the components in front of it whose weight is not
    above its own (`weight`, default its current weight), shifting those down by one (OpenCV's bubble step)."""
    if not len(pixels):
      return
    k = self.weight.shape[0]
    w = self.weight[:, pixels]
    own = w[source, np.arange(len(pixels))] if weight is None else weight
    index = np.arange(k)[:, None]
    heavier = (index < source) & (w > own)
    target = np.where(heavier.any(axis=0), k - np.argmax(heavier[::-1], axis=0), 0)  # after the last heavier one
    moving = target < source
    if not moving.any():
      return
    pixels, source, target = pixels[moving], source[moving], target[moving]
    order = np.where((index < target) | (index > source), index, np.where(index == target, source, index - 1))
    self.weight[:, pixels] = np.take_along_axis(self.weight[:, pixels], order, axis=0)
    self.var[:, pixels] = np.take_along_axis(self.var[:, pixels], order, axis=0)
    self.mean[:, :, pixels] = np.take_along_axis(self.mean[:, :, pixels], order[None], axis=1)

  def background_image(self) -> np.ndarray:
    """The background the model holds: per pixel the weighted mean of the heaviest components until their weight
    exceeds `background_ratio` (OpenCV's `getBackgroundImage`), uint8 [H, W, C] (rounded)."""
    k = self.weight.shape[0]
    in_use = np.arange(k)[:, None] < self.count
    w = np.where(in_use, self.weight, np.float32(0))
    in_front = np.zeros_like(w)
    for j in range(1, k):
      in_front[j] = in_front[j - 1] + w[j - 1]
    w = np.where(in_front <= self.background_ratio, w, np.float32(0))
    total = w.sum(axis=0)
    image = np.einsum("kp,ckp->pc", w, self.mean) / np.where(total > 0, total, 1)[:, None]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8).reshape(self.shape)


def _as_frames(frames: np.ndarray, name: str) -> np.ndarray:
  frames = np.asarray(frames)
  if frames.ndim == 3:
    frames = frames[..., None]
  if frames.ndim != 4 or frames.shape[0] < 1:
    raise ValueError(f"{name} expects frames [N, H, W, C] (or [N, H, W]) with N >= 1, got shape {frames.shape}.")
  return frames


def dilate_mask(mask: np.ndarray, iterations: int) -> np.ndarray:
  """`iterations` steps of 4-connected binary dilation over the last two axes of a bool [..., H, W] mask (pixels
  within city-block distance `iterations` of a True pixel become True; scipy's `binary_dilation` default)."""
  out = np.asarray(mask, bool)
  for _ in range(int(iterations)):
    grown = out.copy()
    grown[..., 1:, :] |= out[..., :-1, :]
    grown[..., :-1, :] |= out[..., 1:, :]
    grown[..., :, 1:] |= out[..., :, :-1]
    grown[..., :, :-1] |= out[..., :, 1:]
    out = grown
  return out


def _mog_stream(frames: Iterable[np.ndarray], *, dilate: int = 0, **params) -> np.ndarray:
  """`mog_foreground` over any iterable of frames (ClipExamples streams decoded frames through it)."""
  model, masks = None, []
  for frame in frames:
    frame = np.asarray(frame)
    if model is None:
      model = MixtureOfGaussians(frame.shape, **params)
    masks.append(model.apply(frame))
  if model is None:
    raise ValueError("mog_foreground needs at least one frame.")
  return dilate_mask(np.stack(masks), dilate)


def mog_foreground(frames: np.ndarray, *, dilate: int = 0, **params) -> np.ndarray:
  """The foreground of each frame under an online `MixtureOfGaussians` run over the frames in order.

  Args:
    frames: uint8 [N, H, W, C] (or [N, H, W]), one video in time order.
    dilate: steps of 4-connected dilation applied to each mask (0 = none).
    **params: `MixtureOfGaussians` parameters (history, num_components, var_threshold, ...).

  Returns:
    bool [N, H, W], True = foreground. Frame 0 is all foreground (the model is empty before it).

  Example:
    >>> frames = np.full((6, 4, 4, 1), 100, np.uint8); frames[5, 1, 1] = 250
    >>> np.argwhere(mog_foreground(frames)[1:]).tolist()
    [[4, 1, 1]]
  """
  return _mog_stream(_as_frames(frames, "mog_foreground"), dilate=dilate, **params)


def mog_background(frames: np.ndarray, **params) -> np.ndarray:
  """The background image, uint8 [H, W, C], of a `MixtureOfGaussians` run over all the frames [N, H, W, C] in order
  (LSA's `createBackgroundSubtractorMOG2()` then `getBackgroundImage()`)."""
  frames = _as_frames(frames, "mog_background")
  model = MixtureOfGaussians(frames.shape[1:], **params)
  for frame in frames:
    model.apply(frame)
  return model.background_image()


def difference_foreground(frames: np.ndarray, background: np.ndarray, *, threshold: float = LSA_THRESHOLD,
                          dilate: int = 0) -> np.ndarray:
  """Foreground = mean over channels of |frame - background| > threshold, then `dilate` steps of dilation.

  Args:
    frames: [N, H, W, C]; background: [H, W, C] (any numeric dtype; compared as float64).
    threshold: on the 0..255 scale; the default 128/3 is LSA's 128 on the sum over RGB.

  Returns:
    bool [N, H, W].
  """
  frames = _as_frames(frames, "difference_foreground")
  background = np.asarray(background, np.float64).reshape(frames.shape[1:])
  return dilate_mask(np.mean(np.abs(frames - background), axis=-1) > threshold, dilate)


def mog_image_foreground(frames: np.ndarray, *, threshold: float = LSA_THRESHOLD, dilate: int = 5,
                         **params) -> np.ndarray:
  """LSA's background removal, which MOCCA follows: `mog_background` of the whole video, then
  `difference_foreground` with LSA's threshold and 5 dilation steps. bool [N, H, W]."""
  frames = _as_frames(frames, "mog_image_foreground")
  return difference_foreground(frames, mog_background(frames, **params), threshold=threshold, dilate=dilate)


def median_foreground(frames: np.ndarray, *, threshold: float = LSA_THRESHOLD, dilate: int = 0) -> np.ndarray:
  """The per-pixel median over the frames [N, H, W, C] as background, then `difference_foreground`. bool [N, H, W].

  Example:
    >>> frames = np.full((5, 2, 2, 1), 10, np.uint8); frames[2, 0, 1] = 200
    >>> np.argwhere(median_foreground(frames)).tolist()
    [[2, 0, 1]]
  """
  frames = _as_frames(frames, "median_foreground")
  return difference_foreground(frames, np.median(frames, axis=0), threshold=threshold, dilate=dilate)


FOREGROUNDS = {"mog": mog_foreground, "mog_image": mog_image_foreground, "median": median_foreground}
BACKGROUNDS = (*FOREGROUNDS, "none")
