"""Tests for the accelerator options `config.model.dtype` (bf16 compute) and `config.model.remat` (nn.remat).

References are the same networks in float32 on the same float32 parameters, and the networks without remat: bf16
must stay within bf16's accuracy of them (not equal, and really computed in bf16: the traced convolutions and
matmuls read bf16), keep float32 parameters, BatchNorm statistics and outputs through a jitted train step, and remat
must give the same gradients with a smaller XLA temp buffer.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from helpers import config_file, hypersphere_config  # pylint: disable=g-bad-import-order
from jaxad import optim, train
from jaxad.config import load_config
from jaxad.errors import ConfigError
from jaxad.methods import get_method
from jaxad.methods.base import DataSpec, TrainPhase
from jaxad.models import DTYPE_MODELS, REMAT_MODELS, compute_kwargs, lenet, mocca_resnet, resnet26, video_ae
from jaxad.models import wide_resnet
from jaxad.validate import validate

# bf16 keeps 8 significant bits (unit roundoff 2^-9 ~ 0.002); through a network's layers the relative error of the
# outputs grows to about 1%: 2% is a bf16-sized tolerance, far above float32 noise (~1e-6) and far below what a
# wrong layer gives.
BF16_RTOL = 2e-2
# XLA:CPU drops jax.checkpoint's optimization barriers before its last CSE passes, which merge the recomputation back
# into the forward (XLA:GPU drops them only after scheduling); keeping them shows on CPU what remat saves on a GPU.
# The same option as benchmarks/remat_memory.py's CPU_COMPILE_OPTIONS.
KEEP_REMAT = {"xla_disable_hlo_passes": "cse_barrier_expander"}


def _rel(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _leaves(tree) -> dict:
  return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def _primitive_dtypes(fn, *args) -> dict[str, set[str]]:
  """{primitive: {floating operand dtypes}} for the convolutions, matmuls and sums in the jaxpr of fn(*args)."""
  found = {"conv_general_dilated": set(), "dot_general": set(), "reduce_sum": set()}

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in found:
        found[eqn.primitive.name].update(str(v.aval.dtype) for v in eqn.invars
                                         if jnp.issubdtype(v.aval.dtype, jnp.floating))
      for p in eqn.params.values():
        for sub in p if isinstance(p, (tuple, list)) else (p,):
          if hasattr(sub, "eqns"):
            walk(sub)
          elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
            walk(sub.jaxpr)

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


def _random_variables(shapes, dtype=None, seed=0):
  """Variables of the shapes `jax.eval_shape(model.init, ...)` gives, drawn in NumPy (compiling the init's random
  draws would take longer than the test): He-scaled normal kernels, BN scales and variances near 1, small biases."""
  rng = np.random.default_rng(seed)

  def fill(path, s):
    if len(s.shape) >= 2:
      value = rng.normal(size=s.shape) * np.sqrt(2.0 / np.prod(s.shape[:-1]))
    else:
      one = jax.tree_util.keystr(path[-1:]) in ("['scale']", "['var']")
      value = one + 0.1 * rng.normal(size=s.shape)
    return jnp.asarray(value, dtype or s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


# name -> (module builder taking the compute dtype, input shape, tolerance, whether its Dense layers compute in
# `dtype`: the video AE's small LSTM selectors run in float32 by design). The tolerance is BF16_RTOL, except for
# ResNet26's 26 bf16 layers, whose outputs drift 1.4-2.0% from float32 (8 seeds measured at this size).
FAMILIES = {
    "lenet_cifar10": (lambda dt: lenet.lenet_cifar10(ae_variant="mocca", dtype=dt)[0], (4, 32, 32, 3), BF16_RTOL,
                      True),
    "lenet_mnist": (lambda dt: lenet.lenet_mnist(dtype=dt)[0], (4, 28, 28, 1), BF16_RTOL, True),
    "resnet26": (lambda dt: resnet26.ResNet26(num_classes=10, adapters=True, dtype=dt), (4, 16, 16, 3), 3e-2, True),
    "wide_resnet": (lambda dt: wide_resnet.wrn(10, 1, {"rot": 4, "trans": 3}, dtype=dt), (4, 16, 16, 3), BF16_RTOL,
                    True),
    "mocca_mvtec": (lambda dt: mocca_resnet.mocca_mvtec(16, dtype=dt)[0], (2, 16, 16, 3), BF16_RTOL, True),
    "mocca_mvtec_selectors": (lambda dt: mocca_resnet.mocca_mvtec(16, layers=("res", "code"), selector="mlp", dim=8,
                                                                  dtype=dt)[1], (2, 16, 16, 3), BF16_RTOL, True),
    "mocca_video": (lambda dt: video_ae.mocca_video(16, layers=("block2", "code"), lstm_dim=8, widths=(4, 4, 4, 4, 4),
                                                    fc_dim=16, dtype=dt), (1, 4, 32, 32, 3), BF16_RTOL, False),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_bf16_close_to_fp32_with_fp32_params_stats_and_outputs(family):
  build, shape, rtol, dense_in_dtype = FAMILIES[family]
  m32, m16 = build(None), build(jnp.bfloat16)
  x = jax.random.uniform(jax.random.key(1), shape, jnp.float32, -1.0, 1.0)
  shapes = jax.eval_shape(lambda x: m16.init(jax.random.key(0), x, train=False), x)
  # float32 master weights and statistics from the bf16 model's own init, in the fp32 model's tree.
  assert {str(a.dtype) for a in jax.tree.leaves(shapes)} == {"float32"}
  assert shapes == jax.eval_shape(lambda x: m32.init(jax.random.key(0), x, train=False), x)
  variables = _random_variables(shapes)

  # Really bf16: every convolution (and Dense) of the bf16 model reads bf16 operands, the fp32 model's fp32; and
  # every sum of the bf16 model's training forward (BatchNorm statistics, pooling means) accumulates in float32.
  used16 = _primitive_dtypes(lambda v, x: m16.apply(v, x, train=False), shapes, x)
  used32 = _primitive_dtypes(lambda v, x: m32.apply(v, x, train=False), shapes, x)
  assert used16["conv_general_dilated"] == {"bfloat16"} and used32["conv_general_dilated"] == {"float32"}
  if dense_in_dtype:
    assert used16["dot_general"] <= {"bfloat16"}
  train16 = _primitive_dtypes(lambda v, x: m16.apply(v, x, train=True, mutable=["batch_stats"]), shapes, x)
  # BatchNorm sums as float32 matvecs (layers._channel_sum); other sums (pooling means) reduce in float32.
  assert "float32" in train16["dot_general"] - (used16["dot_general"] if dense_in_dtype else set())
  assert train16["reduce_sum"] <= {"float32"}, train16["reduce_sum"]

  @jax.jit
  def run(variables, x):
    out32 = m32.apply(variables, x, train=False)
    out16 = m16.apply(variables, x, train=False)

    def loss(params):  # what a loss does: reduce the float32 outputs
      out, updates = m16.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
      return sum(jnp.mean(jnp.square(a)) for a in jax.tree.leaves(out)), (updates, out)

    (value, (updates, out_train)), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
    params = optax.apply_updates(variables["params"], jax.tree.map(lambda g: -0.01 * g, grads))
    return out32, out16, value, grads, params, updates, out_train

  out32, out16, value, grads, params, updates, out_train = run(variables, x)
  for name, leaf in {**_leaves(out16), **_leaves(out_train)}.items():
    assert leaf.dtype == jnp.float32, (name, leaf.dtype)  # the outputs the losses and scorers read
  for name, err in _leaves(jax.tree.map(_rel, out16, out32)).items():
    assert 1e-5 < err < rtol, (family, name, err)  # bf16-close, and not float32 in disguise
  assert value.dtype == jnp.float32 and np.isfinite(value)
  for tree in (grads, params, updates):  # one jitted SGD step: float32 gradients, parameters, BatchNorm statistics
    assert {str(a.dtype) for a in jax.tree.leaves(tree)} <= {"float32"}
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(tree))
  assert jax.tree.structure(params) == jax.tree.structure(variables["params"])
  assert jax.tree.structure(updates.get("batch_stats", {})) == jax.tree.structure(variables.get("batch_stats", {}))


def test_float32_outputs_casts_half_precision_only_and_keeps_order():
  tree = {"z": jnp.ones(2, jnp.bfloat16), "a": (jnp.ones(2, jnp.float16), jnp.ones(2, jnp.int32)),
          "m": [jnp.ones(2, jnp.float32)]}
  out = lenet.float32_outputs(tree)
  assert list(out) == ["z", "a", "m"]  # layer order, as the models list their features
  assert [str(a.dtype) for a in (out["z"], *out["a"], *out["m"])] == ["float32", "float32", "int32", "float32"]
  assert isinstance(out["a"], tuple) and isinstance(out["m"], list)


def test_bf16_real_train_step_from_config():
  """config.model.dtype reaches the network through the method, and jaxad.train's jitted step keeps float32."""
  config = hypersphere_config()  # MOCCA on the MNIST LeNet
  config.model.dtype = "bfloat16"
  validate(config)
  method = get_method(config.method)(config, DataSpec((28, 28, 1)))
  phase = method.phases[0]
  assert isinstance(phase, TrainPhase) and phase.model.dtype is jnp.bfloat16
  x = np.asarray(jax.random.uniform(jax.random.key(0), (16, 28, 28, 1)))
  tx = optim.make_optimizer(phase.optim, steps_per_epoch=1)
  state = train.init_state(phase, jax.random.key(1), {"image": x[:1]}, {}, tx)
  for tree in (state.params, state.batch_stats):
    assert {str(a.dtype) for a in jax.tree.leaves(tree)} == {"float32"}
  step = jax.jit(train.make_train_step(phase, 1, jax.random.key(2)))
  new, metrics = step(state, {"image": x, "label": np.zeros(16, np.int32)})
  for tree in (new.params, new.batch_stats, new.opt_state):
    assert {str(a.dtype) for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating)} == {"float32"}
  assert metrics["loss"].dtype == jnp.float32 and np.isfinite(metrics["loss"])
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params)))


