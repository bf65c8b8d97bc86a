"""`python -m jaxad.report` on fake workdirs: statistics against NumPy, paper values, deviations, errors, the CLI.

No training: each workdir is a config.json (a real one from configs/, or /tmp/ssl_rl's when a runlocal run left it)
and a summary.json with made-up numbers.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib

import numpy as np
import pytest

from jaxad import papers, report
from jaxad.config import load_config

from helpers import set_dotted  # pylint: disable=g-bad-import-order

REPO = pathlib.Path(__file__).resolve().parents[1]
REAL_RUNLOCAL = pathlib.Path("/tmp/ssl_rl/config.json")  # left by a runlocal run of configs/ssl_cifar10.py


def _config(spec: str) -> dict:
  return json.loads(load_config(str(REPO / "configs" / spec)).to_json())


@pytest.fixture(scope="module")
def ssl_runlocal() -> dict:
  """A runlocal G+J CIFAR-10 config for class 1: the real config.json of /tmp/ssl_rl when present, else built."""
  if REAL_RUNLOCAL.exists():
    return json.loads(REAL_RUNLOCAL.read_text())
  return _config("ssl_cifar10.py:normal_class=1,runlocal")


@pytest.fixture(scope="module")
def ssl_full() -> dict:
  return _config("ssl_cifar10.py")


def _workdir(root: pathlib.Path, name: str, config: dict, summary: dict | None, **changes) -> pathlib.Path:
  """A fake workdir with config.json (with `changes`: 'data.normal_class'=3, ...) and summary.json (None: none)."""
  config = copy.deepcopy(config)
  for key, value in changes.items():
    set_dotted(config, key, value)
  path = root / name
  path.mkdir(parents=True)
  (path / "config.json").write_text(json.dumps(config))
  if summary is not None:
    (path / "summary.json").write_text(json.dumps(summary))
  return path


def _summary(auroc: dict[str, float], eer: float = 0.25) -> dict:
  out = {}
  for scorer, a in auroc.items():
    out.update({f"test/{scorer}/auroc": a, f"test/{scorer}/eer": eer, f"test/{scorer}/ap": 0.9})
  return out


# --------------------------------------------------------------------------------------------------------------------
# Statistics.


def test_mean_std_over_seeds_and_classes_match_numpy(tmp_path, ssl_runlocal):
  rng = np.random.default_rng(0)
  values = {(k, s): rng.uniform(0.5, 1.0) for k in (1, 3) for s in (1, 2, 3)}
  values[(3, 4)] = 0.99  # class 3 has a fourth seed: it counts for the class row, not for the mean row's std
  for (k, s), v in values.items():
    _workdir(tmp_path, f"c{k}_s{s}", ssl_runlocal, _summary({"multitask": v, "jigsaw": 1 - v}),
             **{"data.normal_class": k, "seed": s})
  runs = report.collect(str(tmp_path))
  assert len(runs) == 7
  rows = report.table(runs)
  multitask = {r.label: r for r in rows if r.scorer == "multitask"}
  assert sorted(multitask) == ["1", "3", "mean (2/10)"]
  for k, seeds in ((1, (1, 2, 3)), (3, (1, 2, 3, 4))):
    v = np.array([values[(k, s)] for s in seeds]) * 100
    row = multitask[str(k)]
    assert row.n == len(seeds) and row.seeds == seeds
    np.testing.assert_allclose([row.mean, row.std], [v.mean(), v.std(ddof=0)], rtol=1e-12)
  per_seed = [np.mean([values[(1, s)], values[(3, s)]]) * 100 for s in (1, 2, 3)]
  class_means = [np.mean([values[(1, s)] for s in (1, 2, 3)]), np.mean([values[(3, s)] for s in (1, 2, 3, 4)])]
  mean_row = multitask["mean (2/10)"]
  assert mean_row.is_mean and mean_row.classes == (1, 3) and mean_row.n == 3 and mean_row.seeds == (1, 2, 3)
  np.testing.assert_allclose([mean_row.mean, mean_row.std], [np.mean(class_means) * 100, np.std(per_seed)],
                             rtol=1e-12)
  # The paper's numbers (Jezequel et al. Table 3) beside them; the mean row says it covers 2 of 10 classes.
  assert (multitask["1"].paper, multitask["3"].paper, mean_row.paper) == (96.3, 74.2, 88.2)
  assert multitask["1"].paper_source == "Jezequel et al. Table 3"
  assert any(d.startswith("classes: 2 of 10") for d in mean_row.deviations)
  jigsaw = [r for r in rows if r.scorer == "jigsaw"]
  assert all(r.paper is None for r in jigsaw)  # the paper reports only the combined score
  np.testing.assert_allclose(jigsaw[0].mean, np.mean([1 - values[(1, s)] for s in (1, 2, 3)]) * 100, rtol=1e-12)


def test_runs_of_different_recipes_or_repeated_seeds_are_kept_apart(tmp_path, ssl_runlocal):
  _workdir(tmp_path, "a", ssl_runlocal, _summary({"multitask": 0.7}))
  _workdir(tmp_path, "b", ssl_runlocal, _summary({"multitask": 0.8}))  # the same seed again
  _workdir(tmp_path, "c", ssl_runlocal, _summary({"multitask": 0.9}), **{"train.epochs": 5})
  rows = [r for r in report.table(report.collect(str(tmp_path)), scorers=["multitask"]) if not r.is_mean]
  assert [(r.n, round(r.mean, 6)) for r in sorted(rows, key=lambda r: r.mean)] == [(2, 75.0), (1, 90.0)]
  repeated = next(r for r in rows if r.n == 2)
  assert "repeated seed: 1 (2 runs)" in repeated.deviations
  five = next(r for r in rows if r.n == 1)
  assert any("train.epochs=5 (recipe 15" in d for d in five.deviations)
  text = report.markdown(rows)
  assert "| config |" in text.splitlines()[0]  # two rows look alike apart from their recipe


def test_other_metric_and_eer(tmp_path, ssl_runlocal):
  for s, e in ((1, 0.2), (2, 0.3)):
    _workdir(tmp_path, f"s{s}", ssl_runlocal, _summary({"multitask": 0.8}, eer=e), seed=s)
  row = report.table(report.collect(str(tmp_path)), "eer", scorers=["multitask"])[0]
  np.testing.assert_allclose([row.mean, row.std], [25.0, 5.0], rtol=1e-12)
  assert row.paper is None and row.metric == "eer"


# --------------------------------------------------------------------------------------------------------------------
# The papers' numbers.


def test_lookup_published_values():
  assert papers.lookup("ssl_multitask/G+J", "multitask", "cifar10", "one_vs_rest", 1).value == 96.3
  assert papers.lookup("geotrans", "dirichlet", "cifar10", "one_vs_rest", 0).value == 74.7
  mocca = papers.lookup("mocca/soft", "hypersphere", "cifar10", "one_vs_rest", 1)
  assert (mocca.value, mocca.std, mocca.table) == (74.6, 0.8, "Table I")
  assert papers.lookup("dsvdd/hard", "hypersphere", "cifar10", "one_vs_rest", None).value == 64.8
  adib = papers.lookup("adib", "oe_sigmoid", "cifar10", "one_vs_rest", 3)
  assert (adib.value, adib.std, adib.source) == (97.0, 0.7, "Deecke et al. 2021 Table 5")
  assert papers.lookup("adra/oe=svhn", "oe_sigmoid", "cifar10", "one_vs_rest", None).value == 75.3
  assert papers.lookup("adib", "oe_sigmoid", "cifar10", "leave_one_out", None, "ap").value == 74.6
  assert papers.lookup("adib", "oe_sigmoid", "stl10", "leave_one_out", 0, "ap").value == 41.4
  assert papers.lookup("adib", "oe_sigmoid", "stl10", "leave_one_out", 0, "auroc") is None  # Table 3 is AP only
  assert papers.lookup("ssl_multitask/G+J", "multitask", "cifar10", "ood:svhn", None).value == 98.8
  assert papers.lookup("ssl_multitask/G+J", "multitask", "cifar10", "ood:cifar100", None).value == 83.4
  assert papers.lookup("ssl_multitask/J", "multitask", "cifar100", "one_vs_rest", None).value == 80.1
  assert papers.lookup("deep_sad/10%", "hypersphere", "cifar100", "one_vs_rest", None).value == 89.1
  assert papers.lookup("mhrot", "mhrot", "mnist", "one_vs_rest", None).value == 95.2
  # CUB-200-2011 stands in for the paper's CUB-200 (2010): the lookup finds the paper's number.
  assert papers.lookup("ssl_multitask/G+J", "multitask", "caltech_birds2011", "one_vs_rest", None).value == 83.2
  assert papers.lookup("mhrot", "mhrot", "cifar10", "one_vs_rest", None) is None  # not in the paper


def test_per_class_tables_agree_with_the_papers_means():
  """Each per-class table averages to the mean the paper prints next to it (to its rounding): catches a typo."""
  per_class, means = {}, {}
  for p in papers.PUBLISHED:
    key = (p.method, p.scorer, p.dataset, p.protocol, p.metric, p.paper)
    if p.klass is None:
      means.setdefault(key, []).append(p.value)
    else:
      per_class.setdefault(key, {})[p.klass] = p.value
  for key in [k for k in per_class if k[-1] in (papers.ANDREWS, papers.MINHAS)]:  # tables without a mean column
    assert sorted(per_class.pop(key)) == (["MNIST-1", "MNIST-2", "MNIST-3", "MNIST-4"] if key[-1] == papers.ANDREWS
                                          else list(range(10))), key
  # MOCCA x4 (+ MVTec maxBA and AUC x2), Deecke Table 5 x2 and Table 3 x2, Jezequel Table 3 x2
  assert len(per_class) == 14
  for key, by_class in per_class.items():
    mvtec = key[2] == "mvtec"
    assert sorted(by_class) == sorted(papers.MVTEC_CATEGORIES if mvtec else range(10)), key
    (mean,) = means[key]
    # MOCCA prints MVTec's values to two digits (x100: whole percent), the others to three or one decimal.
    assert abs(np.mean(list(by_class.values())) - mean) <= (0.5 if mvtec else 0.05) + 1e-9, key


def test_andrews_and_minhas_values_by_task_and_class():
  gs = papers.lookup("deep_features/greyscale", "GS", "mnist", "class_sets", "MNIST-3", "ocsvm_auroc")
  assert (gs.value, gs.std, gs.source) == (43.21, 1.89, "Andrews et al. 2016 Table 3 (GS)")
  assert papers.lookup("deep_features/vgg_m", "FC6", "mnist", "class_sets", "MNIST-4", "ocsvm_auroc").value == 51.10
  assert papers.lookup("deep_features/vgg_f", "P5", "mnist", "class_sets", "MNIST-1", "auroc") is None  # over nu only
  # Table I's columns are plane, car, bird, cat, deer, frog, horse, ship, truck, dog: frog is CIFAR-10's label 6.
  frog = papers.lookup("finetune/densenet169", "p_anomaly", "cifar10", "anomaly_vs_rest_sample", 6)
  assert (frog.value, frog.source) == (99.1758, "Minhas & Zelek Table I (DenseNet-169)")
  assert papers.lookup("finetune/inception_v4", "p_anomaly", "cifar10", "anomaly_vs_rest_sample", 5).value == 93.1945
  assert papers.lookup("finetune/resnet152", "p_anomaly", "mnist", "anomaly_vs_rest_sample", 9).value == 99.8982
  assert papers.andrews_task((9, 7, 5, 3, 1), (2,)) == "MNIST-3" and papers.andrews_task((5,), (3,)) is None


def test_method_and_protocol_keys():
  assert papers.method_key(_config("mocca_cifar10.py")) == "mocca/soft"
  assert papers.method_key(_config("dsvdd_cifar10.py")) == "dsvdd/hard"
  assert papers.method_key(_config("deep_sad_cifar10.py:class_fraction=0.75")) == "deep_sad/75%"
  assert papers.method_key(_config("adib_cifar10.py")) == "adib"
  assert papers.method_key(_config("adra_cifar10.py:oe=svhn")) == "adra/oe=svhn"
  assert papers.method_key(_config("ssl_cifar10.py:tasks=jigsaw")) == "ssl_multitask/J"
  ood = _config("ssl_ood_cifar10.py:ood=cifar100")
  assert (papers.protocol_key(ood), papers.class_key(ood)) == ("ood:cifar100", None)


# --------------------------------------------------------------------------------------------------------------------
# Deviations.


def test_deviations_of_a_runlocal_config(ssl_runlocal):
  devs = report.deviations(ssl_runlocal)
  assert devs == ["subset: data.train_limit=256 (recipe: all)", "subset: data.test_limit=200 (recipe: all)",
                  "reduced epochs: train.epochs=2 (recipe 15: jaxad's choice (not in the paper), configs/common.py "
                  "self_supervised())", "network WRN-10-1 (recipe WRN-16-4: Jezequel et al. section 3)"]
  mocca = report.deviations(load_config(str(REPO / "configs/mocca_cifar10.py:runlocal")))  # a ConfigDict works too
  assert [d.split(" (")[0] for d in mocca] == ["subset: data.train_limit=1024", "subset: data.test_limit=1000",
                                               "reduced epochs: pretrain.epochs=2", "reduced epochs: train.epochs=2",
                                               "objective.warmup_epochs=1"]


@pytest.mark.parametrize("spec", ["ssl_cifar10.py", "mocca_cifar10.py", "mocca_cifar10.py:boundary=hard",
                                  "andrews_gs_mnist.py:task=4",
                                  "dsvdd_cifar10.py", "deep_sad_cifar10.py", "geotrans_cifar10.py",
                                  "mhrot_cifar10.py:dataset=cifar100", "ssl_cifar100.py", "ssl_ood_cifar10.py"])
def test_full_recipes_have_no_deviations(spec):
  assert report.deviations(_config(spec)) == []


def test_each_recipe_fact_is_checked(ssl_full):
  def changed(**changes):
    c = copy.deepcopy(ssl_full)
    for key, value in changes.items():
      set_dotted(c, key, value)
    return report.deviations(c)

  assert changed(**{"train.epochs": 30}) == [
      "more epochs: train.epochs=30 (recipe 15: jaxad's choice (not in the paper), configs/common.py "
      "self_supervised())"]
  assert changed(**{"train.batch_size": 64}) == ["train.batch_size=64 (recipe 32: Jezequel et al. section 3)"]
  assert changed(**{"model.head_dropout": 0.0}) == ["network model.head_dropout=0 (recipe 0.3: Jezequel et al. "
                                                    "section 3)"]
  assert changed(**{"data.name": "cifar100", "data.label_mode": "fine"}) == [
      "data.label_mode=fine (recipe coarse: Jezequel et al. Table 2: CIFAR-100's 20 super-classes)"]
  assert changed(**{"data.name": "svhn"})[0].startswith("no recipe recorded for ssl_multitask on 'svhn'")
  assert changed(**{"method": "hsc", "data.test_limit": 10}) == [
      "no paper recipe recorded for method 'hsc' (jaxad/papers.py RECIPES): only subsets checked",
      "subset: data.test_limit=10 (recipe: all)"]
  birds = report.deviations(_config("ssl_caltech_birds.py"))  # batch 16 is the recipe there; the data stands in
  assert birds == [papers.DATASET_STAND_INS["caltech_birds2011"][1]]


def test_source_weight_rule(tmp_path):
  adib = _config("adib_cifar10.py")
  assert adib["transfer"]["source"] == "random"
  assert report.deviations(adib) == [
      "random initialisation instead of source weights (transfer.source='random'; recipe: "
      + papers.RECIPES["adib"].facts[1].value["cifar10"].what + ")"]

  def source_devs(path):
    c = copy.deepcopy(adib)
    c["transfer"]["source"] = str(path)
    return report.deviations(c)

  converted = tmp_path / "weights" / "resnet26_transferad"  # what the converter writes: an Orbax checkpoint
  converted.mkdir(parents=True)
  (converted / "_CHECKPOINT_METADATA").write_text("{}")
  assert source_devs(converted) == []
  trained = tmp_path / "src_c100"  # `<workdir>/source` of configs/pretrain_resnet26_cifar100.py
  (trained / "source").mkdir(parents=True)
  (trained / "source" / "_METADATA").write_text("{}")
  (trained / "config.json").write_text(json.dumps({"method": "supervised", "data": {"name": "cifar100"}}))
  (dev,) = source_devs(trained / "source")
  assert dev.startswith(f"self-trained source weights {trained / 'source'} (a jaxad supervised run on cifar100)")
  (dev,) = source_devs(tmp_path / "missing")
  assert "not found when the report ran: cannot tell" in dev
  (dev,) = source_devs(tmp_path / "weights")  # a folder, but no checkpoint in it
  assert "hold no Orbax checkpoint" in dev
  stl = copy.deepcopy(adib)
  stl["data"]["name"], stl["oe"]["name"], stl["transfer"]["source"] = "stl10", "stl10", str(converted)
  (dev,) = report.deviations(stl)
  assert "of unknown origin: the paper's were never released" in dev


# --------------------------------------------------------------------------------------------------------------------
# Finding workdirs and errors.


def test_collect_recurses_into_class_folders_and_skips_unfinished(tmp_path, ssl_runlocal):
  parent = tmp_path / "sweep" / "multi"  # data.normal_classes=(1, 3): class_K sub-workdirs, no config.json on top
  parent.mkdir(parents=True)
  (parent / "summary.json").write_text(json.dumps({"class_1/test/multitask/auroc": 0.8,
                                                   "mean/test/multitask/auroc": 0.8}))
  for k in (1, 3):
    _workdir(parent, f"class_{k}", ssl_runlocal, _summary({"multitask": 0.8}), **{"data.normal_class": k})
  _workdir(tmp_path / "sweep" / "checkpoints", "x", ssl_runlocal, _summary({"multitask": 0.8}))  # never searched
  _workdir(tmp_path / "sweep", "running", ssl_runlocal, None)  # a benchmark still writing it
  skipped = []
  runs = report.collect([str(tmp_path / "sweep")], skipped=skipped)
  assert sorted(r.klass for r in runs) == [1, 3]
  why = report._WHY["no_summary"]  # pylint: disable=protected-access
  assert skipped == [(str(tmp_path / "sweep" / "running"), why)]
  assert len(report.collect([str(parent), str(parent / "class_1")])) == 2  # given twice: counted once


def test_errors_name_the_path_and_the_fix(tmp_path, ssl_runlocal):
  def error(*paths):
    with pytest.raises(report.ReportError) as e:
      report.collect(list(paths))
    assert "\n" not in str(e.value)
    return str(e.value)

  assert "does not exist" in error(str(tmp_path / "nope"))
  (tmp_path / "file.txt").write_text("x")
  assert "is a file, not a workdir" in error(str(tmp_path / "file.txt"))
  (tmp_path / "empty").mkdir()
  assert error(str(tmp_path / "empty")).startswith(f"no runs found under {tmp_path / 'empty'}")
  unfinished = _workdir(tmp_path, "unfinished", ssl_runlocal, None)
  assert "has config.json but no summary.json" in error(str(unfinished))
  only = tmp_path / "only"
  _workdir(only, "r", ssl_runlocal, None)
  assert "1 unfinished workdir(s) below it" in error(str(only))
  no_config = tmp_path / "no_config"
  no_config.mkdir()
  (no_config / "summary.json").write_text("{}")
  assert "has summary.json but no config.json" in error(str(no_config))
  broken = _workdir(tmp_path, "broken", ssl_runlocal, {})
  (broken / "summary.json").write_text("{not json")
  assert "summary.json is not valid JSON" in error(str(broken))
  assert "no workdirs given" in error()
  good = _workdir(tmp_path, "good", ssl_runlocal, _summary({"multitask": 0.7}))
  with pytest.raises(report.ReportError, match=r"no run has 'test/<scorer>/f1_max'.*metrics found: \['ap', 'auroc'"):
    report.table(report.collect(str(good)), "f1_max")


# --------------------------------------------------------------------------------------------------------------------
# The wide layout (README's tables).


def _wide_tables(text: str) -> list[dict]:
  """Each table of `wide_markdown`'s text as {'head': [...], 'rows': [[cells], ...], 'notes': {number: text}}."""
  tables, current = [], None
  for line in text.splitlines():
    if line.startswith("| "):
      cells = line[2:-2].split(" | ")
      if current is None:
        current = {"head": cells, "rows": [], "notes": {}}
        tables.append(current)
      else:
        current["rows"].append(cells)
    elif line.startswith("|---"):
      continue
    elif current is not None and line[:1].isdigit():
      number, note = line.split(". ", 1)
      assert int(number) not in current["notes"]
      current["notes"][int(number)] = note
    elif not line:
      if current is not None and current["notes"]:
        current = None
  return tables


