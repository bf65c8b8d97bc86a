"""Method registry: name -> `stages(config, input_shape) -> list[Stage]` (see `jaxad.methods.base`)."""

from jaxad.errors import ConfigError
from jaxad.methods import hypersphere

METHODS = {
    # Deep SVDD and MOCCA are one method with one or several layers; the configs set the papers' recipes.
    "dsvdd": hypersphere.stages,
    "mocca": hypersphere.stages,
}


def get_method(name: str):
  if name not in METHODS:
    raise ConfigError(f"Unknown method {name!r}; valid names: {sorted(METHODS)}.")
  return METHODS[name]
