"""GeoTrans (Golan & El-Yaniv 2018): a 72-way transformation classifier and a Dirichlet normality score.

The 72 transforms are every (horizontal flip, x-shift, y-shift, rotation) of {no, yes} x {0, -8, +8} x {0, -8, +8} x
{0, 90, 180, 270 degrees}, in the published order, applied as flip -> Keras `apply_affine_transform` (reflect
border) -> rot90 (`jaxad.data.pretext.geotrans`). A WideResNet (WRN-10-4 on CIFAR and Fashion-MNIST in the authors'
code) with one 72-way softmax head learns which transform was applied. The authors train on the 72x expanded set
(every image under every transform, shuffled); jaxad draws one transform per image per step, uniformly, which has
the same expectation, so `train.epochs` counts passes over the original images (3 expanded epochs = 216).

Scores, both from one pass over the 72 copies of each image (higher = more anomalous):

* 'dirichlet' (the paper's): per transform t, a Dirichlet alpha_t is fitted by maximum likelihood to the softmax
  outputs of the normal training images under t (the Fit('dirichlet') phase, `jaxad.scores.fit_dirichlet`); the
  score is minus the mean over t of sum_k (alpha_t,k - 1) log p_t,k(x) (`jaxad.scores.dirichlet_normality`; the
  authors sum over t, which only rescales it).
* 'simplified' (the score the authors' code keeps commented out): minus the mean over t of p(t | T_t(x)).

References:
  Golan & El-Yaniv, "Deep Anomaly Detection Using Geometric Transformations", NeurIPS 2018
  (github.com/izikgo/AnomalyDetectionTransformations).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxad import losses, parallel, scores
from jaxad.data import fixed_subset, pretext
from jaxad.errors import ConfigError
from jaxad.methods.base import FitPhase, Method, Output, Scorer, TrainPhase, apply_train, default_init
from jaxad.methods.ssl_multitask import wide_resnet

NUM_TRANSFORMS = len(pretext.GEOTRANS_TRANSFORMS)


def method(config: ml_collections.ConfigDict, spec) -> Method:
  """[Train('train'): 72-way classifier, Fit('dirichlet')] and the scorers 'dirichlet' and 'simplified'."""
  if min(spec.shape[:2]) <= 8:
    raise ConfigError(f"GeoTrans shifts images by 8 px; {spec.shape[0]}x{spec.shape[1]} images are too small.")
  model = wide_resnet(config, {"transform": NUM_TRANSFORMS})

  def loss_fn(params, ctx, batch):
    images = batch["image"]
    idx = jax.random.randint(ctx.rng, images.shape[:1], 0, NUM_TRANSFORMS)
    x = pretext.geotrans(images, idx)
    (logits, _), batch_stats = apply_train(model, params, ctx, x, rngs={"dropout": jax.random.fold_in(ctx.rng, 1)})
    loss = losses.multi_task_cross_entropy({"transform": logits["transform"]}, {"transform": idx})
    return loss.mean(), (batch_stats, None, {"acc": jnp.mean(jnp.argmax(logits["transform"], -1) == idx)})

  def probs_all(variables, images):
    """Softmax over the 72 classes of each of the 72 copies: [B, 72, 72], one transform at a time."""
    def one(t):
      x = pretext.geotrans(images, jnp.full(images.shape[:1], t))
      return jax.nn.softmax(model.apply(variables, x, train=False)[0]["transform"], axis=-1)
    return jnp.swapaxes(jax.lax.map(one, jnp.arange(NUM_TRANSFORMS)), 0, 1)

  def fit_dirichlet(ctx) -> Output:
    trained = ctx.previous["train"]
    normal = ctx.sources["normal"]
    keep = fixed_subset(len(normal), int(config.objective.dirichlet_limit))
    normal = normal if keep is None else normal.subset(keep)
    parallel.log(f"geotrans: Dirichlet fit on the softmax outputs of {len(normal)} normal images x {NUM_TRANSFORMS} "
                 "transforms")
    probs = ctx.predict(lambda v, b: probs_all(v, b["image"]), trained.variables, normal)["out"]
    alpha = jax.jit(jax.vmap(scores.fit_dirichlet, in_axes=1))(jnp.asarray(probs))  # [72, 72]
    if not bool(jnp.all(jnp.isfinite(alpha))):
      raise FloatingPointError("geotrans: the Dirichlet fit diverged (non-finite alpha); the classifier's softmax "
                               "outputs are degenerate, e.g. from a diverged training phase.")
    return Output(trained.variables, {"alpha": alpha})

  def score_fn(variables, extra, batch):
    probs = probs_all(variables, batch["image"])
    true = jnp.arange(NUM_TRANSFORMS)
    return {"dirichlet": scores.dirichlet_normality(probs, extra["alpha"]),
            "simplified": scores.transform_likelihood({"t": probs}, {"t": true}) / NUM_TRANSFORMS}

  return Method(
      phases=[TrainPhase("train", model, config.train, loss_fn, mix={"normal": config.train.batch_size},
                         init=default_init(model)),  # no flip augmentation: the flip is one of the labels
              FitPhase("dirichlet", fit_dirichlet)],
      scorers={n: Scorer(score_fn, phase="dirichlet", key=n) for n in ("dirichlet", "simplified")})
