"""The trainer: 1 vs 8 devices, single tracing, optimizer semantics, NaN handling."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxad import evaluate, parallel, train
from jaxad.checkpoint import Checkpointer
from jaxad.errors import ConfigError, TrainingError
from jaxad.methods import hypersphere
from jaxad.methods.base import Stage


def tiny_config(**objective) -> ml_collections.ConfigDict:
  c = hypersphere.base_config()
  c.method = "mocca"
  c.model.update(name="lenet_mnist", rep_dim=32)
  c.pretrain.update(epochs=2, batch_size=16, lr=1e-3, milestones=(1,))
  c.train.update(epochs=3, batch_size=16, lr=1e-3, milestones=(2,))
  c.objective.update({"boundary": "soft", "layers": ("conv1", "conv2", "code"), "warmup_epochs": 1, **objective})
  c.eval.batch_size = 16
  c.log_every_steps = 1
  return c


def images(n=64, seed=0):
  return np.random.default_rng(seed).uniform(size=(n, 28, 28, 1)).astype(np.float32)


def run_all_stages(config, workdir, x, mesh):
  predict = evaluate.make_predict(mesh, config.eval.batch_size)
  state = None
  for i, stage in enumerate(hypersphere.stages(config, x.shape[1:])):
    state = train.run_stage(stage, i, config, str(workdir / stage.name), x, state, mesh, predict)
  return state


def test_one_device_and_eight_devices_agree(tmp_path):
  assert jax.device_count() == 8
  x = images()
  config = tiny_config()
  one = run_all_stages(config, tmp_path / "one", x, parallel.make_mesh(jax.devices()[:1]))
  eight = run_all_stages(config, tmp_path / "eight", x, parallel.make_mesh())
  assert int(one.step) == int(eight.step) == 12
  chex.assert_trees_all_close(one.params, eight.params, atol=1e-5, rtol=1e-5)
  chex.assert_trees_all_close(one.batch_stats, eight.batch_stats, atol=1e-5, rtol=1e-5)
  chex.assert_trees_all_close(one.extra, eight.extra, atol=1e-5, rtol=1e-5)
  assert all(float(r) > 0 for r in one.extra["radii"].values())  # the radii were really updated after warm-up


def test_train_step_traces_once_and_donates_nothing_it_needs():
  config = tiny_config()
  x = images(32)
  stage = hypersphere.stages(config, x.shape[1:])[0]
  tx = train.make_optimizer(stage.optim, steps_per_epoch=2)
  state = train.init_state(stage, jax.random.key(0), x, None, tx, predict=None)
  step = jax.jit(chex.assert_max_traces(train.make_train_step(stage, 2), n=1), donate_argnums=0)
  for i in range(3):
    state, metrics = step(state, {"image": jnp.asarray(x[i * 8:(i + 1) * 8])})
  assert int(state.step) == 3 and np.isfinite(float(metrics["loss"]))


def test_coupled_weight_decay_and_milestones_match_pytorch_adam_in_numpy():
  optim = ml_collections.ConfigDict(dict(optimizer="adam", lr=0.1, milestones=(1,), lr_decay=0.1, weight_decay=0.01,
                                         momentum=0.0, nesterov=False))
  tx = train.make_optimizer(optim, steps_per_epoch=2)
  p = jnp.array([1.0, -2.0])
  grads = [jnp.array([0.5, 0.1]), jnp.array([-0.3, 0.2]), jnp.array([0.2, 0.2]), jnp.array([0.1, -0.4])]
  state = tx.init(p)
  # torch.optim.Adam(weight_decay=wd): g <- g + wd * p, then Adam; lr drops x0.1 from epoch 1 (= step 2).
  q, m, v = np.array([1.0, -2.0]), np.zeros(2), np.zeros(2)
  for t, g in enumerate(grads, start=1):
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
    g = np.asarray(g) + 0.01 * q
    m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
    lr = 0.1 if t <= 2 else 0.01
    q = q - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(p, q, rtol=1e-5)  # float32 vs float64


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  config = tiny_config()
  config.log_every_steps = 1
  x = images(32)
  base = hypersphere.stages(config, x.shape[1:])[0]

  def exploding_loss(params, state, batch, epoch):
    loss, aux = base.loss(params, state, batch, epoch)
    return jnp.where(state.step >= 3, jnp.nan, loss), aux  # finite for epoch 0 (steps 0, 1) and step 2

  optim = ml_collections.ConfigDict(base.optim.to_dict())
  optim.epochs = 4
  stage = Stage("pretrain", base.model, optim, exploding_loss)
  mesh = parallel.make_mesh()
  with pytest.raises(TrainingError, match=r"non-finite metrics at step 4 .*last good checkpoint \(step 2\)"):
    train.run_stage(stage, 0, config, str(tmp_path), x, None, mesh, evaluate.make_predict(mesh, 16))
  ckpt = Checkpointer(str(tmp_path / "checkpoints" / "pretrain"))
  assert ckpt.latest_step() == 2
  ckpt.close()


def test_trainable_rules_freeze_exactly_the_unmatched_leaves():
  config = tiny_config()
  x = images(16)
  stage = hypersphere.stages(config, x.shape[1:])[0]
  optim = ml_collections.ConfigDict(stage.optim.to_dict())
  optim.trainable = [("encoder/conv1|deconv", True), (".*", False)]
  tx = train.make_optimizer(optim, steps_per_epoch=2)
  state = train.init_state(stage, jax.random.key(0), x, None, tx, predict=None)
  before = state.params
  after, _ = jax.jit(train.make_train_step(stage, 2))(state, {"image": jnp.asarray(x)})
  changed = jax.tree_util.tree_map_with_path(
      lambda p, a, b: ("/".join(k.key for k in p), bool(jnp.any(a != b))), before, after.params)
  changed = dict(jax.tree.leaves(changed, is_leaf=lambda t: isinstance(t, tuple)))
  assert changed == {name: ("encoder/conv1" in name or "deconv" in name) for name in changed}, changed
  assert sum(changed.values()) == 4  # conv1 + deconv1..3 (the MNIST AE)

  optim.trainable = [("conv", True)]
  with pytest.raises(ConfigError, match="No optim.trainable rule matches parameter 'encoder/fc1/kernel'"):
    train.make_optimizer(optim, 2).init(before)


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
