"""Jezequel et al.'s multi-task self-supervision, MHRot, GeoTrans and Deep SAD: formulas, wiring and runs."""

import itertools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats

from jaxad import scores, train
from jaxad.config import load_config
from jaxad.data import pretext
from jaxad.errors import ConfigError
from jaxad.methods import get_method, mhrot, ssl_multitask
from jaxad.methods.base import DataSpec

from helpers import REPO

SSL_CONFIGS = ("ssl_cifar10", "ssl_cifar100", "ssl_fmnist", "ssl_mnist", "ssl_caltech_birds", "ssl_ood_cifar10",
               "geotrans_cifar10", "mhrot_cifar10", "deep_sad_cifar10")


def _config(name: str, **args) -> ml_collections.ConfigDict:
  arg = ",".join(f"{k}={v}" for k, v in {"runlocal": True, **args}.items())
  return load_config(f"{REPO}/configs/{name}.py:{arg}")


def _softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _init(method, shape, seed=0):
  phase = method.phases[0]
  sample = {"image": jnp.zeros((2, *shape), jnp.float32)}
  return phase.init(jax.random.key(seed), sample, {}).variables


def _built(name: str, seed: int):
  """configs/<name>.py's runlocal method on 32x32x3 images, its initial variables (seed) and its network."""
  c = _config(name)
  method = get_method(c.method)(c, DataSpec((32, 32, 3), 10))
  return method, _init(method, (32, 32, 3), seed), method.phases[0].model


@pytest.mark.parametrize("name", SSL_CONFIGS)
def test_configs_build_their_method(name):
  c = _config(name)
  shape = {"ssl_fmnist": (28, 28, 1), "ssl_mnist": (28, 28, 1), "ssl_caltech_birds": (64, 64, 3)}.get(name, (32, 32, 3))
  method = get_method(c.method)(c, DataSpec(shape, 10))
  assert method.scorers and all(s.kind == "score" for s in method.scorers.values())


def test_ablation_switch_picks_the_heads():
  shape = (32, 32, 3)
  heads = {}
  for tasks in ("geometric+jigsaw", "geometric", "jigsaw"):
    c = _config("ssl_cifar10", tasks=tasks)
    method = get_method("ssl_multitask")(c, DataSpec(shape, 10))
    heads[tasks] = sorted(k[len("head_"):] for k in _init(method, shape)["params"] if k.startswith("head_"))
    assert "multitask" in method.scorers
  assert heads == {"geometric+jigsaw": ["jigsaw", "rotate", "translate_x", "translate_y"],
                   "geometric": ["rotate", "translate_x", "translate_y"], "jigsaw": ["jigsaw"]}
  with pytest.raises(ConfigError, match="objective.tasks"):
    get_method("ssl_multitask")(_config("ssl_cifar10", tasks="rotation"), DataSpec(shape, 10))


def test_multitask_score_matches_numpy_over_the_transformed_copies():
  """The scorer against an independent loop: each task's copies through the network, softmax, true-class sums."""
  shape = (32, 32, 3)
  method, variables, model = _built("ssl_cifar10", seed=3)
  images = jax.random.normal(jax.random.key(1), (3, *shape))
  out = {k: np.asarray(v) for k, v in method.scorers["multitask"].fn(variables, {}, {"image": images}).items()}

  perms = jnp.asarray(pretext.jigsaw_permutations(3, grid=3, seed=0))
  centre = jnp.full((3, 9, 2), 1, jnp.int32)  # margin 2 -> patches cut at the centre of their cells at test time
  copies = {"translate_x": [pretext.translate(images, jnp.full(3, s), jnp.zeros(3, jnp.int32)) for s in (0, 8, -8)],
            "translate_y": [pretext.translate(images, jnp.zeros(3, jnp.int32), jnp.full(3, s)) for s in (0, 8, -8)],
            "rotate": [pretext.rotate90(images, jnp.full(3, k)) for k in range(4)],
            "jigsaw": [pretext.jigsaw_with(images, jnp.full(3, j), perms, centre) for j in range(3)]}
  per_task = {}
  for task, xs in copies.items():
    total = np.zeros(3)
    for j, x in enumerate(xs):
      total += _softmax(model.apply(variables, x, train=False)[0][task])[:, j]
    per_task[task] = -total
  np.testing.assert_allclose(out["multitask"], np.mean(list(per_task.values()), axis=0), rtol=1e-5, atol=1e-6)
  for task, s in per_task.items():
    np.testing.assert_allclose(out[task], s, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["geometric"], np.mean([per_task[t] for t in ssl_multitask.GEOMETRIC], axis=0),
                             rtol=1e-5, atol=1e-6)


