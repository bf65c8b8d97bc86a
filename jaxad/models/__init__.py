"""Model registry: name -> builder of the Linen module(s) a method needs; every module returns (output, features).

LeNet builders return an (autoencoder, encoder) pair for the pretrain-then-train methods; ResNet26 builders return
one classifier network; `wide_resnet` (any depth and width) returns one trunk with a dense head per named task.
"""

import functools

from jaxad.errors import ConfigError
from jaxad.models import lenet, resnet26, wide_resnet

MODELS = {
    "lenet_cifar10": lenet.lenet_cifar10,
    "lenet_mnist": lenet.lenet_mnist,
    "resnet26_transferad": functools.partial(resnet26.ResNet26, variant="transferad"),
    "resnet26_rebuffi": functools.partial(resnet26.ResNet26, variant="rebuffi"),
    "wide_resnet": wide_resnet.WideResNet,
}


def get_model(name: str):
  if name not in MODELS:
    raise ConfigError(f"Unknown model {name!r}; valid names: {sorted(MODELS)}.")
  return MODELS[name]


def count_params(params) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return sum(int(x.size) for x in jax.tree.leaves(params))
