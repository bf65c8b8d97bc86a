"""Deep SVDD / MOCCA specifics against NumPy: weight transfer, centers, radius updates and scores."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxad import optim, train
from jaxad.errors import ConfigError
from jaxad.methods.base import DataSpec
from jaxad.methods import hypersphere

from helpers import hypersphere_config as tiny_config, random_images as images, run_method, sources_of  # pylint: disable=g-bad-import-order

LAYERS = ("conv1", "conv2", "code")


def pooled_numpy(encoder, variables, x, *, train_mode):
  out = encoder.apply(variables, x, train=train_mode, mutable=["batch_stats"] if train_mode else False)
  feats = (out[0] if train_mode else out)[1]
  return {l: np.asarray(feats[l]).mean(axis=(1, 2)) if feats[l].ndim == 4 else np.asarray(feats[l]) for l in LAYERS}


def eps_guard(c, eps=0.1):
  c = c.copy()
  c[(np.abs(c) < eps) & (c < 0)] = -eps
  c[(np.abs(c) < eps) & (c > 0)] = eps
  return c


def stages(config, x_shape):
  return hypersphere.method(config, DataSpec(tuple(x_shape)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  config = tiny_config()
  x = images()
  method = stages(config, x.shape[1:])
  pre, _, hyp = method.phases
  # The autoencoder and the centers only; the encoder phase starts from them.
  outputs = run_method(config, method.__class__([pre, method.phases[1]], {}), sources_of(x),
                       tmp_path_factory.mktemp("w"))
  tx = optim.make_optimizer(hyp.optim, steps_per_epoch=4)
  start = train.init_state(hyp, jax.random.key(0), {"image": jnp.asarray(x)}, outputs, tx)
  return config, x, outputs["pretrain"], hyp, start


def test_encoder_starts_from_the_pretrained_autoencoder(trained):
  _, _, pretrained, _, start = trained
  jax.tree.map(np.testing.assert_array_equal, start.params, pretrained.variables["params"]["encoder"])
  jax.tree.map(np.testing.assert_array_equal, start.batch_stats, pretrained.variables["batch_stats"]["encoder"])


def test_centers_are_eval_mode_means_with_the_eps_guard(trained):
  _, x, _, hyp, start = trained
  feats = pooled_numpy(hyp.model, start.variables, x, train_mode=False)
  for l in LAYERS:
    np.testing.assert_allclose(start.extra["centers"][l], eps_guard(feats[l].mean(0)), rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(np.asarray(start.extra["centers"][l])) >= 0.1)  # no exact zeros in real features


def test_radius_is_the_batch_quantile_after_warmup_only(trained):
  config, x, _, hyp, start = trained
  step = jax.jit(train.make_train_step(hyp, 4, jax.random.key(0)))
  batch = {"image": jnp.asarray(x[:16])}
  state, _ = step(start, batch)  # epoch 0 < warmup_epochs = 1: radii stay 0
  assert all(float(r) == 0 for r in state.extra["radii"].values())
  state = state.replace(step=jnp.asarray(4, jnp.int32))  # epoch 1: radii follow the batch
  feats = pooled_numpy(hyp.model, state.variables, batch["image"], train_mode=True)  # pre-step, as the reference
  new, _ = step(state, batch)
  for l in LAYERS:
    d = ((feats[l] - np.asarray(state.extra["centers"][l])) ** 2).sum(1)
    np.testing.assert_allclose(new.extra["radii"][l], np.quantile(np.sqrt(d), 1 - config.objective.nu), rtol=1e-4)


@pytest.mark.parametrize("boundary", ["soft", "hard"])
def test_score_is_the_mean_over_layers_of_squared_distance_minus_radius(trained, boundary):
  _, x, _, hyp, start = trained
  config = tiny_config(boundary=boundary)
  scorer = stages(config, x.shape[1:]).scorers["hypersphere"]
  assert scorer.phase == "train" and scorer.kind == "score" and scorer.reduction == "none"
  radii = {l: jnp.asarray(0.1 * (i + 1)) for i, l in enumerate(LAYERS)}
  extra = {**start.extra, "radii": radii}
  got = scorer.fn(start.variables, extra, {"image": jnp.asarray(x[:8])})
  feats = pooled_numpy(hyp.model, start.variables, x[:8], train_mode=False)
  per_layer = [((feats[l] - np.asarray(extra["centers"][l])) ** 2).sum(1) - (float(radii[l]) ** 2 if boundary == "soft"
                                                                              else 0.0) for l in LAYERS]
  np.testing.assert_allclose(got, np.mean(per_layer, axis=0), rtol=1e-5)


def test_config_errors_name_the_problem():
  x_shape = (28, 28, 1)
  with pytest.raises(ConfigError, match="objective.boundary"):
    stages(tiny_config(boundary="round"), x_shape)
  with pytest.raises(ConfigError, match=r"objective.nu must be in \(0, 1\]"):
    stages(tiny_config(nu=0.0), x_shape)
  config = tiny_config()
  config.objective.layers = ("conv9",)
  with pytest.raises(ConfigError, match=r"subset of \['code', 'conv1', 'conv2'\]"):
    stages(config, x_shape)
