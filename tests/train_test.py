"""The trainer: phases, 1 vs 8 devices, single tracing, per-step keys, kept weights, fit phases, NaN handling."""

import json

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxad import optim, train
from jaxad.checkpoint import Checkpointer
from jaxad.data import Source
from jaxad.errors import ConfigError, TrainingError
from jaxad.methods import hypersphere
from jaxad.methods.base import DataSpec, FitPhase, Method, Output, Scorer, TrainPhase

from helpers import hypersphere_config, random_images, run_method, run_python, sources_of  # pylint: disable=g-bad-import-order


def mocca(config, x):
  return hypersphere.method(config, DataSpec(x.shape[1:]))


def test_one_device_and_eight_devices_agree():
  """The only multi-device test: a process with 8 CPU devices runs the same phases on 1 and on 8 of them."""
  out = run_python("""
      import sys, tempfile
      sys.path.insert(0, "tests")
      import chex, jax, numpy as np
      from jaxad import parallel
      from jaxad.methods import hypersphere
      from jaxad.methods.base import DataSpec
      from helpers import hypersphere_config, random_images, run_method, sources_of
      assert jax.device_count() == 8
      x = random_images()
      config = hypersphere_config()
      runs = {}
      for n in (1, 8):
        method = hypersphere.method(config, DataSpec(x.shape[1:]))
        runs[n] = run_method(config, method, sources_of(x), tempfile.mkdtemp(),
                             parallel.make_mesh(jax.devices()[:n]))["train"]
      one, eight = runs[1], runs[8]
      chex.assert_trees_all_close(one.variables, eight.variables, atol=1e-5, rtol=1e-5)
      chex.assert_trees_all_close(one.extra, eight.extra, atol=1e-5, rtol=1e-5)
      assert all(float(r) > 0 for r in one.extra["radii"].values())  # the radii were really updated after warm-up
      print("AGREE")
      """, devices=8)
  assert out.returncode == 0 and "AGREE" in out.stdout, out.stderr[-3000:]


def test_phases_run_in_order_and_a_rerun_skips_finished_phases(tmp_path):
  x = random_images()
  config = hypersphere_config()
  outputs = run_method(config, mocca(config, x), sources_of(x), tmp_path)
  assert list(outputs) == ["pretrain", "center", "train"]
  # The encoder starts from the autoencoder's encoder and the fit phase's centers.
  jax.tree.map(np.testing.assert_array_equal, outputs["center"].variables["params"],
               outputs["pretrain"].variables["params"]["encoder"])
  steps = [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert len(steps) == 4 * 2 + 4 * 3  # 64 images / 16 per step, 2 + 3 epochs, logged every step
  again = run_method(config, mocca(config, x), sources_of(x), tmp_path)  # every output exists: nothing retrains
  assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == len(steps)
  chex.assert_trees_all_equal(again["train"].variables, outputs["train"].variables)
  chex.assert_trees_all_equal(again["train"].extra, outputs["train"].extra)


def test_train_step_traces_once_and_donates_nothing_it_needs():
  x = random_images(32)
  config = hypersphere_config()
  phase = mocca(config, x).phases[0]
  tx = optim.make_optimizer(phase.optim, steps_per_epoch=2)
  state = train.init_state(phase, jax.random.key(0), {"image": jnp.asarray(x[:8])}, {}, tx)
  step = jax.jit(chex.assert_max_traces(train.make_train_step(phase, 2, jax.random.key(1)), n=1), donate_argnums=0)
  for i in range(3):
    state, metrics = step(state, {"image": jnp.asarray(x[i * 8:(i + 1) * 8])})
  assert int(state.step) == 3 and np.isfinite(float(metrics["loss"]))


class Noisy(nn.Module):
  @nn.compact
  def __call__(self, x, *, train):
    del train
    return nn.Dense(1)(x.reshape(len(x), -1))[:, 0], {}


def noisy_phase(keep="last", **kwargs):
  """A linear model whose loss adds the step's random normal: the trainer's per-step key drives it."""
  model = Noisy()

  def loss(params, ctx, batch):
    pred, _ = model.apply({"params": params}, batch["image"], train=True)
    noise = jax.random.normal(ctx.rng, ())
    return jnp.mean(pred ** 2) + noise, (ctx.batch_stats, None, {"noise": noise})

  opt = ml_collections.ConfigDict(dict(epochs=3, optimizer="sgd", lr=0.1, weight_decay=0.0))
  return TrainPhase("fit", model, opt, loss, mix={"normal": 4}, keep=keep, **kwargs)


def test_each_step_gets_its_own_key_from_the_seed_and_step(tmp_path):
  x = random_images(8, shape=(2, 2, 1))
  config = hypersphere_config()
  phase = noisy_phase()
  method = Method([phase], {"s": Scorer(lambda v, e, b: phase.model.apply(v, b["image"], train=False)[0], "fit")})
  run_method(config, method, sources_of(x), tmp_path / "a")
  run_method(config, method, sources_of(x), tmp_path / "b")
  noise = [[json.loads(l)["noise"] for l in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in "ab"]
  assert noise[0] == noise[1] and len(noise[0]) == 6  # a pure function of (seed, step)
  assert len(set(noise[0])) == 6  # a different key every step
  step_key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), 0), train._STEP_KEY_TAG)  # pylint: disable=protected-access
  expected = [float(jax.random.normal(jax.random.fold_in(jax.random.fold_in(step_key, s), 0), ())) for s in range(6)]
  np.testing.assert_allclose(noise[0], expected, rtol=1e-6)


