"""What a method gives the trainer: a list of stages, each a model plus pure functions.

A method (one file per paper) turns its config into stages, e.g. Deep SVDD = [autoencoder pretraining, encoder
hypersphere training]. The trainer (`jaxad.train`) owns everything else: data, mesh, optimizer, jit, checkpoints,
logging and evaluation, so a new method is only its network, loss and score.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import ml_collections

Batch = Mapping[str, jax.Array]
# predict(fn, variables, images) -> {name: np.ndarray [N, ...]}: runs a jitted `fn(variables, batch)` over all
# `images` in eval batches on the mesh and returns host arrays. Stages use it to compute centers.
Predict = Callable[..., Mapping[str, Any]]


@dataclasses.dataclass(frozen=True)
class Stage:
  """One training stage.

  Attributes:
    name: checkpoints go to `<workdir>/checkpoints/<name>`, metrics are tagged with it.
    model: a Linen module called as `model.apply(variables, images, train=...)`.
    optim: the stage's optimizer config (epochs, batch_size, optimizer, lr, milestones, lr_decay, weight_decay).
    loss: `(params, state, batch, epoch) -> (loss, (new_batch_stats, aux, metrics))`: a pure function; `state`
      is the current `TrainState` (for batch_stats and `extra`), `aux` feeds `update_extra`, `metrics` is a dict
      of scalars to log.
    init_variables: `(rng, images, previous_state) -> variables`; default `model.init`. Weight transfer between
      stages lives here.
    init_extra: `(variables, predict, images) -> extra`: the method's own non-gradient state (centers, radii).
    update_extra: `(extra, aux, epoch) -> extra`, run inside the jitted step after the optimizer update.
    finalize_extra: `(variables, extra, predict, images) -> extra`, run once the stage is trained (also in
      `--mode=eval`), before scoring: for state fitted to the final network, e.g. DOC's template of normal features.
    score: `(variables, extra, batch) -> {scorer: [B] scores}`, higher = more anomalous, eval mode.
    batches: `(images, *, global_batch_size, seed, num_epochs) -> (grain.MapDataset, steps_per_epoch)` where
      `ds[step]` is a dict batch; default `jaxad.data.pipeline.train_batches` (shuffled normal images). Methods with
      outlier exposure mix their OE images in here.
  """
  name: str
  model: nn.Module
  optim: ml_collections.ConfigDict
  loss: Callable[..., Any]
  init_variables: Callable[..., Any] | None = None
  init_extra: Callable[..., Any] | None = None
  update_extra: Callable[..., Any] | None = None
  finalize_extra: Callable[..., Any] | None = None
  score: Callable[..., Any] | None = None
  batches: Callable[..., Any] | None = None
