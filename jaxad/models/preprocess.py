"""The input scalings that ImageNet weights expect ('torch', 'caffe', 'tf'), as one pure jnp function.

Each pretrained backbone was trained on images scaled one way; feeding another scaling silently costs accuracy.
The modes are those of `keras.applications.imagenet_utils.preprocess_input` (see
../shared/spec/reference_implementations.md section 6 and third_party_weights/README.md for which weights
want which):

* 'torch': x / 255, then (x - mean) / std per RGB channel with ImageNet mean (0.485, 0.456, 0.406) and std
  (0.229, 0.224, 0.225): keras' DenseNet and every torchvision model.
* 'caffe': RGB -> BGR, then subtract the BGR ImageNet mean (103.939, 116.779, 123.68), no scaling: keras' ResNet50/
  101/152 (v1), VGG.
* 'tf': x / 127.5 - 1, i.e. [-1, 1]: keras' Inception-V3, Xception, MobileNet, and the Inception-V4 ports.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxad.errors import ConfigError

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
MODES = ('torch', 'caffe', 'tf')


def imagenet_preprocess(x_0_255: jax.typing.ArrayLike, mode: str) -> jax.Array:
  """Scales RGB images in [0, 255] the way ImageNet weights of a given origin expect.

  Args:
    x_0_255: RGB images [..., 3] (e.g. [B, H, W, 3]) with values in [0, 255] (uint8 or float).
    mode: 'torch' ((x / 255 - mean) / std), 'caffe' (BGR, minus the BGR mean) or 'tf' (x / 127.5 - 1).

  Returns:
    float32 images of the same shape; for 'caffe' the channels are in BGR order.

  Raises:
    ConfigError: unknown `mode`, or a last axis that is not 3 channels.

  >>> imagenet_preprocess(jnp.full((1, 3), 255.0), 'tf')
  Array([[1., 1., 1.]], dtype=float32)
  """
  if mode not in MODES:
    raise ConfigError(f'imagenet_preprocess: unknown mode={mode!r}; valid: {list(MODES)}.')
  x = jnp.asarray(x_0_255)
  if x.ndim < 1 or x.shape[-1] != 3:
    raise ConfigError(f'imagenet_preprocess expects RGB images [..., 3], got shape {x.shape}.')
  x = x.astype(jnp.float32)
  if mode == 'tf':
    return x / 127.5 - 1.0
  if mode == 'caffe':
    return x[..., ::-1] - jnp.asarray(CAFFE_MEAN_BGR, jnp.float32)
  return (x / 255.0 - jnp.asarray(IMAGENET_MEAN_RGB, jnp.float32)) / jnp.asarray(IMAGENET_STD_RGB, jnp.float32)