def test_keep_min_loss_returns_the_epoch_with_the_lowest_mean_loss(tmp_path):
  x = random_images(8, shape=(2, 2, 1))
  config = hypersphere_config()
  phase = noisy_phase(keep="min_loss")
  method = Method([phase], {"s": Scorer(lambda v, e, b: phase.model.apply(v, b["image"], train=False)[0], "fit")})
  out = run_method(config, method, sources_of(x), tmp_path)["fit"]
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  per_epoch = {int(r["epoch"]): r["epoch_loss"] for r in records if "epoch_loss" in r}
  losses_by_epoch = {}
  for r in records:
    losses_by_epoch.setdefault(int(np.ceil(r["epoch"])) - 1, []).append(r["loss"])
  for e, v in per_epoch.items():  # the epoch loss is the mean of that epoch's step losses
    np.testing.assert_allclose(v, np.mean(losses_by_epoch[e - 1]), rtol=1e-5)
  best = min(per_epoch, key=per_epoch.get)
  assert best < 3, "the noise should make an earlier epoch the best; change the seed of this test"
  # The kept weights are those at the end of the best epoch: replay the phase for that many epochs.
  short = ml_collections.ConfigDict(phase.optim.to_dict())
  short.epochs = best
  replay = run_method(config, Method([TrainPhase("fit", phase.model, short, phase.loss, mix={"normal": 4})],
                                     method.scorers), sources_of(x), tmp_path / "replay")["fit"]
  chex.assert_trees_all_close(out.variables, replay.variables, rtol=1e-6)