@pytest.mark.parametrize("config_name,shape", [
    ("adra_cifar10.py", (32, 32, 3)),
    ("pretrain_resnet26_cifar100.py:runlocal=True", (32, 32, 3)),
    ("ssl_cifar10.py:runlocal=True", (32, 32, 3)),
    ("mhrot_cifar10.py:runlocal=True", (32, 32, 3)),
    ("geotrans_cifar10.py:runlocal=True", (32, 32, 3)),
    ("mocca_mvtec.py:runlocal=True", (64, 64, 3)),
    ("mocca_shanghaitech.py:runlocal=True", (8, 32, 64, 3)),
])
def test_every_supported_method_builds_its_network_with_dtype_and_remat(config_name, shape):
  config = load_config(config_file(config_name))
  config.model.dtype = "bfloat16"
  config.model.remat = config.model.name in REMAT_MODELS
  validate(config)
  method = get_method(config.method)(config, DataSpec(shape, num_classes=100))
  models = [p.model for p in method.phases if isinstance(p, TrainPhase)]
  assert models and all(m.dtype is jnp.bfloat16 for m in models)
  if config.model.remat:
    assert all(m.remat for m in models)


def _grads_and_temp(model, variables, x, rngs=None):
  """(gradients of a loss on the train-mode outputs, XLA temp bytes of that compiled gradient)."""

  def loss(params):
    out, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"], rngs=rngs)
    return sum(jnp.mean(jnp.sin(a)) for a in jax.tree.leaves(out))

  compiled = jax.jit(jax.grad(loss)).lower(variables["params"]).compile(KEEP_REMAT)
  return compiled(variables["params"]), compiled.memory_analysis().temp_size_in_bytes