def _pct(values) -> str:
  """'mean ± std' in percent of the fractions `values` (std over seeds, ddof 0; none for one run), by NumPy."""
  v = np.asarray(values, np.float64) * 100
  return f"{v.mean():.1f}" + (f" ± {v.std(ddof=0):.1f}" if v.size > 1 else "")


def test_wide_layout_cells_match_numpy_and_deviations_are_numbered_once(tmp_path, ssl_runlocal):
  classes = (1, 3, 8)
  seeds = {("G+J", k): (1, 2) for k in classes} | {("G", k): (1, 2) for k in classes}
  seeds[("G", 8)] = (1, 2, 3)  # a third seed for one class: n reads '2-3'
  rng = np.random.default_rng(1)
  values = {(m, k, s): rng.uniform(0.5, 1.0) for (m, k), ss in seeds.items() for s in ss}
  g_changes = {"objective.tasks": "geometric", "train.epochs": 1}  # G: no paper value, one deviation of its own
  for (m, k, s), v in values.items():
    _workdir(tmp_path, f"{m}_c{k}_s{s}", ssl_runlocal, _summary({"multitask": v}),
             **{"data.normal_class": k, "seed": s}, **(g_changes if m == "G" else {}))
  rows = report.table(report.collect(str(tmp_path)), scorers=["multitask"])
  text = report.wide_markdown(rows)
  (table,) = _wide_tables(text)
  by_method = {cells[0]: cells for cells in table["rows"]}
  assert table["head"] == (["cifar10, one_vs_rest: method (scorer)"]
                           + [f"class {k}: jaxad / paper" for k in classes]
                           + ["mean of these classes: jaxad / paper", "n", "deviations"])
  assert list(by_method) == ["ssl_multitask/G (multitask)", "ssl_multitask/G+J (multitask)"]
  paper = {k: papers.lookup("ssl_multitask/G+J", "multitask", "cifar10", "one_vs_rest", k).value for k in classes}
  assert paper == {1: 96.3, 3: 74.2, 8: 94.7}  # Jezequel et al. Table 3
  for m in ("G", "G+J"):
    cells = by_method[f"ssl_multitask/{m} (multitask)"]
    for i, k in enumerate(classes):
      theirs = f"{paper[k]:.1f}" if m == "G+J" else "n/a"
      assert cells[1 + i] == f"{_pct([values[(m, k, s)] for s in seeds[(m, k)]])} / {theirs}"
    class_means = [np.mean([values[(m, k, s)] for s in seeds[(m, k)]]) * 100 for k in classes]
    # The paper's side of the mean: its mean over the same three classes (88.4), not its all-class mean (88.2).
    theirs = f"{np.mean(list(paper.values())):.1f}" if m == "G+J" else "n/a"
    assert cells[4] == f"**{np.mean(class_means):.1f}** / {theirs}"
    assert cells[5] == ("2-3" if m == "G" else "2")
  assert by_method["ssl_multitask/G+J (multitask)"][4].endswith(" / 88.4")

  # Deviations: each text once in the numbered list, each row's last cell the numbers of exactly its texts.
  notes = table["notes"]
  assert sorted(notes) == list(range(1, len(notes) + 1)) and len(set(notes.values())) == len(notes)
  number = {t: i for i, t in notes.items()}
  classes_note = "classes: 3 of 10 (1, 3, 8); the paper averages over all"
  g_config = copy.deepcopy(ssl_runlocal)
  for key, value in g_changes.items():
    set_dotted(g_config, key, value)
  for m, config in (("G+J", ssl_runlocal), ("G", g_config)):
    expected = set(report.deviations(config)) | {classes_note}
    refs = by_method[f"ssl_multitask/{m} (multitask)"][-1]
    assert refs == ", ".join(str(i) for i in sorted(number[t] for t in expected))
  # The texts both methods share (the subsets, the class mean) are listed once; G's epochs are its own.
  assert len(notes) == len(set(report.deviations(ssl_runlocal)) | set(report.deviations(g_config)) | {classes_note})
  assert "subset: data.train_limit=256 (recipe: all)" in set(report.deviations(g_config))
  assert any(t.startswith("reduced epochs: train.epochs=1 ") for t in notes.values())
  # The long layout's legend closes it; the long layout of the same rows is untouched.
  assert text.endswith("\n\n" + report.markdown(rows).rstrip("\n").splitlines()[-1] + "\n")
  assert report.markdown(rows).splitlines()[0].startswith("| dataset | protocol | method | scorer | class | n |")


