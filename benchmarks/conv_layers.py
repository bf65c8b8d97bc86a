r"""Where the steps lose to PyTorch: each convolution's forward, input gradient and weight gradient.

  python benchmarks/conv_layers.py --rounds=3 --out=benchmarks/results/conv_layers.json
  python benchmarks/conv_layers.py --steps=lenet_ae,lenet_encoder --rounds=3 \
      --out=benchmarks/results/conv_layers_lenet.json

Every distinct convolution of TransferAD's ResNet26 (batch 128 = 64 normal + 64 outlier-exposure images, 32x32;
with ADRA's 1x1 adapters), of Jezequel et al.'s WRN-16-4 (batch 416 = 32 images x 13 transformed copies) and of Deep
SVDD's CIFAR-10 LeNet autoencoder (batch 200, 5x5 kernels, padding 2; the decoder's stride-1 transposed
convolutions are convolutions with the kernel flipped), timed alone in three parts: the forward pass, the input
gradient (dx) and the weight gradient (dw), each its own jitted function. jaxad's side is XLA:CPU with the flags
jaxad sets for the chosen steps' family (`jaxad.xla_flags`): `lax.conv_general_dilated` for 3x3 and 5x5 kernels, for
1x1 kernels also `layers.PatchConv` (one matmul), and for the stride-2 3x3 kernels also the input gradient of
`layers.conv_3x3_stride2` (four stride-1 convolutions of the output gradient, one per output phase, interleaved):
the models use PatchConv and conv_3x3_stride2 (`layers.Stride2Conv`). The LeNet decoder's first convolution (4x4
input, 8 -> 128 channels) is left out: the model runs it as one PatchConv matmul, 2.6 ms forward and backward
against PyTorch's 2.9 (benchmarks/lenet_layers.py). PyTorch's side is torch 2.13's oneDNN convolution and
`aten.convolution_backward` on channels_last tensors. The totals weight each row by how often the network has it,
for the parts each step computes (ADIB: dx and dw everywhere but the stem's dx; ADRA: dx everywhere but the stem,
dw of the adapters alone; WRN and the LeNet steps as ADIB). jaxad and PyTorch run in separate processes, alternating
in each of `--rounds` rounds; the JSON has every round and the medians (milliseconds per call).
"""

import argparse
import sys

import layer_timing
from layer_timing import median_ms

PARTS = ("fwd", "dx", "dw")
# name: (batch, input size, in, out, kernel, stride, {network: count})
CONVS = {
    "r26_stem": (128, 32, 3, 64, 3, 1, {"resnet26": 1}),
    "r26_c64": (128, 32, 64, 64, 3, 1, {"resnet26": 8}),
    "r26_c64_128s2": (128, 32, 64, 128, 3, 2, {"resnet26": 1}),
    "r26_c128": (128, 16, 128, 128, 3, 1, {"resnet26": 7}),
    "r26_c128_256s2": (128, 16, 128, 256, 3, 2, {"resnet26": 1}),
    "r26_c256": (128, 8, 256, 256, 3, 1, {"resnet26": 7}),
    "r26_adapter_stem": (128, 32, 3, 64, 1, 1, {"adapters": 1}),
    "r26_adapter64": (128, 32, 64, 64, 1, 1, {"adapters": 8}),
    "r26_adapter64_128s2": (128, 32, 64, 128, 1, 2, {"adapters": 1}),
    "r26_adapter128": (128, 16, 128, 128, 1, 1, {"adapters": 7}),
    "r26_adapter128_256s2": (128, 16, 128, 256, 1, 2, {"adapters": 1}),
    "r26_adapter256": (128, 8, 256, 256, 1, 1, {"adapters": 7}),
    "wrn_stem": (416, 32, 3, 16, 3, 1, {"wrn": 1}),
    "wrn_c16_64": (416, 32, 16, 64, 3, 1, {"wrn": 1}),
    "wrn_c64": (416, 32, 64, 64, 3, 1, {"wrn": 3}),
    "wrn_c64_128s2": (416, 32, 64, 128, 3, 2, {"wrn": 1}),
    "wrn_c128": (416, 16, 128, 128, 3, 1, {"wrn": 3}),
    "wrn_c128_256s2": (416, 16, 128, 256, 3, 2, {"wrn": 1}),
    "wrn_c256": (416, 8, 256, 256, 3, 1, {"wrn": 3}),
    "wrn_shortcut16_64": (416, 32, 16, 64, 1, 1, {"wrn": 1}),
    "wrn_shortcut64_128s2": (416, 32, 64, 128, 1, 2, {"wrn": 1}),
    "wrn_shortcut128_256s2": (416, 16, 128, 256, 1, 2, {"wrn": 1}),
    "lenet_stem": (200, 32, 3, 32, 5, 1, {"lenet_encoder": 1}),
    "lenet_c32_64": (200, 16, 32, 64, 5, 1, {"lenet_encoder": 1}),
    "lenet_c64_128": (200, 8, 64, 128, 5, 1, {"lenet_encoder": 1}),
    "lenet_d128_64": (200, 8, 128, 64, 5, 1, {"lenet_decoder": 1}),
    "lenet_d64_32": (200, 16, 64, 32, 5, 1, {"lenet_decoder": 1}),
    "lenet_d32_3": (200, 32, 32, 3, 5, 1, {"lenet_decoder": 1}),
}
# step -> (networks whose rows it has, the parts it computes for a row: stem rows never need dx, ADRA's frozen 3x3
# convs no dw)
STEPS = {"adib": ("resnet26",), "adra": ("resnet26", "adapters"), "wrn": ("wrn",),
         "lenet_ae": ("lenet_encoder", "lenet_decoder"), "lenet_encoder": ("lenet_encoder",)}
