"""Recipes shared by the config files: each method family's base config, its argument sets and runlocal miniatures.

Config files import this module with `common = import_sibling(__file__, "common")` (they are loaded by path, so
`configs/` need not be on sys.path). Method code (`jaxad/methods/`) holds no recipes: every hyperparameter a run
uses is set here or in the config file itself, and lands in the workdir's config.json.
"""

from __future__ import annotations

import os

import ml_collections

from jaxad.data import default_config as default_data_config, sources
from jaxad.errors import ConfigError
from jaxad.methods import transfer


def optim(*, epochs: int, batch_size: int, optimizer: str, lr: float, weight_decay: float = 0.0,
          optimizer_kwargs: dict | None = None, schedule: str = "constant", schedule_kwargs: dict | None = None,
          trainable=()) -> dict:
  """A training phase's config: the keys of `jaxad.optim.make_optimizer` plus `epochs` and `batch_size`."""
  return dict(epochs=epochs, batch_size=batch_size, optimizer=optimizer, optimizer_kwargs=optimizer_kwargs or {},
              lr=lr, weight_decay=weight_decay, schedule=schedule, schedule_kwargs=schedule_kwargs or {},
              trainable=trainable)


def step_decay(*milestones: int, decay: float = 0.1) -> dict:
  """`schedule='step'` with these milestone epochs (PyTorch's MultiStepLR)."""
  return dict(schedule="step", schedule_kwargs=dict(milestones=tuple(milestones), decay=decay))


def _run_keys(c: ml_collections.ConfigDict, *, log_every_steps: int) -> None:
  c.seed = 1
  c.eval = dict(batch_size=500)
  c.evals = dict(test=dict(kind="anomaly", source="test"))
  c.threshold = dict(quantile=0.95, limit=1000)
  c.log_every_steps = log_every_steps
  c.checkpoint_every_epochs = 1
  c.multihost = False


# --------------------------------------------------------------------------------------------------------------------
# Deep SVDD and MOCCA (jaxad.methods.hypersphere).


def hypersphere() -> ml_collections.ConfigDict:
  """Every key the hypersphere methods read, with Deep SVDD's CIFAR-10 recipe (spec section 3.1)."""
  c = ml_collections.ConfigDict()
  c.method = "dsvdd"
  c.data = default_data_config()
  c.model = dict(name="lenet_cifar10", rep_dim=128, ae_variant="dsvdd")
  c.pretrain = optim(epochs=350, batch_size=200, optimizer="adam", lr=1e-4, weight_decay=0.5e-6, **step_decay(250))
  c.train = optim(epochs=150, batch_size=200, optimizer="adam", lr=1e-4, weight_decay=0.5e-6, **step_decay(50))
  c.objective = dict(boundary="hard", nu=0.1, warmup_epochs=10, layers=("code",), center_eps=0.1,
                     eta=1.0, anomaly_per_batch=0)  # the last two: Deep SAD only
  _run_keys(c, log_every_steps=25)
  return c


def hypersphere_runlocal(c: ml_collections.ConfigDict, *, train_limit: int) -> ml_collections.ConfigDict:
  """A tiny but complete run on the real data, for the tests: 2 + 2 epochs, lr decay after the first."""
  c.data.train_limit, c.data.test_limit = train_limit, 1000
  c.pretrain.epochs, c.train.epochs, c.objective.warmup_epochs = 2, 2, 1
  c.pretrain.schedule_kwargs.milestones = c.train.schedule_kwargs.milestones = (1,)
  c.log_every_steps = 2
  return c


# --------------------------------------------------------------------------------------------------------------------
# Deecke et al. 2021 and its baselines on ResNet26 (jaxad.methods.transfer).


def transfer_base() -> ml_collections.ConfigDict:
  """Every key the transfer methods read, with ADIB's CIFAR-10 recipe (spec sections 1.3-1.5)."""
  c = ml_collections.ConfigDict()
  c.method = "adib"
  c.data = default_data_config(preprocess="standardize", minmax="computed")
  c.oe = dict(name="cifar100", source="auto", data_dir="", split="train", limit=0, per_batch=64)
  c.model = dict(name="resnet26_transferad", adapters=False, adapter_init="he")
  c.transfer = dict(source="random")
  c.objective = dict(loss="bce", regularizer="l2_sp", alpha=1e-2, squared=False, eta=1.0, center_eps=0.1,
                     ewc_lambda=400.0, fisher_samples=400, doc_lambda=0.1)
  # The source task's labelled images (EWC, DOC): ImageNet-32 for the paper's source net.
  c.reference = dict(name="imagenet32", split="train", source="auto", data_dir="", standardize_stats="", limit=0)
  c.augment = True
  c.train = optim(epochs=100, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=1e-4,
                  optimizer_kwargs=dict(momentum=0.9, nesterov=False), **step_decay(60, 80))
  _run_keys(c, log_every_steps=25)
  return c


