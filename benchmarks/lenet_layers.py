r"""Where the LeNet autoencoder step's time goes, layer by layer: jaxad (XLA:CPU) against PyTorch channels_last.

  python benchmarks/lenet_layers.py --rounds=3 --out=benchmarks/results/lenet_layers.json

Each of Deep SVDD's CIFAR-10 autoencoder layers at batch 200, forward and backward (the input gradient too, except
for conv1, whose input is the image), timed alone:
* the seven 5x5 convolutions: `lax.conv_general_dilated` and `layers.PatchConv` (one matmul over concatenated
  patches, which jaxad uses for deconv1, whose 4x4 input is smaller than its kernel) against torch's conv2d
  (channels_last, oneDNN);
* the three encoder blocks BatchNorm -> leaky ReLU -> 2x2 max pool: JAX's autodiff of the plain batch-norm formula
  (jnp.mean reductions) and `layers.batch_norm_train` (reductions as per-example matvecs, backward written out),
  against torch's;
* the accuracy of a per-channel sum over a [200, 32, 32, 32] activation against float64: one matvec over all rows,
  one per example (what `layers._channel_sum` does), and XLA's reduce.
jaxad and PyTorch run in separate processes (each framework's thread pool alone on the cores), alternating in each of
`--rounds` rounds; the JSON has every round and the medians (milliseconds per call).
"""

import argparse

import layer_timing
from layer_timing import median_ms

BATCH = 200
# name, input size, input channels, output channels, whether the input gradient is needed
CONVS = (("conv1", 32, 3, 32, False), ("conv2", 16, 32, 64, True), ("conv3", 8, 64, 128, True),
         ("deconv1", 4, 8, 128, True), ("deconv2", 8, 128, 64, True), ("deconv3", 16, 64, 32, True),
         ("deconv4", 32, 32, 3, True))
BN_BLOCKS = (("bn1", 32, 32), ("bn2", 16, 64), ("bn3", 8, 128))  # name, size, channels


def measure_jax(n: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxad.models import layers  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)

  def lax_conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), ((2, 2), (2, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC"))

  def patch_conv(x, w):
    patch = layers.PatchConv(w.shape[-1], (5, 5), ((2, 2), (2, 2)))
    return patch.apply({"params": {"kernel": w}}, x)

  def fwd_bwd(fn, needs_dx, *args):
    def run(g, *args):  # the output's cotangent is an argument: XLA folds nothing into the backward pass
      y, vjp = jax.vjp(fn, *args)
      grads = vjp(g)
      return y, grads if needs_dx else grads[1:]
    run = jax.jit(run)
    g = jnp.asarray(rng.normal(size=jax.eval_shape(fn, *args).shape), jnp.float32)
    return lambda: jax.block_until_ready(run(g, *args))

  out = {}
  for name, size, cin, cout, needs_dx in CONVS:
    x = jnp.asarray(rng.normal(size=(BATCH, size, size, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(5, 5, cin, cout)) * 0.05, jnp.float32)
    out[name] = median_ms(fwd_bwd(lax_conv, needs_dx, x, w), n)
    out[f"{name}_patch_conv"] = median_ms(fwd_bwd(patch_conv, needs_dx, x, w), n)

  def plain_bn(x):
    mean = jnp.mean(x, (0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), (0, 1, 2))
    return (x - mean) * jax.lax.rsqrt(var + 1e-4)

  def jaxad_bn(x):
    c = x.shape[-1]
    return layers.batch_norm_train(x, jnp.ones(c, x.dtype), jnp.zeros(c, x.dtype), 1e-4)[0]

  for name, size, c in BN_BLOCKS:
    x = jnp.asarray(rng.normal(size=(BATCH, size, size, c)), jnp.float32)
    for label, bn in (("plain", plain_bn), ("jaxad", jaxad_bn)):
      block = lambda x, bn=bn: layers.max_pool_2x2(jax.nn.leaky_relu(bn(x), 0.01))
      out[f"{name}_block_{label}"] = median_ms(fwd_bwd(block, True, x), n)

  x = rng.normal(size=(BATCH, 32, 32, 32)) * 0.3 + rng.normal(size=32) * 2
  exact = x.reshape(-1, 32).sum(0)
  xj = jnp.asarray(x, jnp.float32)
  flat = jax.jit(lambda a: jnp.dot(jnp.ones((1, a.size // 32), a.dtype), a.reshape(-1, 32), precision="highest")[0])
  sums = {"one_matvec": flat(xj), "per_example_matvecs": jax.jit(layers._channel_sum)(xj),  # pylint: disable=protected-access
          "xla_reduce": jax.jit(lambda a: a.reshape(-1, 32).sum(0))(xj)}
  out["channel_sum_max_rel_error"] = {k: float(np.max(np.abs(np.asarray(v, np.float64) - exact) / np.abs(exact)))
                                      for k, v in sums.items()}
  return out


def measure_torch(n: int) -> dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  cl = torch.channels_last

  def tensor(shape, scale=1.0, grad=False):
    t = torch.tensor(rng.normal(size=shape) * scale, dtype=torch.float32).to(memory_format=cl)
    return t.requires_grad_(grad)

  out = {}
  for name, size, cin, cout, needs_dx in CONVS:
    x, w = tensor((BATCH, cin, size, size), grad=needs_dx), tensor((cout, cin, 5, 5), 0.05, grad=True)
    g = tensor((BATCH, cout, size, size))
    out[name] = median_ms(lambda x=x, w=w, g=g: F.conv2d(x, w, padding=2).backward(g), n)
  for name, size, c in BN_BLOCKS:
    x = tensor((BATCH, c, size, size), grad=True)
    bn = torch.nn.BatchNorm2d(c, eps=1e-4, affine=False)
    g = tensor((BATCH, c, size // 2, size // 2))
    out[f"{name}_block"] = median_ms(lambda x=x, bn=bn, g=g: F.max_pool2d(F.leaky_relu(bn(x)), 2, 2).backward(g), n)
  return out


def main():
  parser = argparse.ArgumentParser()
  layer_timing.add_arguments(parser, out="benchmarks/results/lenet_layers.json", calls=15)
  args = parser.parse_args()
  if args.child:
    layer_timing.child(args.child, args.calls, "lenet", measure_jax, measure_torch)
    return
  rounds = layer_timing.alternate(__file__, args.rounds, args.calls)
  med = layer_timing.medians(rounds)
  rows = []
  for name, *_ in CONVS:
    rows.append({"layer": name, "lax_conv_ms": med["jax"][name], "patch_conv_ms": med["jax"][f"{name}_patch_conv"],
                 "torch_channels_last_ms": med["torch"][name]})
  for name, *_ in BN_BLOCKS:
    rows.append({"layer": f"{name} + lrelu + pool", "plain_autodiff_ms": med["jax"][f"{name}_block_plain"],
                 "batch_norm_train_ms": med["jax"][f"{name}_block_jaxad"], "torch_channels_last_ms":
                 med["torch"][f"{name}_block"]})
  for row in rows:
    print("  ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{v:22s}" for k, v in row.items()), flush=True)
  sums = rounds["jax"][0]["channel_sum_max_rel_error"]
  print("per-channel sum, max relative error against float64: " + ", ".join(f"{k} {v:.1e}" for k, v in sums.items()))
  results = {"machine": layer_timing.machine(), "batch_size": BATCH, "rounds": rounds, "layers": rows,
             "channel_sum_max_rel_error": sums}
  layer_timing.write_json(results, args.out)


if __name__ == "__main__":
  main()
