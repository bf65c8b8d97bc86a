"""Transfer-based AD on ResNet26 (Deecke et al. 2021): ADIB, ADRA and the paper's baselines on the same network.

Every method here fine-tunes one ResNet26 (TransferAD layout) that starts from *source* weights theta_0 (the
ImageNet-32 net converted by `third_party_weights/convert_resnet26_torch.py`, or a random init for the paper's
"no transfer" ablation a_1), on batches of normal images (label 0) and, except Deep SVDD, outlier-exposure images
(label 1; CIFAR-100 train for CIFAR-10), mixed 64 + 64 by `jaxad.data.oe`. They differ only in the loss, the
regulariser and which parameters train (`objective.loss`, `objective.regularizer`, `train.trainable`):

| method | loss (`objective.loss`; z = 'pooled')  | regulariser                        | trains            | score     |
|--------|----------------------------------------|------------------------------------|-------------------|-----------|
| ADIB   | 'bce': BCE-with-logits, batch mean     | 'l2_sp': alpha ||theta - theta_0|| | all               | sigmoid   |
| ADRA   | 'bce' (net with 1x1 residual adapters) | 'none'                             | adapter, bn, head | sigmoid   |
| HSC    | 'hsc': hypersphere classifier on z     | 'none' (or 'l2_sp': ablation a_3)  | all               | 1 - e^-d  |
| SAD    | 'sad': Deep SAD, OE semi-target -1     | 'none'                             | all               | ||z-c||^2 |
| DSVDD  | 'one_class': ||z - c||^2, no OE        | 'none'                             | all               | ||z-c||^2 |
| EWC    | 'bce'                                  | 'ewc': lambda/2 sum F dtheta^2     | all               | sigmoid   |
| DOC    | 'doc': CE on labelled reference images | 'none'                             | all + source head | ||z-c||^2 |
|        |   + lambda * compactness of normal z   |                                    |                   |           |

Facts from the reference code (spec section 1): L2-SP is the *unsquared* norm over the concatenated 3x3 conv kernels
only (stem + 24 block convs; no BN, head or adapters), alpha = 1e-2, `squared=True` gives Li et al.'s
(alpha / 2)||.||^2; theta_0 is a copy of the source weights kept in the train state's `extra` (never trained). ADRA
freezes every 3x3 kernel; adapters, BN affine parameters and the head train, BN statistics keep updating, no L2-SP.
The AD head is always freshly initialised and so are the adapters (they are not in the source net). The Deep
SVDD / SAD center c is the mean 'pooled' feature of the normal training images under the source net in eval mode
(with Deep SVDD's +-eps guard). Optimisation (all methods): SGD 0.1, momentum 0.9, coupled weight decay 1e-4,
100 epochs, lr x0.1 at epochs 60 and 80.

EWC and DOC need the *source task* as well as its weights: the source checkpoint's classifier head (convert with
`--keep_head`; a `pretrain_resnet26_*` run's `<workdir>/source` keeps it) and labelled images of the source domain,
`config.reference` (ImageNet-32 train for the paper's source; CIFAR-100 train for the local stand-in, standardised
as that model was trained). EWC (Kirkpatrick et al. 2017): the empirical diagonal Fisher of the source classifier's
log-likelihood, in eval mode, over `objective.fisher_samples` reference images (400), on every backbone parameter
(not the head; PANDA's reading), times the "Fisher multiplier" `objective.ewc_lambda` = 400 (Deecke et al. section
5). DOC (Perera & Patel 2019): one network with the source head kept; each batch is 64 normal + 64 labelled
reference images; loss = cross-entropy of the reference rows on their source classes (descriptiveness) +
`objective.doc_lambda` (0.1, DOC's value) x the compactness of the normal rows' 'pooled' features; after training,
the template c is the mean eval-mode 'pooled' feature of the normal training images and the score is ||z - c||^2
(jaxad's reading of DOC's template matching; the paper leaves the classifier open).

References:
  Deecke, Ruff, Vandermeulen, Bilen. Transfer-Based Semantic Anomaly Detection. ICML 2021.
  Ruff et al. Rethinking Assumptions in Deep Anomaly Detection (HSC). 2020. Deep SAD, ICLR 2020. Deep SVDD, ICML 2018.
  Kirkpatrick et al. Overcoming catastrophic forgetting in neural networks (EWC). PNAS 2017.
  Perera & Patel. Learning Deep Features for One-Class Classification (DOC). IEEE TIP 2019.
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
import optax

from jaxad import losses, scores
from jaxad.data import black_pixel, default_config as default_data_config, fixed_subset, make_oe, oe as oe_data
from jaxad.data import sources, transforms
from jaxad.errors import ConfigError, DataError
from jaxad.methods.base import Stage
from jaxad.models import get_model

LOSSES = ("bce", "hsc", "sad", "one_class", "doc")
REGULARIZERS = ("none", "l2_sp", "ewc")
_USES_OE = ("bce", "hsc", "sad", "doc")  # DOC's second set is the labelled reference set, not OE
_USES_CENTER = ("sad", "one_class")
# 3x3 conv kernels: 'stem/conv/kernel', 'layer2_0/conv1/kernel', ... (adapters are 'adapter*', BN 'bn*'/'end_bn').
CONV3X3 = re.compile(r"(^|/)conv\d*/kernel$")
ADRA_TRAINABLE = (("adapter|bn|head", True), (".*", False))
CONVERT_HINT = ("python third_party_weights/convert_resnet26_torch.py --input resnet26.pth --output {path} "
                "(add --adapters for ADRA; download resnet26.pth as third_party_weights/README.md says)")


def is_conv3x3(name: str) -> bool:
  """Whether a '/'-joined parameter name is a 3x3 conv kernel of ResNet26 (what L2-SP and ADRA's freezing touch)."""
  return CONV3X3.search(name) is not None


def is_backbone(name: str) -> bool:
  """Whether a '/'-joined parameter name belongs to the source network proper: not the head, not an adapter."""
  return re.search(r"(^|/)(head|adapter\d*)/", name) is None


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
  source_task = obj.loss == "doc" or obj.regularizer == "ewc"  # needs the source head and source-domain images
  src = read_source(source) if source != "random" else None  # read once, for the head size and every load below
  if src is None and source_task:
    raise ConfigError(f"{config.method}: objective.loss={obj.loss!r} / regularizer={obj.regularizer!r} start from a "
                      "source classifier: set transfer.source to source weights with their head (convert with "
                      "--keep_head, or a pretrain_resnet26_* run's <workdir>/source).")
  head = source_head_size(source, src) if source_task else 0
  model = get_model(config.model.name)(num_classes=head if obj.loss == "doc" else 1, adapters=config.model.adapters,
                                      adapter_init=config.model.adapter_init)
  oe_images, oe_labels, reference = None, None, None
  if source_task:
    limit = obj.fisher_samples if obj.loss != "doc" else config.reference.limit
    reference = load_reference(config.reference, config.data, input_shape, limit=limit, num_classes=head)
  if obj.loss == "doc":
    oe_images, oe_labels = reference
  elif uses_oe:
    oe_images = make_oe(config.oe, config.data)
  fill = black_pixel(config.data, input_shape[-1])  # crops pad with black, as RandomCrop before Normalize
  batches = functools.partial(oe_data.mixed_batches, oe_images=oe_images, oe_per_batch=per_batch,
                              augment=config.augment, fill=fill, oe_labels=oe_labels)
  l2_sp = obj.regularizer == "l2_sp"
  ewc = obj.regularizer == "ewc"

  def pooled_features(variables, predict, images):  # eval mode, over all `images`
    return predict(lambda v, b: {"z": model.apply(v, b["image"], train=False)[1]["pooled"]}, variables, images)["z"]

  def init_variables(rng, images, previous):
    del previous
    variables = model.init(rng, images, train=False)
    if source != "random":
      variables = load_source(source, variables, keep_head=obj.loss == "doc", src=src)
    return variables

  def init_extra(variables, predict, images):
    extra = {}
    if l2_sp or ewc:  # host copies: theta_0 must not share buffers with the (donated) params
      extra["theta0"] = jax.tree.map(np.array, variables["params"])
    if ewc:
      source_model = get_model(config.model.name)(num_classes=head)
      source_vars = load_source(source, source_model.init(jax.random.key(0), images[:1], train=False),
                                keep_head=True, src=src)
      fisher = traverse_util.flatten_dict(source_fisher(source_model, source_vars, *reference), sep="/")
      extra["fisher"] = traverse_util.unflatten_dict(
          {name: fisher[name] if is_backbone(name) and name in fisher else np.zeros_like(value)
           for name, value in traverse_util.flatten_dict(extra["theta0"], sep="/").items()}, sep="/")
    if obj.loss in _USES_CENTER:
      extra["center"] = losses.hypersphere_center(jnp.asarray(pooled_features(variables, predict, images)),
                                                  eps=obj.center_eps)
    return extra

  def loss_fn(params, state, batch, epoch):
    del epoch
    (logits, feats), mutated = model.apply({"params": params, "batch_stats": state.batch_stats}, batch["image"],
                                           train=True, mutable=["batch_stats"])
    labels = batch["label"]
    metrics = {}
    if obj.loss == "bce":
      data_loss = losses.outlier_exposure_bce(logits, labels).mean()
    elif obj.loss == "hsc":
      data_loss = losses.hypersphere_classifier(feats["pooled"], labels).mean()
    elif obj.loss == "sad":  # OE images are labelled anomalies: semi-target -1; normal images are unlabelled (0)
      data_loss = losses.deep_sad(feats["pooled"], state.extra["center"], -labels, eta=obj.eta).mean()
    elif obj.loss == "doc":  # reference rows: their source class; normal rows: compact features
      is_ref = labels == oe_data.OE
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(batch["oe_class"], 0))
      metrics["descriptiveness"] = jnp.sum(jnp.where(is_ref, ce, 0.0)) / jnp.maximum(jnp.sum(is_ref), 1)
      metrics["compactness"] = losses.doc_compactness(feats["pooled"], mask=~is_ref)
      data_loss = metrics["descriptiveness"] + obj.doc_lambda * metrics["compactness"]
    else:
      data_loss = losses.one_class(feats["pooled"], state.extra["center"]).mean()
    metrics["data_loss"] = data_loss
    total = data_loss
    if l2_sp:
      reg = losses.l2_sp(params, state.extra["theta0"], squared=obj.squared, mask=is_conv3x3)
      metrics["l2_sp"] = reg
      total = total + obj.alpha * reg
    if ewc:
      reg = losses.ewc(params, state.extra["theta0"], state.extra["fisher"], mask=is_backbone)
      metrics["ewc"] = reg
      total = total + obj.ewc_lambda * reg
    return total, (mutated["batch_stats"], None, metrics)

  def finalize_extra(variables, extra, predict, images):  # DOC's template: mean normal feature of the final net
    return {**extra, "center": np.mean(pooled_features(variables, predict, images), axis=0)}

  def score(variables, extra, batch):
    logits, feats = model.apply(variables, batch["image"], train=False)
    if obj.loss == "bce":
      return {"oe_sigmoid": scores.oe_sigmoid(logits)}
    if obj.loss == "hsc":
      return {"hsc": scores.hsc(feats["pooled"])}
    return {"distance": scores.distance(feats["pooled"], extra["center"])}

  return [Stage("train", model, config.train, loss_fn, init_variables=init_variables, init_extra=init_extra,
                finalize_extra=finalize_extra if obj.loss == "doc" else None, score=score, batches=batches)]


