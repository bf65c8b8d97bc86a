"""Minhas & Zelek (2019): an ImageNet network fine-tuned as a supervised 2-way (normal / anomaly) classifier.

Method = [Train('train')] plus one scorer. The network is any jaxad model through `jaxad.models.backbones`
(the paper: keras.applications DenseNet-169 and ResNet-152, and a Keras port of Inception-V4), with the converted
ImageNet weights `model.weights` names, its 1000-way head replaced by a fresh 2-way one (`model.kwargs.num_classes`
= 2 and `model.dont_load` holding '^params/head/'; the converted files carry no head anyway). The pipeline gives
[0, 1] images (`data.preprocess='unit'`); inside the jitted step they are replicated to RGB if grey, resized
bilinearly to `model.input_size` (224 for DenseNet / ResNet, 299 for Inception) and scaled as the weights expect
(`model.input_scaling`).

Training: softmax cross-entropy against the training images' anomaly labels (`batch['label']`, 1 = anomaly), which
only a supervised protocol gives (`data.protocol='anomaly_vs_rest_sample'`: the anomaly class plus an equal-size
random sample of the other classes). Which parameters train is `train.trainable` (regex rules over the parameter
names, `jaxad.optim`): the paper keeps "the earlier layers" frozen without saying which; each config names its
choice. Frozen layers' BatchNorm layers still normalise with the batch and update their running statistics in
training mode, as Keras 2's `trainable=False` did in 2019 (a frozen parameter is one the optimizer does not move).
Models with dropout (Inception) draw it from the step's key. The recipe (SGD lr 1e-3, Keras decay 1e-6 per step,
Nesterov momentum 0.9, batch 16, 50 epochs) lives in the configs.

`keep='best_val'` (the paper: "the best model is used for the results") keeps the epoch whose anomaly score has the
highest AUROC on the 'val' source (`data.val_fraction` of the labelled training images, both classes); `'last'`
keeps the last epoch.

Scorer 'p_anomaly' (kind 'score'): the softmax probability of the anomaly class [B], higher = more anomalous. (The
paper says it scored with "the prediction probabilities from the normal class neuron"; that ranks anomalies last, so
jaxad takes the anomaly neuron's, whose AUROC is the one the paper reports.) The anomaly evaluator with
`decision_threshold=0.5` adds the confusion matrix, precision, recall and F1 of the classifier's argmax decision.

References:
  Minhas, Zelek. Anomaly Detection in Images. arXiv:1905.13147 (2019).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxad.data import protocols
from jaxad.errors import ConfigError
from jaxad.methods.base import Method, Output, Scorer, TrainPhase, apply_train
from jaxad.models import backbones, compute_kwargs, get_model

HEAD = "^params/head/"
KEEP = ("best_val", "last")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy [B] of 2-way logits [B, 2] against 0/1 anomaly labels [B]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def anomaly_probability(logits: jax.Array) -> jax.Array:
  """[B, 2] logits -> [B] softmax probability of class 1 (the anomaly)."""
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)[:, 1]


def two_way_model_config(model: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config.model` with the 2-way head: `kwargs.num_classes` = 2 (an error if set otherwise) and '^params/head/' in
  `dont_load`, so a head in the weights file (converted with --keep_head) is never loaded into the new one."""
  out = ml_collections.ConfigDict(model.to_dict())
  kwargs = dict(out.get("kwargs", {}) or {})
  if kwargs.get("num_classes", 2) != 2:
    raise ConfigError(f"model.kwargs.num_classes={kwargs['num_classes']!r}: the finetune method replaces the head "
                      "with a 2-way (normal / anomaly) softmax; drop the key or set it to 2.")
  kwargs["num_classes"] = 2
  out.kwargs = kwargs
  dont_load = tuple(out.get("dont_load", ()) or ())
  out.dont_load = dont_load if HEAD in dont_load else dont_load + (HEAD,)
  return out


def method(config: ml_collections.ConfigDict, spec) -> Method:
  """[Train('train'): 2-way fine-tuning] and the 'p_anomaly' scorer.

  Builds no variables: the backbone's weights are read (and the network initialised) by the phase's `init`, so
  building a run of DenseNet-169 costs nothing until it trains.
  """
  data = config.data
  if data.protocol not in protocols.LABELLED_TRAINING:
    raise ConfigError(f"Method 'finetune' trains a 2-way classifier on labelled anomalies: set data.protocol to one "
                      f"of {protocols.LABELLED_TRAINING} (Minhas & Zelek's protocol), not {data.protocol!r}.")
  model_config = two_way_model_config(config.model)
  if model_config.name in backbones.VGG_NAMES and model_config.get("weights"):
    raise ConfigError(f"model.name={model_config.name!r} with converted MatConvNet weights is not supported by the "
                      "finetune method (their architecture comes from the file); use densenet169, resnet152 or "
                      "inception_v4.")
  scaling = model_config.get("input_scaling", "data")
  if scaling != "data" and data.preprocess != "unit":
    raise ConfigError(f"model.input_scaling={scaling!r} rescales images from [0, 1]: set data.preprocess='unit' "
                      f"(got {data.preprocess!r}).")
  keep = config.get("keep", "best_val")
  if keep not in KEEP:
    raise ConfigError(f"keep={keep!r} is not valid: 'best_val' (the epoch with the best AUROC on data.val_fraction "
                      "of the training images) or 'last'.")
  if keep == "best_val" and not data.get("val_fraction", 0.0) > 0:
    raise ConfigError("keep='best_val' needs a 'val' source: set data.val_fraction > 0 (e.g. 0.1), or keep='last'.")
  compute_kwargs(model_config)  # the ImageNet backbones take no model.dtype / model.remat: refuse them by name
  model = get_model(model_config.name)(**model_config.kwargs)
  prepare = backbones.make_prepare(scaling, int(model_config.get("input_size", 0) or 0))

  def init(rng, sample, previous):
    del sample, previous
    variables = backbones.load(model_config, spec.shape, rng).variables
    return Output({"params": variables["params"], "batch_stats": variables.get("batch_stats", {})})

  def loss_fn(params, ctx, batch):
    (logits, _), batch_stats = apply_train(model, params, ctx, prepare(batch["image"]), rngs={"dropout": ctx.rng})
    labels = batch["label"]
    loss = cross_entropy(logits, labels).mean()
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, (batch_stats, None, {"train_accuracy": accuracy})

  def p_anomaly(variables, extra, batch):
    del extra
    return anomaly_probability(model.apply(variables, prepare(batch["image"]), train=False)[0])

  phase = TrainPhase("train", model, config.train, loss_fn, mix={"normal": config.train.batch_size}, init=init,
                     keep=keep, val_scorer="p_anomaly" if keep == "best_val" else "",
                     drop_remainder=False)  # ceil(N / batch) steps an epoch, as many as Keras' fit
  return Method([phase], {"p_anomaly": Scorer(p_anomaly, phase="train")})
