r"""The papers' published numbers and recipes, as data: what `jaxad.report` puts beside each result.

Two tables live here, both plain data so that a reader can check every number against its paper:

* `PUBLISHED`: one `Published` entry per number a paper prints, keyed so that a run can be matched to it:
  `(method, scorer, dataset, protocol, klass)` plus the metric. `method` is `method_key(config)` (the jaxad method
  with the variant that changes the number, e.g. 'mocca/soft' or 'ssl_multitask/G+J'), `scorer` the scorer in
  `summary.json`, `dataset` jaxad's `data.name`, `protocol` `data.protocol` ('ood:<name>' for the OOD protocol),
  `klass` the normal class (the held-out anomalous class for 'leave_one_out') or None for the paper's mean over
  all classes. **Every value is in percent** (AUROC x 100, AP x 100), as Jezequel et al. and Deecke et al. print
  them; MOCCA's fractions (0.617) are stored x 100 (61.7), which loses no digit.
* `RECIPES`: per jaxad method, the recipe facts a run is checked against (`Fact`: a config key, the recipe's value,
  and where the value comes from: a paper's table or section, or "jaxad's choice" with the config file that
  documents it). `jaxad.report.deviations` lists every fact a run's config.json differs from, plus the subsets
  (`data.train_limit`, `data.test_limit`, ...) and the source-weight rule.

References:
  Massoli, Falchi, Kantarci, Akti, Ekenel, Amato. MOCCA: Multi-layer One-Class Classification for Anomaly
    Detection. 2021. (Table I per class, Table II means; Deep SVDD values there are those of Ruff et al. 2018.
    Tables III-V MVTec AD maxBA and AUC; Table VI ShanghaiTech.)
  Deecke, Ruff, Vandermeulen, Bilen. Transfer-Based Semantic Anomaly Detection. ICML 2021. (Tables 2, 3, 5, 6.)
  Jezequel, Vu, Beaudet, Histace. Fine-grained anomaly detection via multi-task self-supervision. 2021.
    (Tables 2, 3, 4, 6.)
  Andrews, Tanay, Morton, Griffin. Transfer Representation-Learning for Anomaly Detection. ICML 2016 workshop.
    (Table 1 tasks, Table 3 MNIST-1..4: VGG-F, VGG-M, GS.)
  Minhas, Zelek. Anomaly Detection in Images. 2019. (Tables I and II per class.)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

MOCCA = "Massoli et al. (MOCCA)"
DEECKE = "Deecke et al. 2021"
JEZEQUEL = "Jezequel et al."
ANDREWS = "Andrews et al. 2016"
MINHAS = "Minhas & Zelek"


@dataclasses.dataclass(frozen=True)
class Published:
  """One published number.

  Attributes:
    method: `method_key(config)` of the runs it compares with, e.g. 'adib' or 'deep_sad/25%'.
    scorer: the scorer name in summary.json ('hypersphere', 'oe_sigmoid', 'multitask', 'dirichlet', 'mhrot').
    dataset: jaxad's `data.name` of the data the paper used.
    protocol: `data.protocol`, or 'ood:<data.ood.name>' for the OOD protocol.
    klass: normal class (held-out class for 'leave_one_out', anomaly class for 'anomaly_vs_rest_sample'; MVTec AD's
      category name; the task's name for 'class_sets', e.g. 'MNIST-1'); None = the paper's mean over all classes.
    value: the number in percent.
    std: the paper's spread in percent where it prints one (over seeds), else None.
    metric: the summary.json metric it corresponds to ('auroc', 'ap', 'max_ba', or 'ocsvm_auroc': Andrews et al.'s
      AUROC averaged over the one-class SVM's 21 values of nu).
    paper: short name of the paper.
    table: where in the paper, e.g. 'Table 3'.
  """

  method: str
  scorer: str
  dataset: str
  protocol: str
  klass: int | str | None
  value: float
  std: float | None
  metric: str
  paper: str
  table: str

  @property
  def source(self) -> str:
    return f"{self.paper} {self.table}"


def _per_class(method, scorer, dataset, protocol, values, *, paper, table, stds=None, metric="auroc"):
  """Entries for classes 0..len(values)-1 (the datasets' label order, which every table here follows)."""
  stds = stds or [None] * len(values)
  return [Published(method, scorer, dataset, protocol, k, v, s, metric, paper, table)
          for k, (v, s) in enumerate(zip(values, stds, strict=True))]


def _mean(method, scorer, dataset, protocol, value, *, paper, table, std=None, metric="auroc"):
  return [Published(method, scorer, dataset, protocol, None, value, std, metric, paper, table)]


# --------------------------------------------------------------------------------------------------------------------
# MOCCA Table I (per class, mean +- std over ten seeds) and Table II (mean over the ten classes). CIFAR-10
# one-vs-rest; the Deep SVDD columns are Ruff et al. 2018's values as MOCCA quotes them ("hard" = one-class).
_MOCCA_T1 = {  # method key -> (AUROC per class, std per class), fractions x 100
    "dsvdd/soft": ([61.7, 64.8, 49.5, 56.0, 59.9, 62.1, 67.8, 65.2, 75.6, 71.0],
                   [4.2, 1.4, 1.4, 1.1, 1.1, 2.4, 2.4, 1.0, 1.7, 1.1]),
    "mocca/soft": ([62.6, 74.6, 57.5, 57.8, 61.5, 66.3, 67.4, 72.1, 79.1, 77.3],
                   [2.1, 0.8, 1.8, 1.1, 1.2, 1.0, 1.2, 0.4, 1.2, 1.0]),
    "dsvdd/hard": ([61.7, 65.9, 50.8, 59.1, 60.9, 65.7, 67.7, 67.3, 75.9, 73.1],
                   [4.1, 2.1, 0.8, 1.4, 1.1, 2.5, 2.6, 0.9, 1.2, 1.2]),
    "mocca/hard": ([66.0, 70.5, 52.4, 60.1, 60.9, 68.4, 67.1, 68.5, 79.2, 75.8],
                   [1.5, 1.3, 1.0, 0.6, 1.2, 1.6, 0.5, 1.0, 0.8, 0.7]),
}
_MOCCA_T2 = {"dsvdd/soft": (63.4, 2.2), "dsvdd/hard": (64.8, 2.2), "mocca/soft": (67.6, 2.4),
             "mocca/hard": (66.9, 2.3)}

# MOCCA Tables III (maxBA) and IV (AUC) per MVTec AD category (one run each; no spread printed), Table V (means
# over the 15), Table VI (ShanghaiTech frame-level AUC). Categories in the tables' column order.
MVTEC_CATEGORIES = ("carpet", "grid", "leather", "tile", "wood", "bottle", "cable", "capsule", "hazelnut",
                    "metal_nut", "pill", "screw", "toothbrush", "transistor", "zipper")
_MOCCA_MVTEC = {  # (method key, metric) -> per-category values x 100
    ("mocca/soft", "max_ba"): [81, 85, 96, 80, 97, 90, 72, 77, 77, 85, 81, 82, 93, 77, 78],
    ("mocca/hard", "max_ba"): [74, 76, 91, 78, 94, 90, 68, 75, 76, 80, 69, 80, 91, 81, 78],
    ("mocca/soft", "auroc"): [86, 87, 98, 89, 100, 95, 76, 82, 80, 85, 82, 84, 97, 88, 84],
    ("mocca/hard", "auroc"): [74, 81, 95, 85, 97, 93, 72, 79, 78, 84, 73, 80, 95, 84, 82],
}
_MOCCA_T5 = {("mocca/soft", "max_ba"): 83.0, ("mocca/hard", "max_ba"): 80.0, ("mocca/soft", "auroc"): 88.0,
             ("mocca/hard", "auroc"): 83.0}
_MOCCA_T6 = {"mocca_video/soft": 73.0, "mocca_video/hard": 72.5}

# Deecke et al. Table 5: CIFAR-10 one-versus-rest AUC, mean (std) per class and mAUC; CIFAR-100 train as OE.
_DEECKE_T5 = {
    "adra": ([99.0, 99.7, 97.5, 96.3, 98.9, 97.7, 99.6, 99.6, 99.5, 99.4],
             [0.1, 0.1, 0.4, 0.4, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1], (98.7, 0.1)),
    "adib": ([99.2, 99.8, 98.6, 97.0, 99.3, 98.2, 99.6, 99.8, 99.6, 99.5],
             [0.3, 0.1, 0.2, 0.7, 0.1, 0.3, 0.2, 0.1, 0.1, 0.2], (99.1, 0.1)),
}
# Deecke et al. Table 3: STL-10 leave-one-out (class = the held-out anomalous class) AP, mean (std), and mAP.
# Row order airplane, bird, car, cat, deer, dog, horse, monkey, ship, truck = STL-10's labels 0..9.
_DEECKE_T3 = {
    "adra": ([49.3, 18.9, 74.6, 29.6, 20.7, 26.6, 52.5, 23.0, 69.2, 64.3],
             [8.9, 8.1, 6.5, 3.4, 1.9, 3.5, 5.9, 2.7, 2.6, 2.2], (42.9, 1.4)),
    "adib": ([41.4, 44.0, 72.2, 51.0, 43.0, 32.2, 53.7, 46.6, 51.7, 58.7],
             [7.4, 2.9, 10.5, 2.1, 5.7, 3.1, 2.5, 1.9, 8.7, 3.6], (49.5, 1.2)),
}

# Jezequel et al. Table 3: CIFAR-10 one-vs-all AUROC per class and Avg.
_JEZEQUEL_T3 = {
    ("ssl_multitask/G+J", "multitask"): ([75.1, 96.3, 84.8, 74.2, 91.1, 89.9, 88.7, 95.5, 94.7, 91.9], 88.2),
    ("geotrans", "dirichlet"): ([74.7, 95.7, 78.1, 72.4, 87.8, 87.8, 83.4, 95.5, 93.3, 91.3], 86.0),
}
# Jezequel et al. Table 2: mean AUROC over all classes (one-vs-all). Caltech-Birds 200 is CUB-200 (2010).
_JEZEQUEL_T2_DATASETS = ("cifar100", "mnist", "fashion_mnist", "caltech_birds2010")
_JEZEQUEL_T2 = {
    ("ssl_multitask/G+J", "multitask"): (85.8, 96.0, 92.8, 83.2),  # "Ours"; the same row as Table 4's G+J
    ("geotrans", "dirichlet"): (84.7, 96.9, 92.6, 66.6),
    ("mhrot", "mhrot"): (83.6, 95.2, 92.5, 77.6),
    ("deep_sad/75%", "hypersphere"): (88.7, 99.9, 98.1, 73.6),
    ("deep_sad/25%", "hypersphere"): (87.9, 98.5, 95.4, 70.9),
    ("deep_sad/10%", "hypersphere"): (89.1, 96.5, 88.2, 66.1),
}
# Jezequel et al. Table 4: the task ablation (G+J is Table 2's row and is stored there).
_JEZEQUEL_T4 = {"ssl_multitask/G": {"cifar100": 83.6, "caltech_birds2010": 77.6},
                "ssl_multitask/J": {"cifar100": 80.1, "caltech_birds2010": 78.5}}
# Jezequel et al. Table 6: OOD, all of CIFAR-10 normal, the OOD set's test split anomalous.
_JEZEQUEL_T6 = {"ood:svhn": 98.8, "ood:cifar100": 83.4}


# Andrews et al. Table 1: the MNIST tasks, (normal digits, anomalous digits); tasks 5-7 are X-ray and CASIA images.
ANDREWS_MNIST_TASKS = {1: ((5,), (2,)), 2: ((5,), (0, 2, 4, 6, 8)), 3: ((1, 3, 5, 7, 9), (2,)),
                       4: ((1, 3, 5, 7, 9), (0, 2, 4, 6, 8))}
# Andrews et al. Table 3, MNIST-1..4: mean (std) over 3 trials of the AUROC averaged over 21 nus, x 100, per layer of
# the ImageNet networks; 'GS' is the greyscale intensity image itself (the same row in both networks' blocks).
_ANDREWS_T3 = {
    "vgg_f": {"P5": ([93.82, 88.33, 85.00, 76.62], [0.66, 1.38, 0.72, 1.20]),
              "FC6": ([84.94, 89.48, 72.07, 71.51], [1.82, 1.50, 1.48, 0.61]),
              "FC7": ([83.95, 90.74, 70.00, 73.57], [1.87, 1.41, 1.50, 0.72]),
              "FC8": ([86.04, 92.39, 66.52, 72.40], [1.04, 0.51, 2.17, 0.33])},
    "vgg_m": {"P5": ([89.33, 85.43, 81.96, 75.93], [1.48, 1.44, 2.24, 1.74]),
              "FC6": ([75.19, 81.79, 56.04, 51.10], [1.31, 0.16, 8.28, 5.46]),
              "FC7": ([79.04, 84.61, 57.04, 52.01], [1.31, 0.15, 8.81, 4.86]),
              "FC8": ([79.25, 83.13, 56.79, 49.11], [1.94, 0.43, 7.41, 4.49])},
    "greyscale": {"GS": ([58.09, 50.89, 43.21, 43.15], [4.36, 2.98, 1.89, 0.89])},
}
# Minhas & Zelek Tables I (CIFAR-10) and II (MNIST): AUROC per anomaly class, x 100 (the tables print fractions to
# 6 digits; no spread). Table I's column order is plane, car, bird, cat, deer, frog, horse, ship, truck, dog; stored
# here in CIFAR-10's label order (frog is label 6, dog label 5).
_MINHAS = {
    ("densenet169", "cifar10"): [99.8449, 99.8933, 99.4980, 99.2014, 99.8145, 99.8291, 99.1758, 99.9031, 99.8386,
                                 99.8948],
    ("resnet152", "cifar10"): [99.8071, 99.8203, 99.5249, 99.1605, 99.8480, 99.7900, 99.1375, 99.9607, 99.9289,
                               99.8934],
    ("inception_v4", "cifar10"): [93.0263, 97.1474, 84.2340, 85.3591, 89.5042, 93.1945, 89.3674, 94.9273, 92.1899,
                                  95.4804],
    ("densenet169", "mnist"): [99.8265, 99.4258, 98.4126, 98.0750, 98.3918, 99.2295, 98.4011, 99.7476, 99.1551,
                               99.9386],
    ("resnet152", "mnist"): [99.8050, 99.4176, 98.2025, 98.1253, 98.4338, 98.9994, 98.0970, 99.8940, 98.9815,
                             99.8982],
    ("inception_v4", "mnist"): [99.7676, 99.4609, 98.3431, 98.0548, 98.4617, 99.2676, 98.3624, 99.7108, 99.4305,
                                99.9080],
}
_NETWORK_NAMES = {"vgg_f": "VGG-F", "vgg_m": "VGG-M", "greyscale": "GS", "densenet169": "DenseNet-169",
                  "resnet152": "ResNet-152", "inception_v4": "Inception-V4"}


def andrews_task(normal, anomalous) -> str | None:
  """'MNIST-t' for Andrews et al.'s MNIST task t (Table 1) with these digit sets, else None."""
  sets = (tuple(sorted(int(k) for k in normal)), tuple(sorted(int(k) for k in anomalous)))
  return next((f"MNIST-{t}" for t, task in ANDREWS_MNIST_TASKS.items() if task == sets), None)


def _build() -> tuple[Published, ...]:
  out = []
  for method, (values, stds) in _MOCCA_T1.items():
    out += _per_class(method, "hypersphere", "cifar10", "one_vs_rest", values, stds=stds, paper=MOCCA,
                      table="Table I")
    value, std = _MOCCA_T2[method]
    out += _mean(method, "hypersphere", "cifar10", "one_vs_rest", value, std=std, paper=MOCCA, table="Table II")
  for (method, metric), values in _MOCCA_MVTEC.items():
    table = "Table III" if metric == "max_ba" else "Table IV"
    out += [Published(method, "hypersphere", "mvtec", "per_category", category, value, None, metric, MOCCA, table)
            for category, value in zip(MVTEC_CATEGORIES, values, strict=True)]
    out += _mean(method, "hypersphere", "mvtec", "per_category", _MOCCA_T5[method, metric], paper=MOCCA,
                 table="Table V", metric=metric)
  for method, value in _MOCCA_T6.items():
    out += _mean(method, "hypersphere", "shanghaitech", "frames", value, paper=MOCCA, table="Table VI")
  for method, (values, stds, (m, s)) in _DEECKE_T5.items():
    out += _per_class(method, "oe_sigmoid", "cifar10", "one_vs_rest", values, stds=stds, paper=DEECKE,
                      table="Table 5")
    out += _mean(method, "oe_sigmoid", "cifar10", "one_vs_rest", m, std=s, paper=DEECKE, table="Table 5")
  for method, (values, stds, (m, s)) in _DEECKE_T3.items():
    out += _per_class(method, "oe_sigmoid", "stl10", "leave_one_out", values, stds=stds, metric="ap",
                      paper=DEECKE, table="Table 3")
    out += _mean(method, "oe_sigmoid", "stl10", "leave_one_out", m, std=s, metric="ap", paper=DEECKE,
                 table="Table 3")
  # Deecke et al. Table 2: CIFAR-10 leave-one-out mAUC and mAP, mean (std).
  for method, auc, ap in (("adra", (95.0, 0.1), (72.9, 0.4)), ("adib", (95.1, 0.1), (74.6, 0.3))):
    out += _mean(method, "oe_sigmoid", "cifar10", "leave_one_out", auc[0], std=auc[1], paper=DEECKE, table="Table 2")
    out += _mean(method, "oe_sigmoid", "cifar10", "leave_one_out", ap[0], std=ap[1], metric="ap", paper=DEECKE,
                 table="Table 2")
  # Deecke et al. Table 6: SVHN train as OE instead of CIFAR-100 (one-vs-rest mAUC; the CIFAR-100 row = Table 5).
  for method, value in (("adra/oe=svhn", 75.3), ("adib/oe=svhn", 79.8)):
    out += _mean(method, "oe_sigmoid", "cifar10", "one_vs_rest", value, paper=DEECKE, table="Table 6")
  for (method, scorer), (values, avg) in _JEZEQUEL_T3.items():
    out += _per_class(method, scorer, "cifar10", "one_vs_rest", values, paper=JEZEQUEL, table="Table 3")
    out += _mean(method, scorer, "cifar10", "one_vs_rest", avg, paper=JEZEQUEL, table="Table 3")
  for (method, scorer), values in _JEZEQUEL_T2.items():
    for dataset, value in zip(_JEZEQUEL_T2_DATASETS, values, strict=True):
      out += _mean(method, scorer, dataset, "one_vs_rest", value, paper=JEZEQUEL, table="Table 2")
  for method, by_dataset in _JEZEQUEL_T4.items():
    for dataset, value in by_dataset.items():
      out += _mean(method, "multitask", dataset, "one_vs_rest", value, paper=JEZEQUEL, table="Table 4")
  for protocol, value in _JEZEQUEL_T6.items():
    out += _mean("ssl_multitask/G+J", "multitask", "cifar10", protocol, value, paper=JEZEQUEL, table="Table 6")
  for network, layers in _ANDREWS_T3.items():
    for layer, (values, stds) in layers.items():
      out += [Published(f"deep_features/{network}", layer, "mnist", "class_sets", f"MNIST-{t}", v, sd, "ocsvm_auroc",
                        ANDREWS, f"Table 3 ({_NETWORK_NAMES[network]})")
              for t, v, sd in zip(ANDREWS_MNIST_TASKS, values, stds, strict=True)]
  for (network, dataset), values in _MINHAS.items():
    out += _per_class(f"finetune/{network}", "p_anomaly", dataset, "anomaly_vs_rest_sample", values, paper=MINHAS,
                      table=f"Table {'I' if dataset == 'cifar10' else 'II'} ({_NETWORK_NAMES[network]})")
  return tuple(out)


PUBLISHED: tuple[Published, ...] = _build()
_INDEX = {(p.method, p.scorer, p.dataset, p.protocol, p.klass, p.metric): p for p in PUBLISHED}
assert len(_INDEX) == len(PUBLISHED), "two published entries share a key"

# jaxad datasets that stand in for the dataset a paper used: run dataset -> (paper dataset, why it differs).
DATASET_STAND_INS = {
    "caltech_birds2011": ("caltech_birds2010", "dataset: CUB-200-2011 stands in for the paper's Caltech-UCSD Birds "
                          "200 (2010): the same 200 species, about twice the images (jaxad/data/sources.py)"),
}


def lookup(method: str, scorer: str, dataset: str, protocol: str, klass: int | None,
           metric: str = "auroc") -> Published | None:
  """The published number for this key, or None (datasets in `DATASET_STAND_INS` look up the paper's dataset).

  >>> lookup('ssl_multitask/G+J', 'multitask', 'cifar10', 'one_vs_rest', 1).value
  96.3
  >>> lookup('mocca/soft', 'hypersphere', 'cifar10', 'one_vs_rest', None).source
  'Massoli et al. (MOCCA) Table II'
  """
  dataset = DATASET_STAND_INS.get(dataset, (dataset,))[0]
  return _INDEX.get((method, scorer, dataset, protocol, klass, metric))


# --------------------------------------------------------------------------------------------------------------------
# Run keys.

SSL_TASKS = {"geometric+jigsaw": "G+J", "geometric": "G", "jigsaw": "J"}  # Jezequel et al. Table 4's names
NETWORK_METHODS = ("deep_features", "finetune")  # methods whose papers' variants are networks (Andrews, Minhas)
DEFAULT_OE = {"cifar10": "cifar100", "stl10": "stl10"}  # Deecke et al. section 5.2's OE sets


def config_value(config: Mapping[str, Any], key: str, default=None):
  """`config['a']['b']` for key 'a.b' of a config.json dict; `default` where a level is missing."""
  node = config
  for part in key.split("."):
    if not isinstance(node, Mapping) or part not in node:
      return default
    node = node[part]
  return node


def method_key(config: Mapping[str, Any]) -> str:
  """The method with the variant that changes a paper's number, from a run's config (a dict of config.json).

  'dsvdd/soft', 'mocca/hard' (objective.boundary); 'ssl_multitask/G+J', '/G', '/J' (objective.tasks);
  'deep_sad/25%' (data.anomaly.class_fraction; 'deep_sad/all' for 0); 'deep_features/vgg_f', 'finetune/densenet169'
  (model.name: these papers' variants are networks); transfer methods with outlier exposure get
  '/oe=<name>' when `oe.name` is not the paper's OE set for the dataset (CIFAR-100 for CIFAR-10, STL-10's unlabelled
  split for STL-10); any other method is its name.

  >>> method_key({'method': 'ssl_multitask', 'objective': {'tasks': 'geometric'}})
  'ssl_multitask/G'
  """
  method = str(config.get("method", "?"))
  if method in ("dsvdd", "mocca", "mocca_video"):
    return f"{method}/{config_value(config, 'objective.boundary', '?')}"
  if method == "ssl_multitask":
    tasks = str(config_value(config, "objective.tasks", "?"))
    return f"{method}/{SSL_TASKS.get(tasks, tasks)}"
  if method in NETWORK_METHODS:
    return f"{method}/{config_value(config, 'model.name', '?')}"
  if method == "deep_sad":
    fraction = float(config_value(config, "data.anomaly.class_fraction", 0.0) or 0.0)
    return f"{method}/{round(100 * fraction):d}%" if fraction else f"{method}/all"
  oe = config_value(config, "oe.name")
  if oe and (config_value(config, "oe.per_batch", 0) or 0) > 0:
    default = DEFAULT_OE.get(str(config_value(config, "data.name")))
    if oe != default:
      return f"{method}/oe={oe}"
  return method


def paper_method_key(config: Mapping[str, Any]) -> str:
  """The method key of the published numbers a run is compared with: `method_key`, except that for the methods
  whose paper's variants are networks (`NETWORK_METHODS`) the network is the one of the paper's recipe the run
  comes from, `model.paper_network` (set by the paper configs and kept when a benchmark swaps `model.name`), so that
  a reduced run on another network is compared with, and its deviations listed against, that recipe.

  >>> paper_method_key({'method': 'finetune', 'model': {'name': 'resnet26_transferad', 'paper_network': 'resnet152'}})
  'finetune/resnet152'
  """
  method = str(config.get("method", "?"))
  network = config_value(config, "model.paper_network")
  if method in NETWORK_METHODS and network:
    return f"{method}/{network}"
  return method_key(config)


def protocol_key(config: Mapping[str, Any]) -> str:
  """`data.protocol`, with the OOD set appended for the OOD protocol ('ood:svhn'); 'per_category' for MVTec AD (one
  run per category) and 'frames' for the video datasets (frame-level scores over all test videos)."""
  dataset = config_value(config, "data.name")
  if dataset == "mvtec":
    return "per_category"
  if dataset in ("shanghaitech", "video"):
    return "frames"
  protocol = str(config_value(config, "data.protocol", "one_vs_rest"))
  if protocol == "ood":
    return f"ood:{config_value(config, 'data.ood.name', '?')}"
  return protocol


def class_key(config: Mapping[str, Any]) -> int | str | None:
  """The normal class (held-out class for leave_one_out, anomaly class for anomaly_vs_rest_sample); MVTec AD's
  category name; for class_sets the task: 'MNIST-t' for Andrews et al.'s MNIST tasks, else 'normal vs anomalous'
  ('5 vs 0,2,4,6,8'); None where the protocol has none (OOD, video)."""
  dataset = config_value(config, "data.name")
  if dataset == "mvtec":
    return str(config_value(config, "data.folder.category"))
  if str(config_value(config, "data.protocol", "")) == "class_sets":
    normal = config_value(config, "data.class_sets.normal", []) or []
    anomalous = config_value(config, "data.class_sets.anomalous", []) or []
    task = andrews_task(normal, anomalous) if dataset == "mnist" else None
    return task or f"{','.join(map(str, normal))} vs {','.join(map(str, anomalous))}"
  if str(config_value(config, "data.protocol", "")) == "ood" or dataset in ("shanghaitech", "video"):
    return None
  k = config_value(config, "data.normal_class")
  return None if k is None else int(k)


def replicate_key(config: Mapping[str, Any]) -> int:
  """What tells repeated runs of one recipe and class apart: `seed`; for 'class_sets' `data.protocol_seed`, the
  trial (Andrews et al. redraw the training sample in each of their 3 trials, with the network and test set fixed)."""
  if str(config_value(config, "data.protocol", "")) == "class_sets":
    return int(config_value(config, "data.protocol_seed", 0) or 0)
  return int(config.get("seed", 0))


# --------------------------------------------------------------------------------------------------------------------
# Recipes.


@dataclasses.dataclass(frozen=True)
class Fact:
  """One thing the paper's recipe fixes, as the config key that holds it in jaxad.

  Attributes:
    key: dotted config key ('train.epochs'); for kind 'network' the key 'model' and `value` a dict of its subkeys.
    value: the recipe's value.
    origin: where the value comes from (paper table or section, or "jaxad's choice" and the config documenting it).
    kind: 'epochs' (a phase's epochs), 'network', 'subset' (0 = all images), 'source' (`transfer.source`; value:
      data.name -> `SourceRecipe`), 'paper_network' (key 'model'; value: `model.paper_network` -> `NetworkRecipe`),
      'data' or 'optim' / 'objective' (any other value).
    datasets: the `data.name`s it applies to; empty = every dataset of the recipe.
  """

  key: str
  value: Any
  origin: str
  kind: str = "optim"
  datasets: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SourceRecipe:
  """The source weights a transfer recipe starts from (`transfer.source`).

  Attributes:
    what: the paper's source network, in words.
    released: whether its weights were published (then a converted copy counts as the recipe's weights).
  """

  what: str
  released: bool


@dataclasses.dataclass(frozen=True)
class NetworkRecipe:
  """One of the networks a paper compares (`model.paper_network`), as its recipe fixes it.

  Attributes:
    what: the network in words.
    input_size: `model.input_size`, the side its images are resized to.
    weights: where its weights come from (checked against `model.weights`); None = it has none (GS).
    config: other config values its recipe fixes, {dotted key: value}.
  """

  what: str
  input_size: int
  weights: SourceRecipe | None
  config: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A method's recipe facts and the datasets jaxad has a recipe for (a run on another dataset is unchecked)."""

  facts: tuple[Fact, ...]
  datasets: tuple[str, ...]


# Every recipe: every training image of the normal class(es) and the whole test split (all three papers).
COMMON = (
    Fact("data.train_limit", 0, "all training images of the normal class(es), every paper", "subset"),
    Fact("data.test_limit", 0, "the whole test split, every paper", "subset"),
)

_J3 = "Jezequel et al. section 3"
_COARSE = Fact("data.label_mode", "coarse", "Jezequel et al. Table 2: CIFAR-100's 20 super-classes", "data",
               ("cifar100",))
_SSL_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist")
_TRANSFER_SOURCE = {  # data.name -> the paper's source network
    "cifar10": SourceRecipe("ImageNet 32x32 ResNet26, Deecke et al. section 5.2: the released resnet26.pth via "
                            "third_party_weights/convert_resnet26_torch.py", released=True),
    "stl10": SourceRecipe("ImageNet 96x96 ResNet26, Deecke et al. section 5.2 (never released)", released=False),
}


def _lenet(origin: str) -> Fact:
  return Fact("model", {"name": "lenet_cifar10", "rep_dim": 128}, origin, "network")


def _hypersphere_phases(origin_epochs: str, origin_optim: str, *, batch: int, pretrain_lr: float,
                        lr: float) -> tuple[Fact, ...]:
  """Autoencoder pretraining ('pretrain') then the hypersphere phase ('train'): 350 + 150 epochs, Adam."""
  return (Fact("pretrain.epochs", 350, origin_epochs, "epochs"), Fact("train.epochs", 150, origin_epochs, "epochs"),
          Fact("pretrain.batch_size", batch, origin_optim), Fact("train.batch_size", batch, origin_optim),
          Fact("pretrain.optimizer", "adam", origin_optim), Fact("train.optimizer", "adam", origin_optim),
          Fact("pretrain.lr", pretrain_lr, origin_optim), Fact("train.lr", lr, origin_optim))


def _transfer(adapters: bool, extra: tuple[Fact, ...]) -> Recipe:
  paper, code = "Deecke et al. section 5.1", "TransferAD code, configs/adib_cifar10.py"
  return Recipe((
      Fact("model", {"name": "resnet26_transferad", "adapters": adapters},
           paper + (" and 4.4 (adapters)" if adapters else ""), "network"),
      Fact("transfer.source", _TRANSFER_SOURCE, "Deecke et al. section 5.2", "source"),
      Fact("train.epochs", 100, paper, "epochs"),
      Fact("train.batch_size", 128, paper),
      Fact("oe.per_batch", 64, code + " (64 normal + 64 OE per batch)"),
      Fact("train.optimizer", "sgd", paper),
      Fact("train.lr", 0.1, code + "; not in the paper"),
      Fact("oe.limit", 0, "Deecke et al. section 5.2: all of the OE set", "subset"),
      Fact("data.preprocess", "standardize", code, "data"),
  ) + extra, ("cifar10", "stl10"))


_A41 = "Andrews et al. section 4.1"
_MATCONVNET = "ImageNet weights, MatConvNet's imagenet-{}.mat via third_party_weights/convert_matconvnet.py"
_ANDREWS_NETWORKS = {
    "vgg_f": NetworkRecipe("VGG-F", 224, SourceRecipe(_MATCONVNET.format("vgg-f"), released=True),
                           {"objective.unit_length": True}),
    "vgg_m": NetworkRecipe("VGG-M", 224, SourceRecipe(_MATCONVNET.format("vgg-m"), released=True),
                           {"objective.unit_length": True}),
    # Raw pixels: the paper scales the networks' features to unit length, and its GS values match raw pixels
    # (configs/andrews_gs_mnist.py).
    "greyscale": NetworkRecipe("GS, the greyscale intensity image", 0, None, {"objective.unit_length": False}),
}
_M4 = "Minhas & Zelek section IV"
_KERAS = "Keras's ImageNet {} weights via third_party_weights/{}"
_MINHAS_NETWORKS = {
    "densenet169": NetworkRecipe("DenseNet-169", 224, SourceRecipe(_KERAS.format("DenseNet-169", "convert_keras.py"),
                                                                   released=True)),
    "resnet152": NetworkRecipe("ResNet-152", 224, SourceRecipe(_KERAS.format("ResNet-152", "convert_keras.py"),
                                                               released=True)),
    "inception_v4": NetworkRecipe("Inception-V4", 299, SourceRecipe(
        "the TF-slim ImageNet Inception-V4 weights (Cadene's PyTorch port) via "
        "third_party_weights/convert_torch_imagenet.py", released=True)),
}
_GEOTRANS = "GeoTrans authors' code, configs/common.py geotrans_recipe()"
_SSOOD = "ss-ood's one-class recipe, configs/common.py mhrot_recipe()"

RECIPES: dict[str, Recipe] = {
    "dsvdd": Recipe((
        _lenet("Deep SVDD's code, configs/dsvdd_cifar10.py"),
        Fact("data.preprocess", "gcn_l1_minmax", "Deep SVDD's code, configs/dsvdd_cifar10.py", "data"),
        Fact("objective.layers", ["code"], "Deep SVDD: one hypersphere on the code", "objective"),
    ) + _hypersphere_phases("Deep SVDD's code, configs/dsvdd_cifar10.py", "Deep SVDD's code, configs/dsvdd_cifar10.py",
                            batch=200, pretrain_lr=1e-4, lr=1e-4), ("cifar10",)),
    "mocca": Recipe((
        _lenet("MOCCA section IV-D"),
        Fact("data.preprocess", "gcn_l1_minmax", "MOCCA section IV-A", "data"),
        Fact("objective.layers", ["conv1", "conv2", "conv3", "code"], "MOCCA sections III, IV-D (pooled conv1-3 + "
             "code), configs/mocca_cifar10.py", "objective"),
        Fact("objective.warmup_epochs", 10, "MOCCA's CIFAR-10 code (hard-coded; its -we flag is ignored)",
             "objective"),
    ) + _hypersphere_phases("jaxad's choice (Deep SVDD's; not in the paper or its code), configs/mocca_cifar10.py",
                            "MOCCA section IV-D", batch=256, pretrain_lr=1e-3, lr=1e-4), ("cifar10",)),
    "deep_sad": Recipe((
        _lenet("Deep SAD's code, configs/deep_sad_cifar10.py"),
        Fact("data.preprocess", "unit", "Deep SAD's code, configs/deep_sad_cifar10.py", "data"),
        Fact("data.anomaly.limit", 263, "jaxad's choice (Deep SAD's 5% known outliers), configs/deep_sad_cifar10.py",
             "data"),
    ) + _hypersphere_phases("jaxad's choice (Deep SVDD's), configs/deep_sad_cifar10.py",
                            "Deep SAD's code, configs/deep_sad_cifar10.py", batch=128, pretrain_lr=1e-4, lr=1e-4),
        ("cifar10",)),
    "adib": _transfer(False, (
        Fact("objective.regularizer", "l2_sp", "Deecke et al. section 4.3", "objective"),
        Fact("objective.alpha", 1e-2, "Deecke et al. section 5.2", "objective"),
    )),
    "adra": _transfer(True, (
        Fact("objective.regularizer", "none", "Deecke et al. section 4.4", "objective"),
    )),
    "ssl_multitask": Recipe((
        Fact("model", {"name": "wide_resnet", "depth": 16, "width": 4}, _J3, "network"),
        Fact("model.head_dropout", 0.3, _J3, "network"),
        Fact("train.epochs", 15, "jaxad's choice (not in the paper), configs/common.py self_supervised()", "epochs"),
        Fact("train.batch_size", 32, _J3),
        Fact("train.batch_size", 16, "jaxad's choice (29-30 images per species), configs/ssl_caltech_birds.py",
             datasets=("caltech_birds2010", "caltech_birds2011")),
        Fact("train.optimizer", "sgd", _J3),
        Fact("train.lr", 0.1, "ss-ood's MHRot code (not in the paper), configs/common.py self_supervised()"),
        Fact("objective.jigsaw.k", 3, _J3, "objective"),
        Fact("objective.jigsaw.grid", 3, _J3, "objective"),
        _COARSE,
    ), _SSL_DATASETS + ("caltech_birds2010", "caltech_birds2011")),
    "mhrot": Recipe((
        Fact("model", {"name": "wide_resnet", "depth": 16, "width": 4}, "jaxad's choice (Jezequel et al.'s trunk), "
             "configs/common.py mhrot_recipe()", "network"),
        Fact("train.epochs", 15, "jaxad's choice, configs/mhrot_cifar10.py", "epochs"),
        Fact("train.batch_size", 64, _SSOOD),
        Fact("train.optimizer", "sgd", _SSOOD),
        Fact("train.lr", 0.1, _SSOOD),
        _COARSE,
    ), _SSL_DATASETS),
    "deep_features": Recipe((
        Fact("model", _ANDREWS_NETWORKS, _A41 + " and Table 2", "paper_network"),
        Fact("data.class_sets.train_size", 2048, _A41, "data"),
        Fact("data.class_sets.test_normal", 512, _A41, "data"),
        Fact("data.class_sets.test_anomalous", 512, _A41, "data"),
        Fact("objective.nus", [round(0.01 + 0.049 * i, 3) for i in range(21)],
             "Andrews et al. section 4.3: 21 evenly spaced values in [0.01, 0.99]", "objective"),
    ), ("mnist",)),
    "finetune": Recipe((
        Fact("model", _MINHAS_NETWORKS, _M4 + "-C", "paper_network"),
        Fact("train.epochs", 50, _M4 + "-C", "epochs"),
        Fact("train.batch_size", 16, _M4 + "-C"),
        Fact("train.optimizer", "sgd", _M4 + "-C"),
        Fact("train.lr", 1e-3, _M4 + "-C"),
        Fact("train.schedule", "keras_decay", _M4 + "-C (Keras's decay 1e-6)"),
        Fact("data.anomaly_vs_rest.test", "sample", _M4 + "-A: 1,000 test images per class", "data"),
    ), ("cifar10", "mnist")),
    "geotrans": Recipe((
        Fact("model", {"name": "wide_resnet", "depth": 10, "width": 4}, _GEOTRANS, "network"),
        Fact("train.epochs", 216, _GEOTRANS + ": 3 epochs of the 72x expanded set", "epochs"),
        Fact("train.batch_size", 128, _GEOTRANS),
        Fact("train.optimizer", "adam", _GEOTRANS),
        Fact("train.lr", 1e-3, _GEOTRANS),
        Fact("objective.dirichlet_limit", 0, "GeoTrans: the Dirichlet is fitted on all normal training images",
             "subset"),
        _COARSE,
    ), _SSL_DATASETS),
}