STEP_MODELS = {"adib": "resnet26_transferad", "adra": "resnet26_transferad", "wrn": "wide_resnet",
               "lenet_ae": "lenet_cifar10", "lenet_encoder": "lenet_cifar10"}  # whose XLA flags the child sets


def chosen_convs(steps: list[str]) -> dict:
  """The rows of CONVS that the chosen steps have."""
  networks = {net for step in steps for net in STEPS[step]}
  return {name: spec for name, spec in CONVS.items() if networks & set(spec[-1])}


def step_parts(step: str, name: str) -> tuple[str, ...]:
  parts = ("fwd", "dw") if name.endswith("stem") else PARTS
  return tuple(p for p in parts if not (step == "adra" and p == "dw" and "adapter" not in name))


def measure_jax(n: int, convs: dict) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxad.models import layers  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  out = {}
  for name, (batch, size, cin, cout, k, s, _) in convs.items():
    pad = ((k - 1) // 2,) * 2
    lax_conv = lambda x, w, s=s, pad=pad: jax.lax.conv_general_dilated(
        x, w, (s, s), (pad, pad), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    patch = layers.PatchConv(cout, (1, 1), strides=(s, s))
    patch_conv = lambda x, w, patch=patch: patch.apply({"params": {"kernel": w}}, x)
    x = jnp.asarray(rng.normal(size=(batch, size, size, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, cin, cout)) * 0.05, jnp.float32)
    for label, conv in (("lax_conv", lax_conv), ("patch_conv", patch_conv)) if k == 1 else (("lax_conv", lax_conv),):
      g = jnp.asarray(rng.normal(size=jax.eval_shape(conv, x, w).shape), jnp.float32)
      fns = {"fwd": jax.jit(conv),
             "dx": jax.jit(lambda x, w, g, conv=conv: jax.vjp(lambda x: conv(x, w), x)[1](g)[0]),
             "dw": jax.jit(lambda x, w, g, conv=conv: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])}
      for part, fn in fns.items():
        args = (x, w) if part == "fwd" else (x, w, g)
        out[f"{name}/{label}/{part}"] = median_ms(lambda fn=fn, args=args: jax.block_until_ready(fn(*args)), n)
    if k == 3 and s == 2:  # the convolution's own forward and weight gradient are XLA's, timed above
      g = jnp.asarray(rng.normal(size=(batch, size // 2, size // 2, cout)), jnp.float32)
      phases = jax.jit(lambda x, w, g: jax.vjp(lambda x: layers.conv_3x3_stride2(x, w), x)[1](g)[0])
      out[f"{name}/phases/dx"] = median_ms(lambda: jax.block_until_ready(phases(x, w, g)), n)
  return out


def measure_torch(n: int, convs: dict) -> dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  tensor = lambda shape, scale=1.0: torch.tensor(rng.normal(size=shape) * scale, dtype=torch.float32).to(
      memory_format=torch.channels_last)
  out = {}
  with torch.no_grad():
    for name, (batch, size, cin, cout, k, s, _) in convs.items():
      pad = (k - 1) // 2
      x, w = tensor((batch, cin, size, size)), tensor((cout, cin, k, k), 0.05)
      g = tensor(torch.nn.functional.conv2d(x, w, stride=s, padding=pad).shape)
      backward = lambda mask, x=x, w=w, g=g, s=s, pad=pad: torch.ops.aten.convolution_backward(
          g, x, w, None, [s, s], [pad, pad], [1, 1], False, [0, 0], 1, mask)
      fns = {"fwd": lambda x=x, w=w, s=s, pad=pad: torch.nn.functional.conv2d(x, w, stride=s, padding=pad),
             "dx": lambda backward=backward: backward([True, False, False]),
             "dw": lambda backward=backward: backward([False, True, False])}
      for part, fn in fns.items():
        out[f"{name}/torch/{part}"] = median_ms(fn, n)
  return out


def main():
  parser = argparse.ArgumentParser()
  layer_timing.add_arguments(parser, out="benchmarks/results/conv_layers.json", calls=5)
  parser.add_argument("--steps", default="adib,adra,wrn", help=f"comma-separated, of {', '.join(STEPS)}; one "
                      "family's XLA flags per run")
  args = parser.parse_args()
  steps = args.steps.split(",")
  if unknown := set(steps) - set(STEPS):
    sys.exit(f"--steps: unknown {sorted(unknown)}; choose from {', '.join(STEPS)}.")
  sys.path.insert(0, layer_timing.REPO)
  from jaxad import xla_flags  # pylint: disable=g-import-not-at-top
  if len({xla_flags.cpu_flags(STEP_MODELS[step]) for step in steps}) > 1:
    sys.exit(f"--steps={args.steps}: these families run with different XLA flags; measure them in separate runs.")
  convs = chosen_convs(steps)
  if args.child:
    layer_timing.child(args.child, args.calls, STEP_MODELS[steps[0]], lambda n: measure_jax(n, convs),
                       lambda n: measure_torch(n, convs))
    return
  rounds = layer_timing.alternate(__file__, args.rounds, args.calls, ("--steps", args.steps))
  med = {k: v for by_framework in layer_timing.medians(rounds).values() for k, v in by_framework.items()}
  rows = []
  for name, (batch, size, cin, cout, k, s, counts) in convs.items():
    row = {"conv": name, "batch": batch, "input": [size, size, cin], "out_channels": cout, "kernel": k, "stride": s,
           "count": counts}
    for label in ("lax_conv", "patch_conv", "torch"):
      if f"{name}/{label}/fwd" in med:
        row[f"{label}_ms"] = {p: med[f"{name}/{label}/{p}"] for p in PARTS}
    if f"{name}/phases/dx" in med:
      row["dx_by_phases_ms"] = med[f"{name}/phases/dx"]
    rows.append(row)
    print(f"{name:22s} " + "  ".join(f"{label} " + " ".join(f"{p} {v:6.1f}" for p, v in row[f"{label}_ms"].items())
                                     for label in ("lax_conv", "patch_conv", "torch") if f"{label}_ms" in row)
          + (f"  dx by phases {row['dx_by_phases_ms']:.1f}" if "dx_by_phases_ms" in row else ""), flush=True)
  totals = {}
  for step in steps:
    networks = STEPS[step]
    total = {"jaxad": dict.fromkeys(PARTS, 0.0), "torch": dict.fromkeys(PARTS, 0.0)}
    for row in rows:
      count = sum(row["count"].get(net, 0) for net in networks)
      jaxad = dict(row.get("patch_conv_ms", row["lax_conv_ms"]))  # what the models run
      jaxad["dx"] = row.get("dx_by_phases_ms", jaxad["dx"])
      for part in step_parts(step, row["conv"]) if count else ():
        total["jaxad"][part] += count * jaxad[part]
        total["torch"][part] += count * row["torch_ms"][part]
    totals[step] = total
    print(f"{step}: convolutions per step, ms (jaxad / torch): " + ", ".join(
        f"{p} {total['jaxad'][p]:.0f} / {total['torch'][p]:.0f}" for p in PARTS))
  results = {"machine": layer_timing.machine(), "command": " ".join(["python", *sys.argv]), "rounds": rounds,
             "convs": rows, "step_totals_ms": totals}
  layer_timing.write_json(results, args.out)


if __name__ == "__main__":
  main()