def test_wide_layout_paper_means_over_other_classes_single_runs_and_recipes(tmp_path, ssl_runlocal):
  # CIFAR-100 super-classes, J: the paper gives only its mean over all 20 (Table 4), so the cell says so.
  j = {"data.name": "cifar100", "data.label_mode": "coarse", "objective.tasks": "jigsaw"}
  for k, v in ((4, 0.61), (9, 0.72)):
    _workdir(tmp_path / "c100", f"c{k}", ssl_runlocal, _summary({"multitask": v}), **{"data.normal_class": k}, **j)
  # CIFAR-10 G+J over all 10 classes: the paper's own printed mean, unmarked.
  rng = np.random.default_rng(2)
  all10 = {k: rng.uniform(0.5, 1.0) for k in range(10)}
  for k, v in all10.items():
    _workdir(tmp_path / "c10", f"c{k}", ssl_runlocal, _summary({"multitask": v}), **{"data.normal_class": k})
  _workdir(tmp_path / "c10", "c1_e5", ssl_runlocal, _summary({"multitask": 0.5}),  # a second recipe, one class
           **{"data.normal_class": 1, "train.epochs": 5})
  c10, c100 = _wide_tables(report.wide_markdown(report.table(report.collect(str(tmp_path)), scorers=["multitask"])))
  (cells,) = c100["rows"]
  assert cells[1:] == ["61.0 / n/a", "72.0 / n/a", f"**{np.mean([61.0, 72.0]):.1f}** / 80.1 (all classes)", "1",
                       cells[-1]]
  assert c10["head"][-3:] == ["n", "config", "deviations"]  # two recipes of one method and scorer
  full, e5 = sorted(c10["rows"], key=lambda c: c[1].startswith("50.0"))
  assert full[11] == f"**{np.mean(list(all10.values())) * 100:.1f}** / 88.2" and full[12] == "1"
  assert e5[1:11] == ["", "50.0 / 96.3"] + [""] * 8 and e5[12] == "1"
  # Its class mean covers class 1 only (the paper has one for it), and says so; the paper's side is class 1's too.
  assert e5[11] == "**50.0** (classes 1) / 96.3"
  assert full[13] != e5[13] and all(len(c[13]) == 8 for c in (full, e5))  # the config column tells them apart


