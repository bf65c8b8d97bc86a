r"""Where the residual nets' steps lose to PyTorch: each convolution's forward, input gradient and weight gradient.

  python benchmarks/conv_layers.py --rounds=3 --out=benchmarks/results/conv_layers.json

Every distinct convolution of TransferAD's ResNet26 (batch 128 = 64 normal + 64 outlier-exposure images, 32x32;
with ADRA's 1x1 adapters) and of Jezequel et al.'s WRN-16-4 (batch 416 = 32 images x 13 transformed copies), timed
alone in three parts: the forward pass, the input gradient (dx) and the weight gradient (dw), each its own jitted
function. jaxad's side is XLA:CPU with the family's flags (`jaxad.xla_flags`): `lax.conv_general_dilated` for 3x3
kernels, for 1x1 kernels also `layers.PatchConv` (one matmul), and for the stride-2 3x3 kernels also the input
gradient of `layers.conv_3x3_stride2` (four stride-1 convolutions of the output gradient, one per output phase,
interleaved): the models use PatchConv and conv_3x3_stride2 (`layers.Stride2Conv`). PyTorch's side is
torch 2.13's oneDNN convolution and `aten.convolution_backward` on channels_last tensors. The totals weight each row by
how often the network has it, for the parts each step computes (ADIB: dx and dw everywhere but the stem's dx; ADRA:
dx everywhere but the stem, dw of the adapters alone; WRN as ADIB). jaxad and PyTorch run in separate processes,
alternating in each of `--rounds` rounds; the JSON has every round and the medians (milliseconds per call).
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
}
# step -> (networks whose rows it has, the parts it computes for a row: stem rows never need dx, ADRA's frozen 3x3
# convs no dw)
STEPS = {"adib": ("resnet26",), "adra": ("resnet26", "adapters"), "wrn": ("wrn",)}


def step_parts(step: str, name: str) -> tuple[str, ...]:
  parts = ("fwd", "dw") if name.endswith("stem") else PARTS
  return tuple(p for p in parts if not (step == "adra" and p == "dw" and "adapter" not in name))


def measure_jax(n: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxad.models import layers  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  out = {}
  for name, (batch, size, cin, cout, k, s, _) in CONVS.items():
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


def measure_torch(n: int) -> dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  tensor = lambda shape, scale=1.0: torch.tensor(rng.normal(size=shape) * scale, dtype=torch.float32).to(
      memory_format=torch.channels_last)
  out = {}
  with torch.no_grad():
    for name, (batch, size, cin, cout, k, s, _) in CONVS.items():
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
  args = parser.parse_args()
  if args.child:
    # ResNet26's flags, the same as wide_resnet's
    layer_timing.child(args.child, args.calls, "resnet26", measure_jax, measure_torch)
    return
  rounds = layer_timing.alternate(__file__, args.rounds, args.calls)
  med = {k: v for by_framework in layer_timing.medians(rounds).values() for k, v in by_framework.items()}
  rows = []
  for name, (batch, size, cin, cout, k, s, counts) in CONVS.items():
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
  for step, networks in STEPS.items():
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
