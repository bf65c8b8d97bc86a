"""Transfer-based AD on ResNet26 (Deecke et al. 2021): ADIB, ADRA and the paper's baselines on the same network.

Every method here fine-tunes one ResNet26 (TransferAD layout) that starts from *source* weights theta_0 (the
ImageNet-32 net converted by `third_party_weights/convert_resnet26_torch.py`, or a random init for the paper's
"no transfer" ablation a_1), on batches of normal images (label 0) and, except Deep SVDD, outlier-exposure images
(label 1; CIFAR-100 train for CIFAR-10), mixed 64 + 64 by `jaxad.data.oe`. They differ only in the loss, the
regulariser and which parameters train (`objective.loss`, `objective.regularizer`, `train.trainable`):

| method  | loss (`objective.loss`)                          | regulariser                    | trains            | score       |
|---------|--------------------------------------------------|--------------------------------|-------------------|-------------|
| ADIB    | 'bce': BCE-with-logits, mean over the batch      | 'l2_sp': alpha ||theta-theta_0|| | all               | sigmoid     |
| ADRA    | 'bce' (net with 1x1 residual adapters)           | 'none'                         | adapter, bn, head | sigmoid     |
| HSC     | 'hsc': hypersphere classifier on 'pooled'        | 'none' (or 'l2_sp', ablation a_3) | all            | 1 - e^-d    |
| SAD     | 'sad': Deep SAD on 'pooled', OE semi-target -1   | 'none'                         | all               | ||z - c||^2 |
| DSVDD   | 'one_class': ||z - c||^2 on 'pooled', no OE      | 'none'                         | all               | ||z - c||^2 |

Facts from the reference code (spec section 1): L2-SP is the *unsquared* norm over the concatenated 3x3 conv kernels
only (stem + 24 block convs; no BN, head or adapters), alpha = 1e-2, `squared=True` gives Li et al.'s
(alpha / 2)||.||^2; theta_0 is a copy of the source weights kept in the train state's `extra` (never trained). ADRA
freezes every 3x3 kernel; adapters, BN affine parameters and the head train, BN statistics keep updating, no L2-SP.
The AD head is always freshly initialised and so are the adapters (they are not in the source net). The Deep
SVDD / SAD center c is the mean 'pooled' feature of the normal training images under the source net in eval mode
(with Deep SVDD's +-eps guard). Optimisation (all methods): SGD 0.1, momentum 0.9, coupled weight decay 1e-4,
100 epochs, lr x0.1 at epochs 60 and 80.

Not here yet: EWC (its Fisher needs the source task's head and source-domain images, neither of which is shipped)
and DOC (its descriptiveness loss needs a labelled reference set and a second head).

References:
  Deecke, Ruff, Vandermeulen, Bilen. Transfer-Based Semantic Anomaly Detection. ICML 2021.
  Ruff et al. Rethinking Assumptions in Deep Anomaly Detection (HSC). 2020. Deep SAD, ICLR 2020. Deep SVDD, ICML 2018.
"""

from __future__ import annotations

import functools
import os
import re

from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxad import losses, scores
from jaxad.data import black_pixel, default_config as default_data_config, make_oe, oe as oe_data
from jaxad.errors import ConfigError, DataError
from jaxad.methods.base import Stage
from jaxad.models import get_model

LOSSES = ("bce", "hsc", "sad", "one_class")
REGULARIZERS = ("none", "l2_sp")
_USES_OE = ("bce", "hsc", "sad")
_USES_CENTER = ("sad", "one_class")
# 3x3 conv kernels: 'stem/conv/kernel', 'layer2_0/conv1/kernel', ... (adapters are 'adapter*', BN 'bn*'/'end_bn').
CONV3X3 = re.compile(r"(^|/)conv\d*/kernel$")
ADRA_TRAINABLE = (("adapter|bn|head", True), (".*", False))
CONVERT_HINT = ("python third_party_weights/convert_resnet26_torch.py --input resnet26.pth --output {path} "
                "(add --adapters for ADRA; download resnet26.pth as third_party_weights/README.md says)")


def is_conv3x3(name: str) -> bool:
  """Whether a '/'-joined parameter name is a 3x3 conv kernel of ResNet26 (what L2-SP and ADRA's freezing touch)."""
  return CONV3X3.search(name) is not None