def _assert_same_gradients(g_remat, g_plain):
  # In float64: remat recomputes the same forward, but XLA fuses it differently, and float32 BN backward passes
  # at 96x96 amplify those rounding differences to ~1e-4; float64 leaves only the real differences, if any.
  assert jax.tree.structure(g_remat) == jax.tree.structure(g_plain)
  for name, a in _leaves(g_plain).items():
    assert a.dtype == jnp.float64
    assert _rel(_leaves(g_remat)[name], a) < 1e-6, name


def test_remat_resnet26_96x96_same_gradients_smaller_temp(x64):
  del x64
  x = jax.random.normal(jax.random.key(0), (1, 96, 96, 3), jnp.float64)
  plain, remat = resnet26.ResNet26(), resnet26.ResNet26(remat=True)
  shapes = jax.eval_shape(lambda x: plain.init(jax.random.key(1), x, train=False), x)
  assert shapes == jax.eval_shape(lambda x: remat.init(jax.random.key(1), x, train=False), x)  # same names and shapes
  variables = _random_variables(shapes, jnp.float64)
  g_plain, temp_plain = _grads_and_temp(plain, variables, x)
  g_remat, temp_remat = _grads_and_temp(remat, variables, x)
  _assert_same_gradients(g_remat, g_plain)
  # Remat keeps only each block's input for the backward pass: about a third of the buffers (benchmarks/
  # remat_memory.py: 9058 -> 3183 MiB for the float32 ADIB step at 64 + 64 images).
  assert temp_remat < 0.6 * temp_plain, (temp_remat / 2**20, temp_plain / 2**20)


