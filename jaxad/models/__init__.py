"""Model registry. Each entry builds the modules a method needs; every module returns (output, features)."""

from jaxad.errors import ConfigError
from jaxad.models import lenet

MODELS = {
    "lenet_cifar10": lenet.lenet_cifar10,
    "lenet_mnist": lenet.lenet_mnist,
}


def get_model(name: str):
  if name not in MODELS:
    raise ConfigError(f"Unknown model {name!r}; valid names: {sorted(MODELS)}.")
  return MODELS[name]


def count_params(params) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return sum(int(x.size) for x in jax.tree.leaves(params))
