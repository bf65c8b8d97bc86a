"""Patch geometry (jaxad.data.patches) against NumPy and scipy.ndimage, and the patch reductions against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi

from jaxad import reductions, scores
from jaxad.data import patches


def test_grid_patches_match_numpy_slicing():
  x = np.random.default_rng(0).random((2, 128, 192, 3)).astype(np.float32)
  out = np.asarray(patches.grid_patches(jnp.asarray(x), 64))
  assert out.shape == (2, 6, 64, 64, 3)
  for p in range(6):
    r, c = divmod(p, 3)  # row by row
    np.testing.assert_array_equal(out[:, p], x[:, 64 * r:64 * (r + 1), 64 * c:64 * (c + 1)])


def test_grid_patches_refuses_sizes_that_do_not_divide():
  with pytest.raises(ValueError, match="divisible by size=64"):
    patches.grid_patches(jnp.zeros((1, 100, 128, 3)), 64)


def _scipy_rotate(image, angle, mode, cval=0.0):
  return np.stack([ndi.rotate(image[..., c], angle, reshape=False, order=1, mode=mode, cval=cval)
                   for c in range(image.shape[-1])], -1)


@pytest.mark.parametrize("angle", [0.0, 17.0, 45.0, -30.0, 90.0])
def test_whole_image_rotation_matches_scipy(angle):
  """Rotation about the image centre = scipy.ndimage.rotate (bilinear); 'reflect' is scipy's 'mirror'."""
  image = np.random.default_rng(1).random((24, 24, 3)).astype(np.float32)
  center = jnp.array([[[11.5, 11.5]]])
  out = patches.rotated_crops_with(jnp.asarray(image)[None], center, jnp.array([[angle]]), size=24)
  np.testing.assert_allclose(np.asarray(out[0]), _scipy_rotate(image, angle, "mirror"), atol=1e-5)
  out = patches.rotated_crops_with(jnp.asarray(image)[None], center, jnp.array([[angle]]), size=24, mode="constant",
                                   fill=-1.0)
  np.testing.assert_allclose(np.asarray(out[0]), _scipy_rotate(image, angle, "grid-constant", -1.0), atol=1e-5)


def test_rotation_is_counter_clockwise_as_torchvision():
  image = np.zeros((21, 21, 1), np.float32)
  image[10, 15] = 1.0  # right of the centre
  out = np.asarray(patches.rotated_crops_with(jnp.asarray(image)[None], jnp.array([[[10.0, 10.0]]]),
                                              jnp.array([[90.0]]), size=21))[0, ..., 0]
  assert np.argwhere(out > 0.5).tolist() == [[5, 10]]  # now above it


def test_unrotated_crop_at_integer_centre_is_a_slice():
  image = np.random.default_rng(2).random((1, 40, 50, 2)).astype(np.float32)
  out = patches.rotated_crops_with(jnp.asarray(image), jnp.array([[[20.5, 13.5]]]), jnp.zeros((1, 1)), size=8)
  np.testing.assert_allclose(np.asarray(out[0]), image[0, 17:25, 10:18], atol=1e-6)


def test_random_rotated_crops_shapes_range_and_determinism():
  images = jnp.asarray(np.random.default_rng(3).random((3, 64, 64, 3)), jnp.float32)
  key = jax.random.key(0)
  a = patches.rotated_crops(images, key, size=16, per_image=5, angle_range=(0.0, 45.0))
  b = patches.rotated_crops(images, key, size=16, per_image=5, angle_range=(0.0, 45.0))
  c = patches.rotated_crops(images, jax.random.key(1), size=16, per_image=5, angle_range=(0.0, 45.0))
  assert a.shape == (15, 16, 16, 3)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.allclose(np.asarray(a), np.asarray(c))
  # Bilinear samples of values in [0, 1] stay in [0, 1]; reflect mode never invents values.
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  with pytest.raises(ValueError, match="exceeds"):
    patches.rotated_crops(images, key, size=65)


def test_patch_reductions_match_numpy():
  s = np.random.default_rng(4).random((7, 64))
  labels = np.array([0, 1, 0, 1, 1, 0, 0])
  out, out_labels, _ = reductions.reduce("mean_patches", s, labels)
  np.testing.assert_allclose(out, s.mean(axis=1))
  np.testing.assert_array_equal(out_labels, labels)
  np.testing.assert_allclose(reductions.reduce("max_patches", s, labels)[0], s.max(axis=1))
  np.testing.assert_allclose(np.asarray(scores.patch_max(jnp.asarray(s))), s.max(axis=1), rtol=1e-6)
  with pytest.raises(ValueError, match="mean_patches"):
    reductions.reduce("mean_patches", s[:, 0], labels)


def test_euclidean_multi_layer_score_matches_numpy():
  """MOCCA's MVTec score: mean over layers of ||f_l - c_l|| - R_l, not squared."""
  rng = np.random.default_rng(5)
  feats = [rng.normal(size=(6, 4)), rng.normal(size=(6, 9))]
  centers = [rng.normal(size=4), rng.normal(size=9)]
  radii = np.array([0.3, 1.2])
  expected = np.mean([np.linalg.norm(f - c, axis=1) - r for f, c, r in zip(feats, centers, radii)], axis=0)
  got = scores.multi_layer([jnp.asarray(f, jnp.float32) for f in feats], [jnp.asarray(c, jnp.float32) for c in centers],
                           jnp.asarray(radii, jnp.float32), squared=False)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_frame_scores_normalised_per_video_match_numpy():
  """Eq. 8 after the per-frame mean: each video's frame scores min-max normalised, computed by a NumPy loop."""
  rng = np.random.default_rng(6)
  t, clips = 4, []
  for video, n_frames in ((3, 9), (8, 7)):
    for start in range(n_frames - t + 1):
      clips.append((video, np.arange(start, start + t)))
  video = np.array([v for v, _ in clips])
  frame = np.stack([f for _, f in clips])
  s = rng.random(frame.shape)
  labels = (frame >= 5).astype(int)
  out, out_labels, meta = reductions.reduce("mean_per_frame_normalized", s, labels, {"video": video, "frame": frame})
  expected = []
  for v in (3, 8):
    means = []
    for f in range(frame[video == v].max() + 1):
      hits = [s[i][list(frame[i]).index(f)] for i in np.flatnonzero(video == v) if f in frame[i]]
      means.append(np.mean(hits))
    means = np.array(means)
    expected += list((means - means.min()) / (means.max() - means.min()))
  np.testing.assert_allclose(out, expected, rtol=1e-12)
  np.testing.assert_array_equal(out_labels, (meta["frame"] >= 5).astype(int))
  assert out.min() == 0.0 and out.max() == 1.0