def check_source(path: str, error: type[Exception] = DataError) -> None:
  """Raises `error` naming `path` and the converter command when the source checkpoint directory is missing."""
  if not os.path.isdir(path):
    raise error(f"Source weights {path} do not exist. Make them with: "
                    f"{CONVERT_HINT.format(path=os.path.abspath(path))}; or set source=random (no transfer).")


def read_source(path: str) -> dict:
  """The source checkpoint at `path` as a flat {'/'-joined name: np.ndarray} dict ('params/...', 'batch_stats/...')."""
  check_source(path)
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  try:
    with ocp.StandardCheckpointer() as ckptr:
      restored = ckptr.restore(os.path.abspath(path))
  except Exception as e:  # orbax raises several kinds for a directory that is not a checkpoint
    raise DataError(f"Source weights {path} are not a readable Orbax checkpoint ({type(e).__name__}: {e}). Re-make "
                    f"them with: {CONVERT_HINT.format(path=os.path.abspath(path))}.") from e
  return traverse_util.flatten_dict(jax.tree.map(np.asarray, dict(restored)), sep="/")


def source_head_size(path: str, src: dict | None = None) -> int:
  """Number of classes of the source checkpoint's classifier head; a DataError if it was converted without one.

  `src` is the checkpoint as `read_source(path)` returns it, if already read.
  """
  kernel = (read_source(path) if src is None else src).get("params/head/kernel")
  if kernel is None or kernel.shape[-1] < 2:  # the converter's default writes a fresh 1-output AD head
    raise DataError(f"Source weights {path} have no classifier head, which EWC and DOC need (the source task). "
                    "Convert with: python third_party_weights/convert_resnet26_torch.py --input resnet26.pth "
                    f"--output {os.path.abspath(path)} --keep_head")
  return int(kernel.shape[-1])


