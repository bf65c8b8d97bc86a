"""jaxad.sweep: a classes x seeds table as one program gives each task the result of its separate run."""

import json
import os

import jax
import numpy as np
import pytest

from jaxad import sweep, train
from jaxad.checkpoint import restore_output
from jaxad.config import SWEEP_DEFAULTS, load_config
from jaxad.errors import ConfigError, Preempted
from helpers import config_file  # pylint: disable=g-bad-import-order

CLASSES, SEEDS = (0, 1), (1, 2)


def _config(**sweep_keys):
  c = load_config(config_file("quickstart.py") + ":runlocal=True")  # digits, MOCCA hard, 2 + 2 epochs
  c.data.normal_classes = CLASSES
  c.sweep = dict(SWEEP_DEFAULTS, **sweep_keys)
  return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Workdirs: the separate runs of every (class, seed), and the same table swept."""
  root = tmp_path_factory.mktemp("sweep")
  for seed in SEEDS:
    c = _config()
    c.seed = seed
    train.train_and_evaluate(c, str(root / "separate" / f"seed_{seed}"))
  train.train_and_evaluate(_config(enabled=True, seeds=SEEDS), str(root / "swept"))  # 'auto': unrolled on CPU
  train.train_and_evaluate(_config(enabled=True, seeds=SEEDS, strategy="vmap"), str(root / "swept_vmap"))
  return root


def _summary(workdir):
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def _params(workdir, phase="train"):
  return restore_output(os.path.join(workdir, "checkpoints", phase, "output")).variables["params"]


# Unrolled, a task's step is its separate run's: equal to float32 rounding of the program's other fusions. A vmapped
# convolution sums in another order, and Adam's 1 / sqrt(v) scales those last bits up where a gradient is small.
@pytest.mark.parametrize("swept_dir, metric_tol, param_tol", [("swept", 1e-4, 1e-5), ("swept_vmap", 1e-3, 1e-4)])
def test_each_task_equals_its_separate_run(runs, swept_dir, metric_tol, param_tol):
  for seed in SEEDS:
    for k in CLASSES:
      alone = runs / "separate" / f"seed_{seed}" / f"class_{k}"
      swept = runs / swept_dir / f"seed_{seed}" / f"class_{k}"
      a, b = _summary(alone), _summary(swept)
      assert a.keys() == b.keys()
      for m in a:
        assert b[m] == pytest.approx(a[m], abs=metric_tol), (seed, k, m)
      for phase in ("pretrain", "train"):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(y, x, rtol=param_tol, atol=param_tol),
                     _params(alone, phase), _params(swept, phase))


def test_tasks_differ_and_workdirs_look_like_separate_runs(runs):
  # Different seeds and classes really train different networks (the task axis is not broadcast by mistake).
  p = {(k, s): _params(runs / "swept" / f"seed_{s}" / f"class_{k}") for k in CLASSES for s in SEEDS}
  leaf = lambda tree: np.asarray(jax.tree.leaves(tree)[0])
  assert not np.allclose(leaf(p[(0, 1)]), leaf(p[(0, 2)]))
  assert not np.allclose(leaf(p[(0, 1)]), leaf(p[(1, 1)]))
  with open(runs / "swept" / "seed_2" / "class_1" / "config.json") as f:
    swept = json.load(f)
  with open(runs / "separate" / "seed_2" / "class_1" / "config.json") as f:
    alone = json.load(f)
  assert swept == alone  # same recipe fingerprint for jaxad.report, and --mode=eval / a resume accept it
  record = json.load(open(runs / "swept" / "sweep.json"))
  assert [(t["class"], t["seed"]) for t in record["tasks"]] == [(k, s) for s in SEEDS for k in CLASSES]
  assert set(record["seconds"]) == {"pretrain", "center", "train", "evaluate"}


def test_finished_sweep_is_skipped_and_rescored(runs):
  before = _summary(runs / "swept" / "seed_1" / "class_0")
  out = train.train_and_evaluate(_config(enabled=True, seeds=SEEDS), str(runs / "swept"))
  assert out["seed_1/class_0/test/hypersphere/auroc"] == pytest.approx(before["test/hypersphere/auroc"], abs=0)


class _StopAt(train.StopRequests):
  """A SIGTERM that arrives during step `at` of the first training phase."""

  def __init__(self, at):
    super().__init__()
    self.at = at

  def requested(self, step):
    if step == self.at and self.signum is None:
      self.signum = 15
    return super().requested(step)


def test_preempted_sweep_resumes_to_the_same_result(runs, tmp_path):
  config = _config(enabled=True, seeds=SEEDS)
  with pytest.raises(Preempted):
    sweep.run_sweep(config, str(tmp_path), stop=_StopAt(2))
  assert sorted(os.listdir(tmp_path / "checkpoints" / "pretrain" / "steps")) == ["2"]
  sweep.run_sweep(config, str(tmp_path))
  for k in CLASSES:
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(y, x), _params(runs / "swept" / "seed_2" / f"class_{k}"),
                 _params(tmp_path / "seed_2" / f"class_{k}"))


@pytest.mark.parametrize("change, message", [
    (lambda c: c.sweep.update(seeds=(-1,)), "sweep.seeds=-1 is out of range"),
    (lambda c: c.sweep.update(seeds=(1, 1)), "sweep.seeds=.* distinct seeds"),
    (lambda c: c.sweep.update(strategy="pmap"), "sweep.strategy='pmap' is not valid"),
    (lambda c: c.update(keep="min_loss"), "does not track per task"),
])
def test_bad_sweeps_are_refused_before_training(tmp_path, change, message):
  config = _config(enabled=True, seeds=SEEDS)
  change(config)
  with pytest.raises(ConfigError, match=message):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
