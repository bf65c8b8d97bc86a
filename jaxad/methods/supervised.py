"""Supervised K-way classification of a ResNet26: how jaxad makes *source* weights theta_0 for ADIB / ADRA.

Deecke et al. (2021) start every CIFAR-10 model from a ResNet26 trained on ImageNet at 32x32 and every STL-10 model
from one trained at 96x96. Only the 32x32 weights were released (`third_party_weights/`); the paper gives no
pretraining recipe. This method trains such a source model: ResNet26 (TransferAD layout, K-way head) with softmax
cross-entropy on class labels (protocol 'classification': the 'normal' source holds every training image with its
`class`), SGD with momentum (Nesterov per config), coupled weight decay, step decay at milestone epochs, and
RandomCrop(pad 4, black fill) + horizontal flip on the device (`jaxad.data.augment`). `model.input_size` > 0 resizes each batch on the device (bilinear)
before the network, e.g. ImageNet 64x64 -> 96x96, so the host keeps the smaller images.

Evaluation is top-1 / top-5 accuracy on the test split (the 'classification' evaluator: `summary.json`
`test/top1`, `test/top5`). With `export_source=True` a final Fit('export') phase writes the final `{'params', 'batch_stats'}` to `<workdir>/source` in the format of
`third_party_weights/convert_resnet26_torch.py`, so `source=<workdir>/source` starts ADIB / ADRA / HSC / SAD from it
(`transfer.load_source` drops the K-way head and initialises the AD head and adapters afresh).

Configs: `configs/pretrain_resnet26_cifar100.py` (a local stand-in source model on real CIFAR-100),
`configs/pretrain_resnet26_imagenet32.py` and `configs/pretrain_resnet26_imagenet96.py` (tfds `imagenet_resized`).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxad import parallel
from jaxad.data import augment as augment_lib, black_pixel
from jaxad.errors import ConfigError
from jaxad.methods.base import FitPhase, Method, Output, Scorer, TrainPhase, apply_train
from jaxad.models import compute_kwargs, get_model


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy [B] of logits [B, K] against integer labels [B]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def method(config: ml_collections.ConfigDict, spec) -> Method:
  """[Train('train'): K-way classification, (Fit('export'): the source weights)] and a 'logits' scorer."""
  if config.data.protocol != "classification":
    raise ConfigError(f"Method 'supervised' trains on class labels: set data.protocol='classification', not "
                      f"{config.data.protocol!r}.")
  num_classes = int(config.model.num_classes)
  if num_classes < 2:
    raise ConfigError(f"model.num_classes must be >= 2 for classification, got {num_classes}.")
  if spec.num_classes > num_classes:
    raise ConfigError(f"Class labels span [0, {spec.num_classes - 1}], outside model.num_classes={num_classes}.")
  model = get_model(config.model.name)(num_classes=num_classes, **compute_kwargs(config.model))
  size = int(config.model.input_size)
  fill = black_pixel(config.data, spec.shape[-1])  # crops pad with black, as RandomCrop before Normalize

  def resize(x):
    if not size or x.shape[1:3] == (size, size):
      return x
    return jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), method="bilinear")

  def init(rng, sample, previous):
    del previous
    variables = model.init(rng, resize(sample["image"][:1]), train=False)
    return Output({"params": variables["params"], "batch_stats": variables.get("batch_stats", {})})

  def loss_fn(params, ctx, batch):
    (logits, _), batch_stats = apply_train(model, params, ctx, resize(batch["image"]))
    labels = batch["class"]
    loss = cross_entropy(logits, labels).mean()
    top1 = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, (batch_stats, None, {"train_top1": top1})

  def crop_flip(batch, rng):
    return {**batch, "image": augment_lib.crop_flip(batch["image"], rng, fill=fill)}

  def logits(variables, extra, batch):  # not an anomaly score: the classification evaluator reads top-k accuracy
    del extra
    return model.apply(variables, resize(batch["image"]), train=False)[0]

  def export(ctx) -> Output:  # the final weights as a `transfer.source` directory for ADIB / ADRA / ...
    from jaxad.methods import transfer  # pylint: disable=g-import-not-at-top
    trained = ctx.previous["train"]
    path = transfer.save_source(os.path.join(ctx.workdir, "source"), trained.variables)
    parallel.log(f"source weights for ADIB/ADRA/...: {path} (use source={path})")
    return trained

  phases = [TrainPhase("train", model, config.train, loss_fn, mix={"normal": config.train.batch_size}, init=init,
                       augment=crop_flip if config.augment else None, drop_remainder=False)]
  if config.export_source:
    phases.append(FitPhase("export", export))
  return Method(phases, {"logits": Scorer(logits, phase="train", kind="logits")})