def stages(config: ml_collections.ConfigDict, input_shape: tuple[int, int, int]) -> list[Stage]:
  obj = config.objective
  if obj.loss not in LOSSES:
    raise ConfigError(f"objective.loss must be one of {LOSSES}, got {obj.loss!r}.")
  if obj.regularizer not in REGULARIZERS:
    raise ConfigError(f"objective.regularizer must be one of {REGULARIZERS}, got {obj.regularizer!r}.")
  uses_oe = obj.loss in _USES_OE
  per_batch = int(config.oe.per_batch) if uses_oe else 0
  if uses_oe and per_batch <= 0:
    raise ConfigError(f"objective.loss={obj.loss!r} trains against outlier exposure: set oe.per_batch > 0.")
  source = config.transfer.source
  if source != "random":
    check_source(source)
  model = get_model(config.model.name)(num_classes=1, adapters=config.model.adapters,
                                      adapter_init=config.model.adapter_init)
  oe_images = make_oe(config.oe, config.data) if uses_oe else None
  fill = black_pixel(config.data, input_shape[-1])  # crops pad with black, as RandomCrop before Normalize
  batches = functools.partial(oe_data.mixed_batches, oe_images=oe_images, oe_per_batch=per_batch,
                              augment=config.augment, fill=fill)
  l2_sp = obj.regularizer == "l2_sp"

  def init_variables(rng, images, previous):
    del previous
    variables = model.init(rng, images, train=False)
    if source != "random":
      variables = load_source(source, variables)
    return variables

  def init_extra(variables, predict, images):
    extra = {}
    if l2_sp:  # host copies: theta_0 must not share buffers with the (donated) params
      extra["theta0"] = jax.tree.map(np.array, variables["params"])
    if obj.loss in _USES_CENTER:
      feats = predict(lambda v, b: {"pooled": model.apply(v, b["image"], train=False)[1]["pooled"]}, variables,
                      images)
      extra["center"] = losses.hypersphere_center(jnp.asarray(feats["pooled"]), eps=obj.center_eps)
    return extra

  def loss_fn(params, state, batch, epoch):
    del epoch
    (logits, feats), mutated = model.apply({"params": params, "batch_stats": state.batch_stats}, batch["image"],
                                           train=True, mutable=["batch_stats"])
    labels = batch["label"]
    if obj.loss == "bce":
      per_example = losses.outlier_exposure_bce(logits, labels)
    elif obj.loss == "hsc":
      per_example = losses.hypersphere_classifier(feats["pooled"], labels)
    elif obj.loss == "sad":  # OE images are labelled anomalies: semi-target -1; normal images are unlabelled (0)
      per_example = losses.deep_sad(feats["pooled"], state.extra["center"], -labels, eta=obj.eta)
    else:
      per_example = losses.one_class(feats["pooled"], state.extra["center"])
    data_loss = per_example.mean()
    metrics = {"data_loss": data_loss}
    total = data_loss
    if l2_sp:
      reg = losses.l2_sp(params, state.extra["theta0"], squared=obj.squared, mask=is_conv3x3)
      metrics["l2_sp"] = reg
      total = total + obj.alpha * reg
    return total, (mutated["batch_stats"], None, metrics)

  def score(variables, extra, batch):
    logits, feats = model.apply(variables, batch["image"], train=False)
    if obj.loss == "bce":
      return {"oe_sigmoid": scores.oe_sigmoid(logits)}
    if obj.loss == "hsc":
      return {"hsc": scores.hsc(feats["pooled"])}
    return {"distance": scores.distance(feats["pooled"], extra["center"])}

  return [Stage("train", model, config.train, loss_fn, init_variables=init_variables, init_extra=init_extra,
                score=score, batches=batches)]


def check_source(path: str, error: type[Exception] = DataError) -> None:
  """Raises `error` naming `path` and the converter command when the source checkpoint directory is missing."""
  if not os.path.isdir(path):
    raise error(f"Source weights {path} do not exist. Make them with: "
                    f"{CONVERT_HINT.format(path=os.path.abspath(path))}; or set source=random (no transfer).")