# --------------------------------------------------------------------------------------------------------------------
# Command line.


def test_cli_end_to_end(tmp_path, ssl_runlocal, capsys):
  runs = tmp_path / "runs"
  for s, v in ((1, 0.70), (2, 0.80)):
    _workdir(runs, f"gj_s{s}", ssl_runlocal, _summary({"multitask": v}), seed=s)
  md, js = tmp_path / "out" / "table.md", tmp_path / "out" / "rows.json"
  assert report.main([str(runs), "--scorers=multitask", f"--markdown={md}", f"--json={js}"]) == 0
  out = capsys.readouterr().out
  assert out == md.read_text()
  row = next(line for line in out.splitlines() if "| 1 |" in line)
  assert row.split(" | ")[6:8] == ["75.0 ± 5.0", "96.3"]
  assert "reduced epochs: train.epochs=2" in row and "network WRN-10-1" in row
  data = json.loads(js.read_text())
  assert data["units"] == "percent" and [r["label"] for r in data["rows"]] == ["1", "mean (1/10)"]
  np.testing.assert_allclose([data["rows"][0]["mean"], data["rows"][0]["std"]], [75.0, 5.0], rtol=1e-12)
  assert data["rows"][1]["paper"] == 88.2

  assert report.main([str(tmp_path / "nope")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("jaxad.report: error: ") and err.count("\n") == 1
  config_json = runs / "gj_s1" / "config.json"
  assert report.main([str(runs), f"--markdown={config_json}"]) == 2  # never overwrites a run's file
  assert "a run's own file" in capsys.readouterr().err
  assert json.loads(config_json.read_text())["method"] == "ssl_multitask"
  assert os.path.getsize(config_json) > 100


def test_cli_layouts(tmp_path, ssl_runlocal, capsys):
  for s, v in ((1, 0.70), (2, 0.80)):
    _workdir(tmp_path / "runs", f"gj_s{s}", ssl_runlocal, _summary({"multitask": v}), seed=s)
  runs = str(tmp_path / "runs")
  assert report.main([runs]) == 0
  default = capsys.readouterr().out
  assert report.main([runs, "--layout=long"]) == 0
  assert capsys.readouterr().out == default == report.markdown(report.table(report.collect(runs)))
  md = tmp_path / "wide.md"
  assert report.main([runs, "--layout=wide", "--scorers=multitask", f"--markdown={md}"]) == 0
  out = capsys.readouterr().out
  assert out == md.read_text() == report.wide_markdown(report.table(report.collect(runs), scorers=["multitask"]))
  assert "| ssl_multitask/G+J (multitask) | 75.0 ± 5.0 / 96.3 | **75.0** / 96.3 | 2 | 1, 2, 3, 4, 5 |" in out
  with pytest.raises(SystemExit) as e:
    report.main([runs, "--layout=tall"])
  assert e.value.code == 2
  assert "argument --layout: invalid choice: 'tall'" in capsys.readouterr().err


def test_mvtec_categories_and_shanghaitech_frames_get_the_papers_values(tmp_path):
  """MOCCA's Tables III-V (per MVTec category, maxBA and AUC, and their means) and VI (ShanghaiTech)."""
  for category, value in (("carpet", 0.8), ("bottle", 0.9)):  # a texture and an object: one recipe, one mean
    _workdir(tmp_path / "mvtec", category, _config(f"mocca_mvtec.py:root=/data/mvtec,category={category}"),
             {"test/hypersphere/auroc": value, "test/hypersphere/max_ba": 0.7})
  rows = report.table(report.collect(str(tmp_path / "mvtec")), "max_ba", scorers=("hypersphere",))
  by_class = {r.klass: r for r in rows}
  assert by_class["carpet"].paper == 81 and by_class["bottle"].paper == 90  # Table III, soft boundary
  assert by_class["carpet"].paper_source == "Massoli et al. (MOCCA) Table III"
  mean = by_class[None]
  assert mean.paper == 83 and mean.paper_source.endswith("Table V") and mean.mean == pytest.approx(70.0)
  assert any("2 of 15" in d for d in mean.deviations)  # the paper averages all 15 categories
  auroc = {r.klass: r for r in report.table(report.collect(str(tmp_path / "mvtec")), "auroc", scorers=("hypersphere",))}
  assert auroc["bottle"].paper == 95 and auroc["bottle"].mean == pytest.approx(90.0)
  assert "per_category" in report.wide_markdown(rows)
  # A run off its category's recipe (fewer epochs) is another recipe: no mean with the others.
  _workdir(tmp_path / "mvtec", "wood", _config("mocca_mvtec.py:root=/data/mvtec,category=wood"),
           {"test/hypersphere/max_ba": 0.5}, **{"train.epochs": 3})
  rows = report.table(report.collect(str(tmp_path / "mvtec")), "max_ba", scorers=("hypersphere",))
  assert len({r.config_id for r in rows}) == 2
  (wood,) = [r for r in rows if r.klass == "wood"]
  assert wood.deviations == ("reduced epochs: train.epochs=3 (recipe 20: configs/mocca_mvtec.py:category=wood)",)
  # A generated set under another name: the texture recipe it names, checked value by value; no paper value.
  woven = _config("mocca_mvtec.py:root=/data/gen,category=woven,recipe=texture")
  woven["patches"]["size"] = 32
  _workdir(tmp_path / "gen", "woven", woven, {"test/hypersphere/auroc": 0.7})
  (row,) = report.table(report.collect(str(tmp_path / "gen")), "auroc", scorers=("hypersphere",))
  assert (row.klass, row.paper) == ("woven", None)
  assert row.deviations == ("patches.size=32 (recipe 64: configs/mocca_mvtec.py:category=woven,recipe=texture)",)
  video = _config("mocca_shanghaitech.py:root=/data/shanghaitech,boundary=hard")
  _workdir(tmp_path / "video", "run", video, {"test/hypersphere/auroc": 0.7})
  (row,) = report.table(report.collect(str(tmp_path / "video")), "auroc", scorers=("hypersphere",))
  assert (row.protocol, row.klass, row.paper) == ("frames", None, 72.5)


def test_execution_keys_and_new_defaults_keep_the_fingerprint():
  """A sweep's task, a rematerialised run and a run recorded before `model.dtype` existed share one recipe."""
  before = _config("dsvdd_cifar10.py")
  before.pop("sweep", None)
  before["model"].pop("dtype", None)
  before["model"].pop("remat", None)
  now = copy.deepcopy(before)
  now["sweep"] = {"enabled": True, "seeds": [1, 2, 3]}
  now["model"].update(dtype="float32", remat=True)
  assert report.fingerprint(now) == report.fingerprint(before)
  now["model"]["dtype"] = "bfloat16"  # other arithmetic: another recipe
  assert report.fingerprint(now) != report.fingerprint(before)


def test_andrews_tasks_are_classes_and_trials_are_replicates(tmp_path):
  """class_sets runs: the MNIST task is the class, the trial (data.protocol_seed) the replicate; one recipe over the
  four tasks and a mean over them beside the mean of the paper's values; random VGG-F weights are a deviation."""
  values = {}
  for t in (1, 2, 3, 4):
    for trial in (0, 1, 2):
      values[t, trial] = 0.4 + 0.1 * t + 0.01 * trial
      _workdir(tmp_path / "gs", f"t{t}_{trial}", _config(f"andrews_gs_mnist.py:task={t},trial={trial}"),
               {"test/GS/ocsvm_auroc": values[t, trial], "test/GS/ocsvm_auroc_min_nu": 0.1})
  rows = report.table(report.collect(str(tmp_path / "gs")), "ocsvm_auroc")
  assert [r.label for r in rows] == ["MNIST-1", "MNIST-2", "MNIST-3", "MNIST-4", "mean (4/4)"]
  assert len({r.config_id for r in rows}) == 1 and all(r.deviations == () for r in rows)
  for r in rows[:4]:
    t = int(r.klass[-1])
    v = np.array([values[t, k] for k in (0, 1, 2)]) * 100
    assert r.seeds == (0, 1, 2) and r.mean == pytest.approx(v.mean()) and r.std == pytest.approx(v.std())
    assert r.paper == papers.lookup("deep_features/greyscale", "GS", "mnist", "class_sets", r.klass,
                                    "ocsvm_auroc").value
  text = report.wide_markdown(rows)
  assert "task MNIST-1: jaxad / paper" in text and "/ 48.8 |" in text  # the mean of GS's four published values
  vgg = _config("andrews_vggf_mnist.py:task=2,weights=random")
  _workdir(tmp_path / "vgg", "run", vgg, {"test/P5/ocsvm_auroc": 0.7})
  (row,) = report.table(report.collect(str(tmp_path / "vgg")), "ocsvm_auroc")
  assert (row.method, row.klass, row.paper) == ("deep_features/vgg_f", "MNIST-2", 88.33)
  assert row.deviations[0].startswith("random initialisation instead of source weights (model.weights='';")
  unit = copy.deepcopy(_config("andrews_gs_mnist.py"))
  unit["objective"]["unit_length"] = True
  assert report.deviations(unit) == ["objective.unit_length=True (recipe False: Andrews et al. section 4.1 and "
                                     "Table 2, GS, the greyscale intensity image)"]


def test_a_swapped_network_is_compared_with_the_recipe_it_comes_from(tmp_path):
  """benchmarks/reproduce_minhas.py's runs: ResNet26 in the DenseNet-169 recipe; a WRN from a jaxad run in VGG-F's."""
  minhas = _config("minhas_densenet169_cifar10.py:anomaly_class=1,weights=random")
  minhas["model"].update(name="resnet26_transferad", input_size=32, kwargs={})
  minhas["train"]["epochs"] = 3
  run = report.load_run(str(_workdir(tmp_path, "m", minhas, {"test/p_anomaly/auroc": 0.88})))
  assert (run.method, run.paper_method, run.klass) == ("finetune/resnet26_transferad", "finetune/densenet169", 1)
  assert [d.split(" (")[0] for d in run.deviations] == [
      "reduced epochs: train.epochs=3", "network ResNet26", "network input model.input_size=32",
      "random initialisation instead of source weights"]
  (row,) = report.table([run], "auroc")  # one class and no published mean: no mean row
  assert (row.paper, row.paper_source) == (99.8933, "Minhas & Zelek Table I (DenseNet-169)")
  converted = tmp_path / "weights" / "densenet169_keras"  # the converter's Orbax checkpoint
  converted.mkdir(parents=True)
  (converted / "_CHECKPOINT_METADATA").write_text("{}")
  full = _config(f"minhas_densenet169_cifar10.py:anomaly_class=1,weights={converted}")
  assert report.deviations(full) == []
  # Weights from a jaxad run's phase output (`<workdir>/checkpoints/train/output`) are self-trained.
  source = tmp_path / "ssl_run"
  (source / "checkpoints" / "train" / "output").mkdir(parents=True)
  (source / "checkpoints" / "train" / "output" / "_METADATA").write_text("{}")
  (source / "config.json").write_text(json.dumps({"method": "ssl_multitask", "data": {"name": "cifar10"}}))
  wrn = _config("andrews_vggf_mnist.py:task=1,weights=random")
  wrn["model"].update(name="wide_resnet", input_size=32, weights=str(source / "checkpoints" / "train" / "output"),
                      kwargs={"depth": 10, "width": 1})
  devs = report.deviations(wrn)
  assert devs[0] == "network WRN-10-1 (recipe VGG-F: Andrews et al. section 4.1 and Table 2)"
  assert devs[-1].startswith("self-trained source weights") and "(a jaxad ssl_multitask run on cifar10)" in devs[-1]
