"""Optimizers and schedules against PyTorch and NumPy; config errors; freezing by trainable rules."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxad import optim as optim_lib
from jaxad.errors import ConfigError


def make_config(**kw) -> ml_collections.ConfigDict:
  base = dict(optimizer="adam", optimizer_kwargs={}, lr=0.1, weight_decay=0.0, epochs=3, schedule="constant",
              schedule_kwargs={})
  return ml_collections.ConfigDict({**base, **kw})


def schedule_values(schedule, steps) -> np.ndarray:
  return np.array([float(schedule(s)) for s in steps])


def test_coupled_weight_decay_and_milestones_match_pytorch_adam_in_numpy():
  optim = make_config(optimizer="adam", lr=0.1, weight_decay=0.01, epochs=2, schedule="step",
                      schedule_kwargs={"milestones": (1,), "decay": 0.1})
  tx = optim_lib.make_optimizer(optim, steps_per_epoch=2)
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


def test_nesterov_sgd_with_coupled_decay_and_multistep_lr_matches_torch():
  import torch  # pylint: disable=g-import-not-at-top  (heavy: only this test needs it)
  steps_per_epoch, epochs = 2, 3
  optim = make_config(optimizer="sgd", optimizer_kwargs={"momentum": 0.9, "nesterov": True}, lr=0.1,
                      weight_decay=5e-4, epochs=epochs, schedule="step",
                      schedule_kwargs={"milestones": (1, 2), "decay": 0.5})
  tx = optim_lib.make_optimizer(optim, steps_per_epoch)
  init = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
  grads = np.random.default_rng(0).normal(size=(epochs * steps_per_epoch, 4)).astype(np.float32)

  w = torch.nn.Parameter(torch.tensor(init, dtype=torch.float64))
  sgd = torch.optim.SGD([w], lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
  scheduler = torch.optim.lr_scheduler.MultiStepLR(sgd, milestones=[1, 2], gamma=0.5)

  @jax.jit
  def update(p, state, g):
    updates, state = tx.update(g, state, p)
    return optax.apply_updates(p, updates), state

  p, state = jnp.asarray(init), tx.init(jnp.asarray(init))
  for epoch in range(epochs):
    for i in range(steps_per_epoch):
      g = grads[epoch * steps_per_epoch + i]
      w.grad = torch.tensor(g, dtype=torch.float64)
      sgd.step()
      p, state = update(p, state, g)
      np.testing.assert_allclose(p, w.detach().numpy(), rtol=1e-5)
    scheduler.step()


@pytest.mark.parametrize("name, kwargs, expected", [
    ("constant", {}, lambda t: np.full_like(t, 0.1)),
    ("step", {"milestones": (1, 3)}, lambda t: 0.1 * 0.1 ** (np.sum([t >= 4, t >= 12], axis=0))),
    ("step", {"milestones": (2,), "decay": 0.5}, lambda t: 0.1 * 0.5 ** (t >= 8)),
    ("step", {"milestones": (2, 2)}, lambda t: 0.1 * 0.01 ** (t >= 8)),  # twice, as PyTorch's Counter does
    ("cosine", {}, lambda t: 0.1 * 0.5 * (1 + np.cos(np.pi * np.minimum(t, 16) / 16))),
    ("cosine", {"end_value": 0.01}, lambda t: 0.01 + 0.09 * 0.5 * (1 + np.cos(np.pi * np.minimum(t, 16) / 16))),
    ("warmup_cosine", {"warmup_epochs": 1, "init_value": 0.02, "end_value": 0.001},
     lambda t: np.where(t < 4, 0.02 + 0.08 * t / 4,
                        0.001 + 0.099 * 0.5 * (1 + np.cos(np.pi * (np.minimum(t, 16) - 4) / 12)))),
    ("warmup_cosine", {"warmup_epochs": 0.5},
     lambda t: np.where(t < 2, 0.1 * t / 2, 0.1 * 0.5 * (1 + np.cos(np.pi * (np.minimum(t, 16) - 2) / 14)))),
    ("inverse_time", {"decay": 1e-2}, lambda t: 0.1 / (1 + 1e-2 * t)),
])
def test_schedule_values_match_numpy(name, kwargs, expected):
  steps_per_epoch, epochs = 4, 4
  schedule = optim_lib.make_schedule(make_config(lr=0.1, epochs=epochs, schedule=name, schedule_kwargs=kwargs),
                                     steps_per_epoch)
  t = np.array([0, 1, 2, 3, 4, 5, 7, 8, 11, 12, 15, 16, 20], np.float64)
  np.testing.assert_allclose(schedule_values(schedule, t.astype(int)), expected(t), rtol=1e-5, atol=1e-8)


def test_schedule_defaults_to_constant_and_inverse_time_counts_steps_like_keras():
  optim = make_config(lr=0.01)
  del optim.schedule, optim.schedule_kwargs
  np.testing.assert_allclose(schedule_values(optim_lib.make_schedule(optim, 100), [0, 99, 10_000]), 0.01, rtol=1e-6)
  # Keras SGD(lr=0.01, decay=1e-6) after 500_000 iterations: 0.01 / 1.5, whatever the epoch length.
  keras = make_config(lr=0.01, schedule="inverse_time", schedule_kwargs={"decay": 1e-6})
  for steps_per_epoch in (1, 7, 1000):
    value = float(optim_lib.make_schedule(keras, steps_per_epoch)(500_000))
    assert math.isclose(value, 0.01 / 1.5, rel_tol=1e-6)


@pytest.mark.parametrize("name, kwargs", [
    ("adamw", {"weight_decay": 0.0}),
    ("rmsprop", {"decay": 0.9}),
    ("lion", {}),
    ("lamb", {}),
    ("sgd", {}),
])
def test_any_optax_optimizer_by_name_gives_finite_updates(name, kwargs):
  tx = optim_lib.make_optimizer(make_config(optimizer=name, optimizer_kwargs=kwargs, lr=1e-2, weight_decay=1e-4),
                                steps_per_epoch=2)
  params = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array(0.5)}
  grads = {"w": jnp.array([0.3, -0.1, 0.2]), "b": jnp.array(-0.4)}
  state = tx.init(params)
  for _ in range(3):
    updates, state = jax.jit(tx.update)(grads, state, params)
    params = optax.apply_updates(params, updates)
  for leaf in jax.tree.leaves(updates):
    assert np.all(np.isfinite(leaf)) and np.any(leaf != 0)


def test_optimizer_kwargs_reach_the_optimizer():
  # Gradients +1 then -1. With b1=0, m_2 = g_2 and v_hat_2 = 1, so the second update is exactly +lr; with the
  # default b1=0.9 the bias-corrected momentum m_hat_2 = -0.01 / 0.19 damps it to lr * 0.0526.
  g1, g2 = jnp.array([1.0]), jnp.array([-1.0])
  moves = {}
  for b1 in (0.0, 0.9):
    tx = optim_lib.make_optimizer(make_config(optimizer_kwargs={"b1": b1}), steps_per_epoch=1)
    p = jnp.array([0.0])
    state = tx.init(p)
    _, state = tx.update(g1, state, p)
    moves[b1], _ = tx.update(g2, state, p)
  np.testing.assert_allclose(moves[0.0], [0.1], rtol=1e-5)
  np.testing.assert_allclose(moves[0.9], [0.1 * 0.01 / 0.19], rtol=1e-4)


@pytest.mark.parametrize("overrides, match", [
    (dict(optimizer="adm"), r"optim\.optimizer='adm'.*did you mean 'adam'.*'sgd'"),
    (dict(optimizer="cosine_decay_schedule"), r"optim\.optimizer='cosine_decay_schedule' is not an optax optimizer"),
    (dict(optimizer="scale_by_adam"), r"optim\.optimizer='scale_by_adam' is not an optax optimizer"),
    (dict(optimizer="lbfgs"), r"optim\.optimizer='lbfgs' is not supported"),
    (dict(optimizer="sgd", optimizer_kwargs={"momentun": 0.9}),
     r"optim\.optimizer_kwargs\.momentun=0\.9 is not an argument of optax\.sgd.*accepts: momentum, nesterov"),
    (dict(optimizer_kwargs={"learning_rate": 0.1}), r"optim\.optimizer_kwargs\.learning_rate is not allowed"),
    (dict(schedule="cosin"), r"optim\.schedule='cosin'.*did you mean 'cosine'.*'warmup_cosine'"),
    (dict(schedule="cosine", schedule_kwargs={"alpha": 0.1}),
     r"optim\.schedule_kwargs\.alpha=0\.1 is not an argument of schedule 'cosine'; it accepts: end_value"),
    (dict(schedule="step", schedule_kwargs={"decay": 0.1}),
     r"schedule 'step' needs optim\.schedule_kwargs\.milestones"),
    (dict(schedule="warmup_cosine", schedule_kwargs={}), r"needs optim\.schedule_kwargs\.warmup_epochs"),
    (dict(schedule="step", schedule_kwargs={"milestones": (2, 5)}),
     r"optim\.schedule_kwargs\.milestones=\(2, 5\): milestone 5 is outside \(0, epochs\] = \(0, 3\]"),
    (dict(schedule="step", schedule_kwargs={"milestones": (0,)}), r"milestone 0 is outside"),
    (dict(schedule="step", schedule_kwargs={"milestones": (1.5,)}), r"milestones must be whole epochs, got \(1\.5,\)"),
    (dict(schedule="warmup_cosine", schedule_kwargs={"warmup_epochs": 3}), r"warmup_epochs must be in \[0, epochs\)"),
    (dict(schedule="cosine", schedule_kwargs={"end_value": 0.5}), r"end_value is an absolute lr in \[0, lr\]"),
    (dict(lr=0.0), r"optim\.lr must be a finite number > 0, got 0\.0"),
    (dict(weight_decay=-1e-4), r"optim\.weight_decay must be >= 0"),
    (dict(epochs=0), r"optim\.epochs must be a whole number of epochs >= 1, got 0"),
    (dict(milestones=(250,)), r"optim\.milestones=\(250,\) is no longer read.*schedule='step'"),
    (dict(momentum=0.9), r"optim\.momentum=0\.9 is no longer read.*optimizer_kwargs"),
    (dict(trainable=["head"]), r"optim\.trainable must be a list of \(regex, trainable\) pairs"),
])
def test_config_mistakes_raise_config_errors_naming_key_and_value(overrides, match):
  with pytest.raises(ConfigError, match=match):
    optim_lib.make_optimizer(make_config(**overrides), steps_per_epoch=2)


def test_missing_required_key_names_it():
  optim = make_config()
  del optim.lr
  with pytest.raises(ConfigError, match=r"optim\.lr is missing"):
    optim_lib.make_optimizer(optim, steps_per_epoch=2)


def test_frozen_leaves_get_exactly_zero_updates_and_trainable_leaves_move():
  optim = make_config(optimizer="sgd", optimizer_kwargs={"momentum": 0.9}, weight_decay=0.1,
                      trainable=[("head|bn", True), (".*", False)])
  assert optim_lib.trainable_rules(optim) == [("head|bn", True), (".*", False)]
  params = {"backbone": {"conv": {"kernel": jnp.ones((2, 2))}, "bn": {"scale": jnp.ones(2)}},
            "head": {"kernel": jnp.ones(3), "bias": jnp.zeros(3)}}
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.5), params)
  tx = optim_lib.make_optimizer(optim, steps_per_epoch=2)
  state = tx.init(params)
  for _ in range(2):
    updates, state = jax.jit(tx.update)(grads, state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(updates["backbone"]["conv"]["kernel"], 0.0)  # no decay either
  np.testing.assert_array_equal(params["backbone"]["conv"]["kernel"], 1.0)
  for moved in (updates["backbone"]["bn"]["scale"], updates["head"]["kernel"], updates["head"]["bias"]):
    assert np.all(moved != 0)


def test_unmatched_parameter_is_a_config_error():
  optim = make_config(trainable=[("head", True)])
  params = {"head": {"kernel": jnp.ones(2)}, "encoder": {"fc1": {"kernel": jnp.ones(2)}}}
  with pytest.raises(ConfigError, match="No optim.trainable rule matches parameter 'encoder/fc1/kernel'"):
    optim_lib.make_optimizer(optim, steps_per_epoch=2).init(params)
  with pytest.raises(ConfigError, match="No optim.trainable rule matches parameter 'encoder/fc1/kernel'"):
    optim_lib.trainable_mask(params, optim_lib.trainable_rules(optim))


def test_no_trainable_rules_means_everything_trains():
  assert optim_lib.trainable_rules(make_config()) == []
  assert optim_lib.trainable_rules(make_config(trainable=())) == []
