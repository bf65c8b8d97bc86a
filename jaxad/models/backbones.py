"""Frozen backbones: any jaxad model, with its weights and the input scaling its weights expect, as a feature map.

Methods that score a network's features (Andrews et al.'s deep features + one-class SVM) or fine-tune a pretrained
network (Minhas & Zelek) need three things from `config.model`, built here in one place:

* the module: `get_model(model.name)(**model.kwargs)`, except for converted MatConvNet VGG-F/M directories, whose
  architecture, LRN constants and mean image come from the directory (`jaxad.models.vgg.load_converted`);
* its variables: `model.weights` is '' (a fresh `model.init` with the run's seed: the floor a pretrained net must
  beat), a converted checkpoint directory (third_party_weights/), a jaxad run's `source` export
  (`configs/pretrain_*`, `method='supervised'`) or any phase output `<workdir>/checkpoints/<phase>/output`; merged
  into the fresh variables with `weights.merge_params` (leaves named by `model.dont_load` regexes keep their fresh
  values, e.g. a new head);
* `prepare(images)`: the pipeline's images -> the network's input, inside the jitted step. `model.input_scaling`:
  'data' leaves the pipeline's preprocessing as is (jaxad's own models, trained on it); the others expect the pipeline
  in [0, 1] (`data.preprocess='unit'`), scale to 0-255, replicate grey to RGB, resize bilinearly to
  `model.input_size` and then apply 'matconvnet' (minus the converted file's mean image; none for random weights),
  or an ImageNet mode of `jaxad.models.preprocess.imagenet_preprocess` ('torch', 'caffe', 'tf').
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxad.errors import ConfigError
from jaxad.models import get_model, preprocess as imagenet, vgg, weights

INPUT_SCALINGS = ("data", "matconvnet") + imagenet.MODES
VGG_NAMES = ("vgg_f", "vgg_m")


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A module, its variables (numpy) and the jittable map from pipeline images to its input."""
  model: nn.Module
  variables: Mapping[str, Any]
  prepare: Callable[[jax.Array], jax.Array]

  def apply(self, variables, images, **kwargs):
    """`model.apply` on prepared images in eval mode: (output, features)."""
    return self.model.apply(variables, self.prepare(images), train=False, **kwargs)


def _scale_0_255(images, size: int, mean=None):
  x = images.astype(jnp.float32) * 255.0
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if size and x.shape[1:3] != (size, size):
    x = jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), method="bilinear")
  return x if mean is None else x - mean


def make_prepare(scaling: str, size: int, mean: np.ndarray | None = None) -> Callable[[jax.Array], jax.Array]:
  """The pipeline -> network map of `model.input_scaling` (see the module docstring)."""
  if scaling not in INPUT_SCALINGS:
    raise ConfigError(f"model.input_scaling={scaling!r} is not valid: one of {INPUT_SCALINGS}.")
  if scaling == "data":
    return lambda images: images
  if scaling == "matconvnet":
    mean = None if mean is None else jnp.asarray(mean, jnp.float32)
    if mean is not None and mean.size != 3 and size and mean.shape[:2] != (size, size):
      mean = jax.image.resize(mean, (size, size, 3), method="bilinear")
    return functools.partial(_scale_0_255, size=size, mean=None if mean is None else mean.reshape(
        (1, 1, 3) if mean.size == 3 else mean.shape))
  return lambda images: imagenet.imagenet_preprocess(_scale_0_255(images, size), scaling)


def _read_weights(path: str) -> dict:
  """A weights directory as nested numpy dicts; a jaxad phase output's `variables`, a source export as is."""
  path = os.path.abspath(os.path.expanduser(path))
  tree = weights.load(path, what="Backbone weights", hint=(
      "model.weights must be a converted checkpoint (third_party_weights/README.md), a jaxad run's `source` export or "
      "a `<workdir>/checkpoints/<phase>/output` folder."))
  return tree["variables"] if "variables" in tree and "extra" in tree else tree


def load(model_config: ml_collections.ConfigDict, image_shape: tuple[int, ...], rng: jax.Array) -> Backbone:
  """The backbone `model_config` describes (`name`, `kwargs`, `weights`, `dont_load`, `input_scaling`, `input_size`).

  Args:
    model_config: `config.model`.
    image_shape: the pipeline's image shape [H, W, C] (the input size when `model.input_size` is 0).
    rng: key for the fresh initialisation (every leaf the weights do not give).

  Raises:
    ConfigError / DataError: unknown names, a weights folder that is missing or does not fit (every missing,
      unexpected and mis-shaped leaf listed).
  """
  name, path = model_config.name, model_config.get("weights", "") or ""
  scaling = model_config.get("input_scaling", "data")
  size = int(model_config.get("input_size", 0) or 0)
  kwargs = dict(model_config.get("kwargs", {}) or {})
  if name in VGG_NAMES and path:
    model, variables, preprocess_fn = vgg.load_converted(path)
    if model.arch != name:
      raise ConfigError(f"model.weights={path} holds {model.arch}, but model.name={name!r}; set model.name="
                        f"{model.arch!r}.")
    if scaling != "matconvnet":
      raise ConfigError(f"MatConvNet weights expect model.input_scaling='matconvnet' (0-255 minus the file's mean "
                        f"image), got {scaling!r}.")
    mean = preprocess_fn.keywords["average_image"]  # the file's mean image (or channel means), 0-255 RGB
    return Backbone(model, variables, make_prepare(scaling, size or vgg.IMAGE_SIZE[0], np.asarray(mean)))
  model = get_model(name)(**kwargs)
  prepare = make_prepare(scaling, size)
  channels = 3 if scaling != "data" else image_shape[-1]
  height = size or image_shape[0]
  sample = jnp.zeros((1, height, size or image_shape[1], channels), jnp.float32)
  fresh = jax.jit(functools.partial(model.init, train=False))(rng, sample)
  fresh = jax.tree.map(np.asarray, {k: dict(v) for k, v in fresh.items()})
  if not path:
    return Backbone(model, fresh, prepare)
  merged = weights.merge_params(_read_weights(path), fresh, dont_load=tuple(model_config.get("dont_load", ()) or ()),
                                strict=False, what=f"backbone weights {path}",
                                hint="Check model.name and model.kwargs against the weights, or list the leaves to "
                                     "initialise afresh in model.dont_load.")
  return Backbone(model, merged, prepare)