def load_source(path: str, variables, *, keep_head: bool = False, src: dict | None = None):
  """`variables` with every leaf taken from the source checkpoint at `path`, except the head and the adapters.

  The source may hold more (a 1000-way head, adapters): those are ignored. With `keep_head`, the head comes from
  the source as well (EWC's Fisher and DOC's descriptiveness loss use the source task's classifier). Missing or
  mis-shaped leaves raise a DataError that lists them all. `src` is the checkpoint as `read_source(path)` returns
  it, if already read.
  """
  src = read_source(path) if src is None else src
  flat = traverse_util.flatten_dict(jax.tree.map(np.asarray, dict(variables)), sep="/")
  out, missing, mis_shaped = {}, [], []
  for name, value in flat.items():
    parts = name.split("/")
    if (parts[1] == "head" and not keep_head) or parts[-2].startswith("adapter"):  # fresh: AD head, adapters
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


def load_reference(reference: ml_collections.ConfigDict, data: ml_collections.ConfigDict,
                   input_shape: tuple[int, int, int], *, limit: int, num_classes: int):
  """Labelled source-domain images for EWC's Fisher and DOC's descriptiveness loss: `(images, labels)`.

  Images are preprocessed as the source model was trained: [0, 1], then the per-channel mean/std
  `STANDARDIZE_STATS[reference.standardize_stats or reference.name]`, resized to the normal images' size. `limit`
  > 0 keeps a fixed random subset (seed 0).

  Returns:
    float32 [N, H, W, C] images and int32 [N] labels in [0, num_classes).
  """
  x, y = sources.load_split(reference.name, reference.split, source=reference.source,
                            data_dir=reference.data_dir or data.data_dir or None)
  if y is None:
    raise ConfigError(f"reference {reference.name!r} split {reference.split!r} has no labels; EWC and DOC need the "
                      "source task's labels.")
  keep = fixed_subset(len(x), limit)
  if keep is not None:
    x, y = x[keep], y[keep]
  if len(y) and (y.min() < 0 or y.max() >= num_classes):
    raise ConfigError(f"reference labels span [{y.min()}, {y.max()}], but the source head has {num_classes} "
                      "classes: the reference set must be the source model's own task.")
  stats = reference.standardize_stats or reference.name
  if stats not in transforms.STANDARDIZE_STATS:
    raise ConfigError(f"reference.standardize_stats: no mean/std for {stats!r}; valid: "
                      f"{sorted(transforms.STANDARDIZE_STATS)}.")
  x = transforms.standardize(transforms.to_unit(x), *transforms.STANDARDIZE_STATS[stats])
  if x.shape[1:3] != tuple(input_shape[:2]):
    x = transforms.resize(x, input_shape[0])
  return x, y.astype(np.int32)