def test_eq7_loss_is_the_sum_of_per_copy_cross_entropies():
  rng = np.random.default_rng(0)
  logits = {"rotate": rng.normal(size=(4, 5, 4)), "jigsaw": rng.normal(size=(3, 5, 3))}
  got = ssl_multitask.per_transform_cross_entropy({k: jnp.asarray(v, jnp.float32) for k, v in logits.items()})
  want = np.zeros(5)
  for lg in logits.values():
    for j in range(lg.shape[0]):
      want -= np.log(_softmax(lg[j])[:, j])
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_mhrot_score_is_the_negated_sum_over_36_combinations():
  rng = np.random.default_rng(1)
  probs = {h: _softmax(rng.normal(size=(2, 36, k))) for h, k in mhrot.HEADS.items()}
  want = np.zeros(2)
  for c, (tx, ty, r) in enumerate(itertools.product(range(3), range(3), range(4))):
    want -= probs["translate_x"][:, c, tx] + probs["translate_y"][:, c, ty] + probs["rotate"][:, c, r]
  got = mhrot.combination_score({h: jnp.asarray(p, jnp.float32) for h, p in probs.items()})
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_mhrot_scorer_applies_each_combination_as_translate_then_rotate():
  shape = (32, 32, 3)
  method, variables, model = _built("mhrot_cifar10", seed=2)
  images = jax.random.normal(jax.random.key(4), (2, *shape))
  got = np.asarray(method.scorers["mhrot"].fn(variables, {}, {"image": images})["mhrot"])
  want = np.zeros(2)
  for tx, ty, r in itertools.product(range(3), range(3), range(4)):
    dx, dy = (0, 8, -8)[tx], (0, 8, -8)[ty]
    x = pretext.rotate90(pretext.translate(images, jnp.full(2, dx), jnp.full(2, dy)), jnp.full(2, r))
    logits = model.apply(variables, x, train=False)[0]
    want -= (_softmax(logits["translate_x"])[:, tx] + _softmax(logits["translate_y"])[:, ty]
             + _softmax(logits["rotate"])[:, r])
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_fit_dirichlet_matches_a_direct_likelihood_maximisation():
  """Minka's fixed point (jaxad.scores.fit_dirichlet) against scipy maximising the Dirichlet log-likelihood."""
  rng = np.random.default_rng(2)
  probs = rng.dirichlet([0.7, 3.0, 1.5, 8.0], size=400)
  nll = lambda log_a: -scipy.stats.dirichlet(np.exp(log_a)).logpdf(probs.T).sum()
  ref = np.exp(scipy.optimize.minimize(nll, np.zeros(4), method="BFGS", options={"gtol": 1e-8}).x)
  got = np.asarray(scores.fit_dirichlet(jnp.asarray(probs, jnp.float32)))
  np.testing.assert_allclose(got, ref, rtol=2e-3)


def test_geotrans_scores_from_its_72_copies():
  shape = (32, 32, 3)
  method, variables, model = _built("geotrans_cifar10", seed=5)
  images = jax.random.normal(jax.random.key(6), (2, *shape))
  alpha = jnp.asarray(np.random.default_rng(3).uniform(0.5, 3.0, (72, 72)), jnp.float32)
  out = method.scorers["dirichlet"].fn(variables, {"alpha": alpha}, {"image": images})
  probs = np.stack([_softmax(model.apply(variables, pretext.geotrans(images, jnp.full(2, t)), train=False)[0]
                             ["transform"]) for t in range(72)], axis=1)  # [B, 72, 72]
  dirichlet = -np.mean(np.sum((np.asarray(alpha) - 1) * np.log(probs), -1), -1)
  simplified = -np.mean(probs[:, np.arange(72), np.arange(72)], -1)
  np.testing.assert_allclose(np.asarray(out["dirichlet"]), dirichlet, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(out["simplified"]), simplified, rtol=1e-4)