def test_keep_best_val_keeps_the_epoch_with_the_best_validation_auroc(tmp_path):
  """Training pushes the score of the 'val' anomalies down: epoch 1 has the best validation AUROC."""
  model = Noisy()

  def loss(params, ctx, batch):  # moves the weights along a fixed direction, further every epoch
    pred, _ = model.apply({"params": params}, batch["image"], train=True)
    return -jnp.mean(pred), (ctx.batch_stats, None, {})

  rng = np.random.default_rng(0)
  normal = rng.normal(size=(8, 2)).astype(np.float32)
  val_x = np.concatenate([normal - 1, normal + 1]).astype(np.float32)
  val = Source.of(val_x, label=np.repeat(np.array([0, 1], np.int32), 8))
  opt = ml_collections.ConfigDict(dict(epochs=3, optimizer="sgd", lr=0.1, weight_decay=0.0))
  phase = TrainPhase("fit", model, opt, loss, mix={"normal": 4}, keep="best_val", val_scorer="s")

  def score(v, e, b):
    del e
    return -model.apply(v, b["image"], train=False)[0]  # training raises pred on (normal+...) => direction

  method = Method([phase], {"s": Scorer(score, "fit")})
  config = hypersphere_config()
  out = run_method(config, method, sources_of(normal, val=val), tmp_path)["fit"]
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  val_aurocs = {r["epoch"]: r["val/s/auroc"] for r in records if "val/s/auroc" in r}
  assert sorted(val_aurocs) == [1.0, 2.0, 3.0]
  best_epoch = int(max(val_aurocs, key=val_aurocs.get))
  assert best_epoch < 3, val_aurocs  # else keeping the best would look like keeping the last
  short = ml_collections.ConfigDict(opt.to_dict())
  short.epochs = best_epoch
  replay = run_method(config, Method([TrainPhase("fit", model, short, loss, mix={"normal": 4})], method.scorers),
                      sources_of(normal), tmp_path / "replay")["fit"]
  chex.assert_trees_all_close(out.variables, replay.variables, rtol=1e-6)


def test_a_fit_phase_runs_once_and_its_output_feeds_the_next_phase(tmp_path):
  calls = []
  x = random_images(8, shape=(2, 2, 1))

  def fit(ctx):
    calls.append(1)
    mean = ctx.predict(lambda v, b: {"m": b["image"].reshape(len(b["image"]), -1)}, {}, "normal")["m"].mean(0)
    return Output({"params": {}, "batch_stats": {}}, {"mean": mean})

  model = Noisy()

  def init(rng, sample, previous):
    v = model.init(rng, sample["image"], train=False)
    return Output({"params": v["params"], "batch_stats": {}}, previous["stats"].extra)

  def loss(params, ctx, batch):
    pred, _ = model.apply({"params": params}, batch["image"], train=True)
    return jnp.mean((pred - ctx.extra["mean"].sum()) ** 2), (ctx.batch_stats, None, {})

  opt = ml_collections.ConfigDict(dict(epochs=1, optimizer="sgd", lr=0.1, weight_decay=0.0))
  method = Method([FitPhase("stats", fit), TrainPhase("fit", model, opt, loss, mix={"normal": 4}, init=init)],
                  {"s": Scorer(lambda v, e, b: model.apply(v, b["image"], train=False)[0], "fit")})
  config = hypersphere_config()
  out = run_method(config, method, sources_of(x), tmp_path)
  np.testing.assert_allclose(out["fit"].extra["mean"], x.reshape(8, -1).mean(0), rtol=1e-6)
  run_method(config, method, sources_of(x), tmp_path)
  assert calls == [1]  # saved under checkpoints/stats/output, not refitted


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  config = hypersphere_config()
  x = random_images(32)
  base = mocca(config, x).phases[0]

  def exploding_loss(params, ctx, batch):
    loss, aux = base.loss(params, ctx, batch)
    return jnp.where(ctx.step >= 3, jnp.nan, loss), aux  # finite for epoch 0 (steps 0, 1) and step 2

  optim_config = ml_collections.ConfigDict(base.optim.to_dict())
  optim_config.epochs = 4
  phase = TrainPhase("pretrain", base.model, optim_config, exploding_loss, mix=base.mix)
  method = Method([phase], {})
  with pytest.raises(TrainingError, match=r"non-finite metrics at step 4 .*last good checkpoint \(step 2\)"):
    run_method(config, method, sources_of(x), tmp_path)
  ckpt = Checkpointer(str(tmp_path / "checkpoints" / "pretrain" / "steps"))
  assert ckpt.latest_step() == 2
  ckpt.close()
  assert not (tmp_path / "checkpoints" / "pretrain" / "output").exists()


