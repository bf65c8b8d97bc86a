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

MOCCA on MVTec AD (section IV-B, Eq. 7) runs on the same phases with four switches, all in the config
(configs/mocca_mvtec.py): `patches.size` > 0 trains on `patches.per_image` random crops of that side per image and
scores each test image by its grid of non-overlapping patches (raw scores [B, P]), reduced by their maximum
(scorer 'hypersphere', the paper's Eq. 7) and, for comparison, their mean ('hypersphere_patch_mean');
`augment.rotation` rotates every training image or crop by a random angle in that range (degrees) on the device,
with reflected or black borders; `objective.distance='euclidean'` scores ||f_l - c_l|| - R_l instead of the
squared form (the MVTec code's score); `model.selector='mlp'` puts the paper's selector head (conv, pooling, BN, FC
to 128-d) on each chosen layer instead of global average pooling. `keep='min_loss'` keeps the hypersphere phase's
epoch with the lowest mean loss, as the MVTec code does.

Unlike the released MOCCA code, the encoder really starts from the pretrained autoencoder's encoder (the released
code's key-prefix mismatch silently skips the copy; reference_implementations.md section 4.4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxad import losses, scores
from jaxad.data import black_pixel, patches
from jaxad.errors import ConfigError
from jaxad.methods.base import FitPhase, Method, Output, Scorer, TrainPhase, apply_train
from jaxad.models import compute_kwargs, get_model

BOUNDARIES = ("hard", "soft")
DISTANCES = ("squared", "euclidean")  # the score's distance: CIFAR code ||f - c||^2 - R^2, MVTec code ||f - c|| - R
BORDERS = ("reflect", "black")  # how a rotation fills the corners it uncovers
KEEP = ("last", "min_loss")


def _selected(features, layers):
  """The chosen layers' features as vectors: [B, H, W, C] maps are global-average-pooled (MOCCA's CIFAR selector)."""
  out = {}
  for name in layers:
    f = features[name]
    out[name] = f.mean(axis=(1, 2)) if f.ndim == 4 else f
  return out


def _geometry(config: ml_collections.ConfigDict, spec) -> tuple[tuple[int, ...], int]:
  """(the networks' input shape, the patch side: 0 = whole images)."""
  size = int(config.get("patches", {}).get("size", 0))
  if not size:
    return tuple(spec.shape), 0
  h, w, c = spec.shape
  if size < 1 or h % size or w % size:
    raise ConfigError(f"patches.size={size} must divide the images' {h}x{w} (a grid of non-overlapping patches "
                      "scores each test image); set data.folder.size to a multiple of it.")
  return (size, size, c), size


def _augment(config: ml_collections.ConfigDict, spec, patch: int):
  """The device-side training transform: random crops of side `patch` and/or random rotations; None if neither."""
  aug = config.get("augment", {})
  low, high = (float(a) for a in aug.get("rotation", (0.0, 0.0)))
  border = aug.get("border", "reflect")
  if border not in BORDERS:
    raise ConfigError(f"augment.border must be one of {BORDERS}, got {border!r}.")
  per_image = int(config.get("patches", {}).get("per_image", 1))
  if not patch and low == high == 0.0:
    return None
  h, w, c = spec.shape
  if not patch and h != w:
    raise ConfigError(f"augment.rotation rotates square images only, got {h}x{w}: set data.folder.size square.")
  mode, fill = ("reflect", 0.0) if border == "reflect" else ("constant", black_pixel(config.data, c))

  def augment(batch, rng):
    image = patches.rotated_crops(batch["image"], rng, size=patch or h, per_image=per_image if patch else 1,
                                  angle_range=(low, high), random_center=bool(patch), mode=mode, fill=fill)
    return {**batch, "image": image}

  return augment


def method(config: ml_collections.ConfigDict, spec) -> Method:
  """[Train('pretrain': autoencoder), Fit('center'), Train('train': encoder)] and the two scorers."""
  obj = config.objective
  if obj.boundary not in BOUNDARIES:
    raise ConfigError(f"objective.boundary must be one of {BOUNDARIES}, got {obj.boundary!r}.")
  if not 0.0 < obj.nu <= 1.0:
    raise ConfigError(f"objective.nu must be in (0, 1], got {obj.nu}.")
  distance = obj.get("distance", "squared")
  if distance not in DISTANCES:
    raise ConfigError(f"objective.distance must be one of {DISTANCES}, got {distance!r}.")
  keep = config.get("keep", "last")
  if keep not in KEEP:
    raise ConfigError(f"keep must be one of {KEEP} for the hypersphere methods, got {keep!r}.")
  layers = tuple(obj.layers)
  input_shape, patch = _geometry(config, spec)
  augment = _augment(config, spec, patch)
  try:
    ae, encoder = get_model(config.model.name)(rep_dim=config.model.rep_dim, ae_variant=config.model.ae_variant,
                                               layers=layers, selector=config.model.get("selector", "pool"),
                                               **compute_kwargs(config.model))
  except ValueError as e:  # the builders check layer names, selectors and variants
    raise ConfigError(f"model {config.model.name!r}: {e}") from None
  valid_layers = _feature_names(ae, input_shape)
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

  def as_patches(batch):
    """Test images as their grid of patches [B * P, s, s, C] (whole images when patch = 0)."""
    x = batch["image"]
    return patches.grid_patches(x, patch).reshape(-1, *input_shape) if patch else x

  def per_image(s, batch):
    return s.reshape(batch["image"].shape[0], -1) if patch else s

  def init_ae(rng, sample, previous) -> Output:
    del sample, previous
    variables = ae.init(rng, jnp.zeros((1, *input_shape)), train=False)
    return Output({"params": variables["params"], "batch_stats": variables.get("batch_stats", {})})

  def pretrain_loss(params, ctx, batch):
    (x_hat, _), batch_stats = apply_train(ae, params, ctx, batch["image"])
    return losses.reconstruction(batch["image"], x_hat).mean(), (batch_stats, None, {})

  def reconstruction_score(variables, extra, batch):
    del extra
    x = as_patches(batch)
    x_hat, _ = ae.apply(variables, x, train=False)
    return per_image(losses.reconstruction(x, x_hat), batch)

  def fit_centers(ctx) -> Output:
    variables = _encoder_variables(encoder, ctx.previous["pretrain"].variables, input_shape, ctx.rng)
    # Centres over the training images as the network sees them: whole images, or every grid patch of them.
    def features(v, b):  # {layer: [B, P, D]}, P = 1 for whole images
      feats = _selected(encoder.apply(v, as_patches(b), train=False)[1], layers)
      return {l: f.reshape(b["image"].shape[0], -1, f.shape[-1]) for l, f in feats.items()}

    feats = {l: f.reshape(-1, f.shape[-1]) for l, f in ctx.predict(features, variables, "normal").items()}
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
    _, features = encoder.apply(variables, as_patches(batch), train=False)
    feats = _selected(features, layers)
    radii = jnp.stack([extra["radii"][l] for l in layers]) if soft else None
    return per_image(scores.multi_layer([feats[l] for l in layers], [extra["centers"][l] for l in layers], radii,
                                        squared=distance == "squared"), batch)

  if patch:  # Eq. 7's maximum over the patches, and their mean as the whole-image baseline it is compared with
    scorers = {"reconstruction": Scorer(reconstruction_score, phase="pretrain", reduction="max_patches"),
               "hypersphere": Scorer(hypersphere_score, phase="train", reduction="max_patches"),
               "hypersphere_patch_mean": Scorer(hypersphere_score, phase="train", reduction="mean_patches")}
  else:
    scorers = {"reconstruction": Scorer(reconstruction_score, phase="pretrain"),
               "hypersphere": Scorer(hypersphere_score, phase="train")}
  return Method(
      phases=[
          TrainPhase("pretrain", ae, config.pretrain, pretrain_loss, mix={"normal": config.pretrain.batch_size},
                     init=init_ae, augment=augment),
          FitPhase("center", fit_centers),
          TrainPhase("train", encoder, config.train, hypersphere_loss, mix=mix, init=init_encoder, augment=augment,
                     update_extra=update_radii, drop_remainder=not semi_supervised, keep=keep),
      ],
      scorers=scorers)


def _encoder_variables(encoder, pretrained, input_shape, rng):
  """The hypersphere network's initial variables: the pretrained autoencoder's encoder, plus fresh selector heads.

  An encoder whose variables nest the autoencoder's encoder under 'encoder' (one with selector heads beside it)
  gets that subtree and keeps its own initialisation for the rest; a plain encoder's variables are the
  autoencoder's `encoder` subtree exactly.
  """
  enc = {"params": pretrained["params"]["encoder"], "batch_stats": pretrained.get("batch_stats", {}).get("encoder", {})}
  fresh = encoder.init(rng, jnp.zeros((1, *input_shape)), train=False)
  if "encoder" not in fresh["params"]:
    return enc
  return {"params": {**fresh["params"], "encoder": enc["params"]},
          "batch_stats": {**fresh.get("batch_stats", {}), "encoder": enc["batch_stats"]}}


def _feature_names(ae, input_shape) -> list[str]:
  """The layers the autoencoder's encoder exposes (its features), which `objective.layers` chooses from."""
  out = jax.eval_shape(lambda: ae.init_with_output(jax.random.key(0), jnp.zeros((1, *input_shape)),
                                                   train=False)[0])
  return list(out[1])