def test_deep_sad_rejects_what_it_cannot_use():
  c = _config("deep_sad_cifar10")
  c.objective.anomaly_per_batch = 0
  with pytest.raises(ConfigError, match="anomaly_per_batch"):
    get_method("deep_sad")(c, DataSpec((32, 32, 3), 10))
  c = _config("deep_sad_cifar10")
  c.objective.boundary = "soft"
  with pytest.raises(ConfigError, match="hard"):
    get_method("deep_sad")(c, DataSpec((32, 32, 3), 10))


def test_ssl_runlocal_on_real_cifar10_detects_anomalies_of_an_easy_class(data_dir, tmp_path):
  """The G+J miniature (WRN-10-1, 256 automobiles, 2 epochs) already ranks the other classes above automobiles."""
  c = _config("ssl_cifar10", normal_class=1)
  c.data.data_dir = data_dir
  summary = train.train_and_evaluate(c, str(tmp_path))
  assert summary["test/multitask/auroc"] > 0.65, summary
  for key in ("eer", "apcer_at_bpcer"):  # Jezequel et al.'s anti-spoofing metrics, for every run
    assert 0.0 <= summary[f"test/multitask/{key}"] <= 1.0


@pytest.mark.parametrize("name,scorer", [("mhrot_cifar10", "mhrot"), ("geotrans_cifar10", "dirichlet"),
                                         ("deep_sad_cifar10", "hypersphere")])
def test_baselines_runlocal_on_real_cifar10(data_dir, tmp_path, name, scorer):
  c = _config(name, normal_class=1)
  c.data.update(data_dir=data_dir, train_limit=128, test_limit=100)  # the miniature, cut further: a wiring check
  c.train.epochs = min(c.train.epochs, 4)
  summary = train.train_and_evaluate(c, str(tmp_path))
  assert np.isfinite(summary[f"test/{scorer}/auroc"]), summary


@pytest.mark.parametrize("name,args,scorer", [
    ("ssl_cifar100", dict(normal_class=4), "multitask"),  # a super-class: coarse labels
    ("ssl_mnist", dict(normal_class=0, tasks="geometric"), "multitask"),
    ("ssl_fmnist", dict(normal_class=0, tasks="jigsaw"), "multitask"),
    ("ssl_ood_cifar10", dict(ood="cifar100"), "multitask"),
])
def test_other_ssl_runlocal_configs_run_on_real_data(data_dir, tmp_path, name, args, scorer):
  """Each remaining config's miniature, cut to 64 normal images and one epoch: the data and heads fit together."""
  c = _config(name, **args)
  c.data.update(data_dir=data_dir, train_limit=64, test_limit=100)
  c.train.epochs = 1
  summary = train.train_and_evaluate(c, str(tmp_path))
  assert 0.0 <= summary[f"test/{scorer}/auroc"] <= 1.0 and np.isfinite(summary[f"test/{scorer}/eer"])
  labels = np.load(tmp_path / "scores.npz")["labels"]
  assert len(labels) == 100 and 0 < labels.sum() < 100


def test_ssl_caltech_birds_runlocal_through_tfds(monkeypatch, tmp_path):
  """The birds config end to end on stand-in tfds records of varying sizes (the real set needs a download)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)

  def records(n):
    return [{"image": rng.integers(0, 256, (int(rng.integers(50, 120)), int(rng.integers(50, 120)), 3), np.uint8),
             "label": i % 4} for i in range(n)]
  splits = {"train": records(64), "test": records(32)}
  monkeypatch.setattr(tfds, "data_source", lambda name, split, **kw: splits[split])
  c = _config("ssl_caltech_birds", normal_class=0)
  c.train.epochs = 1
  summary = train.train_and_evaluate(c, str(tmp_path))
  assert np.isfinite(summary["test/multitask/auroc"])
  assert json.load(open(tmp_path / "data.json"))["shape"] == [64, 64, 3]
