"""Supervised K-way classification of a ResNet26: how jaxad makes *source* weights theta_0 for ADIB / ADRA.

Deecke et al. (2021) start every CIFAR-10 model from a ResNet26 trained on ImageNet at 32x32 and every STL-10 model
from one trained at 96x96. Only the 32x32 weights were released (`third_party_weights/`); the paper gives no
pretraining recipe. This method trains such a source model: ResNet26 (TransferAD layout, K-way head) with softmax
cross-entropy on class labels (protocol 'classification', whose `Task.train_labels` reach the batches), SGD with
momentum (Nesterov per config), coupled weight decay, step decay at milestone epochs, and RandomCrop(pad 4, black
fill) + horizontal flip as in `jaxad.data.oe`. `model.input_size` > 0 resizes each batch on the device (bilinear)
before the network, e.g. ImageNet 64x64 -> 96x96, so the host keeps the smaller images.

Evaluation is top-1 / top-5 accuracy on the test split (`summary.json`: `test/top1`, `test/top5`). With
`export_source=True` the trainer writes the final `{'params', 'batch_stats'}` to `<workdir>/source` in the format of
`third_party_weights/convert_resnet26_torch.py`, so `source=<workdir>/source` starts ADIB / ADRA / HSC / SAD from it
(`transfer.load_source` drops the K-way head and initialises the AD head and adapters afresh).

Configs: `configs/pretrain_resnet26_cifar100.py` (a local stand-in source model on real CIFAR-100),
`configs/pretrain_resnet26_imagenet32.py` and `configs/pretrain_resnet26_imagenet96.py` (tfds `imagenet_resized`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxad.data import black_pixel, default_config as default_data_config, oe as oe_data
from jaxad.errors import ConfigError
from jaxad.methods.base import Stage
from jaxad.models import get_model


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy [B] of logits [B, K] against integer labels [B]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def stages(config: ml_collections.ConfigDict, input_shape: tuple[int, int, int]) -> list[Stage]:
  if config.data.protocol != "classification":
    raise ConfigError(f"Method 'supervised' trains on class labels: set data.protocol='classification', not "
                      f"{config.data.protocol!r}.")
  num_classes = int(config.model.num_classes)
  if num_classes < 2:
    raise ConfigError(f"model.num_classes must be >= 2 for classification, got {num_classes}.")
  model = get_model(config.model.name)(num_classes=num_classes)
  size = int(config.model.input_size)
  fill = black_pixel(config.data, input_shape[-1])  # crops pad with black, as RandomCrop before Normalize

  def batches(images, *, labels=None, **kwargs):
    if labels is None:
      raise ConfigError("Method 'supervised' needs class labels: set data.protocol='classification'.")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
      raise ConfigError(f"Class labels span [{labels.min()}, {labels.max()}], outside model.num_classes="
                        f"{num_classes}.")
    return oe_data.mixed_batches(images, oe_images=None, oe_per_batch=0, augment=config.augment, fill=fill,
                                 labels=labels, **kwargs)

  def resize(x):
    if not size or x.shape[1:3] == (size, size):
      return x
    return jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), method="bilinear")

  def init_variables(rng, images, previous):
    del previous
    return model.init(rng, resize(images), train=False)

  def loss_fn(params, state, batch, epoch):
    del epoch
    (logits, _), mutated = model.apply({"params": params, "batch_stats": state.batch_stats},
                                       resize(batch["image"]), train=True, mutable=["batch_stats"])
    labels = batch["label"]
    loss = cross_entropy(logits, labels).mean()
    top1 = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, (mutated["batch_stats"], None, {"train_top1": top1})

  def score(variables, extra, batch):  # not an anomaly score: the trainer computes top-k accuracy from the logits
    del extra
    logits, _ = model.apply(variables, resize(batch["image"]), train=False)
    return {"logits": logits}

  return [Stage("train", model, config.train, loss_fn, init_variables=init_variables, score=score,
                batches=batches)]


def base_config() -> ml_collections.ConfigDict:
  """Every key the method reads; the configs set the recipe (see configs/pretrain_resnet26_*.py)."""
  c = ml_collections.ConfigDict()
  c.method = "supervised"
  c.seed = 1
  c.data = default_data_config(protocol="classification", preprocess="standardize", minmax="computed")
  c.model = dict(name="resnet26_transferad", num_classes=100, input_size=0)
  c.augment = True
  c.train = dict(epochs=40, batch_size=256, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                 weight_decay=5e-4, milestones=(20, 30, 35), lr_decay=0.1, trainable=())
  c.eval = dict(batch_size=500)
  c.export_source = True
  c.log_every_steps = 50
  c.checkpoint_every_epochs = 1
  c.multihost = False
  return c


def runlocal(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The same run in miniature for tests: 4 steps of 16 images, 64 test images."""
  c.data.train_limit, c.data.test_limit = 64, 64
  c.train.update(epochs=1, batch_size=16, milestones=())
  c.eval.batch_size = 32
  c.log_every_steps = 1
  return c