def source_fisher(model, variables, images: np.ndarray, labels: np.ndarray, *, chunk_size: int = 8):
  """Empirical diagonal Fisher of a classifier's log-likelihood: mean over examples of squared per-example gradients.

  F_j = 1/N sum_n (d log p(y_n | x_n) / d theta_j)^2, with `model.apply(variables, x, train=False)[0]` as logits
  (eval mode: BN uses its running statistics, so examples do not interact). Per-example gradients are taken
  `chunk_size` at a time (`jax.vmap(jax.grad(...))`), so memory is chunk_size x the parameter count.

  Args:
    model: a Linen module returning `(logits [B, K], features)`.
    variables: its {'params', 'batch_stats'}.
    images: [N, H, W, C] source-domain images.
    labels: [N] their class labels.
    chunk_size: examples per vmapped gradient batch.

  Returns:
    A pytree like `variables['params']` of float32 Fisher values (host arrays).
  """
  batch_stats = variables.get("batch_stats", {})

  def nll(params, x, y):
    logits, _ = model.apply({"params": params, "batch_stats": batch_stats}, x[None], train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y[None])[0]

  fisher_of_chunk = jax.jit(lambda p, x, y: losses.diagonal_fisher(jax.vmap(jax.grad(nll), (None, 0, 0))(p, x, y)))
  n = len(images)
  if not n:
    raise ConfigError("The Fisher needs at least one reference image (objective.fisher_samples > 0).")
  total = None
  for start in range(0, n, chunk_size):
    x, y = images[start:start + chunk_size], labels[start:start + chunk_size]
    part = jax.tree.map(lambda f, m=len(x): np.asarray(f, np.float64) * m, fisher_of_chunk(variables["params"], x, y))
    total = part if total is None else jax.tree.map(np.add, total, part)
  return jax.tree.map(lambda t: (t / n).astype(np.float32), total)


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
  c.objective = dict(loss="bce", regularizer="l2_sp", alpha=1e-2, squared=False, eta=1.0, center_eps=0.1,
                     ewc_lambda=400.0, fisher_samples=400, doc_lambda=0.1)
  # The source task's labelled images (EWC, DOC): ImageNet-32 for the paper's source net.
  c.reference = dict(name="imagenet32", split="train", source="auto", data_dir="", standardize_stats="", limit=0)
  c.augment = True
  c.train = dict(epochs=100, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False,
                 weight_decay=1e-4, milestones=(60, 80), lr_decay=0.1, trainable=())
  c.eval = dict(batch_size=500)
  c.log_every_steps = 25
  c.checkpoint_every_epochs = 1
  c.multihost = False
  return c


