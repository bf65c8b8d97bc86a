"""Recipes shared by the config files: each method family's base config, its argument sets and runlocal miniatures.

Config files import this module with `common = import_sibling(__file__, "common")` (they are loaded by path, so
`configs/` need not be on sys.path). Method code (`jaxad/methods/`) holds no recipes: every hyperparameter a run
uses is set here or in the config file itself, and lands in the workdir's config.json.
"""

from __future__ import annotations

import os

import ml_collections

from jaxad.config import SWEEP_DEFAULTS
from jaxad.data import default_config as default_data_config, sources
from jaxad.errors import ConfigError
from jaxad.methods import transfer
from jaxad.papers import ANDREWS_MNIST_TASKS


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
  c.sweep = dict(SWEEP_DEFAULTS)  # enabled=True: the classes x sweep.seeds of a table as one program (jaxad.sweep)


# --------------------------------------------------------------------------------------------------------------------
# Deep SVDD and MOCCA (jaxad.methods.hypersphere).


def hypersphere() -> ml_collections.ConfigDict:
  """Every key the hypersphere methods read, with Deep SVDD's CIFAR-10 recipe (spec section 3.1)."""
  c = ml_collections.ConfigDict()
  c.method = "dsvdd"
  c.data = default_data_config()
  c.model = dict(name="lenet_cifar10", rep_dim=128, ae_variant="dsvdd", selector="pool", dtype="float32")
  c.pretrain = optim(epochs=350, batch_size=200, optimizer="adam", lr=1e-4, weight_decay=0.5e-6, **step_decay(250))
  c.train = optim(epochs=150, batch_size=200, optimizer="adam", lr=1e-4, weight_decay=0.5e-6, **step_decay(50))
  c.objective = dict(boundary="hard", nu=0.1, warmup_epochs=10, layers=("code",), center_eps=0.1,
                     distance="squared",  # the score: ||f - c||^2 - R^2 (CIFAR code) or 'euclidean' ||f - c|| - R
                     eta=1.0, anomaly_per_batch=0)  # the last two: Deep SAD only
  # MVTec AD (MOCCA): patches.size > 0 trains on random crops and scores the grid of patches; rotations in degrees.
  c.patches = dict(size=0, per_image=1)
  c.augment = dict(rotation=(0.0, 0.0), border="reflect")
  c.keep = "last"  # or 'min_loss': the hypersphere phase's epoch with the lowest mean loss
  _run_keys(c, log_every_steps=25)
  return c


# MVTec AD (MOCCA section IV-B): textures are trained on 64x64 patches of the 512x512 image and scored by the worst
# patch (Eq. 7); objects are whole 128x128 images. Rotations per the code's lists (spec section 4.3): textures
# [0, 45] degrees with reflected borders; these four objects [-45, 45] with black corners, the other six none.
MVTEC_ROTATED_OBJECTS = ("bottle", "hazelnut", "metal_nut", "screw")


MVTEC_RECIPES = ("texture", "object")


