"""On-device augmentation: jittable functions of (batch, rng), run inside the training step.

`crop_flip` is TransferAD's / Classification-AD's train transform, RandomCrop(H, padding=4) + RandomHorizontalFlip,
for every row of the batch (normal and OE alike). RandomCrop pads with zeros in pixel space, i.e. black: after
normalisation that is `fill` = the preprocessed value of a black pixel (`Preprocess.black`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxad.data import pretext


def crop_flip_params(rng: jax.Array, n: int, *, pad: int = 4) -> tuple[jax.Array, jax.Array]:
  """(offsets int32 [n, 2] uniform in {0..2*pad}, flips bool [n] with probability 1/2)."""
  k_off, k_flip = jax.random.split(rng)
  return (jax.random.randint(k_off, (n, 2), 0, 2 * pad + 1, dtype=jnp.int32),
          jax.random.bernoulli(k_flip, 0.5, (n,)))


def crop_flip_with(images: jax.Array, offsets: jax.Array, flips: jax.Array, *, pad: int = 4,
                   fill: float | np.ndarray = 0.0) -> jax.Array:
  """Pads by `pad` with `fill`, crops back to [H, W] at `offsets` (top, left), then mirrors rows where `flips`.

  Args:
    images: [B, H, W, C].
    offsets: int [B, 2] crop corners in the padded image, each in [0, 2 * pad].
    flips: bool [B]; True mirrors left-right (after the crop, as torchvision's pipeline does).
    pad: padding on every side.
    fill: scalar or [C] padding value.

  Returns:
    [B, H, W, C], same dtype.
  """
  b, h, w, c = images.shape
  fill = jnp.broadcast_to(jnp.asarray(fill, images.dtype), (c,))
  padded = jnp.broadcast_to(fill, (b, h + 2 * pad, w + 2 * pad, c))
  padded = jax.lax.dynamic_update_slice(padded, images, (0, pad, pad, 0))

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

  return pretext.hflip(jax.vmap(crop)(padded, offsets), flips)


def crop_flip(images: jax.Array, rng: jax.Array, *, pad: int = 4, fill: float | np.ndarray = 0.0) -> jax.Array:
  """RandomCrop(H, padding=pad, fill) + RandomHorizontalFlip of every image, drawn from `rng`."""
  offsets, flips = crop_flip_params(rng, images.shape[0], pad=pad)
  return crop_flip_with(images, offsets, flips, pad=pad, fill=fill)