# What defines each method on top of `base_config()`, for configs that take the method as an argument
# (configs/adib_small_modes.py, configs/adib_mpi3d.py): config.method, objective, adapters, trainable rules.
RECIPES = {
    "adib": ("adib", dict(loss="bce", regularizer="l2_sp", alpha=1e-2), False, ()),
    "adra": ("adra", dict(loss="bce", regularizer="none"), True, ADRA_TRAINABLE),
    "hsc": ("hsc", dict(loss="hsc", regularizer="none"), False, ()),
    "sad": ("sad", dict(loss="sad", regularizer="none"), False, ()),
    "dsvdd_resnet26": ("dsvdd_resnet26", dict(loss="one_class", regularizer="none"), False, ()),
}


def set_method(c: ml_collections.ConfigDict, name: str, recipes: dict = RECIPES, where: str = "") -> None:
  """Applies `recipes[name]` to `c`; Deep SVDD trains on normal images only (oe.per_batch = 0)."""
  if name not in recipes:
    raise ConfigError(f"Unknown method {name!r}{' for ' + where if where else ''}; valid: {sorted(recipes)}.")
  c.method, objective, c.model.adapters, c.train.trainable = recipes[name]
  c.objective.update(**objective)
  if objective["loss"] not in _USES_OE:
    c.oe.per_batch = 0


def runlocal(c: ml_collections.ConfigDict, *, normal: int = 8, test: int = 64) -> ml_collections.ConfigDict:
  """The same run in miniature for the tests: 4 steps of `normal` normal (+ as many OE) images, `test` test images."""
  oe_per_batch = normal if c.oe.per_batch else 0
  c.data.train_limit, c.data.test_limit, c.oe.limit = 4 * normal, test, test
  c.train.update(epochs=1, batch_size=normal + oe_per_batch, milestones=())
  c.oe.per_batch = oe_per_batch
  c.eval.batch_size = test // 2
  c.log_every_steps = 1
  return c


