r"""Results table from trained workdirs, with the papers' numbers beside them and every deviation from their recipes.

  python -m jaxad.report workdirs/reproduce_jezequel /tmp/ssl_rl [--metric=auroc] [--layout=long|wide]
      [--markdown=OUT.md] [--json=OUT]

Gathers `summary.json` + `config.json` of every run under the given paths (a workdir, a workdir with `class_K`
sub-workdirs from `data.normal_classes`, or any folder of them), groups the runs by method variant, dataset,
protocol, normal class and recipe (the config without seed, class and paths), and prints one markdown row per group
and scorer: mean +- std over seeds, the number of runs, the published value (`jaxad.papers.PUBLISHED`, or n/a) and
a *deviations* column that lists every way the runs differ from the paper's recipe (`deviations`), so that no
reduced-budget number can be mistaken for a reproduction. Groups that cover several classes (or whose paper gives
only a mean over classes) get a row for the mean over classes too, marked when it covers fewer than all classes.
`--layout=wide` prints the same numbers compactly for README tables (`wide_markdown`): one table per dataset and
protocol, one row per method, scorer and recipe, one column per class plus the mean, and the deviations numbered
once under each table.

Conventions: every number is in percent (summary.json's fractions x 100, the papers' tables as printed); std is
the population std (ddof 0) over seeds, as the benchmarks' tables; `--metric` picks any metric in summary.json
(auroc, ap, max_ba, eer, apcer_at_bpcer, f1_max), `--split` the evaluated split (default 'test').

Classes: the normal class; the held-out class for leave_one_out, the anomaly class for anomaly_vs_rest_sample
(Minhas & Zelek), the category for MVTec AD, and for class_sets the task ('MNIST-1'..'MNIST-4', Andrews et al.'s
Table 1), whose replicates are trials (`data.protocol_seed`, the training sample) rather than seeds.

Deviation rules (`deviations(config)`):
  * MOCCA on MVTec AD, whose recipe is per category: every value that differs from the category's config file
    (`configs/mocca_mvtec.py:category=...`; a folder under another name is checked against the recipe it names);
  * subsets: `data.train_limit`, `data.test_limit`, and per recipe `oe.limit` (Deecke et al.) and
    `objective.dirichlet_limit` (GeoTrans) above 0 (0 = all images);
  * epochs: each phase's `<phase>.epochs` against the recipe ("reduced" or "more");
  * network: `model.name` and the recipe's size keys (WRN depth/width, LeNet rep_dim, ResNet26 adapters), and other
    recipe facts (batch size, optimizer, lr, preprocessing, label mode, objective keys) against `RECIPES`;
  * the networks of Andrews et al. and Minhas & Zelek, whose variants are networks: a run is compared with the
    network of the recipe it comes from (`model.paper_network`, kept when a benchmark swaps `model.name`), and
    another network, input size or weights (`model.weights`, by the source-weight rule below) is a deviation;
  * source weights (ADIB/ADRA `transfer.source`, backbones' `model.weights`): 'random' or '' is a deviation; a
    folder of a jaxad run (a config.json up to three folders above it, e.g. configs/pretrain_resnet26_cifar100.py's
    `source` or a `checkpoints/train/output`) is a deviation ("self-trained"); a
    folder that cannot be found when the report runs (tried as given, then relative to the repository), or that
    holds no Orbax checkpoint, is a deviation ("cannot tell"); any other checkpoint folder is taken for the
    converter's output of the released weights (the converter records no checksum, so it is recognised by
    elimination), except where the paper's weights were never released (STL-10's 96x96 net: "unknown origin");
  * a dataset standing in for the paper's (`papers.DATASET_STAND_INS`), a method or dataset without a recorded
    recipe (then only the subsets are checked), runs repeating a seed, and a class mean over fewer than all classes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import sys
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from jaxad import papers
from jaxad.papers import config_value
from jaxad.errors import UserError

_CLASS_DIR = re.compile(r"^class_-?\d+$")
_SKIP_DIRS = ("checkpoints",)
# Keys that do not change a run's result (or are the run's identity): left out of the recipe fingerprint.
_NOT_RECIPE = ("seed", "data.normal_class", "data.normal_classes", "data.data_dir", "data.source", "data.ood.data_dir",
               "data.ood.source", "oe.data_dir", "oe.source", "reference.data_dir", "reference.source", "eval", "evals",
               "threshold", "log_every_steps", "checkpoint_every_epochs", "multihost", "data.folder.root",
               "data.folder.category", "data.video.root", "data.video.cache_dir",
               "sweep", "model.remat")  # how a run executes (tasks in one program, recomputed activations), not what
# Per protocol, more keys that are a run's class or replicate: class_sets' digit sets are its task (the class) and
# its protocol_seed the trial (the replicate, `papers.replicate_key`).
_NOT_RECIPE_BY_PROTOCOL = {"class_sets": ("data.protocol_seed", "data.class_sets.normal", "data.class_sets.anomalous")}
# Keys added after runs were recorded, left out of the fingerprint at their default so that older runs (whose
# config.json lacks them) share a fingerprint with new runs of the same recipe.
_NEW_KEY_DEFAULTS = {"model.dtype": "float32", "objective.unit_length": True}
# Datasets whose recipe differs per class (MVTec AD: textures are trained on patches, objects whole): a run's values
# that equal its class's default recipe (the config file, by class argument) are fingerprinted as "recipe", so the
# categories of one recipe share a fingerprint and a mean row.
_PER_CLASS_RECIPES = {"mvtec": ("mocca_mvtec.py", "category", "data.folder.category")}
_NUM_CLASSES = {"cifar10": 10, "digits": 10, "mnist": 10, "fashion_mnist": 10, "stl10": 10, "svhn": 10,
                "caltech_birds2010": 200, "caltech_birds2011": 200, "mvtec": 15}
# Protocols with a mean over classes (Andrews et al.'s tasks for class_sets); Minhas & Zelek print no mean, but the
# mean over the classes run, beside the mean of their published values, is what a reduced sweep compares.
_MEAN_PROTOCOLS = ("one_vs_rest", "leave_one_out", "per_category", "class_sets", "anomaly_vs_rest_sample")
# What a wide table's class columns are, where not the normal class (leave_one_out's is its held-out class).
_COLUMN_NAMES = {"class_sets": "task", "anomaly_vs_rest_sample": "anomaly class", "per_category": "category"}
# Files Orbax writes into every checkpoint folder (as jaxad.models.weights._ORBAX_MARKERS; that package imports jax).
_ORBAX_MARKERS = ("_CHECKPOINT_METADATA", "_METADATA", "commit_success.txt")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ReportError(UserError, ValueError):
  """A path, workdir or file the report cannot use; the message says which and what to do."""


@dataclasses.dataclass(frozen=True)
class Run:
  """One finished run (a workdir with config.json and summary.json).

  Attributes:
    path: the workdir.
    config: config.json as a dict.
    summary: summary.json as a dict ('<split>/<scorer>/<metric>' -> value, fractions).
    method: `papers.method_key(config)`, e.g. 'ssl_multitask/G+J'.
    paper_method: `papers.paper_method_key(config)`: the method key of the published numbers it is compared with.
    dataset, protocol, klass: `data.name`, `papers.protocol_key`, `papers.class_key`.
    seed: `papers.replicate_key(config)`: `config.seed`, or the trial for 'class_sets'.
    deviations: `deviations(config)`.
    fingerprint: hash of the config without seed, class, paths and logging keys (runs of one recipe share it).
  """

  path: str
  config: dict
  summary: dict
  method: str
  dataset: str
  protocol: str
  klass: int | str | None
  seed: int
  deviations: tuple[str, ...]
  fingerprint: str
  paper_method: str = ""


@dataclasses.dataclass(frozen=True)
class Row:
  """One table row: a group of runs (one class, or the mean over classes) and one scorer.

  Attributes:
    method, scorer, dataset, protocol: as in `papers.Published`.
    klass: the normal class; None for a mean over classes or a protocol without classes (OOD).
    classes: the classes the row covers (one for a class row).
    is_mean: whether the row is the mean over `classes`.
    metric: the summary.json metric.
    n: runs (seeds) averaged; for a mean row, the seeds that every class has (used for std).
    seeds: the runs' seeds, sorted (repeats kept).
    mean, std: percent; std is None below two runs (for a mean row: two seeds that every class has).
    paper, paper_std, paper_source: the published value in percent, its std and "<paper> <table>", or None.
    deviations: every way the runs differ from the paper's recipe; empty = none found.
    config_id: first 8 hex digits of the recipe fingerprint.
    workdirs: the runs' workdirs.
    total_classes: for a mean row, the dataset's number of classes (None if unknown).
  """

  method: str
  scorer: str
  dataset: str
  protocol: str
  klass: int | str | None
  classes: tuple[int, ...]
  is_mean: bool
  metric: str
  n: int
  seeds: tuple[int, ...]
  mean: float
  std: float | None
  paper: float | None
  paper_std: float | None
  paper_source: str | None
  deviations: tuple[str, ...]
  config_id: str
  workdirs: tuple[str, ...]

  total_classes: int | None = None

  @property
  def label(self) -> str:
    """The class column: 'K', 'mean (k/N)' or '-' (no class)."""
    if self.is_mean:
      return f"mean ({len(self.classes)}/{self.total_classes or '?'})"
    return "-" if self.klass is None else str(self.klass)


# --------------------------------------------------------------------------------------------------------------------
# Finding and reading workdirs.


def _kind(path: str) -> str:
  """'parent' (class_K sub-workdirs), 'run', 'no_summary', 'no_config' or 'folder'."""
  try:
    names = os.listdir(path)
  except OSError as e:
    raise ReportError(f"cannot read {path}: {e.strerror} (errno {e.errno}); check its permissions.") from None
  if any(_CLASS_DIR.match(n) and os.path.isdir(os.path.join(path, n)) for n in names):
    return "parent"
  has_config, has_summary = "config.json" in names, "summary.json" in names
  if has_config and has_summary:
    return "run"
  if has_config:
    return "no_summary"
  if has_summary:
    return "no_config"
  return "folder"


_WHY = {
    "no_summary": "has config.json but no summary.json: the run has not finished or failed (finish it, re-score it "
                  "with `python -m jaxad.main --mode=eval --config=... --workdir=DIR`, or leave it out)",
    "no_config": "has summary.json but no config.json: the report cannot tell its method or recipe (restore "
                 "config.json from the run, or leave the workdir out)",
}


def _walk(path: str, found: list[str], skipped: list[tuple[str, str]], seen: set[str]) -> None:
  real = os.path.realpath(path)
  if real in seen:  # a symlink loop or the same folder given twice
    return
  seen.add(real)
  kind = _kind(path)
  if kind == "run":
    found.append(path)
    return
  if kind in _WHY:
    skipped.append((path, _WHY[kind]))
    return
  for name in sorted(os.listdir(path)):
    sub = os.path.join(path, name)
    if name.startswith(".") or name in _SKIP_DIRS or not os.path.isdir(sub):
      continue
    _walk(sub, found, skipped, seen)


def find_workdirs(paths: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """The finished workdirs under `paths`, and the unfinished ones met while recursing, as (path, reason).

  A path given explicitly must exist, be a folder, and hold at least one finished run; a workdir given explicitly
  must be complete. Unfinished workdirs found *below* a given folder (a benchmark still writing) are skipped.

  Raises:
    ReportError: naming the path and what to pass instead.
  """
  paths = list(paths)
  if not paths:
    raise ReportError("no workdirs given: pass one or more workdirs (folders with config.json and summary.json) or "
                      "folders of workdirs.")
  found, skipped, seen = [], [], set()
  for path in paths:
    if not os.path.exists(path):
      raise ReportError(f"{path} does not exist: pass a workdir (a folder with config.json and summary.json) or a "
                        "folder of workdirs.")
    if not os.path.isdir(path):
      raise ReportError(f"{path} is a file, not a workdir: pass the folder that holds config.json and summary.json, "
                        "or a folder of workdirs.")
    kind = _kind(path)
    if kind in _WHY:
      raise ReportError(f"workdir {path} {_WHY[kind]}.")
    if os.path.realpath(path) in seen:  # given twice, or inside a folder given before
      continue
    before, skipped_before = len(found), len(skipped)
    _walk(path, found, skipped, seen)
    if len(found) == before:
      unfinished = skipped[skipped_before:]
      more = (f"; {len(unfinished)} unfinished workdir(s) below it, e.g. {unfinished[0][0]}, which "
              f"{unfinished[0][1]}" if unfinished else "")
      raise ReportError(f"no runs found under {path}: no folder below it holds both config.json and summary.json"
                        f"{more}.")
  return found, skipped


def _read_json(path: str, what: str) -> dict:
  try:
    with open(path) as f:
      value = json.load(f)
  except json.JSONDecodeError as e:
    raise ReportError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}): re-write the run's {what} (re-run "
                      "it or `python -m jaxad.main --mode=eval`) or leave the workdir out.") from None
  except OSError as e:
    raise ReportError(f"cannot read {path}: {e.strerror} (errno {e.errno}).") from None
  if not isinstance(value, dict):
    raise ReportError(f"{path} holds a {type(value).__name__}, not the JSON object of a run's {what}.")
  return value


def load_run(workdir: str) -> Run:
  """The `Run` of one finished workdir (config.json and summary.json).

  Raises:
    ReportError: a file is missing, is not JSON, or is not a jaxad run's config / summary.
  """
  for name, why in (("config.json", "no_config"), ("summary.json", "no_summary")):
    if not os.path.isfile(os.path.join(workdir, name)):
      raise ReportError(f"workdir {workdir} {_WHY[why]}.")
  config = _read_json(os.path.join(workdir, "config.json"), "config")
  summary = _read_json(os.path.join(workdir, "summary.json"), "summary")
  if "method" not in config or not isinstance(config.get("data"), dict):
    raise ReportError(f"{workdir}/config.json has no 'method' or 'data': not the config.json of a jaxad run.")
  summary = {k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
  return Run(path=workdir, config=config, summary=summary, method=papers.method_key(config),
             dataset=str(config["data"].get("name", "?")), protocol=papers.protocol_key(config),
             klass=papers.class_key(config), seed=papers.replicate_key(config), deviations=tuple(deviations(config)),
             fingerprint=fingerprint(config), paper_method=papers.paper_method_key(config))


def collect(paths: Iterable[str] | str, *, skipped: list[tuple[str, str]] | None = None) -> list[Run]:
  """Every finished run under `paths` (workdirs, `class_K` parents, folders of workdirs), in path order.

  Args:
    paths: one path or several.
    skipped: if given, receives (path, reason) for each unfinished workdir found below a given folder.

  Raises:
    ReportError: a path that does not exist, is a file, is an incomplete workdir, or holds no finished run.
  """
  found, unfinished = find_workdirs([paths] if isinstance(paths, str) else paths)
  if skipped is not None:
    skipped.extend(unfinished)
  return [load_run(w) for w in found]


# --------------------------------------------------------------------------------------------------------------------
# Deviations from the paper's recipe.


def _plain(config) -> dict:
  """A ConfigDict or dict as plain JSON-like data (tuples as lists), as config.json stores it."""
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  return json.loads(json.dumps(config, default=list))


def fingerprint(config: Mapping[str, Any]) -> str:
  """sha1 of the config without the keys in `_NOT_RECIPE` (and its protocol's `_NOT_RECIPE_BY_PROTOCOL`): runs that
  differ only by seed or class share it."""
  c = _plain(config)
  default = _class_default(c)
  if default is not None:
    c = _mark_defaults(c, default[0])
  not_recipe = (*_NOT_RECIPE, *_NOT_RECIPE_BY_PROTOCOL.get(config_value(c, "data.protocol"), ()))
  for key in (*not_recipe, *_NEW_KEY_DEFAULTS):
    *parents, last = key.split(".")
    node = c
    for p in parents:
      node = node.get(p) if isinstance(node, dict) else None
    if isinstance(node, dict) and (key in not_recipe or node.get(last) == _NEW_KEY_DEFAULTS[key]):
      node.pop(last, None)
  return hashlib.sha1(json.dumps(c, sort_keys=True).encode()).hexdigest()


def _class_default(config: dict) -> tuple[dict, str] | None:
  """The default config of a run's class where the recipe depends on the class (`_PER_CLASS_RECIPES`), and the
  config file with its arguments that gives it ('configs/mocca_mvtec.py:category=carpet'); else None.

  A folder in MVTec AD's layout under another name (a generated set) gets the recipe it ran with: the texture recipe
  if it trained on patches, else the object recipe (configs/mocca_mvtec.py's `recipe` argument).
  """
  spec = _PER_CLASS_RECIPES.get(config_value(config, "data.name"))
  if spec is None or config.get("method") != "mocca":
    return None
  file, argument, key = spec
  klass = config_value(config, key)
  arg = f"{argument}={klass}"
  if klass not in papers.MVTEC_CATEGORIES:
    arg += ",recipe=" + ("texture" if config_value(config, "patches.size", 0) else "object")
  default = _load_default(f"{file}:{arg}")
  return None if default is None else (default, f"configs/{file}:{arg}")


@functools.lru_cache(maxsize=None)
def _load_default(spec: str) -> dict | None:
  """`configs/<spec>` as plain data, loaded once per report (a run's fingerprint and deviations both read it; read
  only, never changed); None where it does not load."""
  from jaxad.config import load_config  # pylint: disable=g-import-not-at-top  (ml_collections only where needed)
  try:
    return _plain(load_config(os.path.join(_REPO, "configs", spec)))
  except Exception:  # pylint: disable=broad-except  (an unknown class: no default, the run keeps its own values)
    return None


def _leaves(config, prefix: str = ""):
  """(dotted key, value) of every leaf of a config.json dict."""
  for k, v in config.items():
    if isinstance(v, dict) and v:
      yield from _leaves(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}", v


def _class_default_deviations(config: dict, default: dict, origin: str) -> list[str]:
  """Every recipe value of `config` that differs from its class's config-file default (`_class_default`, given by
  `origin`); the keys that are not recipe (`_NOT_RECIPE`) and the boundary (part of the method key) are left out."""
  skip = (*_NOT_RECIPE, "objective.boundary")
  missing = object()
  out = []
  for key, value in _leaves(config):
    if any(key == s or key.startswith(s + ".") for s in skip):
      continue
    recipe = config_value(default, key, missing)
    if recipe is missing:
      out.append(f"{key}={_fmt(value)} (not in the recipe: {origin})")
    elif not _same(value, recipe):
      epochs = key.endswith(".epochs") and all(isinstance(v, (int, float)) for v in (value, recipe))
      how = ("reduced epochs: " if value < recipe else "more epochs: ") if epochs else ""
      out.append(f"{how}{key}={_fmt(value)} (recipe {_fmt(recipe)}: {origin})")
  return out


def _mark_defaults(config, default):
  """`config` with every leaf equal to `default`'s replaced by the string 'recipe'."""
  if isinstance(config, dict):
    return {k: _mark_defaults(v, default.get(k) if isinstance(default, dict) else None) for k, v in config.items()}
  return "recipe" if config == default else config


def _same(a, b) -> bool:
  if isinstance(a, bool) or isinstance(b, bool):
    return a is b or a == b and type(a) is type(b)
  if isinstance(a, (int, float)) and isinstance(b, (int, float)):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
  return a == b


def _fmt(v) -> str:
  if isinstance(v, float):
    return f"{v:g}"
  return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def describe_network(model: Mapping[str, Any]) -> str:
  """'WRN-16-4', 'lenet_cifar10 (rep_dim 128)', 'ResNet26 (resnet26_transferad, adapters)', ... from `config.model`."""
  model = {**(model.get("kwargs") or {}), **model}  # the frozen backbones keep the size in model.kwargs
  name = model.get("name", "?")
  if name == "wide_resnet":
    return f"WRN-{model.get('depth', '?')}-{model.get('width', '?')}"
  if str(name).startswith("lenet"):
    return f"{name} (rep_dim {model.get('rep_dim', '?')})"
  if str(name).startswith("resnet26"):
    return f"ResNet26 ({name}{', adapters' if model.get('adapters') else ''})"
  return str(name)


def _jaxad_run_above(path: str) -> str | None:
  """The workdir of the jaxad run a weights folder comes from: the nearest of its three parent folders with a
  config.json (`<workdir>/source` of configs/pretrain_resnet26_*.py, `<workdir>/checkpoints/train/output`)."""
  folder = os.path.normpath(path)
  for _ in range(3):
    folder = os.path.dirname(folder)
    if os.path.isfile(os.path.join(folder, "config.json")):
      return folder
  return None


def _source_deviation(config: Mapping[str, Any], key: str, recipe: papers.SourceRecipe | None) -> list[str]:
  """How the weights at config key `key` ('transfer.source', 'model.weights') differ from `recipe`'s."""
  if recipe is None:
    return []
  source = config_value(config, key)
  if source in (None, "", "random"):
    return [f"random initialisation instead of source weights ({key}={source!r}; recipe: {recipe.what})"]
  candidates = [source] if os.path.isabs(source) else [os.path.abspath(source), os.path.join(_REPO, source)]
  path = next((p for p in candidates if os.path.isdir(p)), None)
  if path is None:
    return [f"source weights {source} not found when the report ran: cannot tell whether they are the paper's "
            f"(recipe: {recipe.what})"]
  if not any(os.path.exists(os.path.join(path, m)) for m in _ORBAX_MARKERS):
    return [f"source weights {source} hold no Orbax checkpoint: cannot tell whether they are the paper's (recipe: "
            f"{recipe.what})"]
  run = _jaxad_run_above(path)
  if run is not None:
    try:
      with open(os.path.join(run, "config.json")) as f:
        trained = json.load(f)
      what = f"a jaxad {trained.get('method', '?')} run on {config_value(trained, 'data.name', '?')}"
    except (OSError, ValueError, AttributeError):
      what = "a jaxad run"
    shown = os.path.relpath(source, _REPO) if os.path.isabs(source) and source.startswith(_REPO + os.sep) else source
    return [f"self-trained source weights {shown} ({what}), not the paper's (recipe: {recipe.what})"]
  if not recipe.released:
    return [f"source weights {source} of unknown origin: the paper's were never released (recipe: {recipe.what})"]
  return []


def _paper_network_deviation(config: Mapping[str, Any], fact: papers.Fact) -> list[str]:
  """The network, its input size and its weights against the recipe of `model.paper_network` (default: the run's
  own `model.name`)."""
  model = config_value(config, "model", {}) or {}
  network = model.get("paper_network") or model.get("name")
  recipe = fact.value.get(network)
  if recipe is None:
    return [f"network {describe_network(model)}: not one of the paper's ({', '.join(fact.value)}; {fact.origin})"]
  out = []
  if model.get("name") != network:
    out.append(f"network {describe_network(model)} (recipe {recipe.what}: {fact.origin})")
  if recipe.input_size and model.get("input_size") != recipe.input_size:
    out.append(f"network input model.input_size={model.get('input_size')} (recipe {recipe.input_size}: "
               f"{fact.origin})")
  for key, value in recipe.config.items():
    out += _fact_deviation(config, papers.Fact(key, value, f"{fact.origin}, {recipe.what}", "objective"))
  return out + _source_deviation(config, "model.weights", recipe.weights)


def _fact_deviation(config: Mapping[str, Any], fact: papers.Fact) -> list[str]:
  if fact.kind == "source":
    return _source_deviation(config, fact.key, fact.value.get(str(config_value(config, "data.name"))))
  if fact.kind == "paper_network":
    return _paper_network_deviation(config, fact)
  if fact.kind == "network" and isinstance(fact.value, dict):
    model = config_value(config, fact.key, {}) or {}
    if all(_same(model.get(k), v) for k, v in fact.value.items()):
      return []
    recipe = describe_network({**model, **fact.value})
    return [f"network {describe_network(model)} (recipe {recipe}: {fact.origin})"]
  missing = object()
  value = config_value(config, fact.key, _NEW_KEY_DEFAULTS.get(fact.key, missing))  # older runs lack newer keys
  if value is missing:
    return [f"{fact.key} missing from config.json (recipe {_fmt(fact.value)}: {fact.origin})"]
  if _same(value, fact.value):
    return []
  if fact.kind == "subset":
    return [f"subset: {fact.key}={_fmt(value)} (recipe: all)"]
  if fact.kind == "epochs" and isinstance(value, (int, float)):
    how = "reduced" if value < fact.value else "more"
    return [f"{how} epochs: {fact.key}={_fmt(value)} (recipe {_fmt(fact.value)}: {fact.origin})"]
  prefix = "network " if fact.kind == "network" else ""
  return [f"{prefix}{fact.key}={_fmt(value)} (recipe {_fmt(fact.value)}: {fact.origin})"]


def applicable_facts(method: str, dataset: str) -> tuple[papers.Fact, ...]:
  """The recipe facts a run of `method` on `dataset` is checked against (dataset-specific facts replace general
  ones with the same key); only `papers.COMMON` when there is no recipe for the pair."""
  recipe = papers.RECIPES.get(method)
  if recipe is None or dataset not in recipe.datasets:
    return papers.COMMON
  chosen: dict[str, papers.Fact] = {f.key: f for f in papers.COMMON}
  for fact in recipe.facts:  # general facts first, then the dataset's own
    if not fact.datasets:
      chosen[fact.key] = fact
  for fact in recipe.facts:
    if dataset in fact.datasets:
      chosen[fact.key] = fact
  return tuple(chosen.values())


def deviations(config) -> list[str]:
  """Every way a run's config differs from its paper's recipe (`jaxad.papers.RECIPES`), in words; [] = none.

  Args:
    config: a run's config.json as a dict, or an `ml_collections.ConfigDict`.

  Returns:
    One line per deviation: subsets, reduced (or more) epochs per phase, a different network, random / self-trained
    / unverifiable source weights, other recipe facts, a stand-in dataset, or a missing recipe.
  """
  config = _plain(config)
  method = str(config.get("method", "?"))
  dataset = str(config_value(config, "data.name", "?"))
  default = _class_default(config)
  if default is not None:  # the recipe is the class's config file (MOCCA on MVTec AD): every other value deviates
    return _class_default_deviations(config, *default)
  out = []
  recipe = papers.RECIPES.get(method)
  if recipe is None:
    out.append(f"no paper recipe recorded for method {method!r} (jaxad/papers.py RECIPES): only subsets checked")
  elif dataset not in recipe.datasets:
    out.append(f"no recipe recorded for {method} on {dataset!r} (recorded: {', '.join(recipe.datasets)}): only "
               "subsets checked")
  if dataset in papers.DATASET_STAND_INS:
    out.append(papers.DATASET_STAND_INS[dataset][1])
  order = {"subset": 0, "epochs": 1, "network": 2, "paper_network": 2, "source": 3}
  facts = sorted(applicable_facts(method, dataset), key=lambda f: order.get(f.kind, 4))
  for fact in facts:
    out += _fact_deviation(config, fact)
  return out


# --------------------------------------------------------------------------------------------------------------------
# The table.


def _num_classes_of(dataset: str, label_mode: str = "fine", protocol: str = "one_vs_rest") -> int | None:
  if protocol == "class_sets":  # tasks, not classes: Andrews et al.'s MNIST-1..4; others are unknown
    return len(papers.ANDREWS_MNIST_TASKS) if dataset == "mnist" else None
  if dataset == "cifar100":
    return 20 if label_mode == "coarse" else 100
  return _NUM_CLASSES.get(dataset)


def _union(lists: Iterable[Iterable[str]]) -> list[str]:
  out = []
  for items in lists:
    for item in items:
      if item not in out:
        out.append(item)
  return out


def _repeats(seeds: Iterable[int]) -> list[str]:
  seeds = list(seeds)
  rep = sorted({s for s in seeds if seeds.count(s) > 1})
  return [f"repeated seed: {s} ({seeds.count(s)} runs)" for s in rep]


def table(runs: Sequence[Run], metric: str = "auroc", *, split: str = "test",
          scorers: Iterable[str] | None = None) -> list[Row]:
  """Rows of mean +- std over seeds per (method, dataset, protocol, recipe, scorer, class), plus class means.

  Args:
    runs: from `collect`.
    metric: a summary.json metric ('auroc', 'ap', 'max_ba', 'eer', 'apcer_at_bpcer', 'f1_max').
    split: the evaluated split of the summary keys '<split>/<scorer>/<metric>'.
    scorers: only these scorers (None = all).

  Returns:
    Rows sorted by dataset, protocol, method, recipe, scorer and class; the class mean last in its group.

  Raises:
    ReportError: no run has the metric (or one of `scorers`).
  """
  wanted = set(scorers) if scorers else None
  groups: dict[tuple, dict[int | None, list[tuple[int, float, Run]]]] = {}
  for run in runs:
    for key, value in run.summary.items():
      parts = key.split("/")
      if len(parts) != 3 or parts[0] != split or parts[2] != metric or (wanted and parts[1] not in wanted):
        continue
      gkey = (run.dataset, run.protocol, run.method, run.fingerprint, parts[1])  # fingerprint fixes paper_method
      groups.setdefault(gkey, {}).setdefault(run.klass, []).append((run.seed, 100.0 * value, run))
  if not groups:
    available = sorted({k.split("/")[2] for r in runs for k in r.summary if k.count("/") == 2})
    names = sorted({k.split("/")[1] for r in runs for k in r.summary if k.count("/") == 2})
    raise ReportError(f"no run has '{split}/<scorer>/{metric}'" + (f" for scorers {sorted(wanted)}" if wanted else "")
                      + f" in summary.json; metrics found: {available or 'none'}; scorers found: {names or 'none'}.")
  rows = []
  for (dataset, protocol, method, fp, scorer), by_class in sorted(
      groups.items(), key=lambda g: tuple(str(x) for x in g[0])):
    first_run = by_class[next(iter(by_class))][0][2]
    label_mode = str(config_value(first_run.config, "data.label_mode", "fine"))
    paper_method = first_run.paper_method or method
    class_rows = []
    for klass in sorted(by_class, key=lambda k: (k is None, k if k is not None else 0)):
      items = by_class[klass]
      values = np.array([v for _, v, _ in items])
      seeds = tuple(sorted(s for s, _, _ in items))
      pub = papers.lookup(paper_method, scorer, dataset, protocol, klass, metric)
      class_rows.append(Row(
          method=method, scorer=scorer, dataset=dataset, protocol=protocol, klass=klass,
          classes=() if klass is None else (klass,), is_mean=False, metric=metric, n=len(items), seeds=seeds,
          mean=float(values.mean()), std=float(values.std()) if len(items) > 1 else None,
          paper=pub and pub.value, paper_std=pub and pub.std, paper_source=pub and pub.source,
          deviations=tuple(_union([r.deviations for _, _, r in items]) + _repeats(seeds)), config_id=fp[:8],
          workdirs=tuple(r.path for _, _, r in items)))
    rows += class_rows
    classes = sorted(k for k in by_class if k is not None)
    pub = papers.lookup(paper_method, scorer, dataset, protocol, None, metric)
    if any(isinstance(k, str) and dataset == "mvtec" and k not in papers.MVTEC_CATEGORIES for k in classes):
      pub = None  # a folder in MVTec AD's layout under another name (a generated set): the paper's mean is not its
    if protocol in _MEAN_PROTOCOLS and classes and (len(classes) >= 2 or pub is not None):
      rows.append(_mean_row(by_class, classes, class_rows, pub, label_mode))
  return rows


def _mean_row(by_class, classes, class_rows, pub, label_mode) -> Row:
  """The mean over classes: mean of the class means; std over the seeds every class has (of their class means)."""
  first = class_rows[0]
  per_seed_class = {k: {} for k in classes}
  for k in classes:
    for seed, value, _ in by_class[k]:
      per_seed_class[k].setdefault(seed, []).append(value)
  common = sorted(set.intersection(*(set(per_seed_class[k]) for k in classes)))
  seed_means = [np.mean([np.mean(per_seed_class[k][s]) for k in classes]) for s in common]
  total = _num_classes_of(first.dataset, label_mode, first.protocol)
  devs = _union(r.deviations for r in class_rows if r.klass is not None)
  if total is None or len(classes) < total:
    # Minhas & Zelek print each class and no mean; the other papers' tables average over all classes.
    paper = "reports each (no mean)" if first.protocol == "anomaly_vs_rest_sample" else "averages over all"
    devs.append(f"classes: {len(classes)} of {total or 'unknown'} ({', '.join(map(str, classes))}); the paper "
                + paper)
  return Row(
      method=first.method, scorer=first.scorer, dataset=first.dataset, protocol=first.protocol, klass=None,
      classes=tuple(classes), is_mean=True, metric=first.metric, n=len(common), seeds=tuple(common),
      mean=float(np.mean([r.mean for r in class_rows if r.klass is not None])),
      std=float(np.std(seed_means)) if len(common) > 1 else None, paper=pub and pub.value, paper_std=pub and pub.std,
      paper_source=pub and pub.source, deviations=tuple(devs), config_id=first.config_id,
      workdirs=tuple(w for r in class_rows for w in r.workdirs), total_classes=total)


def _cell(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def _value(mean: float, std: float | None) -> str:
  """jaxad's value: '73.2 ± 0.8', or '73.2' below two runs."""
  return f"{mean:.1f}" + (f" ± {std:.1f}" if std is not None else "")


def _paper(r: Row) -> str:
  """The published value: '74.6 ± 0.8', '96.3', or 'n/a' when the paper has none."""
  return "n/a" if r.paper is None else f"{r.paper:.1f}" + (f" ± {r.paper_std:.1f}" if r.paper_std else "")


def _legend(rows: Sequence[Row]) -> str:
  over = "seeds" if all(r.protocol != "class_sets" for r in rows) else "seeds, or trials for class_sets tasks"
  return (f"{rows[0].metric.upper()} in percent: mean ± population std over {over} (n runs, no std below 2; a class "
          "mean's std and n use the seeds every class has). Paper values and recipes: jaxad/papers.py. A row with any "
          "deviation is not a reproduction of the paper's number.")


def markdown(rows: Sequence[Row], *, legend: bool = True) -> str:
  """The rows as a markdown table (values in percent), with a legend under it unless `legend=False`.

  A 'config' column (the recipe fingerprint) appears when two rows would otherwise look alike.
  """
  if not rows:
    raise ReportError("no rows to print: no run matched.")
  metric = rows[0].metric
  keys = [(r.dataset, r.protocol, r.method, r.scorer, r.label) for r in rows]
  with_config = len(set(keys)) < len(keys)
  head = ["dataset", "protocol", "method", "scorer", "class", "n", f"{metric.upper()} % (mean ± std)", "paper %",
          "paper source", "deviations from the paper's recipe"] + (["config"] if with_config else [])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    cells = [r.dataset, r.protocol, r.method, r.scorer, r.label, str(r.n), _value(r.mean, r.std), _paper(r),
             r.paper_source or "", "; ".join(r.deviations) or "none"] + ([r.config_id] if with_config else [])
    lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
  if legend:
    lines += ["", _legend(rows)]
  return "\n".join(lines) + "\n"


def _mean_paper(mean_row: Row, class_rows: Mapping[int | None, Row]) -> str:
  """The paper's side of a wide table's mean cell.

  The column is the mean over the row's classes, so the paper's number beside it is the mean of its per-class
  values for those same classes when it prints all of them (Jezequel et al. Table 3: 88.4 over CIFAR-10 classes 1,
  3, 8, where its all-class mean is 88.2). Otherwise the paper's own mean (`mean_row.paper`) is shown, marked
  '(all classes)' when the runs cover fewer classes than it averages over, so that the two are not read as like
  for like; 'n/a' when the paper has neither.
  """
  complete = mean_row.total_classes is not None and len(mean_row.classes) >= mean_row.total_classes
  if complete and mean_row.paper is not None:
    return _paper(mean_row)
  per_class = [class_rows[k].paper if k in class_rows else None for k in mean_row.classes]
  if per_class and all(p is not None for p in per_class):
    return f"{float(np.mean(per_class)):.1f}"
  if mean_row.paper is None:
    return "n/a"
  return _paper(mean_row) + ("" if complete else " (all classes)")


def wide_markdown(rows: Sequence[Row], *, legend: bool = True) -> str:
  """The rows as compact markdown tables: one per (dataset, protocol), one row per (method, scorer, recipe).

  Columns: 'method (scorer)', one per normal class ('jaxad mean ± std / paper', formatted as in `markdown`), a
  final 'mean of these classes' column when the table has class means ('**jaxad** / paper', see `_mean_paper`;
  the mean's std is in the long layout), 'n' (runs per class: '2', or '2-3' when classes differ), a 'config' column
  (the recipe fingerprint) only when two rows would otherwise look alike, and 'deviations': numbers into the list
  under the table, which gives each distinct deviation text of that table once. The long layout's legend follows
  the last table. Uses only what the rows hold (`table()`'s output, in its order).

  Raises:
    ReportError: no rows, or two rows for the same cell (rows of two `table()` calls mixed).
  """
  if not rows:
    raise ReportError("no rows to print: no run matched.")
  metric = rows[0].metric
  tables: dict[tuple[str, str], dict[tuple[str, str, str], list[Row]]] = {}
  for r in rows:
    tables.setdefault((r.dataset, r.protocol), {}).setdefault((r.method, r.scorer, r.config_id), []).append(r)
  blocks = []
  for (dataset, protocol), groups in tables.items():
    columns = sorted({r.klass for g in groups.values() for r in g if not r.is_mean},
                     key=lambda k: (k is None, k if k is not None else 0))
    with_mean = any(r.is_mean for g in groups.values() for r in g)
    all_classes = tuple(k for k in columns if k is not None)
    with_config = len({(m, s) for m, s, _ in groups}) < len(groups)
    head = ([f"{dataset}, {protocol}: method (scorer)"]
            + [f"{_COLUMN_NAMES.get(protocol, 'class')} {k}: jaxad / paper" if k is not None else "jaxad / paper"
               for k in columns]
            + ([f"mean of these {'tasks' if protocol == 'class_sets' else 'classes'}: jaxad / paper"] if with_mean
               else []) + ["n"]
            + (["config"] if with_config else []) + ["deviations"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    numbers: dict[str, int] = {}  # deviation text -> its number in this table's list, in order of first use
    for (method, scorer, config_id), group in groups.items():
      by_class: dict[int | None, Row] = {}
      means = [r for r in group if r.is_mean]
      for r in group:
        if not r.is_mean:
          if r.klass in by_class:
            raise ReportError(f"two rows for {dataset} {protocol} {method} ({scorer}) class {r.label} with recipe "
                              f"{config_id}: pass the rows of one table() call.")
          by_class[r.klass] = r
      if len(means) > 1:
        raise ReportError(f"two class-mean rows for {dataset} {protocol} {method} ({scorer}) with recipe {config_id}: "
                          "pass the rows of one table() call.")
      cells = [f"{method} ({scorer})"]
      for k in columns:
        r = by_class.get(k)
        cells.append("" if r is None else f"{_value(r.mean, r.std)} / {_paper(r)}")
      if with_mean:
        if means:
          m = means[0]
          # A row whose mean covers fewer classes than the table's columns says which.
          over = f" (classes {', '.join(map(str, m.classes))})" if m.classes != all_classes else ""
          cells.append(f"**{m.mean:.1f}**{over} / {_mean_paper(m, by_class)}")
        else:
          cells.append("")
      ns = sorted(r.n for r in by_class.values())
      cells.append("" if not ns else str(ns[0]) if ns[0] == ns[-1] else f"{ns[0]}-{ns[-1]}")
      if with_config:
        cells.append(config_id)
      refs = []
      for text in _union(r.deviations for r in group):
        numbers.setdefault(text, len(numbers) + 1)
        refs.append(numbers[text])
      cells.append(", ".join(map(str, sorted(refs))) or "none")
      lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if numbers:
      lines += [""] + [f"{i}. {text.replace(chr(10), ' ')}" for text, i in numbers.items()]
    blocks.append("\n".join(lines))
  text = "\n\n".join(blocks)
  if legend:
    text += "\n\n" + _legend(rows)
  return text + "\n"


LAYOUTS = {"long": markdown, "wide": wide_markdown}  # --layout: name -> formatter


def to_json(rows: Sequence[Row], *, skipped: Sequence[tuple[str, str]] = ()) -> dict:
  """The rows as JSON-ready data (percent), with the skipped unfinished workdirs."""
  out = []
  for r in rows:
    d = dataclasses.asdict(r)
    d["label"] = r.label
    out.append(d)
  return {"units": "percent", "metric": rows[0].metric if rows else None, "rows": out,
          "skipped": [{"path": p, "reason": why} for p, why in skipped]}


def _write(path: str, text: str, runs: Sequence[Run], flag: str) -> None:
  target = os.path.realpath(path)
  if os.path.isdir(target):
    raise ReportError(f"{flag}={path} is a folder; give a file name, e.g. {os.path.join(path, 'results.md')}.")
  protected = {os.path.realpath(os.path.join(r.path, n)) for r in runs for n in ("config.json", "summary.json")}
  if target in protected:
    raise ReportError(f"{flag}={path} is a run's own file; give another file name.")
  try:
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    with open(path, "w") as f:
      f.write(text)
  except OSError as e:
    raise ReportError(f"cannot write {flag}={path}: {e.strerror} (errno {e.errno}); pick a writable path.") from None


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m jaxad.report WORKDIR... [--metric M] [--split S] [--scorers a,b] [--layout long|wide] [--markdown OUT]
  [--json OUT]`.

  Args:
    argv: the arguments without the program name (None = sys.argv[1:]).

  Returns:
    0, or 2 after one `jaxad.report: error: ...` line on stderr.
  """
  parser = argparse.ArgumentParser(prog="python -m jaxad.report", description=__doc__.split("\n\n")[0].strip())
  parser.add_argument("workdirs", nargs="+", help="workdirs, class_K parents or folders of workdirs")
  parser.add_argument("--metric", default="auroc", help="summary.json metric (auroc, ap, max_ba, eer, ...)")
  parser.add_argument("--split", default="test", help="evaluated split in summary.json (default: test)")
  parser.add_argument("--scorers", default="", help="comma-separated scorers to keep (default: all)")
  parser.add_argument("--layout", default="long", choices=LAYOUTS,
                      help="long: one row per class and scorer (default); wide: one table per dataset and protocol, "
                           "one column per class, deviations numbered under it")
  parser.add_argument("--markdown", default="", help="also write the printed table (either layout) to this file")
  parser.add_argument("--json", default="", help="also write the rows as JSON to this file")
  args = parser.parse_args(argv)
  skipped: list[tuple[str, str]] = []
  try:
    runs = collect(args.workdirs, skipped=skipped)
    rows = table(runs, args.metric, split=args.split,
                 scorers=[s.strip() for s in args.scorers.split(",") if s.strip()] or None)
    text = LAYOUTS[args.layout](rows)
    if args.markdown:
      _write(args.markdown, text, runs, "--markdown")
    if args.json:
      _write(args.json, json.dumps(to_json(rows, skipped=skipped), indent=2) + "\n", runs, "--json")
  except ReportError as e:
    print(f"jaxad.report: error: {e}", file=sys.stderr)
    return 2
  for path, why in skipped:
    print(f"jaxad.report: skipped {path}: it {why}", file=sys.stderr)
  print(text, end="")
  return 0


if __name__ == "__main__":
  sys.exit(main())
