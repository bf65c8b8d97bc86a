"""Transfer-based AD on ResNet26 (Deecke et al. 2021): ADIB, ADRA and the paper's baselines on the same network.

Every method here fine-tunes one ResNet26 (TransferAD layout) that starts from *source* weights theta_0 (the
ImageNet-32 net converted by `third_party_weights/convert_resnet26_torch.py`, or a random init for the paper's
"no transfer" ablation a_1), on batches of normal images (label 0) and, except Deep SVDD, outlier-exposure images
(label 1; CIFAR-100 train for CIFAR-10), 64 + 64 per step from the named sources 'normal' and 'oe'
(`jaxad.data.pipeline`), with RandomCrop(pad 4, black fill) + flip on the device. They differ only in the loss, the
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

Phases: Fit('source': the source weights and theta_0), then Fit('center') for SAD / Deep SVDD or Fit('fisher') for
EWC, Train('train'), and for DOC Fit('template') on the final network; one scorer on the last phase.

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
from jaxad.data import augment as augment_lib, black_pixel, fixed_subset
from jaxad.errors import ConfigError, DataError
from jaxad.methods.base import FitPhase, Method, Output, Scorer, TrainPhase, apply_train
from jaxad.models import compute_kwargs, get_model, weights

LOSSES = ("bce", "hsc", "sad", "one_class", "doc")
REGULARIZERS = ("none", "l2_sp", "ewc")
USES_OE = ("bce", "hsc", "sad")  # DOC's second set is the labelled reference set, not OE
_USES_CENTER = ("sad", "one_class")
# 3x3 conv kernels: 'stem/conv/kernel', 'layer2_0/conv1/kernel', ... (adapters are 'adapter*', BN 'bn*'/'end_bn').
CONV3X3 = re.compile(r"(^|/)conv\d*/kernel$")
ADRA_TRAINABLE = (("adapter|bn|head", True), (".*", False))
CONVERT_HINT = ("python third_party_weights/convert_resnet26_torch.py --input resnet26.pth --output {path} "
                "(add --adapters for ADRA; download resnet26.pth as third_party_weights/README.md says)")
# Never loaded from a source checkpoint: the AD head (a source's K-way head unless keep_head) and the adapters.
_FRESH_HEAD, _FRESH_ADAPTERS = r"^params/head/", r"(^|/)adapter\d*/"


def is_conv3x3(name: str) -> bool:
  """Whether a '/'-joined parameter name is a 3x3 conv kernel of ResNet26 (what L2-SP and ADRA's freezing touch)."""
  return CONV3X3.search(name) is not None


def is_backbone(name: str) -> bool:
  """Whether a '/'-joined parameter name belongs to the source network proper: not the head, not an adapter."""
  return re.search(r"(^|/)(head|adapter\d*)/", name) is None


def required_sources(config: ml_collections.ConfigDict) -> set[str]:
  """'oe' for the methods trained against outlier exposure; 'reference' for EWC and DOC (the source task)."""
  obj = config.objective
  out = set()
  if obj.loss in USES_OE and int(config.oe.per_batch) > 0:
    out.add("oe")
  if obj.loss == "doc" or obj.regularizer == "ewc":
    out.add("reference")
  return out


def method(config: ml_collections.ConfigDict, spec) -> Method:
  """[Fit('source'), (Fit('center') | Fit('fisher')), Train('train'), (Fit('template'): DOC)] and one scorer."""
  obj = config.objective
  if obj.loss not in LOSSES:
    raise ConfigError(f"objective.loss must be one of {LOSSES}, got {obj.loss!r}.")
  if obj.regularizer not in REGULARIZERS:
    raise ConfigError(f"objective.regularizer must be one of {REGULARIZERS}, got {obj.regularizer!r}.")
  second = "oe" if obj.loss in USES_OE else "reference" if obj.loss == "doc" else None
  per_batch = int(config.oe.per_batch) if second else 0
  if second and per_batch <= 0:
    raise ConfigError(f"objective.loss={obj.loss!r} trains against a second set ({second}): set oe.per_batch > 0.")
  if not 0 <= per_batch < config.train.batch_size:
    raise ConfigError(f"oe.per_batch={per_batch} must be in [0, train.batch_size={config.train.batch_size}).")
  source = config.transfer.source
  source_task = obj.loss == "doc" or obj.regularizer == "ewc"  # needs the source head and source-domain images
  if source == "random" and source_task:
    raise ConfigError(f"{config.method}: objective.loss={obj.loss!r} / regularizer={obj.regularizer!r} start from a "
                      "source classifier: set transfer.source to source weights with their head (convert with "
                      "--keep_head, or a pretrain_resnet26_* run's <workdir>/source).")
  if source != "random":
    check_source(source)
  keep_head = obj.loss == "doc"
  l2_sp, ewc = obj.regularizer == "l2_sp", obj.regularizer == "ewc"
  head = source_head_size(source) if source_task else 0
  model = get_model(config.model.name)(num_classes=head if keep_head else 1, adapters=config.model.adapters,
                                      adapter_init=config.model.adapter_init, **compute_kwargs(config.model))

  def pooled(v, b):
    return {"z": model.apply(v, b["image"], train=False)[1]["pooled"]}

  def fit_source(ctx) -> Output:
    variables = model.init(ctx.rng, jnp.zeros((1, *spec.shape), jnp.float32), train=False)
    if source != "random":
      variables = load_source(source, variables, keep_head=keep_head)
    variables = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
    # theta_0 for L2-SP / EWC: a copy that is never trained (the train state's params are donated).
    extra = {"theta0": jax.tree.map(np.array, variables["params"])} if l2_sp or ewc else {}
    return Output(variables, extra)

  def fit_center(ctx) -> Output:  # Deep SVDD / SAD: the mean pooled feature of the normal images, source net
    src = ctx.previous["source"]
    z = ctx.predict(pooled, src.variables, "normal")["z"]
    return Output(src.variables, {**src.extra, "center": losses.hypersphere_center(jnp.asarray(z),
                                                                                   eps=obj.center_eps)})

  def fit_fisher(ctx) -> Output:  # EWC: the source classifier's diagonal Fisher on labelled source-domain images
    src = ctx.previous["source"]
    reference = ctx.sources["reference"]
    keep = fixed_subset(len(reference), obj.fisher_samples)
    batch = reference.batch(np.arange(len(reference)) if keep is None else keep)
    source_model = get_model(config.model.name)(num_classes=head)
    source_vars = load_source(source, source_model.init(jax.random.key(0), batch["image"][:1], train=False),
                              keep_head=True)
    fisher = traverse_util.flatten_dict(source_fisher(source_model, source_vars, batch["image"], batch["class"]),
                                        sep="/")
    theta0 = traverse_util.flatten_dict(src.extra["theta0"], sep="/")
    extra_fisher = traverse_util.unflatten_dict(
        {name: np.asarray(fisher[name]) if is_backbone(name) and name in fisher else np.zeros_like(value)
         for name, value in theta0.items()}, sep="/")
    return Output(src.variables, {**src.extra, "fisher": extra_fisher})

  def init_train(rng, sample, previous) -> Output:
    del rng, sample
    return list(previous.values())[-1]

  def loss_fn(params, ctx, batch):
    (logits, feats), batch_stats = apply_train(model, params, ctx, batch["image"])
    labels = batch["label"]
    metrics = {}
    if obj.loss == "bce":
      data_loss = losses.outlier_exposure_bce(logits, labels).mean()
    elif obj.loss == "hsc":
      data_loss = losses.hypersphere_classifier(feats["pooled"], labels).mean()
    elif obj.loss == "sad":  # OE images are labelled anomalies: semi-target -1; normal images are unlabelled (0)
      data_loss = losses.deep_sad(feats["pooled"], ctx.extra["center"], -labels, eta=obj.eta).mean()
    elif obj.loss == "doc":  # reference rows: their source class; normal rows: compact features
      is_ref = labels == 1
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(batch["class"], 0))
      metrics["descriptiveness"] = jnp.sum(jnp.where(is_ref, ce, 0.0)) / jnp.maximum(jnp.sum(is_ref), 1)
      metrics["compactness"] = losses.doc_compactness(feats["pooled"], mask=~is_ref)
      data_loss = metrics["descriptiveness"] + obj.doc_lambda * metrics["compactness"]
    else:
      data_loss = losses.one_class(feats["pooled"], ctx.extra["center"]).mean()
    metrics["data_loss"] = data_loss
    total = data_loss
    if l2_sp:
      reg = losses.l2_sp(params, ctx.extra["theta0"], squared=obj.squared, mask=is_conv3x3)
      metrics["l2_sp"] = reg
      total = total + obj.alpha * reg
    if ewc:
      reg = losses.ewc(params, ctx.extra["theta0"], ctx.extra["fisher"], mask=is_backbone)
      metrics["ewc"] = reg
      total = total + obj.ewc_lambda * reg
    return total, (batch_stats, None, metrics)

  fill = black_pixel(config.data, spec.shape[-1])

  def crop_flip(batch, rng):  # RandomCrop(pad 4, black) + flip on normal and OE rows alike (TransferAD)
    return {**batch, "image": augment_lib.crop_flip(batch["image"], rng, fill=fill)}

  def fit_template(ctx) -> Output:  # DOC: the mean normal feature of the final network
    trained = ctx.previous["train"]
    z = ctx.predict(pooled, trained.variables, "normal")["z"]
    return Output(trained.variables, {**trained.extra, "center": np.mean(z, axis=0)})

  def score(variables, extra, batch):
    logits, feats = model.apply(variables, batch["image"], train=False)
    if obj.loss == "bce":
      return scores.oe_sigmoid(logits)
    if obj.loss == "hsc":
      return scores.hsc(feats["pooled"])
    return scores.distance(feats["pooled"], extra["center"])

  mix = {"normal": config.train.batch_size - per_batch, **({second: per_batch} if per_batch else {})}
  phases = [FitPhase("source", fit_source)]
  if obj.loss in _USES_CENTER:
    phases.append(FitPhase("center", fit_center))
  if ewc:
    phases.append(FitPhase("fisher", fit_fisher))
  phases.append(TrainPhase("train", model, config.train, loss_fn, mix=mix, init=init_train,
                           augment=crop_flip if config.augment else None, drop_remainder=False))
  if obj.loss == "doc":
    phases.append(FitPhase("template", fit_template))
  name = {"bce": "oe_sigmoid", "hsc": "hsc"}.get(obj.loss, "distance")
  return Method(phases, {name: Scorer(score, phase=phases[-1].name)})


