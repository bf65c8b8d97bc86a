"""Deep SVDD (Ruff et al. 2018) and MOCCA (Massoli et al.): autoencoder pretraining, then hyperspheres.

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

Unlike the released MOCCA code, the encoder really starts from the pretrained autoencoder's encoder (the released
code's key-prefix mismatch silently skips the copy; reference_implementations.md section 4.4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxad import data, losses, scores
from jaxad.errors import ConfigError
from jaxad.methods.base import Stage
from jaxad.models import get_model

BOUNDARIES = ("hard", "soft")


def _selected(features, layers):
  """The chosen layers' features as vectors: [B, H, W, C] maps are global-average-pooled (MOCCA's CIFAR selector)."""
  out = {}
  for name in layers:
    f = features[name]
    out[name] = f.mean(axis=(1, 2)) if f.ndim == 4 else f
  return out


def stages(config: ml_collections.ConfigDict, input_shape: tuple[int, int, int]) -> list[Stage]:
  obj = config.objective
  if obj.boundary not in BOUNDARIES:
    raise ConfigError(f"objective.boundary must be one of {BOUNDARIES}, got {obj.boundary!r}.")
  if not 0.0 < obj.nu <= 1.0:
    raise ConfigError(f"objective.nu must be in (0, 1], got {obj.nu}.")
  ae, encoder = get_model(config.model.name)(rep_dim=config.model.rep_dim, ae_variant=config.model.ae_variant)
  layers = tuple(obj.layers)
  valid_layers = _feature_names(encoder, input_shape)
  unknown = [l for l in layers if l not in valid_layers]
  if not layers or unknown:
    raise ConfigError(f"objective.layers {list(layers)} must be a non-empty subset of {valid_layers}.")
  soft = obj.boundary == "soft"

  def pretrain_loss(params, state, batch, epoch):
    del epoch
    (x_hat, _), mutated = ae.apply({"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True,
                                   mutable=["batch_stats"])
    loss = losses.reconstruction(batch["image"], x_hat).mean()
    return loss, (mutated["batch_stats"], None, {})

  def pretrain_score(variables, extra, batch):
    del extra
    x_hat, _ = ae.apply(variables, batch["image"], train=False)
    return {"reconstruction": losses.reconstruction(batch["image"], x_hat)}

  def transfer_encoder(rng, images, previous):
    del rng, images
    # The autoencoder's encoder submodule has exactly the standalone encoder's variables; copy them all.
    return {"params": previous.params["encoder"], "batch_stats": previous.batch_stats["encoder"]}

  def init_centers(variables, predict, images):
    feats = predict(lambda v, b: _selected(encoder.apply(v, b["image"], train=False)[1], layers), variables, images)
    centers = {name: losses.hypersphere_center(jnp.asarray(feats[name]), eps=obj.center_eps) for name in layers}
    return {"centers": centers, "radii": {name: jnp.zeros((), jnp.float32) for name in layers}}

  def hypersphere_loss(params, state, batch, epoch):
    del epoch
    (_, features), mutated = encoder.apply({"params": params, "batch_stats": state.batch_stats}, batch["image"],
                                           train=True, mutable=["batch_stats"])
    feats = _selected(features, layers)
    centers, radii = state.extra["centers"], state.extra["radii"]
    per_layer = losses.multi_layer_hypersphere(
        [feats[l] for l in layers], [centers[l] for l in layers], boundary=obj.boundary,
        radii=jnp.stack([radii[l] for l in layers]) if soft else None, nu=obj.nu)  # [L, B]
    sq_dist = {l: jax.lax.stop_gradient(losses.one_class(feats[l], centers[l])) for l in layers}
    metrics = {f"dist/{l}": d.mean() for l, d in sq_dist.items()}
    if soft:
      metrics.update({f"radius/{l}": r for l, r in radii.items()})
    return per_layer.mean(), (mutated["batch_stats"], sq_dist, metrics)

  def update_radii(extra, sq_dist, epoch):
    if not soft:
      return extra
    warm = epoch >= obj.warmup_epochs
    radii = {l: jnp.where(warm, losses.radius_from_distances(d, nu=obj.nu), extra["radii"][l])
             for l, d in sq_dist.items()}
    return {**extra, "radii": radii}

  def hypersphere_score(variables, extra, batch):
    _, features = encoder.apply(variables, batch["image"], train=False)
    feats = _selected(features, layers)
    radii = jnp.stack([extra["radii"][l] for l in layers]) if soft else None
    return {"hypersphere": scores.multi_layer([feats[l] for l in layers], [extra["centers"][l] for l in layers],
                                              radii, squared=True)}

  return [
      Stage("pretrain", ae, config.pretrain, pretrain_loss, score=pretrain_score),
      Stage("train", encoder, config.train, hypersphere_loss, init_variables=transfer_encoder,
            init_extra=init_centers, update_extra=update_radii, score=hypersphere_score),
  ]


def _feature_names(encoder, input_shape) -> list[str]:
  out = jax.eval_shape(lambda: encoder.init_with_output(jax.random.key(0), jnp.zeros((1, *input_shape)),
                                                        train=False)[0])
  return list(out[1])


def base_config() -> ml_collections.ConfigDict:
  """Every key the hypersphere methods read, with Deep SVDD's CIFAR-10 recipe (section 3.1 of the spec)."""
  c = ml_collections.ConfigDict()
  c.method = "dsvdd"
  c.seed = 1
  c.data = data.default_config()
  c.model = dict(name="lenet_cifar10", rep_dim=128, ae_variant="dsvdd")
  adam = dict(optimizer="adam", momentum=0.0, nesterov=False, weight_decay=0.5e-6, lr_decay=0.1)
  c.pretrain = dict(epochs=350, batch_size=200, lr=1e-4, milestones=(250,), **adam)
  c.train = dict(epochs=150, batch_size=200, lr=1e-4, milestones=(50,), **adam)
  c.objective = dict(boundary="hard", nu=0.1, warmup_epochs=10, layers=("code",), center_eps=0.1)
  c.eval = dict(batch_size=500)
  c.log_every_steps = 25
  c.checkpoint_every_epochs = 1
  c.multihost = False
  return c