def mocca_mvtec(category: str, recipe: str = "") -> ml_collections.ConfigDict:
  """MOCCA's MVTec AD recipe for one category (configs/mocca_mvtec.py documents each choice); `recipe` ('texture' or
  'object') for a folder in MVTec AD's layout under another name, '' = the category's own."""
  from jaxad.data.folder import MVTEC_CATEGORIES, MVTEC_TEXTURES  # pylint: disable=g-import-not-at-top
  if recipe and recipe not in MVTEC_RECIPES:
    raise ConfigError(f"recipe must be '' (the category's own) or one of {MVTEC_RECIPES}, got {recipe!r}.")
  if not recipe and category not in MVTEC_CATEGORIES:
    raise ConfigError(f"category must be one of {MVTEC_CATEGORIES}, got {category!r}; for another folder in MVTec AD's "
                      "layout pass recipe='texture' or recipe='object'.")
  texture = recipe == "texture" if recipe else category in MVTEC_TEXTURES
  c = hypersphere()
  c.method = "mocca"
  c.data.update(name="mvtec", preprocess="signed")
  side = 512 if texture else 128
  c.data.folder.update(category=category, size=(side, side), channels=3)
  c.model.update(name="mocca_mvtec", rep_dim=128, ae_variant="mocca", selector="mlp")
  c.patches.update(size=64 if texture else 0, per_image=64 if texture else 1)
  rotation = (0.0, 45.0) if texture else (-45.0, 45.0) if category in MVTEC_ROTATED_OBJECTS else (0.0, 0.0)
  c.augment.update(rotation=rotation, border="reflect" if texture else "black")
  # The code's batch is 128 patches (textures: 2 images x 64 random crops) or, here, 32 whole object images. Epochs
  # are in neither paper nor code (whose default is one pass over 50,000 pre-augmented samples): jaxad's choice,
  # about 20 passes of 64 crops over each texture image and 200 passes over each object image, lr x0.1 at 3/4.
  images_per_step, epochs = (2, 20) if texture else (32, 200)
  for phase in (c.pretrain, c.train):
    phase.update(optim(epochs=epochs, batch_size=images_per_step, optimizer="adam", lr=1e-3, weight_decay=0.5e-6,
                       **step_decay(epochs * 3 // 4)))
  c.objective.update(boundary="soft", nu=0.1, warmup_epochs=epochs // 10, layers=("down3", "fc1", "code"),
                     distance="euclidean")
  c.keep = "min_loss"
  c.eval.batch_size = 8 if texture else 64
  c.log_every_steps = 10
  return c


def mocca_video() -> ml_collections.ConfigDict:
  """MOCCA's ShanghaiTech recipe (configs/mocca_shanghaitech.py documents each choice)."""
  c = hypersphere()
  c.method = "mocca_video"
  c.data.update(name="shanghaitech", preprocess="unit")  # the code divides frames by 255
  c.data.video.update(size=(256, 512), clip_len=16, train_stride=16, test_stride=1, background="mog_image")
  c.model.update(name="mocca_video", rep_dim=1024, ae_variant="mocca", kwargs=dict(lstm_dim=100))
  for unused in ("pretrain", "patches", "augment"):
    del c[unused]
  del c.model["selector"], c.objective["distance"], c.objective["eta"], c.objective["anomaly_per_batch"]
  c.train = optim(epochs=10, batch_size=4, optimizer="adam", lr=1e-3, weight_decay=0.5e-6, **step_decay(8))
  c.objective.update(boundary="soft", nu=0.1, warmup_epochs=5, layers=("block5", "fc1", "code"),
                     one_class_weight=1.0, center_clips=10000)
  c.keep = "min_loss"
  c.eval.batch_size = 8
  c.log_every_steps = 50
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
  c.model = dict(name="resnet26_transferad", adapters=False, adapter_init="he", dtype="float32", remat=False)
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
  c.model = dict(name="resnet26_transferad", num_classes=100, input_size=0, dtype="float32", remat=False)
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
  c.model = dict(name="wide_resnet", depth=16, width=4, dropout=0.0, head_dropout=0.3, conv_init="fan_out",
                 dtype="float32", remat=False)
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


# --------------------------------------------------------------------------------------------------------------------
# Andrews et al. 2016: deep features + linear one-class SVMs (jaxad.methods.deep_features).

ANDREWS_VGG_LAYERS = ("P5", "FC6", "FC7", "FC8")
ANDREWS_ARGS = dict(task=1, layer="all", trial=0, weights="default", runlocal=False)
VGG_DOWNLOAD = ("wget http://www.vlfeat.org/matconvnet/models/imagenet-{arch}.mat && python "
                "third_party_weights/convert_matconvnet.py --input imagenet-{arch}.mat --output {path} (see "
                "third_party_weights/README.md), or pass weights=random for the random-init floor")


def deep_features(model: str, *, weights: str, weights_hint: str = "", layers=ANDREWS_VGG_LAYERS,
                  input_scaling: str = "matconvnet", input_size: int = 224) -> ml_collections.ConfigDict:
  """Every key the method reads: a frozen `model` with `weights` ('' = random init), its features `layers`, and the
  paper's 21 values of nu in [0.01, 0.99]; evaluated by the 'ocsvm' evaluator (AUROC averaged over nu)."""
  c = ml_collections.ConfigDict()
  c.method = "deep_features"
  c.data = default_data_config(preprocess="unit")
  c.model = dict(name=model, kwargs={}, weights=weights, weights_hint=weights_hint, dont_load=(),
                 input_scaling=input_scaling, input_size=input_size)
  c.objective = dict(layers=tuple(layers), nus=tuple(round(0.01 + 0.049 * i, 3) for i in range(21)), unit_length=True)
  _run_keys(c, log_every_steps=50)
  c.eval.batch_size = 64
  c.evals = dict(test=dict(kind="ocsvm", source="test"))
  return c


def andrews_mnist(args: ml_collections.ConfigDict, arch: str) -> ml_collections.ConfigDict:
  """Andrews et al.'s MNIST task `args.task` (Table 1) on MatConvNet's VGG-F / VGG-M, or on the greyscale image
  itself (arch 'greyscale': their GS row, the 28x28 digit, no weights): 2,048 normal training images, 512 + 512 test
  images fixed across trials, `args.trial` picks the training sample."""
  if args.task not in ANDREWS_MNIST_TASKS:
    raise ConfigError(f"task must be one of {sorted(ANDREWS_MNIST_TASKS)} (Andrews et al. Table 1), got {args.task}.")
  if arch == "greyscale":
    c = deep_features(arch, weights="", layers=("GS",), input_scaling="data", input_size=0)
    # The paper rescales its networks' features to unit length (section 4.1), not GS: raw pixels match its Table 3
    # (MNIST-3 over 3 trials: 0.463 here, 0.432 there; scaled to unit length 0.665; README, Andrews et al.).
    c.objective.unit_length = False
  else:
    layers = ANDREWS_VGG_LAYERS if args.layer == "all" else (args.layer,)
    if not set(layers) <= set(ANDREWS_VGG_LAYERS):
      raise ConfigError(f"layer must be 'all' or one of {ANDREWS_VGG_LAYERS}, got {args.layer!r}.")
    path = {"default": f"weights/{arch}", "random": ""}.get(args.weights, args.weights)
    c = deep_features(arch, weights=path, layers=layers,
                      weights_hint=VGG_DOWNLOAD.format(arch=arch.replace("_", "-"), path=path or f"weights/{arch}"))
  c.model.paper_network = arch  # what jaxad.report compares with (kept when a benchmark swaps the network)
  normal, anomalous = ANDREWS_MNIST_TASKS[args.task]
  c.data.update(name="mnist", protocol="class_sets", protocol_seed=args.trial)
  c.data.class_sets.update(normal=normal, anomalous=anomalous, train_size=2048, test_normal=512, test_anomalous=512)
  if args.runlocal:  # tests: 64 + 32 + 32 images, 3 nus
    c.data.class_sets.update(train_size=64, test_normal=32, test_anomalous=32)
    c.objective.nus = (0.1, 0.5, 0.9)
  return c


# --------------------------------------------------------------------------------------------------------------------
# Minhas & Zelek 2019: an ImageNet network fine-tuned as a 2-way normal / anomaly classifier (jaxad.methods.finetune).

MINHAS_ARGS = dict(anomaly_class=0, dataset="cifar10", weights="default", layout="keras", test="sample", seed=0,
                   runlocal=False)
MINHAS_DATASETS = ("cifar10", "mnist")
_KERAS_H5 = ("https://storage.googleapis.com/tensorflow/keras-applications/{family}/"
             "{arch}_weights_tf_dim_ordering_tf_kernels.h5")
_TORCH = {"densenet169": "https://download.pytorch.org/models/densenet169-b2777c0a.pth",
          "resnet152": "https://download.pytorch.org/models/resnet152-394f9c45.pth",
          "inception_v4": "http://data.lip6.fr/cadene/pretrainedmodels/inceptionv4-8e4777a0.pth"}
# backbone -> (input size, trainable regex, {layout: (model kwargs, input scaling, converter, download URL)}).
# The trainable regexes are jaxad's choice (the paper: "the earlier layers are kept frozen", not which): the last
# block of each network and the new head train, as the configs' docstrings explain.
MINHAS_BACKBONES = {
    "densenet169": (224, r"^(denseblock4|final_bn|head)/", {
        "keras": ({"weights": "keras"}, "torch", "convert_keras.py",
                  _KERAS_H5.format(family="densenet", arch="densenet169")),
        "torchvision": ({"weights": "torchvision"}, "torch", "convert_torch_imagenet.py", _TORCH["densenet169"])}),
    "resnet152": (224, r"^(stage4|head)/", {
        "keras": ({"weights": "keras"}, "caffe", "convert_keras.py",
                  _KERAS_H5.format(family="resnet", arch="resnet152")),
        "torchvision": ({"weights": "torchvision"}, "torch", "convert_torch_imagenet.py", _TORCH["resnet152"])}),
    "inception_v4": (299, r"^(inception_c\d+|head)/", {
        "cadene": ({}, "tf", "convert_torch_imagenet.py", _TORCH["inception_v4"])}),
}


def finetune(model: str, *, kwargs: dict, weights: str, weights_hint: str, input_scaling: str, input_size: int,
             trainable: str) -> ml_collections.ConfigDict:
  """Every key the method reads, with the paper's recipe: SGD lr 1e-3, Keras decay 1e-6 (per step), Nesterov
  momentum 0.9, batch 16, 50 epochs, the best epoch on a held-out 10% of the labelled training images (jaxad's
  choice: the paper keeps "the best model" without saying on what), parameters matching `trainable` train."""
  c = ml_collections.ConfigDict()
  c.method = "finetune"
  c.data = default_data_config(protocol="anomaly_vs_rest_sample", preprocess="unit", val_fraction=0.1)
  c.data.anomaly_vs_rest = dict(test="sample")  # 'sample': the paper's balanced test set; 'all': the whole test split
  c.model = dict(name=model, kwargs={**kwargs, "num_classes": 2}, weights=weights, weights_hint=weights_hint,
                 dont_load=(r"^params/head/",), input_scaling=input_scaling, input_size=input_size)
  c.keep = "best_val"
  c.train = optim(epochs=50, batch_size=16, optimizer="sgd", lr=1e-3,
                  optimizer_kwargs=dict(momentum=0.9, nesterov=True), schedule="keras_decay",
                  schedule_kwargs=dict(decay=1e-6), trainable=((trainable, True), (".*", False)))
  _run_keys(c, log_every_steps=100)
  c.eval.batch_size = 64
  # decision_threshold 0.5 on the anomaly probability = the 2-way classifier's argmax: confusion matrix, precision,
  # recall and F1 beside AUROC (the paper's Tables IV-VI).
  c.evals = dict(test=dict(kind="anomaly", source="test", decision_threshold=0.5))
  return c


def minhas(args: ml_collections.ConfigDict, backbone: str) -> ml_collections.ConfigDict:
  """Minhas & Zelek's run of `backbone` on `args.dataset` with anomaly class `args.anomaly_class`.

  `args.weights`: 'default' = weights/<backbone>_<layout> (converted as `model.weights_hint` says), 'random' = random
  init, or a path; `args.layout` picks the weight file family ('keras' as in the paper, or 'torchvision'; Inception-V4
  has only 'cadene', the PyTorch port of the TF-slim weights the Keras port also used).
  """
  if args.dataset not in MINHAS_DATASETS:
    raise ConfigError(f"dataset must be one of {MINHAS_DATASETS} (Minhas & Zelek Tables I-II), got {args.dataset!r}.")
  size, trainable, layouts = MINHAS_BACKBONES[backbone]
  layout = "cadene" if backbone == "inception_v4" and args.layout == "keras" else args.layout  # its only layout
  if layout not in layouts:
    raise ConfigError(f"layout={args.layout!r} is not valid for {backbone}: one of {sorted(layouts)}.")
  kwargs, scaling, converter, url = layouts[layout]
  default = f"weights/{backbone}_{layout}"
  path = {"default": default, "random": ""}.get(args.weights, args.weights)
  file = url.rsplit("/", 1)[-1]
  hint = (f"wget {url} && python third_party_weights/{converter} --arch {backbone} --input {file} --output "
          f"{path or default} (see third_party_weights/README.md), or pass weights=random for the random-init floor")
  c = finetune(backbone, kwargs=kwargs, weights=path, weights_hint=hint, input_scaling=scaling, input_size=size,
               trainable=trainable)
  c.model.paper_network = backbone  # what jaxad.report compares with (kept when a benchmark swaps the network)
  c.data.update(name=args.dataset, normal_class=args.anomaly_class, protocol_seed=args.seed)
  c.data.anomaly_vs_rest.test = args.test
  c.seed = args.seed + 1
  if args.runlocal:  # tests: 64 labelled training images (16 of them 'val'), 64 test images, small inputs, 2 epochs
    c.data.update(train_limit=64, test_limit=64, val_fraction=0.25)
    c.model.input_size = 75 if backbone == "inception_v4" else 32  # Inception's valid convs need >= 75
    c.train.epochs = 2
    c.eval.batch_size = 32
    c.log_every_steps = 1
  return c
