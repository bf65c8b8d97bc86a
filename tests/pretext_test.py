"""Pretext transforms (jaxad.data.pretext) against independent NumPy / SciPy references.

Rotations against np.rot90, translations against np.pad ('reflect' = cv2 BORDER_REFLECT_101, 'symmetric' = scipy /
Keras 'reflect') plus slicing, GeoTrans against the published recipe written with np.fliplr +
scipy.ndimage.affine_transform (what GeoTrans' Keras called) + np.rot90, and the jigsaw against a plain loop.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from jaxad.data import pretext

SHAPES = [(3, 32, 32, 3), (2, 28, 28, 1)]  # CIFAR-like and (F-)MNIST-like sizes
NP_PAD_MODE = {"reflect101": "reflect", "reflect": "symmetric"}


def images(shape, seed=0):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def np_translate(x, dx, dy, border):
  """out[y, x] = in[y - dy, x - dx]: pad by the largest shift with np.pad's mode, then slice."""
  m = int(max(np.abs(dx).max(), np.abs(dy).max(), 1))
  h, w = x.shape[1:3]
  out = []
  for image, sx, sy in zip(x, dx, dy):
    padded = np.pad(image, ((m, m), (m, m), (0, 0)), mode=NP_PAD_MODE[border])
    out.append(padded[m - sy:m - sy + h, m - sx:m - sx + w])
  return np.stack(out)


def np_geotrans(image, flip, tx, ty, k):
  """GeoTrans' transform as published: fliplr, Keras' (scipy) affine shift with 'reflect', rot90."""
  if flip:
    image = np.fliplr(image)
  if tx != 0 or ty != 0:
    image = np.stack([scipy.ndimage.affine_transform(image[..., ch], np.eye(2), offset=(tx, ty), order=1,
                                                     mode="reflect") for ch in range(image.shape[-1])], axis=-1)
  return np.rot90(image, k)


