"""Self-supervised pretext transforms, on device: rotations, translations, flips, GeoTrans' 72 and a jigsaw.

The pretext-task anomaly detectors train a classifier to recognise which transform was applied to an image and score
test images by how well it still does. These are the transforms, written as jittable functions of a batch
[B, H, W, C] (already preprocessed, NHWC) and per-example integer parameters [B], in the style of
`jaxad.data.augment`: `*_with` / explicit-parameter forms for tests and scoring, an `rng` form for training.

Every transform here moves whole pixels, so each is an index map: an output pixel reads one input pixel (or the
fill value). The maps are computed with integer arithmetic and applied as gathers; nothing is interpolated, so the
results equal the reference code's bit for bit (cv2.warpAffine with INTER_LINEAR or INTER_CUBIC, and
scipy.ndimage.affine_transform with order=1, are exact for integer shifts).

Conventions:

* `rotate90(images, k)`: counter-clockwise by k * 90 degrees, as `np.rot90(image, k)` on (H, W).
* `translate(images, dx, dy)`: positive dx moves the content right, positive dy down, i.e.
  out[y, x] = in[y - dy, x - dx] (cv2.warpAffine with M = [[1, 0, dx], [0, 1, dy]]). The uncovered border is filled
  by reflection: `border='reflect101'` (cv2.BORDER_REFLECT_101, np.pad 'reflect': d c b | a b c d; ss-ood / MHRot)
  or `border='reflect'` (scipy.ndimage and Keras fill_mode 'reflect', np.pad 'symmetric': c b a | a b c d;
  GeoTrans).
* MHRot (ss-ood) labels: translation label = position in `TRANSLATIONS` = (0, +8, -8) (ss-ood's map
  {0: 0, 8: 1, -8: 2}); rotation label = k in `ROTATIONS` = (0, 1, 2, 3).
* GeoTrans: transform t of `GEOTRANS_TRANSFORMS` (72 (flip, tx, ty, k) tuples in the published order) is
  fliplr -> Keras `apply_affine_transform(tx, ty, fill_mode='reflect')` -> np.rot90(k), with Keras' semantics of
  2018 (see `geotrans`).
* The `*_all` helpers put the transform axis first: [T, B, H, W, C]; reshaping to [T * B, ...] is the caller's job.

References:
  Golan & El-Yaniv, "Deep Anomaly Detection Using Geometric Transformations", NeurIPS 2018 (GeoTrans).
  Hendrycks, Mazeika, Kadavath & Song, "Using Self-Supervised Learning Can Improve Model Robustness and Uncertainty",
    NeurIPS 2019 (MHRot; code: hendrycks/ss-ood).
  Jezequel, Vu, Beaudet & Histace, "Fine-grained anomaly detection via multi-task self-supervision", AVSS 2021
    (the MHRot geometric heads plus a simplified 3x3 jigsaw with k = 3 permutations, section 2).
  Noroozi & Favaro, "Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles", ECCV 2016
    (maximal-Hamming permutation sets).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

BORDERS = ("reflect101", "reflect")

# MHRot / Jezequel geometric labels at 32x32: label = position in the tuple.
TRANSLATIONS = (0, 8, -8)
ROTATIONS = (0, 1, 2, 3)


def _check_images(images: jax.Array, name: str = "images") -> None:
  if images.ndim != 4:
    raise ValueError(f"{name} must be a batch [B, H, W, C]; got shape {tuple(images.shape)}. Add the batch axis "
                     "(images[None]) for one image, or a channel axis (images[..., None]) for grey images.")


def _check_border(border: str) -> None:
  if border not in BORDERS:
    raise ValueError(f"border={border!r} is not one of {BORDERS}: 'reflect101' is cv2.BORDER_REFLECT_101 "
                     "(ss-ood), 'reflect' is scipy/Keras fill_mode='reflect' (GeoTrans).")


def _per_example(value: jax.Array, b: int, name: str, dtype=jnp.int32) -> jax.Array:
  value = jnp.asarray(value, dtype)
  if value.shape != (b,):
    raise ValueError(f"{name} must have shape [B] = ({b},); got {tuple(value.shape)}. Pass one value per image, "
                     f"e.g. jnp.full(({b},), v).")
  return value


def _reflect_index(i: jax.Array, n: int, border: str) -> jax.Array:
  """Maps any integer index onto [0, n) by repeated reflection, as np.pad 'reflect' / 'symmetric' extend an axis."""
  if border == "reflect101":  # d c b | a b c d | c b a: period 2n - 2, edge pixel not repeated
    if n == 1:
      return jnp.zeros_like(i)
    period = 2 * n - 2
    i = jnp.mod(i, period)
    return jnp.where(i >= n, period - i, i)
  period = 2 * n  # c b a | a b c d | d c b: period 2n, edge pixel repeated
  i = jnp.mod(i, period)
  return jnp.where(i >= n, period - 1 - i, i)


def _remap(images: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
  """out[b, i, j] = images[b, rows[b, i], cols[b, j]]: a separable per-example gather.

  Args:
    images: [B, H, W, C].
    rows: int [B, H'] source rows.
    cols: int [B, W'] source columns.

  Returns:
    [B, H', W', C].
  """
  out = jnp.take_along_axis(images, rows[:, :, None, None], axis=1, mode="clip")
  return jnp.take_along_axis(out, cols[:, None, :, None], axis=2, mode="clip")


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _check_max_shift(max_shift: int | None, **shifts) -> None:
  """Raises if a concrete shift exceeds `max_shift` (traced shifts cannot be checked and are let through)."""
  if max_shift is None:
    return
  for name, value in shifts.items():
    if _is_concrete(value) and np.any(np.abs(np.asarray(value)) > max_shift):
      raise ValueError(f"{name}={np.asarray(value).tolist()} exceeds max_shift={max_shift}; raise max_shift or "
                       "pass smaller shifts.")


def rotate90(images: jax.Array, k: jax.Array) -> jax.Array:
  """Rotates each image counter-clockwise by k[b] * 90 degrees, as `np.rot90(image, k[b])` on (H, W).

  Any integer k works (taken mod 4, negative = clockwise). Odd k swap H and W, so they need square images; for
  non-square images k must be concrete (a NumPy array or Python ints, also inside jit) and even.

  Args:
    images: [B, H, W, C].
    k: int [B] quarter turns.

  Returns:
    [B, H, W, C], same dtype.
  """
  _check_images(images)
  b, h, w, _ = images.shape
  if h != w:
    if not _is_concrete(k):
      raise ValueError(f"rotate90 of non-square images ({h}x{w}) needs a concrete k (NumPy, not traced) to check "
                       "that every k is even; pass k as a NumPy array or use square images.")
    if np.any(np.asarray(k) % 2):
      raise ValueError(f"rotate90: odd k {np.asarray(k).tolist()} would swap H and W of non-square {h}x{w} images; "
                       "use even k or square images.")
  k = jnp.mod(_per_example(k, b, "k"), 4)[:, None, None, None]
  # rot90 by k = (transpose if k is odd), then reverse rows (k in {1, 2}) and columns (k in {2, 3}).
  out = jnp.where(k % 2 == 1, jnp.swapaxes(images, 1, 2), images) if h == w else images
  out = jnp.where((k == 1) | (k == 2), out[:, ::-1], out)
  return jnp.where(k >= 2, out[:, :, ::-1], out)


def hflip(images: jax.Array, flips: jax.Array) -> jax.Array:
  """Mirrors images left-right where `flips` (bool [B]) is True. [B, H, W, C] -> [B, H, W, C]."""
  _check_images(images)
  flips = _per_example(flips, images.shape[0], "flips", jnp.bool_)
  return jnp.where(flips[:, None, None, None], images[:, :, ::-1], images)


def translate(images: jax.Array, dx: jax.Array, dy: jax.Array, *, border: str = "reflect101",
              max_shift: int | None = None) -> jax.Array:
  """Shifts each image by whole pixels: out[y, x] = in[y - dy[b], x - dx[b]], the border filled by reflection.

  Positive dx moves the content right and positive dy moves it down: cv2.warpAffine with
  M = [[1, 0, dx], [0, 1, dy]], as ss-ood (MHRot) uses it. Integer shifts make the interpolation irrelevant:
  INTER_LINEAR and INTER_CUBIC of an integer shift read exactly one source pixel, which is what this returns.
  Shifts of any size work (the reflection repeats like np.pad's); `max_shift` is only a check.

  Pixel-wise preprocessing (scaling to [-1, 1], per-channel standardisation) commutes with this, so shifting the
  preprocessed batch equals ss-ood's shift-then-normalise; per-image statistics (GCN) would not commute exactly.

  Args:
    images: [B, H, W, C].
    dx: int [B] horizontal shifts (columns).
    dy: int [B] vertical shifts (rows).
    border: 'reflect101' (cv2.BORDER_REFLECT_101 = np.pad 'reflect', d c b | a b c d; ss-ood) or 'reflect'
      (scipy.ndimage / Keras fill_mode='reflect' = np.pad 'symmetric', c b a | a b c d; GeoTrans).
    max_shift: optional bound on |dx| and |dy|, checked when the shifts are concrete (NumPy / Python values);
      the result does not depend on it.

  Returns:
    [B, H, W, C], same dtype.
  """
  _check_images(images)
  _check_border(border)
  b, h, w, _ = images.shape
  _check_max_shift(max_shift, dx=dx, dy=dy)
  dx, dy = _per_example(dx, b, "dx"), _per_example(dy, b, "dy")
  rows = _reflect_index(jnp.arange(h)[None, :] - dy[:, None], h, border)
  cols = _reflect_index(jnp.arange(w)[None, :] - dx[:, None], w, border)
  return _remap(images, rows, cols)


def translation_shifts(size: int) -> tuple[int, int, int]:
  """The MHRot / Jezequel translation set (0, +s, -s) for images of side `size`, labels = positions.

  ss-ood shifts by 8 px at 32x32 (CIFAR) and by 56 px at 224x224 (ImageNet-30): a quarter of the side in both, so
  s = round(size / 4), halves rounded up (28 -> 7, 32 -> 8, 64 -> 16, 224 -> 56).
  """
  if size < 1:
    raise ValueError(f"translation_shifts: size={size} must be a positive image side in pixels.")
  s = int(math.floor(size / 4 + 0.5))
  return (0, s, -s)


def translations_x_all(images: jax.Array, shifts: Sequence[int] = TRANSLATIONS, *, border: str = "reflect101",
                       max_shift: int | None = None) -> jax.Array:
  """Every horizontal shift of every image: [B, H, W, C] -> [len(shifts), B, H, W, C], dx = shifts[t], dy = 0."""
  _check_max_shift(max_shift, shifts=shifts)
  return _all(images, len(shifts), lambda x, t: translate(x, jnp.asarray(shifts, jnp.int32)[t], jnp.zeros_like(t),
                                                          border=border))


def translations_y_all(images: jax.Array, shifts: Sequence[int] = TRANSLATIONS, *, border: str = "reflect101",
                       max_shift: int | None = None) -> jax.Array:
  """Every vertical shift of every image: [B, H, W, C] -> [len(shifts), B, H, W, C], dy = shifts[t], dx = 0."""
  _check_max_shift(max_shift, shifts=shifts)
  return _all(images, len(shifts), lambda x, t: translate(x, jnp.zeros_like(t), jnp.asarray(shifts, jnp.int32)[t],
                                                          border=border))


def rotations_all(images: jax.Array) -> jax.Array:
  """The four rotations k = 0, 1, 2, 3 of every image: [B, H, W, C] -> [4, B, H, W, C] (square images)."""
  _check_images(images)
  if images.shape[1] != images.shape[2]:
    raise ValueError(f"rotations_all needs square images; got {images.shape[1]}x{images.shape[2]}. Resize or crop "
                     "them to a square first.")
  return jnp.stack([jnp.rot90(images, k, axes=(1, 2)) for k in ROTATIONS])


def _all(images: jax.Array, n: int, fn) -> jax.Array:
  """Applies fn(images_tiled, t) to the batch tiled n times with t = transform index; returns [n, B, ...]."""
  _check_images(images)
  b = images.shape[0]
  t = jnp.repeat(jnp.arange(n, dtype=jnp.int32), b)
  out = fn(jnp.tile(images, (n, 1, 1, 1)), t)
  return out.reshape((n, b) + out.shape[1:])


# ------------------------------------------------------------------------------------------------------------------
# GeoTrans (Golan & El-Yaniv 2018)


def geotrans_transforms(shift: int = 8) -> tuple[tuple[bool, int, int, int], ...]:
  """The GeoTrans transform list: product((False, True), (0, -shift, shift), (0, -shift, shift), range(4)).

  Each entry is (flip, tx, ty, k); the label of a transform is its position (72 of them). GeoTrans uses shift 8.
  """
  return tuple(itertools.product((False, True), (0, -shift, shift), (0, -shift, shift), range(4)))


GEOTRANS_TRANSFORMS = geotrans_transforms(8)


def geotrans(images: jax.Array, index: jax.Array, *, shift: int = 8) -> jax.Array:
  """Applies GeoTrans transform `index[b]` of `geotrans_transforms(shift)` to each image (square images).

  Transform (flip, tx, ty, k) is np.fliplr if flip, then Keras `apply_affine_transform(x, tx=tx, ty=ty,
  channel_axis=2, fill_mode='reflect')`, then np.rot90(x, k). The Keras of GeoTrans (2.1/2.2, before
  keras-preprocessing PR #318 of 2020 swapped the axes; Keras 3's legacy function also puts tx on columns) passes
  the shift straight to scipy.ndimage.affine_transform on the (row, column) grid with offset (tx, ty), order=1,
  mode='reflect':

      out[r, c] = in[r + tx, c + ty]

  so tx shifts along rows (positive tx moves the content UP) and ty along columns (positive ty moves it LEFT),
  despite Keras' docstring calling tx the width shift. The border is scipy's 'reflect' (np.pad 'symmetric'). This
  function reproduces those semantics exactly, so a net trained here sees the published transform set.

  Args:
    images: [B, H, W, C], H == W.
    index: int [B] transform indices in [0, 72).
    shift: the translation magnitude (8 in GeoTrans).

  Returns:
    [B, H, W, C], same dtype.
  """
  _check_images(images)
  b, h, w, _ = images.shape
  if h != w:
    raise ValueError(f"geotrans needs square images (its rotations swap H and W); got {h}x{w}.")
  table = np.asarray(geotrans_transforms(shift), np.int32)  # [72, 4] = (flip, tx, ty, k)
  params = jnp.asarray(table)[jnp.clip(_per_example(index, b, "index"), 0, len(table) - 1)]
  flip, tx, ty, k = (params[:, i] for i in range(4))
  rows = _reflect_index(jnp.arange(h)[None, :] + tx[:, None], h, "reflect")
  cols = _reflect_index(jnp.arange(w)[None, :] + ty[:, None], w, "reflect")
  cols = jnp.where(flip[:, None] == 1, w - 1 - cols, cols)  # the flip comes first: read the mirrored column
  return rotate90(_remap(images, rows, cols), k)


def geotrans_all(images: jax.Array, *, shift: int = 8) -> jax.Array:
  """All 72 GeoTrans transforms of every image: [B, H, W, C] -> [72, B, H, W, C], axis 0 = transform label."""
  return _all(images, len(GEOTRANS_TRANSFORMS), lambda x, t: geotrans(x, t, shift=shift))


# ------------------------------------------------------------------------------------------------------------------
# Jezequel et al.'s simplified jigsaw


def jigsaw_permutations(k: int, *, grid: int = 3, seed: int = 0, candidates: int = 1000) -> np.ndarray:
  """A set of k cell permutations far apart in Hamming distance; row 0 is the identity.

  Jezequel et al. only say "k randomly chosen permutations including the identity"; choosing them far apart (here)
  keeps the k jigsaw classes from differing in a couple of cells only, and is still a seeded random choice.

  Rows 1..k-1 are chosen greedily: each step takes, among a seeded pool of candidate permutations, the one whose
  minimum Hamming distance to the rows already chosen is largest (ties: the first in the pool). This is the
  max-min form of Noroozi & Favaro's maximal-Hamming selection (their Algorithm 1 ranks candidates by the summed
  distance instead). The pool is `candidates` distinct random permutations from np.random.default_rng(seed) (all
  (g*g)! permutations, shuffled, when there are not many more than that), so the result is deterministic given
  (k, grid, seed, candidates). For k = 3, grid = 3 the rows differ in all 9 positions.

  Args:
    k: number of permutations (classes of the jigsaw head), 1 <= k <= (grid*grid)!.
    grid: cells per side g.
    seed: seed of the candidate pool.
    candidates: pool size (raised to 4k when k is large).

  Returns:
    int32 [k, g*g]; row p sends source cell row[j] to output cell j.

  References:
    Noroozi & Favaro, ECCV 2016, section 3.3 and supplementary Algorithm 1.
  """
  if grid < 1:
    raise ValueError(f"jigsaw_permutations: grid={grid} must be >= 1.")
  n = grid * grid
  total = math.factorial(n)
  if not 1 <= k <= total:
    raise ValueError(f"jigsaw_permutations: k={k} must be in [1, {total}] ((grid*grid)! permutations of "
                     f"{n} cells for grid={grid}).")
  rng = np.random.default_rng(seed)
  identity = np.arange(n)
  pool_size = max(candidates, 4 * k)
  if total <= 2 * pool_size:  # small grids: every permutation is a candidate, in a seeded order
    pool = np.array(list(itertools.permutations(range(n))))
    pool = pool[rng.permutation(len(pool))]
  else:
    pool = np.empty((0, n), np.int64)
    while len(pool) < pool_size:  # distinct permutations, first occurrence order
      draws = np.concatenate([pool, rng.permuted(np.tile(identity, (pool_size, 1)), axis=1)])
      _, first = np.unique(draws, axis=0, return_index=True)
      pool = draws[np.sort(first)][:pool_size]
  pool = pool[np.any(pool != identity, axis=1)]
  chosen = [identity]
  min_dist = np.sum(pool != identity, axis=1)
  for _ in range(k - 1):
    pick = int(np.argmax(min_dist))
    chosen.append(pool[pick])
    # Already chosen candidates get distance 0 to themselves, so they are never picked again (distinct ones are >= 2).
    min_dist = np.minimum(min_dist, np.sum(pool != pool[pick], axis=1))
  return np.asarray(chosen, np.int32)


def _jigsaw_geometry(h: int, w: int, grid: int, margin: int) -> tuple[int, int, int, int]:
  """(cell height, cell width, top, left) of the central grid; checks that the patches are non-empty."""
  ch, cw = h // grid, w // grid
  if grid < 1 or not 0 <= margin < min(ch, cw):
    raise ValueError(f"jigsaw: margin={margin} must be in [0, {min(ch, cw) - 1}] for {h}x{w} images with "
                     f"grid={grid} (cells of {ch}x{cw}); lower the margin or the grid.")
  return ch, cw, (h - grid * ch) // 2, (w - grid * cw) // 2


def jigsaw_offsets(rng: jax.Array, n: int, *, grid: int = 3, margin: int = 2) -> jax.Array:
  """Random crop offsets inside each cell: int32 [n, grid*grid, 2] of (oy, ox), uniform in {0..margin}."""
  return jax.random.randint(rng, (n, grid * grid, 2), 0, margin + 1, dtype=jnp.int32)


def jigsaw_with(images: jax.Array, perm_index: jax.Array, permutations: jax.Array, offsets: jax.Array, *,
                grid: int = 3, margin: int = 2, fill: float | np.ndarray = 0.0) -> jax.Array:
  """Jezequel et al.'s simplified jigsaw with explicit crop offsets (the deterministic form: offsets = margin // 2).

  The image's central (g*ch) x (g*cw) region, ch = H // g and cw = W // g, is cut into g x g cells (cell j at row
  j // g, column j % g); the leftover border rows/columns (top = (H - g*ch) // 2, the rest at the bottom; the same
  for columns) are dropped. From source cell s a patch of (ch - margin) x (cw - margin) is cropped at
  offsets[b, s] = (oy, ox) inside the cell. The output, same H x W, is `fill` everywhere except that cell j of the
  same central grid holds the patch of source cell perm[j], perm = permutations[perm_index[b]], at the fixed
  position (margin // 2, margin // 2) inside the cell. The margin keeps the net from solving the puzzle by
  matching edges (Noroozi & Favaro's gap between tiles).

  Args:
    images: [B, H, W, C].
    perm_index: int [B] rows of `permutations` (the jigsaw label).
    permutations: int [k, g*g] (see `jigsaw_permutations`).
    offsets: int [B, g*g, 2] (oy, ox) per source cell, in [0, margin] (values outside are clipped).
    grid: g.
    margin: pixels removed from each cell side total; 0 <= margin < min(ch, cw).
    fill: scalar or [C] value of the uncovered pixels (e.g. `Preprocess.black` for black).

  Returns:
    [B, H, W, C], same dtype.
  """
  _check_images(images)
  b, h, w, c = images.shape
  ch, cw, top, left = _jigsaw_geometry(h, w, grid, margin)
  permutations = jnp.asarray(permutations, jnp.int32)
  if permutations.ndim != 2 or permutations.shape[1] != grid * grid:
    raise ValueError(f"permutations must have shape [k, grid*grid] = [k, {grid * grid}]; got "
                     f"{tuple(permutations.shape)}. Make them with jigsaw_permutations(k, grid={grid}).")
  offsets = jnp.clip(jnp.asarray(offsets, jnp.int32), 0, margin)
  if offsets.shape != (b, grid * grid, 2):
    raise ValueError(f"offsets must have shape [B, grid*grid, 2] = {(b, grid * grid, 2)}; got "
                     f"{tuple(offsets.shape)}.")
  perm = permutations[_per_example(perm_index, b, "perm_index")]  # [B, g*g]
  gap = margin // 2
  # Output pixel (r, q): its cell (cr, cq), position (u, v) in the cell, and whether it is inside the placed patch.
  r, q = jnp.arange(h) - top, jnp.arange(w) - left
  cr, u = jnp.floor_divide(r, ch), jnp.mod(r, ch)
  cq, v = jnp.floor_divide(q, cw), jnp.mod(q, cw)
  in_r = (r >= 0) & (cr < grid) & (u >= gap) & (u < gap + ch - margin)
  in_q = (q >= 0) & (cq < grid) & (v >= gap) & (v < gap + cw - margin)
  cell = jnp.clip(cr, 0, grid - 1)[:, None] * grid + jnp.clip(cq, 0, grid - 1)[None, :]  # [H, W]
  src = perm[:, cell]  # [B, H, W] source cell of each output pixel
  off = jnp.take_along_axis(offsets, src.reshape(b, -1, 1), axis=1).reshape(b, h, w, 2)
  src_r = top + (src // grid) * ch + off[..., 0] + u[None, :, None] - gap
  src_q = left + (src % grid) * cw + off[..., 1] + v[None, None, :] - gap
  flat = jnp.clip(src_r, 0, h - 1) * w + jnp.clip(src_q, 0, w - 1)
  out = jnp.take_along_axis(images.reshape(b, h * w, c), flat.reshape(b, h * w, 1), axis=1).reshape(b, h, w, c)
  fill = jnp.broadcast_to(jnp.asarray(fill, images.dtype), (c,))
  return jnp.where((in_r[:, None] & in_q[None, :])[None, :, :, None], out, fill)


def jigsaw(images: jax.Array, perm_index: jax.Array, permutations: jax.Array, rng: jax.Array, *, grid: int = 3,
           margin: int = 2, fill: float | np.ndarray = 0.0) -> jax.Array:
  """`jigsaw_with` with crop offsets drawn from `rng` (`jigsaw_offsets`): the training-time form."""
  offsets = jigsaw_offsets(rng, images.shape[0], grid=grid, margin=margin)
  return jigsaw_with(images, perm_index, permutations, offsets, grid=grid, margin=margin, fill=fill)


def jigsaw_all(images: jax.Array, permutations: jax.Array, offsets: jax.Array | None = None, *, grid: int = 3,
               margin: int = 2, fill: float | np.ndarray = 0.0) -> jax.Array:
  """Every permutation of every image: [B, H, W, C] -> [k, B, H, W, C], axis 0 = permutation label.

  `offsets` int [B, g*g, 2] are shared by the k permutations of an image; None means the deterministic test-time
  crop, margin // 2 everywhere.
  """
  _check_images(images)
  b = images.shape[0]
  k = int(np.shape(permutations)[0])
  if offsets is not None and np.shape(offsets) != (b, grid * grid, 2):
    raise ValueError(f"offsets must have shape [B, grid*grid, 2] = {(b, grid * grid, 2)}; got "
                     f"{tuple(np.shape(offsets))}.")
  if offsets is None:
    offsets = jnp.full((b, grid * grid, 2), margin // 2, jnp.int32)
  offsets = jnp.tile(jnp.asarray(offsets, jnp.int32), (k, 1, 1))
  return _all(images, k, lambda x, t: jigsaw_with(x, t, permutations, offsets, grid=grid, margin=margin, fill=fill))