# What defines each method on top of `transfer_base()`, for configs that take the method as an argument
# (configs/adib_small_modes.py, configs/adib_mpi3d.py): config.method, objective, adapters, trainable rules.
RECIPES = {
    "adib": ("adib", dict(loss="bce", regularizer="l2_sp", alpha=1e-2), False, ()),
    "adra": ("adra", dict(loss="bce", regularizer="none"), True, transfer.ADRA_TRAINABLE),
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
  if objective["loss"] not in transfer.USES_OE:
    c.oe.per_batch = 0


def transfer_runlocal(c: ml_collections.ConfigDict, *, normal: int = 8, test: int = 64) -> ml_collections.ConfigDict:
  """The same run in miniature for the tests: 4 steps of `normal` normal (+ as many OE) images, `test` test images."""
  oe_per_batch = normal if c.oe.per_batch else 0
  c.data.train_limit, c.data.test_limit, c.oe.limit = 4 * normal, test, test
  c.train.update(epochs=1, batch_size=normal + oe_per_batch)
  c.train.schedule, c.train.schedule_kwargs = "constant", {}
  c.oe.per_batch = oe_per_batch
  c.eval.batch_size = test // 2
  c.threshold.limit = test
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


TRANSFER_ARGS = dict(protocol="one_vs_rest", normal_class=0, seed=1, source="random", oe="cifar100", runlocal=False)
# `oe=` of the CIFAR-10 configs: CIFAR-100 train (the paper's default) or SVHN train (Table 6's alternative).
OE_SETS = ("cifar100", "svhn")


def cifar10_transfer(args: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
  """`transfer_base()` with a config file's common arguments applied (protocol, normal_class, seed, source, oe,
  runlocal).

  With protocol=leave_one_out, `normal_class` names the held-out (anomalous) class; `oe` picks the OE set.
  """
  c = transfer_base()
  c.method = method
  c.seed = args.seed
  if args.oe not in OE_SETS:
    raise ConfigError(f"oe must be one of {OE_SETS}, got {args.oe!r}.")
  c.oe.name = args.oe
  c.data.protocol = args.protocol
  c.data.normal_class = args.normal_class
  c.transfer.source = args.source
  if args.source != "random":  # fail at flag parsing, before a workdir is made (the method checks overrides again)
    transfer.check_source(args.source, ConfigError)  # a ConfigError: main.py reports OSErrors as an unloadable file
  return transfer_runlocal(c) if args.runlocal else c


# STL-10 models start from ResNet26 trained on ImageNet at 96x96 (Deecke et al. section 5), which was not released:
# configs/pretrain_resnet26_imagenet96.py makes it, by default into this workdir (relative to the working directory).
STL10_SOURCE = "workdirs/pretrain_resnet26_imagenet96/source"
STL10_ARGS = dict(protocol="leave_one_out", normal_class=0, seed=1, source=STL10_SOURCE, data_dir="",
                  data_source="auto", runlocal=False)


def stl10_transfer(args: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
  """`transfer_base()` for STL-10 at 96x96 with its 'unlabelled' split as OE (Deecke et al. Table 3).

  Fails at once, before anything is loaded, when the STL-10 data or the source weights are missing, naming each
  missing file and the command that produces it.
  """
  c = transfer_base()
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
  return transfer_runlocal(c, normal=4, test=32) if args.runlocal else c  # 96x96: half the CIFAR miniature


# --------------------------------------------------------------------------------------------------------------------
# Source models: supervised ResNet26 classification (jaxad.methods.supervised).


def supervised() -> ml_collections.ConfigDict:
  """Every key the method reads; the configs set the recipe (see configs/pretrain_resnet26_*.py)."""
  c = ml_collections.ConfigDict()
  c.method = "supervised"
  c.data = default_data_config(protocol="classification", preprocess="standardize", minmax="computed")
  c.model = dict(name="resnet26_transferad", num_classes=100, input_size=0)
  c.augment = True
  c.train = optim(epochs=40, batch_size=256, optimizer="sgd", lr=0.1, weight_decay=5e-4,
                  optimizer_kwargs=dict(momentum=0.9, nesterov=True), **step_decay(20, 30, 35))
  c.export_source = True
  _run_keys(c, log_every_steps=50)
  c.evals = dict(test=dict(kind="classification", source="test"))
  return c


def supervised_runlocal(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The same run in miniature for tests: 4 steps of 16 images, 64 test images."""
  c.data.train_limit, c.data.test_limit = 64, 64
  c.train.update(epochs=1, batch_size=16)
  c.train.schedule, c.train.schedule_kwargs = "constant", {}
  c.eval.batch_size = 32
  c.log_every_steps = 1
  return c


# --------------------------------------------------------------------------------------------------------------------
# Jezequel et al. (multi-task self-supervision) and its self-supervised baselines MHRot and GeoTrans
# (jaxad.methods.ssl_multitask, mhrot, geotrans).


def self_supervised(method: str = "ssl_multitask") -> ml_collections.ConfigDict:
  """Every key the three methods read, with Jezequel et al.'s recipe (section 3) and ss-ood's where it is silent.

  Paper: WRN-16-4 trunk, one dense head per task with dropout 0.3, geometric (3 x-shifts, 3 y-shifts, 4 rotations)
  + jigsaw (3x3 grid, k = 3) tasks, SGD with Nesterov momentum, batch 32. Not in the paper (ss-ood's MHRot code,
  reference_implementations.md section 5.1): lr 0.1, momentum 0.9, weight decay 5e-4, cosine decay per step,
  inputs in [-1, 1], 8-px shifts at 32x32 (a quarter of the side in general) with a reflect-101 border, random
  horizontal flips; jaxad's own choices: 15 epochs, jigsaw margin 2 px (patches of 8 px in 10-px cells at 32x32)
  and the k - 1 non-identity permutations picked for maximal Hamming distance with seed 0.
  """
  c = ml_collections.ConfigDict()
  c.method = method
  c.data = default_data_config(preprocess="signed")
  c.model = dict(name="wide_resnet", depth=16, width=4, dropout=0.0, head_dropout=0.3, conv_init="fan_out")
  c.objective = dict(tasks="geometric+jigsaw", translation=dict(shift=0, border="reflect101"),
                     jigsaw=dict(k=3, grid=3, margin=2, seed=0),
                     dirichlet_limit=0)  # geotrans: normal images the Dirichlet is fitted on (0 = all)
  c.augment = dict(flip=True)
  c.train = optim(epochs=15, batch_size=32, optimizer="sgd", lr=0.1, weight_decay=5e-4,
                  optimizer_kwargs=dict(momentum=0.9, nesterov=True), schedule="cosine")
  _run_keys(c, log_every_steps=50)
  c.eval.batch_size = 250  # x13 (x36 MHRot, x72 GeoTrans) transformed copies, scored one transform at a time
  return c


def mhrot_recipe(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """MHRot as in ss-ood's one-class code: rotation + x/y translation heads on the same WRN-16-4 (Jezequel et al.
  compare on one trunk; ss-ood's CIFAR one-class network is not public), batch 64 originals (x4 rotations = 256
  images per step, ss-ood's), SGD 0.1 Nesterov, weight decay 5e-4, cosine; no dropout (ss-ood's heads have none)."""
  c.method = "mhrot"
  c.model.head_dropout = 0.0
  c.train.batch_size = 64
  return c


def geotrans_recipe(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """GeoTrans as its authors' code (reference_implementations.md section 5.2): WRN-10-4 with Keras' He-normal
  (fan-in) convolutions, no dropout, Adam 1e-3 (Keras defaults: eps 1e-7), L2 0.5 * 5e-4 on every weight (= a
  coupled weight decay of 5e-4), batch 128, 3 epochs over the 72x expanded set (= 216 passes over the originals
  with one random transform per image each), no flips (a flip is one of the 72 labels)."""
  c.method = "geotrans"
  c.model.update(depth=10, width=4, head_dropout=0.0, conv_init="fan_in")
  c.augment.flip = False
  c.train = ml_collections.ConfigDict(optim(epochs=3 * 72, batch_size=128, optimizer="adam", lr=1e-3,
                                            weight_decay=5e-4, optimizer_kwargs=dict(eps=1e-7)))
  return c


def self_supervised_runlocal(c: ml_collections.ConfigDict, *, train_limit: int = 256,
                             test_limit: int = 200) -> ml_collections.ConfigDict:
  """The same run in miniature for the tests: a WRN-10-1 trunk, `train_limit` normal images for 2 epochs (GeoTrans:
  8 passes), `test_limit` test images; the Dirichlet is fitted on 64 normal images."""
  c.data.train_limit, c.data.test_limit = train_limit, test_limit
  c.model.update(depth=10, width=1)
  c.train.epochs = 8 if c.method == "geotrans" else 2
  c.train.batch_size = min(c.train.batch_size, 32)
  c.objective.dirichlet_limit = 64
  c.eval.batch_size = 100
  c.threshold.limit = 64
  c.log_every_steps = 4
  return c


SSL_ARGS = dict(normal_class=0, seed=1, tasks="geometric+jigsaw", runlocal=False)


def ssl_one_vs_all(args: ml_collections.ConfigDict, dataset: str, **data) -> ml_collections.ConfigDict:
  """`self_supervised()` on one-vs-all `dataset` with a config file's arguments (normal_class, seed, tasks)."""
  c = self_supervised()
  c.seed = args.seed
  c.objective.tasks = args.tasks
  c.data.update(name=dataset, normal_class=args.normal_class, **data)
  return self_supervised_runlocal(c) if args.runlocal else c


# `dataset=` of configs/geotrans_cifar10.py and mhrot_cifar10.py: the one-vs-all sets of Jezequel et al.'s Table 2.
BASELINE_ARGS = dict(normal_class=0, seed=1, dataset="cifar10", runlocal=False)


def ssl_baseline(args: ml_collections.ConfigDict, recipe) -> ml_collections.ConfigDict:
  """`self_supervised()` with `recipe` (`mhrot_recipe` or `geotrans_recipe`) on one-vs-all `args.dataset`
  (CIFAR-100 with its 20 super-classes)."""
  c = self_supervised()
  c.seed = args.seed
  c.data.update(name=args.dataset, normal_class=args.normal_class,
                label_mode="coarse" if args.dataset == "cifar100" else "fine")
  recipe(c)
  return self_supervised_runlocal(c) if args.runlocal else c
