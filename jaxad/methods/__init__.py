"""Method registry: name -> `MethodSpec` (`build(config, data_spec) -> Method` and the sources it needs).

A method is a list of phases plus its scorers (`jaxad.methods.base`); one file per paper builds them. Recipes (the
papers' hyperparameters, runlocal miniatures) live in `configs/`, not here.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import ml_collections

from jaxad.errors import ConfigError
from jaxad.methods import (deep_features, finetune, geotrans, hypersphere, mhrot, mocca_video, ssl_multitask,
                           supervised, transfer)
from jaxad.methods.base import Method


@dataclasses.dataclass(frozen=True)
class MethodSpec:
  """How to build a method, which named sources beyond 'normal' and 'test' its training reads, and whether it
  trains on class labels (data.protocol='classification') rather than on an anomaly-detection protocol."""
  build: Callable[..., Method]
  sources: Callable[[ml_collections.ConfigDict], set[str]] = lambda config: set()
  trains_on_classes: bool = False

  def __call__(self, config: ml_collections.ConfigDict, spec) -> Method:
    return self.build(config, spec)

  def source_names(self, config: ml_collections.ConfigDict) -> set[str]:
    return set(self.sources(config))


_HYPERSPHERE = MethodSpec(hypersphere.method)
_TRANSFER = MethodSpec(transfer.method, transfer.required_sources)

METHODS = {
    # Deep SVDD and MOCCA are one method with one or several layers; the configs set the papers' recipes.
    "dsvdd": _HYPERSPHERE,
    "mocca": _HYPERSPHERE,
    # MOCCA on video: one end-to-end phase (reconstruction + hyperspheres on LSTM features), per-frame scores.
    "mocca_video": MethodSpec(mocca_video.method),
    # Deecke et al. 2021 and its baselines: one ResNet26 fine-tuned from source weights; the configs pick the loss,
    # the regulariser and the trainable parameters (see jaxad.methods.transfer).
    "adib": _TRANSFER,
    "adra": _TRANSFER,
    "hsc": _TRANSFER,
    "sad": _TRANSFER,
    "dsvdd_resnet26": _TRANSFER,
    "ewc": _TRANSFER,
    "doc": _TRANSFER,
    # Deep SAD (Ruff et al. 2020): Deep SVDD with labelled anomalies ('anomaly' source), Jezequel et al.'s
    # semi-supervised reference.
    "deep_sad": MethodSpec(hypersphere.method, lambda config: {"anomaly"}),
    # Jezequel et al.: multi-task self-supervision (geometric + jigsaw heads), and the two self-supervised
    # baselines it compares with.
    "ssl_multitask": MethodSpec(ssl_multitask.method),
    "mhrot": MethodSpec(mhrot.method),
    "geotrans": MethodSpec(geotrans.method),
    # Andrews et al. 2016: a frozen (pretrained) network's unit-length features, linear one-class SVMs over nu.
    "deep_features": MethodSpec(deep_features.method),
    # Minhas & Zelek 2019: an ImageNet network fine-tuned as a 2-way classifier on labelled anomalies
    # (data.protocol='anomaly_vs_rest_sample').
    "finetune": MethodSpec(finetune.method),
    # Source models for the above: K-way classification (ImageNet 32/96, or the CIFAR-100 stand-in).
    "supervised": MethodSpec(supervised.method, trains_on_classes=True),
}


def get_method(name: str) -> MethodSpec:
  if name not in METHODS:
    raise ConfigError(f"Unknown method {name!r}; valid names: {sorted(METHODS)}.")
  return METHODS[name]
