"""MOCCA on video (Massoli et al., sections III, IV-C, V-D): one end-to-end phase of reconstruction + hyperspheres.

For video the paper trains in a single step instead of MOCCA's two ("we empirically observe that a single-step
end-to-end training ... is more effective") and replaces the image selectors by LSTM cells over each chosen layer
(`jaxad.models.video_ae`). Phases:

* Fit('center'): the untrained network's per-frame LSTM features of the chosen layers, averaged over the normal
  training clips (eval mode; `objective.center_clips` > 0 averages a fixed random subset, the code averages one
  epoch of 10,000 random clips) with Deep SVDD's +-eps guard: one centre per layer.
* Train('train'): loss = mean over the batch of the clip's summed squared reconstruction error, plus the
  multi-layer hypersphere loss on every frame's features (`jaxad.losses.multi_layer_hypersphere`: hard = mean
  ||f - c||^2, soft = R^2 + mean(max(0, ||f - c||^2 - R^2)) / nu, radii set after `objective.warmup_epochs` from
  the batch's (1 - nu) distance quantile), summed over layers as the code does; the epoch with the lowest mean loss
  is kept (the code's best model).
* Scores: per clip frame [B, T], the mean over layers of ||f_l - c_l||^2 - R_l^2 (the squared form of the loss),
  and the frame's reconstruction error as a second scorer; both reduced by 'mean_per_frame_normalized': a frame's
  score is the mean over the clips that contain it, min-max normalised within its video (Eq. 8); AUROC over the
  frames of all test videos.

Per-frame features are the paper's reading ("frames ... captured by the LSTMs"); the released code keeps only
each clip's last LSTM step, which equals the last frame's feature here (`jaxad.models.video_ae`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxad import losses, scores
from jaxad.data.examples import Source
from jaxad.errors import ConfigError
from jaxad.methods.base import FitPhase, Method, Output, Scorer, TrainPhase, apply_train
from jaxad.methods.hypersphere import BOUNDARIES, KEEP
from jaxad.models import compute_kwargs, get_model


class _IndexedExamples:
  """A lazy view of a random-access source at fixed indices (clips are decoded only when a batch needs them)."""

  def __init__(self, examples, indices: np.ndarray):
    self.examples, self.indices = examples, np.asarray(indices)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i):
    return self.examples[int(self.indices[i])]

  def take(self, indices: np.ndarray) -> dict:
    return self.examples.take(self.indices[np.asarray(indices)])


def method(config: ml_collections.ConfigDict, spec) -> Method:
  """[Fit('center'), Train('train': reconstruction + hyperspheres)] and the two per-frame scorers."""
  obj = config.objective
  if obj.boundary not in BOUNDARIES:
    raise ConfigError(f"objective.boundary must be one of {BOUNDARIES}, got {obj.boundary!r}.")
  keep = config.get("keep", "min_loss")
  if keep not in KEEP:
    raise ConfigError(f"keep must be one of {KEEP} for mocca_video, got {keep!r}.")
  if len(spec.shape) != 4:
    raise ConfigError(f"mocca_video trains on clips [T, H, W, C]; the data gives examples of shape {spec.shape}: "
                      "set data.name='shanghaitech' or 'video'.")
  layers = tuple(obj.layers)
  try:
    model = get_model(config.model.name)(rep_dim=config.model.rep_dim, ae_variant=config.model.ae_variant,
                                         layers=layers, **config.model.get("kwargs", {}),
                                         **compute_kwargs(config.model))
  except ValueError as e:
    raise ConfigError(f"model {config.model.name!r}: {e}") from None
  lstm = {l: f"lstm_{l}" for l in layers}
  soft = obj.boundary == "soft"

  def init_variables(rng):
    variables = model.init(rng, jnp.zeros((1, *spec.shape)), train=False)
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}

  def frame_features(variables, batch):
    _, features = model.apply(variables, batch["image"], train=False)
    return {l: features[lstm[l]] for l in layers}  # [B, T, D] each

  def fit_centers(ctx) -> Output:
    variables = init_variables(ctx.rng)
    normal = ctx.sources["normal"]
    limit = int(obj.get("center_clips", 0))
    if 0 < limit < len(normal):
      keep_idx = np.sort(np.random.default_rng(config.seed).choice(len(normal), limit, replace=False))
      normal = Source(_IndexedExamples(normal.examples, keep_idx), normal.preprocess, normal.num_classes)
    feats = ctx.predict(frame_features, variables, normal)
    centers = {l: losses.hypersphere_center(jnp.asarray(feats[l]).reshape(-1, feats[l].shape[-1]),
                                            eps=obj.center_eps) for l in layers}
    return Output(variables, {"centers": centers})

  def init_train(rng, sample, previous) -> Output:
    del rng, sample
    fitted = previous["center"]
    return Output(fitted.variables, {"centers": fitted.extra["centers"],
                                     "radii": {l: jnp.zeros((), jnp.float32) for l in layers}})

  def loss(params, ctx, batch):
    x = batch["image"]
    (x_hat, features), batch_stats = apply_train(model, params, ctx, x)
    recon = losses.reconstruction(x, x_hat).mean()
    feats = [features[lstm[l]].reshape(-1, features[lstm[l]].shape[-1]) for l in layers]  # every frame's feature
    centers = [ctx.extra["centers"][l] for l in layers]
    radii = jnp.stack([ctx.extra["radii"][l] for l in layers]) if soft else None
    per_layer = losses.multi_layer_hypersphere(feats, centers, boundary=obj.boundary, radii=radii, nu=obj.nu)
    one_class = per_layer.mean(axis=1).sum()  # summed over layers, as the code's loss
    sq_dist = {l: jax.lax.stop_gradient(losses.one_class(f, c)) for l, f, c in zip(layers, feats, centers)}
    metrics = {"loss/reconstruction": recon, "loss/one_class": one_class,
               **{f"dist/{l}": d.mean() for l, d in sq_dist.items()}}
    if soft:
      metrics.update({f"radius/{l}": r for l, r in ctx.extra["radii"].items()})
    return recon + obj.one_class_weight * one_class, (batch_stats, sq_dist, metrics)

  def update_radii(extra, sq_dist, ctx):
    if not soft:
      return extra
    warm = ctx.epoch >= obj.warmup_epochs
    return {**extra, "radii": {l: jnp.where(warm, losses.radius_from_distances(d, nu=obj.nu), extra["radii"][l])
                               for l, d in sq_dist.items()}}

  def frame_scores(variables, extra, batch):
    x = batch["image"]
    x_hat, features = model.apply(variables, x, train=False)
    b, t = x.shape[:2]
    feats = [features[lstm[l]].reshape(b * t, -1) for l in layers]
    radii = jnp.stack([extra["radii"][l] for l in layers]) if soft else None
    hypersphere = scores.multi_layer(feats, [extra["centers"][l] for l in layers], radii, squared=True)
    return {"hypersphere": hypersphere.reshape(b, t),
            "reconstruction": jnp.square(x - x_hat).reshape(b, t, -1).sum(axis=-1)}

  return Method(
      phases=[FitPhase("center", fit_centers),
              TrainPhase("train", model, config.train, loss, mix={"normal": config.train.batch_size},
                         init=init_train, update_extra=update_radii, keep=keep)],
      scorers={name: Scorer(frame_scores, phase="train", reduction="mean_per_frame_normalized", key=name)
               for name in ("hypersphere", "reconstruction")})