def test_remat_wide_resnet_same_gradients_with_dropout(x64):
  del x64
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3), jnp.float64)
  kw = dict(depth=10, width=1, heads=(("rot", 4),), dropout=0.3)
  plain, remat = wide_resnet.WideResNet(**kw), wide_resnet.WideResNet(**kw, remat=True)
  shapes = jax.eval_shape(lambda x: plain.init(jax.random.key(1), x, train=False), x)
  assert shapes == jax.eval_shape(lambda x: remat.init(jax.random.key(1), x, train=False), x)
  variables = _random_variables(shapes, jnp.float64)
  # The masks inside the remat blocks must be drawn again identically. RBG keys: their random bits compile in a
  # third of threefry's time.
  rngs = {"dropout": jax.random.key(3, impl="rbg")}
  g_plain, _ = _grads_and_temp(plain, variables, x, rngs)
  g_remat, _ = _grads_and_temp(remat, variables, x, rngs)
  _assert_same_gradients(g_remat, g_plain)
  g_other, _ = _grads_and_temp(plain, variables, x, {"dropout": jax.random.key(4, impl="rbg")})
  assert _rel(g_other["block1_0"]["conv1"]["kernel"], g_plain["block1_0"]["conv1"]["kernel"]) > 0.1  # masks matter


def test_unsupported_model_or_value_is_a_config_error():
  config = load_config(config_file("andrews_vggf_mnist.py:weights=random,runlocal=True"))
  validate(config)
  config.model.dtype = "float32"  # the default is fine anywhere
  validate(config)
  config.model.dtype = "bfloat16"
  with pytest.raises(ConfigError, match=r"model\.dtype='bfloat16' is not supported by model\.name='vgg_f'") as e:
    validate(config)
  assert all(name in str(e.value) for name in DTYPE_MODELS)
  with pytest.raises(ConfigError, match="not supported by model.name='vgg_f'"):  # the method refuses it too
    get_method(config.method)(config, DataSpec((28, 28, 1)))

  config = hypersphere_config()
  config.model.remat = True
  with pytest.raises(ConfigError, match=r"model\.remat=True is not supported by model\.name='lenet_mnist'") as e:
    validate(config)
  assert all(name in str(e.value) for name in REMAT_MODELS)
  for key, value in (("dtype", "float16"), ("dtype", jnp.bfloat16), ("remat", 1)):
    model = ml_collections.ConfigDict({"name": "resnet26_transferad", key: value})
    with pytest.raises(ConfigError, match=f"model.{key}=.* is not valid"):
      compute_kwargs(model)
  assert compute_kwargs({"name": "vgg_f", "dtype": "float32", "remat": False}) == {}
  assert compute_kwargs({"name": "wide_resnet", "dtype": "bfloat16", "remat": True}) == {"dtype": jnp.bfloat16,
                                                                                         "remat": True}