def load_source(path: str, variables):
  """`variables` with every leaf taken from the source checkpoint at `path`, except the head and the adapters.

  The source may hold more (a 1000-way head, adapters): those are ignored. Missing or mis-shaped backbone leaves
  raise a DataError that lists them all.
  """
  check_source(path)
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  try:
    with ocp.StandardCheckpointer() as ckptr:
      restored = ckptr.restore(os.path.abspath(path))
  except Exception as e:  # orbax raises several kinds for a directory that is not a checkpoint
    raise DataError(f"Source weights {path} are not a readable Orbax checkpoint ({type(e).__name__}: {e}). Re-make "
                    f"them with: {CONVERT_HINT.format(path=os.path.abspath(path))}.") from e
  src = traverse_util.flatten_dict(jax.tree.map(np.asarray, dict(restored)), sep="/")
  flat = traverse_util.flatten_dict(jax.tree.map(np.asarray, dict(variables)), sep="/")
  out, missing, mis_shaped = {}, [], []
  for name, value in flat.items():
    parts = name.split("/")
    if parts[1] == "head" or parts[-2].startswith("adapter"):  # fresh: the AD head and the adapters
      out[name] = value
    elif name not in src:
      missing.append(name)
    elif src[name].shape != value.shape:
      mis_shaped.append(f"{name} {src[name].shape} (expected {value.shape})")
    else:
      out[name] = src[name].astype(value.dtype)
  if missing or mis_shaped:
    raise DataError(f"Source weights {path} do not fit {len(flat)}-leaf ResNet26 variables: "
                    + (f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)}); "
                       if missing else "")
                    + (f"mis-shaped {mis_shaped[:5]} ({len(mis_shaped)}); " if mis_shaped else "")
                    + f"re-make them with: {CONVERT_HINT.format(path=os.path.abspath(path))}.")
  return traverse_util.unflatten_dict(out, sep="/")


def save_source(path: str, variables) -> str:
  """Writes `{'params', 'batch_stats'}` as a source checkpoint that `load_source` reads (the converter's format).

  Used by `jaxad.train` for runs with `export_source=True` (e.g. configs/pretrain_resnet26_*.py); an existing
  directory is overwritten. Returns the absolute path.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  path = os.path.abspath(path)
  tree = {"params": jax.tree.map(np.asarray, variables["params"]),
          "batch_stats": jax.tree.map(np.asarray, variables["batch_stats"])}
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, tree, force=True)
    ckptr.wait_until_finished()
  return path


def base_config() -> ml_collections.ConfigDict:
  """Every key the transfer methods read, with ADIB's CIFAR-10 recipe (spec sections 1.3-1.5)."""
  c = ml_collections.ConfigDict()
  c.method = "adib"
  c.seed = 1
  c.data = default_data_config(preprocess="standardize", minmax="computed")
  c.oe = dict(name="cifar100", source="auto", data_dir="", split="train", limit=0, per_batch=64)
  c.model = dict(name="resnet26_transferad", adapters=False, adapter_init="he")
  c.transfer = dict(source="random")
  c.objective = dict(loss="bce", regularizer="l2_sp", alpha=1e-2, squared=False, eta=1.0, center_eps=0.1)
  c.augment = True
  c.train = dict(epochs=100, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False,
                 weight_decay=1e-4, milestones=(60, 80), lr_decay=0.1, trainable=())
  c.eval = dict(batch_size=500)
  c.log_every_steps = 25
  c.checkpoint_every_epochs = 1
  c.multihost = False
  return c


CONFIG_ARGS = dict(protocol="one_vs_rest", normal_class=0, seed=1, source="random", runlocal=False)


def cifar10_config(args: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
  """`base_config()` with a config file's common arguments applied (protocol, normal_class, seed, source, runlocal).

  With protocol=leave_one_out, `normal_class` names the held-out (anomalous) class.
  """
  c = base_config()
  c.method = method
  c.seed = args.seed
  c.data.protocol = args.protocol
  c.data.normal_class = args.normal_class
  c.transfer.source = args.source
  if args.source != "random":  # fail at flag parsing, before a workdir is made (stages() checks overrides again)
    check_source(args.source, ConfigError)  # a ConfigError: main.py reports OSErrors here as an unloadable file
  if args.runlocal:  # tiny but complete run on the real data, for tests: 4 steps of 8 normal + 8 OE
    c.data.train_limit, c.data.test_limit, c.oe.limit = 32, 64, 64
    c.train.update(epochs=1, batch_size=16, milestones=())
    c.oe.per_batch = 8
    c.eval.batch_size = 32
    c.log_every_steps = 1
  return c