def check_source(path: str, error: type[Exception] = DataError) -> None:
  """Raises `error` naming `path` and the converter command when the source checkpoint directory is missing."""
  if not os.path.isdir(path):
    raise error(f"Source weights {path} do not exist. Make them with: "
                f"{CONVERT_HINT.format(path=os.path.abspath(path))}; or set source=random (no transfer).")


def _hint(path: str) -> str:
  return f"re-make them with: {CONVERT_HINT.format(path=os.path.abspath(path))}"


def _read_source(path: str) -> dict:
  """The source checkpoint at `path`, read once while it is unchanged: building the method, the 'source' and the
  'fisher' phases all need it. Callers must not modify it."""
  check_source(path)
  return _read_source_version(os.path.abspath(path), os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _read_source_version(path: str, mtime_ns: int) -> dict:
  del mtime_ns  # part of the cache key: a rewritten checkpoint is read again
  return weights.load(path, hint=_hint(path), what="Source weights")


def source_head_size(path: str) -> int:
  """Number of classes of the source checkpoint's classifier head; a DataError if it was converted without one."""
  kernel = weights.flatten(_read_source(path)).get("params/head/kernel")
  if kernel is None or kernel.shape[-1] < 2:  # the converter's default writes a fresh 1-output AD head
    raise DataError(f"Source weights {path} have no classifier head, which EWC and DOC need (the source task). "
                    "Convert with: python third_party_weights/convert_resnet26_torch.py --input resnet26.pth "
                    f"--output {os.path.abspath(path)} --keep_head")
  return int(kernel.shape[-1])


def load_source(path: str, variables, *, keep_head: bool = False):
  """`variables` with every leaf taken from the source checkpoint at `path`, except the head and the adapters.

  The source may hold more (a 1000-way head, adapters): those are ignored. With `keep_head`, the head comes from
  the source as well (EWC's Fisher and DOC's descriptiveness loss use the source task's classifier). Missing,
  unexpected or mis-shaped leaves raise a DataError that lists them (`jaxad.models.weights.merge_params`).
  """
  dont_load = [_FRESH_ADAPTERS] + ([] if keep_head else [_FRESH_HEAD])
  return weights.merge_params(_read_source(path), variables, dont_load=dont_load,
                              what=f"Source weights {path}", hint=_hint(path))


def source_fisher(model, variables, images: np.ndarray, labels: np.ndarray, *, chunk_size: int = 8):
  """Empirical diagonal Fisher of a classifier's log-likelihood (`losses.empirical_fisher`), in eval mode.

  `model.apply(variables, x, train=False)[0]` are the logits; BN uses its running statistics, so examples do not
  interact. Returns a pytree like `variables['params']`.
  """
  batch_stats = variables.get("batch_stats", {})

  def nll(params, x, y):
    logits, _ = model.apply({"params": params, "batch_stats": batch_stats}, x[None], train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y[None])[0]

  if not len(images):
    raise ConfigError("The Fisher needs at least one reference image (objective.fisher_samples > 0).")
  return losses.empirical_fisher(nll, variables["params"], images, labels, chunk_size=chunk_size)


def save_source(path: str, variables) -> str:
  """Writes `{'params', 'batch_stats'}` as a source checkpoint that `load_source` reads (the converter's format)."""
  return weights.save(path, {"params": variables["params"], "batch_stats": variables["batch_stats"]}, force=True)
