"""LeNet encoders/autoencoders: parameter counts, shapes, features, init and BN settings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxad.models import count_params, get_model, lenet


@pytest.mark.parametrize("variant", ["dsvdd", "mocca"])
def test_cifar10_counts_and_shapes(variant):
  ae, encoder = lenet.lenet_cifar10(ae_variant=variant)
  x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
  v = ae.init(jax.random.key(1), x, train=False)
  assert count_params(v["params"]["encoder"]) == 520_544  # Deep SVDD's CIFAR-10 LeNet
  assert count_params(v["params"]) - 520_544 == 284_000   # its decoder
  x_hat, feats = ae.apply(v, x, train=False)
  assert x_hat.shape == x.shape and bool(jnp.all((x_hat > 0) & (x_hat < 1)))
  assert {k: f.shape for k, f in feats.items()} == {
      "conv1": (2, 32, 32, 32), "conv2": (2, 16, 16, 64), "conv3": (2, 8, 8, 128), "code": (2, 128)}
  # Two non-affine BN1d in MOCCA's decoder, one in Deep SVDD's: BN layers carry no parameters, only statistics.
  assert ("bn_decoder_in" in v["batch_stats"]) == (variant == "mocca")
  assert not any("bn" in k for k in v["params"])
  ve = encoder.init(jax.random.key(1), x, train=False)
  assert jax.tree.structure(ve) == jax.tree.structure({"params": v["params"]["encoder"],
                                                       "batch_stats": v["batch_stats"]["encoder"]})


def test_mnist_counts_and_shapes():
  ae, encoder = get_model("lenet_mnist")()
  x = jnp.zeros((2, 28, 28, 1))
  v = ae.init(jax.random.key(0), x, train=False)
  assert count_params(v["params"]["encoder"]) == 7_272 and count_params(v["params"]) == 8_472
  x_hat, feats = ae.apply(v, x, train=False)
  assert x_hat.shape == x.shape and feats["code"].shape == (2, 32)
  assert count_params(encoder.init(jax.random.key(0), x, train=False)["params"]) == 7_272


def test_encoder_on_transferred_weights_equals_the_autoencoders_encoder():
  ae, encoder = lenet.lenet_cifar10(ae_variant="mocca")
  x = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3))
  v = ae.init(jax.random.key(1), x, train=False)
  _, ae_feats = ae.apply(v, x, train=False)
  code, feats = encoder.apply({"params": v["params"]["encoder"], "batch_stats": v["batch_stats"]["encoder"]}, x,
                              train=False)
  for k in ae_feats:
    np.testing.assert_array_equal(feats[k], ae_feats[k])
  np.testing.assert_array_equal(code, ae_feats["code"])


def test_bias_free_xavier_gain_and_bn_momentum():
  ae, _ = lenet.lenet_cifar10()
  v = ae.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  names = ["/".join(str(getattr(k, "key", k)) for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(v["params"])]
  assert all(n.endswith("kernel") for n in names), names  # no biases anywhere
  # conv2: Xavier-uniform with the leaky-ReLU gain -> bound = gain * sqrt(6 / (fan_in + fan_out)).
  k = np.asarray(v["params"]["encoder"]["conv2"]["kernel"])
  bound = np.sqrt(2 / (1 + 0.01**2)) * np.sqrt(6 / (25 * 32 + 25 * 64))
  assert np.abs(k).max() <= bound and np.abs(k).max() > 0.95 * bound
  # BatchNorm: PyTorch momentum 0.1 (flax 0.9) -> check one training-mode update of the running mean by hand.
  x = jax.random.normal(jax.random.key(2), (8, 32, 32, 3))
  _, mutated = ae.apply(v, x, train=True, mutable=["batch_stats"])
  conv1 = ae.apply(v, x, train=False)[1]["conv1"]
  np.testing.assert_allclose(mutated["batch_stats"]["encoder"]["bn1"]["mean"], 0.1 * conv1.mean(axis=(0, 1, 2)),
                             rtol=1e-5, atol=1e-7)