def np_jigsaw(x, perms, offsets, grid, margin, fill):
  """Cell by cell: crop source cell perm[j] at its offset, paste it at (margin // 2, margin // 2) of cell j."""
  _, h, w, c = x.shape
  ch, cw = h // grid, w // grid
  top, left = (h - grid * ch) // 2, (w - grid * cw) // 2
  ph, pw, gap = ch - margin, cw - margin, margin // 2
  out = np.empty_like(x)
  out[:] = np.broadcast_to(np.asarray(fill, x.dtype), (c,))
  for i in range(len(x)):
    for j in range(grid * grid):
      s = perms[i][j]
      oy, ox = offsets[i][s]
      sy, sx = top + (s // grid) * ch + oy, left + (s % grid) * cw + ox
      ty, tx = top + (j // grid) * ch + gap, left + (j % grid) * cw + gap
      out[i, ty:ty + ph, tx:tx + pw] = x[i, sy:sy + ph, sx:sx + pw]
  return out


@pytest.mark.parametrize("shape", SHAPES)
def test_rotate90_matches_np_rot90(shape):
  x = images(shape)
  k = np.array([0, 1, 2, 3, -1, 5][:shape[0]] if shape[0] > 2 else [3, -2])
  out = np.asarray(jax.jit(pretext.rotate90)(jnp.asarray(x), jnp.asarray(k)))
  assert out.shape == x.shape and out.dtype == np.float32
  np.testing.assert_array_equal(out, np.stack([np.rot90(a, kk) for a, kk in zip(x, k)]))
  # Counter-clockwise: the top-right corner goes to the top-left for k = 1.
  np.testing.assert_array_equal(pretext.rotate90(jnp.asarray(x), jnp.ones(shape[0], jnp.int32))[:, 0, 0],
                                x[:, 0, -1])
  all4 = np.asarray(jax.jit(pretext.rotations_all)(jnp.asarray(x)))
  assert all4.shape == (4,) + shape
  for kk in pretext.ROTATIONS:
    np.testing.assert_array_equal(all4[kk], np.rot90(x, kk, axes=(1, 2)))


def test_rotate90_of_non_square_images_needs_even_concrete_k():
  x = images((2, 6, 9, 2))
  k = np.array([2, 0])
  np.testing.assert_array_equal(pretext.rotate90(jnp.asarray(x), k), np.stack([np.rot90(x[0], 2), x[1]]))
  np.testing.assert_array_equal(jax.jit(lambda a: pretext.rotate90(a, k))(jnp.asarray(x)),  # NumPy k: concrete
                                np.stack([np.rot90(x[0], 2), x[1]]))
  with pytest.raises(ValueError, match="odd k"):
    pretext.rotate90(jnp.asarray(x), np.array([1, 0]))
  with pytest.raises(ValueError, match="concrete k"):
    jax.jit(pretext.rotate90)(jnp.asarray(x), jnp.asarray(k))
  with pytest.raises(ValueError, match="square"):
    pretext.rotations_all(jnp.asarray(x))


@pytest.mark.parametrize("border", ["reflect101", "reflect"])
@pytest.mark.parametrize("shape", SHAPES + [(4, 12, 10, 2)])
def test_translate_matches_numpy_pad_and_slice(shape, border):
  x = images(shape, seed=1)
  rng = np.random.default_rng(2)
  dx, dy = rng.integers(-8, 9, shape[0]), rng.integers(-8, 9, shape[0])
  dx[0], dy[0] = 8, -8  # the largest MHRot shifts at 32x32
  out = np.asarray(jax.jit(lambda *a: pretext.translate(*a, border=border))(jnp.asarray(x), dx, dy))
  assert out.shape == x.shape
  np.testing.assert_array_equal(out, np_translate(x, dx, dy, border))
  np.testing.assert_array_equal(pretext.translate(jnp.asarray(x), dx, dy, border=border, max_shift=8), out)


def test_translate_direction_and_border_conventions():
  x = np.zeros((1, 16, 16, 1), np.float32)
  x[0, 5, 3, 0] = 1.0
  out = np.asarray(pretext.translate(jnp.asarray(x), np.array([2]), np.array([1])))
  assert out[0, 6, 5, 0] == 1.0 and out.sum() == 1.0  # positive dx = right, positive dy = down
  ramp = np.broadcast_to(np.arange(6, dtype=np.float32)[None, :, None], (6, 6, 1))[None]
  right2 = lambda border: np.asarray(pretext.translate(jnp.asarray(ramp), np.array([2]), np.array([0]),
                                                       border=border))[0, 0, :, 0]
  np.testing.assert_array_equal(right2("reflect101"), [2, 1, 0, 1, 2, 3])  # c b | a b c d: edge not repeated
  np.testing.assert_array_equal(right2("reflect"), [1, 0, 0, 1, 2, 3])  # b a | a b c d: edge repeated
  x = images((2, 8, 8, 1))
  np.testing.assert_array_equal(pretext.translate(jnp.asarray(x), np.zeros(2, int), np.zeros(2, int)), x)


def test_hflip_mirrors_only_the_flagged_images():
  x = images((3, 5, 7, 2))
  flips = np.array([True, False, True])
  out = np.asarray(jax.jit(pretext.hflip)(jnp.asarray(x), jnp.asarray(flips)))
  np.testing.assert_array_equal(out, np.stack([np.fliplr(a) if f else a for a, f in zip(x, flips)]))


def test_translation_labels_and_sizes():
  assert pretext.TRANSLATIONS == (0, 8, -8)  # ss-ood's label map {0: 0, 8: 1, -8: 2}
  assert pretext.ROTATIONS == (0, 1, 2, 3)
  assert pretext.translation_shifts(32) == pretext.TRANSLATIONS
  assert pretext.translation_shifts(224) == (0, 56, -56)  # ss-ood ImageNet-30
  assert pretext.translation_shifts(28) == (0, 7, -7)
  assert pretext.translation_shifts(64) == (0, 16, -16)
  with pytest.raises(ValueError, match="size=0"):
    pretext.translation_shifts(0)


@pytest.mark.parametrize("shape", SHAPES)
def test_translations_all_put_the_label_axis_first(shape):
  x = images(shape, seed=3)
  b = shape[0]
  for fn, axis in ((pretext.translations_x_all, "x"), (pretext.translations_y_all, "y")):
    out = np.asarray(jax.jit(fn)(jnp.asarray(x)))
    assert out.shape == (3,) + shape
    for label, s in enumerate(pretext.TRANSLATIONS):
      shift, zero = np.full(b, s), np.zeros(b, int)
      ref = np_translate(x, shift, zero, "reflect101") if axis == "x" else np_translate(x, zero, shift, "reflect101")
      np.testing.assert_array_equal(out[label], ref)
  out = np.asarray(pretext.translations_y_all(jnp.asarray(x), (0, -4), border="reflect"))
  np.testing.assert_array_equal(out[1], np_translate(x, np.zeros(b, int), np.full(b, -4), "reflect"))


def test_geotrans_table_is_the_published_order():
  table = pretext.GEOTRANS_TRANSFORMS
  assert len(table) == 72 and len(set(table)) == 72
  assert table == tuple(itertools.product((False, True), (0, -8, 8), (0, -8, 8), range(4)))
  assert table[0] == (False, 0, 0, 0)  # identity
  assert table[1] == (False, 0, 0, 1)  # rotation varies fastest
  assert table[4] == (False, 0, -8, 0)
  assert table[8] == (False, 0, 8, 0)
  assert table[12] == (False, -8, 0, 0)
  assert table[36] == (True, 0, 0, 0)
  assert table[71] == (True, 8, 8, 3)
  assert pretext.geotrans_transforms(4)[4] == (False, 0, -4, 0)


@pytest.mark.parametrize("shape", [(2, 32, 32, 3), (2, 28, 28, 1)])
def test_geotrans_matches_the_scipy_reference_for_all_72(shape):
  x = images(shape, seed=4)
  out = np.asarray(jax.jit(pretext.geotrans_all)(jnp.asarray(x)))
  assert out.shape == (72,) + shape and out.dtype == np.float32
  for t, params in enumerate(pretext.GEOTRANS_TRANSFORMS):
    for b in range(shape[0]):
      np.testing.assert_allclose(out[t, b], np_geotrans(x[b], *params), rtol=0, atol=1e-6,
                                 err_msg=f"transform {t} = {params}")
  np.testing.assert_array_equal(out[0], x)
  # Per-example indices: the same as the matching rows of geotrans_all.
  index = np.random.default_rng(5).integers(0, 72, shape[0])
  np.testing.assert_array_equal(jax.jit(pretext.geotrans)(jnp.asarray(x), jnp.asarray(index)),
                                out[index, np.arange(shape[0])])


def test_geotrans_uses_keras_2018_axes_tx_on_rows():
  """Keras' tx goes to scipy's first (row) axis: positive tx moves the content up, positive ty moves it left."""
  grid = np.arange(16, dtype=np.float32)
  rows = np.broadcast_to(grid[:, None, None], (16, 16, 1))[None]  # value = row index
  cols = np.broadcast_to(grid[None, :, None], (16, 16, 1))[None]  # value = column index
  tx8 = pretext.GEOTRANS_TRANSFORMS.index((False, 8, 0, 0))
  ty8 = pretext.GEOTRANS_TRANSFORMS.index((False, 0, 8, 0))
  out = np.asarray(pretext.geotrans(jnp.asarray(rows), np.array([tx8])))[0, :, 0, 0]
  np.testing.assert_array_equal(out, [8, 9, 10, 11, 12, 13, 14, 15, 15, 14, 13, 12, 11, 10, 9, 8])  # up, 'symmetric'
  np.testing.assert_array_equal(pretext.geotrans(jnp.asarray(cols), np.array([tx8])), cols)  # columns untouched
  out = np.asarray(pretext.geotrans(jnp.asarray(cols), np.array([ty8])))[0, 0, :, 0]
  np.testing.assert_array_equal(out[:8], np.arange(8, 16))  # left


JIGSAW_CASES = [  # (shape, grid, margin, fill)
    ((3, 32, 32, 3), 3, 2, np.array([-1.0, 0.5, 2.0], np.float32)),  # cells of 10, one spare row/column each side
    ((2, 28, 28, 1), 3, 3, -0.25),  # cells of 9, the spare row/column at the bottom/right
    ((2, 24, 31, 2), 3, 1, 0.0),  # rectangular cells of 8x10
    ((2, 16, 16, 1), 2, 2, 1.5),
]


@pytest.mark.parametrize("shape,grid,margin,fill", JIGSAW_CASES)
def test_jigsaw_with_matches_a_numpy_loop(shape, grid, margin, fill):
  x = images(shape, seed=6)
  b = shape[0]
  rng = np.random.default_rng(7)
  perms = pretext.jigsaw_permutations(5, grid=grid, seed=1)
  index = rng.integers(0, 5, b)
  offsets = rng.integers(0, margin + 1, (b, grid * grid, 2))
  fn = jax.jit(lambda *a: pretext.jigsaw_with(*a, grid=grid, margin=margin, fill=fill))
  out = np.asarray(fn(jnp.asarray(x), jnp.asarray(index), jnp.asarray(perms), jnp.asarray(offsets)))
  assert out.shape == x.shape and out.dtype == np.float32
  np.testing.assert_array_equal(out, np_jigsaw(x, perms[index], offsets, grid, margin, fill))


def test_jigsaw_identity_keeps_pixels_in_place():
  x = images((2, 32, 32, 3), seed=8)
  ident = np.arange(9)[None]
  out = np.asarray(pretext.jigsaw_with(jnp.asarray(x), np.zeros(2, int), ident, np.zeros((2, 9, 2), int),
                                       margin=0, fill=7.0))
  np.testing.assert_array_equal(out[:, 1:31, 1:31], x[:, 1:31, 1:31])  # the central 30x30 grid
  assert (out[:, 0] == 7.0).all() and (out[:, 31] == 7.0).all() and (out[:, :, 0] == 7.0).all()
  # margin 2 with the test-time offset 1 crops a patch where it is pasted: the image through a mask of gaps.
  out = np.asarray(pretext.jigsaw_all(jnp.asarray(x), ident, margin=2, fill=7.0))[0]
  keep = np.zeros(32, bool)
  for cell in range(3):
    keep[1 + cell * 10 + 1:1 + cell * 10 + 9] = True
  mask = keep[:, None] & keep[None, :]
  np.testing.assert_array_equal(out[:, mask], x[:, mask])
  assert (out[:, ~mask] == 7.0).all()


def test_jigsaw_draws_offsets_like_jigsaw_offsets():
  x = jnp.asarray(images((4, 32, 32, 3), seed=9))
  perms = pretext.jigsaw_permutations(3)
  index, key = jnp.array([0, 1, 2, 1]), jax.random.key(11)
  offsets = pretext.jigsaw_offsets(key, 4, margin=2)
  assert offsets.shape == (4, 9, 2) and offsets.dtype == jnp.int32
  assert set(np.unique(np.asarray(offsets))) == {0, 1, 2}  # uniform in {0..margin}: 72 draws hit every value
  out = jax.jit(lambda a, i, k: pretext.jigsaw(a, i, perms, k, margin=2))(x, index, key)
  np.testing.assert_array_equal(out, pretext.jigsaw_with(x, index, perms, offsets, margin=2))
  other = pretext.jigsaw(x, index, perms, jax.random.key(12), margin=2)
  assert not np.array_equal(out, other)


def test_jigsaw_all_puts_the_permutation_axis_first():
  x = images((2, 28, 28, 1), seed=10)
  perms = pretext.jigsaw_permutations(3)
  out = np.asarray(jax.jit(lambda a: pretext.jigsaw_all(a, perms))(jnp.asarray(x)))
  assert out.shape == (3, 2, 28, 28, 1)
  centred = np.full((2, 9, 2), 1)  # margin // 2 for the default margin 2
  for p in range(3):
    np.testing.assert_array_equal(out[p], np_jigsaw(x, perms[[p, p]], centred, 3, 2, 0.0))
  offsets = np.random.default_rng(3).integers(0, 3, (2, 9, 2))
  out = np.asarray(pretext.jigsaw_all(jnp.asarray(x), perms, jnp.asarray(offsets)))
  np.testing.assert_array_equal(out[2], np_jigsaw(x, perms[[2, 2]], offsets, 3, 2, 0.0))


def test_jigsaw_permutations_are_far_apart_and_seeded():
  for seed in range(4):
    perms = pretext.jigsaw_permutations(3, seed=seed)
    assert perms.shape == (3, 9) and perms.dtype == np.int32
    np.testing.assert_array_equal(perms[0], np.arange(9))
    assert all(sorted(row) == list(range(9)) for row in perms)
    dist = [(perms[i] != perms[j]).sum() for i in range(3) for j in range(i)]
    assert min(dist) >= 8, dist  # greedy max-min over 1000 candidates finds 9 here (all cells move)
  assert min((p != q).sum() for p, q in itertools.combinations(pretext.jigsaw_permutations(3), 2)) == 9
  np.testing.assert_array_equal(pretext.jigsaw_permutations(10, seed=3), pretext.jigsaw_permutations(10, seed=3))
  assert not np.array_equal(pretext.jigsaw_permutations(3, seed=0), pretext.jigsaw_permutations(3, seed=1))
  perms = pretext.jigsaw_permutations(30)
  assert len(np.unique(perms, axis=0)) == 30
  assert min((p != q).sum() for p, q in itertools.combinations(perms, 2)) >= 6
  small = pretext.jigsaw_permutations(24, grid=2)  # every permutation of 4 cells
  assert len(np.unique(small, axis=0)) == 24 and (small[0] == np.arange(4)).all()
  np.testing.assert_array_equal(pretext.jigsaw_permutations(1), np.arange(9)[None])
  with pytest.raises(ValueError, match="k=25"):
    pretext.jigsaw_permutations(25, grid=2)
  with pytest.raises(ValueError, match="k=0"):
    pretext.jigsaw_permutations(0)
  with pytest.raises(ValueError, match="k=362881"):
    pretext.jigsaw_permutations(362881)


def test_bad_arguments_raise_with_the_value():
  x = jnp.zeros((2, 32, 32, 3))
  with pytest.raises(ValueError, match="border='wrap'"):
    pretext.translate(x, np.zeros(2, int), np.zeros(2, int), border="wrap")
  with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
    pretext.hflip(jnp.zeros((32, 32, 3)), np.zeros(32, bool))
  with pytest.raises(ValueError, match="max_shift=4"):
    pretext.translate(x, np.array([0, 5]), np.zeros(2, int), max_shift=4)
  with pytest.raises(ValueError, match="max_shift=4"):
    pretext.translations_y_all(x, (0, 8, -8), max_shift=4)
  with pytest.raises(ValueError, match="dx must have shape"):
    pretext.translate(x, np.zeros(3, int), np.zeros(2, int))
  with pytest.raises(ValueError, match="margin=10"):
    pretext.jigsaw_with(x, np.zeros(2, int), pretext.jigsaw_permutations(3), np.zeros((2, 9, 2), int), margin=10)
  with pytest.raises(ValueError, match="permutations must have shape"):
    pretext.jigsaw_with(x, np.zeros(2, int), np.zeros((3, 4), int), np.zeros((2, 9, 2), int))
  with pytest.raises(ValueError, match="offsets must have shape"):
    pretext.jigsaw_all(x, pretext.jigsaw_permutations(3), np.zeros((2, 4, 2), int))
  with pytest.raises(ValueError, match="square"):
    pretext.geotrans(jnp.zeros((2, 32, 30, 3)), np.zeros(2, int))