def test_trainable_rules_freeze_exactly_the_unmatched_leaves():
  config = hypersphere_config()
  x = random_images(16)
  phase = mocca(config, x).phases[0]
  optim_config = ml_collections.ConfigDict(phase.optim.to_dict())
  optim_config.trainable = [("encoder/conv1|deconv", True), (".*", False)]
  frozen = TrainPhase(phase.name, phase.model, optim_config, phase.loss, mix=phase.mix)
  tx = optim.make_optimizer(optim_config, steps_per_epoch=2)
  state = train.init_state(frozen, jax.random.key(0), {"image": jnp.asarray(x)}, {}, tx)
  before = state.params
  after, _ = jax.jit(train.make_train_step(frozen, 2, jax.random.key(1)))(state, {"image": jnp.asarray(x)})
  changed = jax.tree_util.tree_map_with_path(
      lambda p, a, b: ("/".join(k.key for k in p), bool(jnp.any(a != b))), before, after.params)
  changed = dict(jax.tree.leaves(changed, is_leaf=lambda t: isinstance(t, tuple)))
  assert changed == {name: ("encoder/conv1" in name or "deconv" in name) for name in changed}, changed
  assert sum(changed.values()) == 4  # conv1 + deconv1..3 (the MNIST AE)

  optim_config.trainable = [("conv", True)]
  with pytest.raises(ConfigError, match="No optim.trainable rule matches parameter 'encoder/fc1/kernel'"):
    optim.make_optimizer(optim_config, 2).init(before)


def test_context_carries_batch_stats_extra_step_and_epoch():
  x = random_images(16)
  config = hypersphere_config()
  seen = {}
  phase = mocca(config, x).phases[2]

  def spy(params, ctx, batch):
    seen.update(step=ctx.step, epoch=ctx.epoch, has_centers="centers" in ctx.extra, stats=ctx.batch_stats)
    return phase.loss(params, ctx, batch)

  variables = phase.model.init(jax.random.key(0), jnp.asarray(x[:1]), train=False)
  tx = optim.make_optimizer(phase.optim, 4)
  init = lambda rng, s, p: Output(variables, {"centers": {l: jnp.ones(d) for l, d in (("conv1", 8), ("conv2", 4),
                                                                                     ("code", 32))},
                                             "radii": {l: jnp.zeros(()) for l in ("conv1", "conv2", "code")}})
  spied = TrainPhase(phase.name, phase.model, phase.optim, spy, mix=phase.mix, init=init)
  state = train.init_state(spied, jax.random.key(0), {"image": jnp.asarray(x)}, {}, tx)
  state = state.replace(step=jnp.asarray(9, jnp.int32))
  train.make_train_step(spied, 4, jax.random.key(1))(state, {"image": jnp.asarray(x)})
  assert int(seen["step"]) == 9 and int(seen["epoch"]) == 2 and seen["has_centers"]
  chex.assert_trees_all_equal(seen["stats"], variables["batch_stats"])


def test_config_json_refuses_a_changed_config_but_not_a_newly_added_key(tmp_path):
  base = ml_collections.ConfigDict({"seed": 1, "train": {"lr": 0.1}, "log_every_steps": 10})
  train._check_config_json(base, str(tmp_path))  # pylint: disable=protected-access
  changed = ml_collections.ConfigDict(base.to_dict())
  changed.train.lr = 0.2
  with pytest.raises(ConfigError, match=r"different config \(keys \['train.lr'\]\)"):
    train._check_config_json(changed, str(tmp_path))  # pylint: disable=protected-access
  cadence = ml_collections.ConfigDict(base.to_dict())
  cadence.log_every_steps = 1  # resumable: logging cadence
  train._check_config_json(cadence, str(tmp_path))  # pylint: disable=protected-access
  newer = ml_collections.ConfigDict({**base.to_dict(), "data": {"protocol_seed": 0}})  # a key added to jaxad later
  train._check_config_json(newer, str(tmp_path))  # pylint: disable=protected-access
  older = ml_collections.ConfigDict({"seed": 1, "train": {"lr": 0.1}, "log_every_steps": 1})  # dropped a key
  with pytest.raises(ConfigError, match="data.protocol_seed"):
    train._check_config_json(older, str(tmp_path))  # pylint: disable=protected-access
