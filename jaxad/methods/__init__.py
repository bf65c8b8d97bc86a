"""Method registry: name -> `stages(config, input_shape) -> list[Stage]` (see `jaxad.methods.base`)."""

from jaxad.errors import ConfigError
from jaxad.methods import hypersphere, supervised, transfer

METHODS = {
    # Deep SVDD and MOCCA are one method with one or several layers; the configs set the papers' recipes.
    "dsvdd": hypersphere.stages,
    "mocca": hypersphere.stages,
    # Deecke et al. 2021 and its baselines: one ResNet26 fine-tuned from source weights; the configs pick the loss,
    # the regulariser and the trainable parameters (see jaxad.methods.transfer).
    "adib": transfer.stages,
    "adra": transfer.stages,
    "hsc": transfer.stages,
    "sad": transfer.stages,
    "dsvdd_resnet26": transfer.stages,
    "ewc": transfer.stages,
    "doc": transfer.stages,
    # Source models for the above: K-way classification (ImageNet 32/96, or the CIFAR-100 stand-in).
    "supervised": supervised.stages,
}


def get_method(name: str):
  if name not in METHODS:
    raise ConfigError(f"Unknown method {name!r}; valid names: {sorted(METHODS)}.")
  return METHODS[name]