# `reference=` of configs/ewc_cifar10.py and doc_cifar10.py: the source task's data, preprocessed as it was trained.
REFERENCES = {"imagenet32": dict(name="imagenet32", standardize_stats="imagenet32"),  # the paper's source net
              "cifar100": dict(name="cifar100", standardize_stats="cifar100_own")}  # pretrain_resnet26_cifar100.py


def set_reference(c: ml_collections.ConfigDict, reference: str) -> None:
  if reference not in REFERENCES:
    raise ConfigError(f"reference must be one of {sorted(REFERENCES)} (the source model's training set), got "
                      f"{reference!r}.")
  c.reference.update(REFERENCES[reference])


CONFIG_ARGS = dict(protocol="one_vs_rest", normal_class=0, seed=1, source="random", oe="cifar100", runlocal=False)
# `oe=` of the CIFAR-10 configs: CIFAR-100 train (the paper's default) or SVHN train (Table 6's alternative).
OE_SETS = ("cifar100", "svhn")


# STL-10 models start from ResNet26 trained on ImageNet at 96x96 (Deecke et al. section 5), which was not released:
# configs/pretrain_resnet26_imagenet96.py makes it, by default into this workdir (relative to the working directory).
STL10_SOURCE = "workdirs/pretrain_resnet26_imagenet96/source"
STL10_ARGS = dict(protocol="leave_one_out", normal_class=0, seed=1, source=STL10_SOURCE, data_dir="",
                  data_source="auto", runlocal=False)


def stl10_config(args: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
  """`base_config()` for STL-10 at 96x96 with its 'unlabelled' split as OE (Deecke et al. Table 3).

  Fails at once, before anything is loaded, when the STL-10 data or the source weights are missing, naming each
  missing file and the command that produces it.
  """
  c = base_config()
  c.method = method
  c.seed = args.seed
  c.data.update(name="stl10", protocol=args.protocol, normal_class=args.normal_class, data_dir=args.data_dir,
                source=args.data_source)
  c.oe.update(name="stl10", split="unlabelled", source=args.data_source)
  c.transfer.source = args.source
  problems = []
  if args.source != "random" and not os.path.isdir(args.source):
    problems.append(f"source weights {os.path.abspath(args.source)} do not exist; make them with: python -m "
                    "jaxad.main --config=configs/pretrain_resnet26_imagenet96.py --workdir="
                    f"{os.path.dirname(os.path.abspath(args.source))} (ImageNet on a GPU/TPU host, see launch/), or "
                    "pass source=random (no transfer)")
  if args.data_source != "tfds":  # data_source=tfds: tfds downloads STL-10 on first use (2.6 GB, needs internet)
    missing_data = sources.missing("stl10", source=args.data_source, data_dir=args.data_dir or None)
    if missing_data:
      problems.append(f"{missing_data} (or pass data_source=tfds to let tfds download it)")
  if problems:
    raise ConfigError(f"{method} on STL-10 cannot start: " + " | ".join(problems))
  return runlocal(c, normal=4, test=32) if args.runlocal else c  # 96x96: half the CIFAR miniature


def cifar10_config(args: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
  """`base_config()` with a config file's common arguments applied (protocol, normal_class, seed, source, oe,
  runlocal).

  With protocol=leave_one_out, `normal_class` names the held-out (anomalous) class; `oe` picks the OE set.
  """
  c = base_config()
  c.method = method
  c.seed = args.seed
  if args.oe not in OE_SETS:
    raise ConfigError(f"oe must be one of {OE_SETS}, got {args.oe!r}.")
  c.oe.name = args.oe
  c.data.protocol = args.protocol
  c.data.normal_class = args.normal_class
  c.transfer.source = args.source
  if args.source != "random":  # fail at flag parsing, before a workdir is made (stages() checks overrides again)
    check_source(args.source, ConfigError)  # a ConfigError: main.py reports OSErrors here as an unloadable file
  return runlocal(c) if args.runlocal else c
