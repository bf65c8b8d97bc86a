"""Model registry: name -> builder of the Linen module(s) a method needs; every module returns (output, features).

LeNet and MOCCA-MVTec builders return an (autoencoder, encoder) pair for the pretrain-then-train methods; ResNet26
builders return one classifier network; `wide_resnet` (any depth and width) returns one trunk with a dense head per
named task; the ImageNet backbones (VGG-F/M, DenseNet-169, ResNet-152, Inception-V3/V4) and Andrews' Male-5045 face
CNN return (logits, features of their named layers) and load third-party weights (third_party_weights/, `backbones`).

Two accelerator options live in `config.model` and reach the builders through `compute_kwargs`: `dtype`
('float32' default, or 'bfloat16': bf16 convs, matmuls and activations on float32 parameters, float32 BatchNorm
statistics and float32 outputs for the losses) for the trainable families in `DTYPE_MODELS`, and `remat` (False
default; True recomputes each residual block's activations in the backward pass) for those in `REMAT_MODELS`.
"""

import functools

import jax.numpy as jnp

from jaxad.errors import ConfigError
from jaxad.models import (densenet, face_cnn, greyscale, inception, lenet, mocca_resnet, resnet26, resnet_imagenet,
                          vgg, video_ae, wide_resnet)

MODELS = {
    "lenet_cifar10": lenet.lenet_cifar10,
    "lenet_mnist": lenet.lenet_mnist,
    "mocca_mvtec": mocca_resnet.mocca_mvtec,
    "mocca_video": video_ae.mocca_video,
    "resnet26_transferad": functools.partial(resnet26.ResNet26, variant="transferad"),
    "resnet26_rebuffi": functools.partial(resnet26.ResNet26, variant="rebuffi"),
    "wide_resnet": wide_resnet.WideResNet,
    # ImageNet backbones of Andrews et al. (MatConvNet VGG-F/M), their auxiliary face classifier, and Minhas & Zelek's.
    "vgg_f": vgg.vgg_f,
    "vgg_m": vgg.vgg_m,
    "male5045": face_cnn.male5045,
    "greyscale": greyscale.Greyscale,  # Andrews et al.'s GS baseline: the image itself, no parameters
    "densenet169": densenet.densenet169,  # weights='torchvision' (default) or 'keras': the layouts of the two files
    "resnet152": resnet_imagenet.resnet152,  # idem
    "inception_v3": inception.inception_v3,  # variant='torchvision' (default) or 'keras'
    "inception_v4": inception.inception_v4,
}


# Compute dtypes by their config name; 'float32', the default, passes no dtype (the models' None: float32), and
# 'bfloat16' passes jnp.bfloat16.
DTYPES = ("float32", "bfloat16")
# The families whose builders take `dtype` / `remat` (the trainable ones; the ImageNet backbones take neither).
DTYPE_MODELS = ("lenet_cifar10", "lenet_mnist", "mocca_mvtec", "mocca_video", "resnet26_transferad",
                "resnet26_rebuffi", "wide_resnet")
REMAT_MODELS = ("resnet26_transferad", "resnet26_rebuffi", "wide_resnet")


def get_model(name: str):
  if name not in MODELS:
    raise ConfigError(f"Unknown model {name!r}; valid names: {sorted(MODELS)}.")
  return MODELS[name]


def compute_kwargs(model) -> dict:
  """The builder keyword arguments for `model.dtype` and `model.remat` (`model`: `config.model`, a mapping).

  Returns `{}` at the defaults (dtype 'float32', remat False, or the keys absent), so every model builds exactly
  as before; else `{'dtype': jnp.bfloat16}` and/or `{'remat': True}`, which only the families in `DTYPE_MODELS` /
  `REMAT_MODELS` accept.

  Raises:
    ConfigError: an unknown dtype, a non-bool remat, or a non-default value on a model that does not support it
      (naming the models that do). `jaxad.validate` calls this, so a run fails before any data is loaded.

  Example:
    >>> kwargs = compute_kwargs({"name": "resnet26_transferad", "dtype": "bfloat16", "remat": True})
    >>> kwargs["dtype"] is jnp.bfloat16, kwargs["remat"]
    (True, True)
    >>> compute_kwargs({"name": "vgg_f", "dtype": "float32"})
    {}
  """
  name, dtype, remat = model.get("name"), model.get("dtype", "float32"), model.get("remat", False)
  if not isinstance(dtype, str) or dtype not in DTYPES:
    raise ConfigError(f"model.dtype={dtype!r} is not valid: one of {list(DTYPES)} (the compute dtype; parameters "
                      "stay float32). Fix: set --config.model.dtype to one of them.")
  if not isinstance(remat, bool):
    raise ConfigError(f"model.remat={remat!r} is not valid: True or False (recompute residual blocks' activations "
                      "in the backward pass). Fix: set --config.model.remat to a bool.")
  kwargs = {}
  if dtype != "float32":
    if name not in DTYPE_MODELS:
      raise ConfigError(f"model.dtype={dtype!r} is not supported by model.name={name!r}: only the models "
                        f"{list(DTYPE_MODELS)} take a compute dtype. Fix: set --config.model.dtype='float32', or "
                        "use one of them.")
    kwargs["dtype"] = jnp.bfloat16
  if remat:
    if name not in REMAT_MODELS:
      raise ConfigError(f"model.remat=True is not supported by model.name={name!r}: only the residual networks "
                        f"{list(REMAT_MODELS)} rematerialise their blocks. Fix: set --config.model.remat=False, or "
                        "use one of them.")
    kwargs["remat"] = True
  return kwargs


def count_params(params) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return sum(int(x.size) for x in jax.tree.leaves(params))
