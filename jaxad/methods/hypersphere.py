"""Deep SVDD (Ruff et al. 2018), MOCCA (Massoli et al.) and Deep SAD: autoencoder pretraining, then hyperspheres.

Both papers train the LeNet autoencoder on reconstruction, keep its encoder, fix one center per chosen layer (the
mean feature over the normal training set, in eval mode, with Deep SVDD's +-eps guard) and pull features toward it.
Deep SVDD uses only the code layer; MOCCA uses several layers (pre-BN conv outputs, global-average-pooled, plus the
code) and averages the per-layer objectives (MOCCA Eq. 4). With one layer the two are the same method, so they
share this file:

* boundary 'hard' (Deep SVDD "one-class"): mean ||f_l - c_l||^2.
* boundary 'soft' (Deep SVDD "soft-boundary"): R_l^2 + mean(max(0, ||f_l - c_l||^2 - R_l^2)) / nu, with R_l not
  learned by gradient but set after each step, once `warmup_epochs` are done, to the (1 - nu) quantile of the
  batch's distances ||f_l - c_l|| (as both reference codes do).
* score: mean over layers of ||f_l - c_l||^2 (hard) or ||f_l - c_l||^2 - R_l^2 (soft) (MOCCA Eq. 6).

Deep SAD (Ruff et al. 2020, method 'deep_sad') is the same network, pretraining and center, trained on the normal
images (unlabelled, semi-target 0) and a few labelled anomalies (the 'anomaly' source, semi-target -1) mixed into
every batch (`objective.anomaly_per_batch` of `train.batch_size` rows): ||z - c||^2 for the normal rows and
eta / (||z - c||^2 + 1e-6) for the anomalies (`jaxad.losses.deep_sad`); score ||z - c||^2.

Unlike the released MOCCA code, the encoder really starts from the pretrained autoencoder's encoder (the released
code's key-prefix mismatch silently skips the copy; reference_implementations.md section 4.4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxad import losses, scores
from jaxad.errors import ConfigError
from jaxad.methods.base import FitPhase, Method, Output, Scorer, TrainPhase, apply_train
from jaxad.models import get_model

BOUNDARIES = ("hard", "soft")


def _selected(features, layers):
  """The chosen layers' features as vectors: [B, H, W, C] maps are global-average-pooled (MOCCA's CIFAR selector)."""
  out = {}
  for name in layers:
    f = features[name]
    out[name] = f.mean(axis=(1, 2)) if f.ndim == 4 else f
  return out


def method(config: ml_collections.ConfigDict, spec) -> Method:
  """[Train('pretrain': autoencoder), Fit('center'), Train('train': encoder)] and the two scorers."""
  obj = config.objective
  if obj.boundary not in BOUNDARIES:
    raise ConfigError(f"objective.boundary must be one of {BOUNDARIES}, got {obj.boundary!r}.")
  if not 0.0 < obj.nu <= 1.0:
    raise ConfigError(f"objective.nu must be in (0, 1], got {obj.nu}.")
  ae, encoder = get_model(config.model.name)(rep_dim=config.model.rep_dim, ae_variant=config.model.ae_variant)
  layers = tuple(obj.layers)
  valid_layers = _feature_names(encoder, spec.shape)
  unknown = [l for l in layers if l not in valid_layers]
  if not layers or unknown:
    raise ConfigError(f"objective.layers {list(layers)} must be a non-empty subset of {valid_layers}.")
  soft = obj.boundary == "soft"
  semi_supervised = config.method == "deep_sad"
  if semi_supervised and (soft or layers != ("code",)):
    raise ConfigError("Method 'deep_sad' uses the hard boundary on the code layer: set objective.boundary='hard' and "
                      f"objective.layers=('code',), got {obj.boundary!r} and {list(layers)}.")
  mix = {"normal": config.train.batch_size}
  if semi_supervised:
    per_batch = int(obj.get("anomaly_per_batch", 0))
    if not 0 < per_batch < config.train.batch_size:
      raise ConfigError(f"objective.anomaly_per_batch must be in (0, train.batch_size={config.train.batch_size}) for "
                        f"Deep SAD (labelled anomalies per batch), got {per_batch}.")
    mix = {"normal": config.train.batch_size - per_batch, "anomaly": per_batch}

  def pretrain_loss(params, ctx, batch):
    (x_hat, _), batch_stats = apply_train(ae, params, ctx, batch["image"])
    return losses.reconstruction(batch["image"], x_hat).mean(), (batch_stats, None, {})

  def reconstruction_score(variables, extra, batch):
    del extra
    x_hat, _ = ae.apply(variables, batch["image"], train=False)
    return losses.reconstruction(batch["image"], x_hat)

  def fit_centers(ctx) -> Output:
    # The autoencoder's encoder submodule has exactly the standalone encoder's variables: take them all.
    pretrained = ctx.previous["pretrain"].variables
    variables = {"params": pretrained["params"]["encoder"], "batch_stats": pretrained["batch_stats"]["encoder"]}
    feats = ctx.predict(lambda v, b: _selected(encoder.apply(v, b["image"], train=False)[1], layers), variables,
                        "normal")
    centers = {name: losses.hypersphere_center(jnp.asarray(feats[name]), eps=obj.center_eps) for name in layers}
    return Output(variables, {"centers": centers})

  def init_encoder(rng, sample, previous) -> Output:
    del rng, sample
    fitted = previous["center"]
    radii = {name: jnp.zeros((), jnp.float32) for name in layers}
    return Output(fitted.variables, {"centers": fitted.extra["centers"], "radii": radii})

  def hypersphere_loss(params, ctx, batch):
    (_, features), batch_stats = apply_train(encoder, params, ctx, batch["image"])
    feats = _selected(features, layers)
    centers, radii = ctx.extra["centers"], ctx.extra["radii"]
    if semi_supervised:
      semi_targets = -batch["label"]  # normal rows 0 (unlabelled), labelled anomalies -1
      per_example = losses.deep_sad(feats["code"], centers["code"], semi_targets, eta=obj.eta)
      sq_dist = jax.lax.stop_gradient(losses.one_class(feats["code"], centers["code"]))
      metrics = {"dist/normal": jnp.sum(sq_dist * (semi_targets == 0)) / jnp.maximum(jnp.sum(semi_targets == 0), 1),
                 "dist/anomaly": jnp.sum(sq_dist * (semi_targets != 0)) / jnp.maximum(jnp.sum(semi_targets != 0), 1)}
      return per_example.mean(), (batch_stats, {"code": sq_dist}, metrics)
    per_layer = losses.multi_layer_hypersphere(
        [feats[l] for l in layers], [centers[l] for l in layers], boundary=obj.boundary,
        radii=jnp.stack([radii[l] for l in layers]) if soft else None, nu=obj.nu)  # [L, B]
    sq_dist = {l: jax.lax.stop_gradient(losses.one_class(feats[l], centers[l])) for l in layers}
    metrics = {f"dist/{l}": d.mean() for l, d in sq_dist.items()}
    if soft:
      metrics.update({f"radius/{l}": r for l, r in radii.items()})
    return per_layer.mean(), (batch_stats, sq_dist, metrics)

  def update_radii(extra, sq_dist, ctx):
    if not soft:
      return extra
    warm = ctx.epoch >= obj.warmup_epochs
    radii = {l: jnp.where(warm, losses.radius_from_distances(d, nu=obj.nu), extra["radii"][l])
             for l, d in sq_dist.items()}
    return {**extra, "radii": radii}

  def hypersphere_score(variables, extra, batch):
    _, features = encoder.apply(variables, batch["image"], train=False)
    feats = _selected(features, layers)
    radii = jnp.stack([extra["radii"][l] for l in layers]) if soft else None
    return scores.multi_layer([feats[l] for l in layers], [extra["centers"][l] for l in layers], radii,
                              squared=True)

  return Method(
      phases=[
          TrainPhase("pretrain", ae, config.pretrain, pretrain_loss, mix={"normal": config.pretrain.batch_size}),
          FitPhase("center", fit_centers),
          TrainPhase("train", encoder, config.train, hypersphere_loss, mix=mix, init=init_encoder,
                     update_extra=update_radii, drop_remainder=not semi_supervised),
      ],
      scorers={"reconstruction": Scorer(reconstruction_score, phase="pretrain"),
               "hypersphere": Scorer(hypersphere_score, phase="train")})


def _feature_names(encoder, input_shape) -> list[str]:
  out = jax.eval_shape(lambda: encoder.init_with_output(jax.random.key(0), jnp.zeros((1, *input_shape)),
                                                        train=False)[0])
  return list(out[1])
