"""Patch geometry on the device: randomly rotated crops for training, and the non-overlapping grid for scoring.

MOCCA on MVTec AD (Massoli et al., section IV-B) trains texture categories on 64x64 patches of the 512x512 images,
rotated by a random angle in [0, 45] degrees, and scores a test image by the maximum over its 64 non-overlapping
64x64 patches (Eq. 7); object categories are trained on whole 128x128 images rotated in [-45, 45] degrees where
orientation is not the defect. Both transforms are one function here, `rotated_crops`: each output pixel samples
the input bilinearly at `center + R(angle) (pixel - patch centre)`, so a rotated patch costs size^2 samples instead
of a rotation of the whole image. The authors' code rotates the reflect-padded 512 image, then crops at random;
rotating each crop about its own centre instead draws the same distribution of patches (a rotation about another
point is this rotation plus a translation, which the random crop position absorbs), away from the borders where
both reflect.

Boundary modes: 'reflect' mirrors without repeating the edge pixel (torchvision's `padding_mode='reflect'`,
scipy.ndimage's 'mirror'); 'constant' fills with `fill` (torchvision RandomRotation's black corners).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MODES = ("reflect", "constant")


def grid_patches(images: jax.Array, size: int) -> jax.Array:
  """Cuts each image into its non-overlapping size x size patches, row by row.

  Args:
    images: [B, H, W, C] with H and W multiples of `size`.
    size: the patch side.

  Returns:
    [B, (H / size) * (W / size), size, size, C]; patch p is at row p // (W / size), column p % (W / size).

  Example:
    >>> grid_patches(jnp.zeros((2, 512, 512, 3)), 64).shape
    (2, 64, 64, 64, 3)
  """
  b, h, w, c = images.shape
  if size < 1 or h % size or w % size:
    raise ValueError(f"grid_patches needs H and W divisible by size={size}, got images of shape {images.shape}.")
  rows, cols = h // size, w // size
  x = images.reshape(b, rows, size, cols, size, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, rows * cols, size, size, c)


def _reflect(index: jax.Array, n: int) -> jax.Array:
  """Integer indices mirrored into [0, n-1] without repeating the edge: -1 -> 1, n -> n-2."""
  if n == 1:
    return jnp.zeros_like(index)
  period = 2 * (n - 1)
  index = jnp.abs(index) % period
  return jnp.where(index > n - 1, period - index, index)


def sample_bilinear(image: jax.Array, rows: jax.Array, cols: jax.Array, *, mode: str = "reflect",
                    fill: float | jax.Array = 0.0) -> jax.Array:
  """Bilinear samples of one image at real-valued pixel coordinates (pixel centres at integers).

  Args:
    image: [H, W, C].
    rows, cols: [...] coordinates.
    mode: 'reflect' or 'constant' (see the module docstring).
    fill: scalar or [C], the value outside the image for 'constant'.

  Returns:
    [..., C] samples.
  """
  h, w, c = image.shape
  r0, c0 = jnp.floor(rows), jnp.floor(cols)
  dr, dc = (rows - r0)[..., None], (cols - c0)[..., None]
  r0, c0 = r0.astype(jnp.int32), c0.astype(jnp.int32)
  fill = jnp.broadcast_to(jnp.asarray(fill, image.dtype), (c,))

  def tap(r, q):
    if mode == "reflect":
      return image[_reflect(r, h), _reflect(q, w)]
    inside = ((r >= 0) & (r < h) & (q >= 0) & (q < w))[..., None]
    return jnp.where(inside, image[jnp.clip(r, 0, h - 1), jnp.clip(q, 0, w - 1)], fill)

  return ((1 - dr) * ((1 - dc) * tap(r0, c0) + dc * tap(r0, c0 + 1))
          + dr * ((1 - dc) * tap(r0 + 1, c0) + dc * tap(r0 + 1, c0 + 1)))


def rotated_crops_with(images: jax.Array, centers: jax.Array, angles: jax.Array, *, size: int,
                       mode: str = "reflect", fill: float | jax.Array = 0.0) -> jax.Array:
  """size x size crops of each image, centred at `centers` and rotated by `angles` (degrees, counter-clockwise).

  Args:
    images: [B, H, W, C].
    centers: [B, K, 2] crop centres (row, column) in pixel coordinates; a crop of side s centred at c covers
      pixels c - (s - 1) / 2 ... c + (s - 1) / 2, so the centre ((H - 1) / 2, (W - 1) / 2) with angle 0 and
      size = H = W returns the image itself.
    angles: [B, K] rotation angles in degrees; positive turns the content counter-clockwise (torchvision's sign).
    size: the crop side.
    mode: 'reflect' or 'constant'.
    fill: scalar or [C], the value outside the image for 'constant'.

  Returns:
    [B * K, size, size, C], the K crops of image 0 first.
  """
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
  offsets = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
  dy, dx = jnp.meshgrid(offsets, offsets, indexing="ij")  # [S, S] output pixel offsets from the crop centre
  theta = jnp.deg2rad(angles.astype(jnp.float32))[..., None, None]  # [B, K, 1, 1]
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  # Output pixel (dy, dx) shows the input at R(-angle) (dy, dx): rotating content counter-clockwise by `angle` in
  # image coordinates (rows pointing down) means sampling it clockwise.
  rows = centers[..., 0, None, None] + cos * dy + sin * dx
  cols = centers[..., 1, None, None] - sin * dy + cos * dx
  crops = jax.vmap(lambda image, r, q: sample_bilinear(image, r, q, mode=mode, fill=fill))(images, rows, cols)
  return crops.reshape(-1, size, size, images.shape[-1])


def rotated_crops(images: jax.Array, rng: jax.Array, *, size: int, per_image: int = 1,
                  angle_range: tuple[float, float] = (0.0, 0.0), random_center: bool = True,
                  mode: str = "reflect", fill: float | jax.Array = 0.0) -> jax.Array:
  """`per_image` random crops of each image, rotated by angles uniform in `angle_range` (degrees).

  Args:
    images: [B, H, W, C] with H, W >= size.
    rng: the step's key.
    size: the crop side (64 for MVTec textures; the image side for whole-image rotation).
    per_image: K crops per image.
    angle_range: (low, high) in degrees, e.g. (0, 45) for textures, (-45, 45) for rotatable objects.
    random_center: True: centres uniform over the positions where an unrotated crop fits; False: the image centre.
    mode, fill: boundary handling, see `rotated_crops_with`.

  Returns:
    [B * K, size, size, C].
  """
  b, h, w, _ = images.shape
  if size > min(h, w):
    raise ValueError(f"crop size {size} exceeds the images' {h}x{w}.")
  k_center, k_angle = jax.random.split(rng)
  if random_center:
    half = (size - 1) / 2.0
    low, high = jnp.array([half, half]), jnp.array([h - 1 - half, w - 1 - half])
    centers = low + jax.random.uniform(k_center, (b, per_image, 2)) * (high - low)
  else:
    centers = jnp.broadcast_to(jnp.array([(h - 1) / 2.0, (w - 1) / 2.0]), (b, per_image, 2))
  angles = jax.random.uniform(k_angle, (b, per_image), minval=angle_range[0], maxval=angle_range[1])
  return rotated_crops_with(images, centers, angles, size=size, mode=mode, fill=fill)

