r"""XLA memory of the 96x96 ADIB / ADRA train step with `model.remat` and `model.dtype`, compiled but never run.

  python benchmarks/remat_memory.py --out=benchmarks/results/remat_memory.json

Each variant builds the real step as benchmarks/transfer_throughput.py does (configs/adib_stl10.py and
adra_stl10.py with source=random, on random images: 64 normal + 64 OE images of 96x96 per step, the recipe's
on-device crop+flip, SGD, ADIB's L2-SP against theta_0, ADRA's frozen 3x3 kernels), compiles
`jax.jit(step, donate_argnums=0)` and reads XLA's `memory_analysis()`: `temp_mib` (activations and gradients alive
within the step, what remat shrinks) and `argument_mib` (params, optimizer state, theta_0, batch); `total_mib` is
their sum, the footprint to compare with an accelerator's memory. Variants: remat off/on, dtype float32/bfloat16.
Nothing is timed, so it can run beside other work.

Measured on the backend jax picks (CPU on the build machine), with two CPU caveats:
* XLA:CPU removes the optimization barriers that `jax.checkpoint` (`nn.remat`) puts around the recomputed forward
  *before* its last CSE passes, which then merge the recomputation back into the forward: remat changes nothing on
  CPU. XLA:GPU removes them only after scheduling and rematerialisation (its "post-scheduling" / "remat-pipeline"
  passes). On CPU each step is therefore compiled with `xla_disable_hlo_passes=cse_barrier_expander`
  (`CPU_COMPILE_OPTIONS`), which keeps the barriers, as on a GPU, for the remat-off variants too.
* XLA:CPU has no bf16 convolution: it converts each one to float32 (and back), so the CPU's bfloat16 temp sizes
  overstate what a GPU/TPU, whose convolutions read and write bf16, needs; only the float32 rows transfer.
"""

import argparse
import json
import os
import platform
import sys
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CONFIGS = {"adib": "adib_stl10.py", "adra": "adra_stl10.py"}
VARIANTS = (("float32", False), ("float32", True), ("bfloat16", False), ("bfloat16", True))
# Keeps jax.checkpoint's optimization barriers through XLA:CPU's CSE passes (see the docstring).
CPU_COMPILE_OPTIONS = {"xla_disable_hlo_passes": "cse_barrier_expander"}


def measure(method: str, dtype: str, remat: bool, image_size: int) -> dict:
  """Compiles one variant's train step and returns XLA's memory accounting of it (MiB)."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxad import train  # pylint: disable=g-import-not-at-top
  from jaxad.config import load_config  # pylint: disable=g-import-not-at-top
  from step_timing import transfer_step_inputs  # pylint: disable=g-import-not-at-top  (benchmarks/, this folder)

  # data_source=tfds only skips the config's check for stl10.npz: no data is loaded (random images).
  config = load_config(os.path.join(REPO, "configs", CONFIGS[method]) + ":source=random,data_source=tfds")
  config.model.dtype, config.model.remat = dtype, remat
  bs = config.train.batch_size
  phase, state, batch = transfer_step_inputs(config, image_size)
  t0 = time.perf_counter()
  options = CPU_COMPILE_OPTIONS if jax.default_backend() == "cpu" else None
  lowered = jax.jit(train.make_train_step(phase, 79, jax.random.key(1)), donate_argnums=0).lower(state, batch)
  step = lowered.compile(options)
  mem = step.memory_analysis()
  mib = lambda n: round(n / 2**20, 1)
  return {"method": method, "dtype": dtype, "remat": remat, "image_size": image_size, "batch_size": bs,
          "normal_per_step": bs - int(config.oe.per_batch), "oe_per_step": int(config.oe.per_batch),
          "temp_mib": mib(mem.temp_size_in_bytes), "argument_mib": mib(mem.argument_size_in_bytes),
          "output_mib": mib(mem.output_size_in_bytes),
          "total_mib": mib(mem.temp_size_in_bytes + mem.argument_size_in_bytes),
          "compile_s": round(time.perf_counter() - t0, 1)}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="benchmarks/results/remat_memory.json")
  parser.add_argument("--methods", default="adib,adra")
  parser.add_argument("--image_size", type=int, default=96)
  args = parser.parse_args()
  sys.path.insert(0, REPO)
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from jaxad import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_cpu_defaults()  # as transfer_throughput.py, so the numbers compare
  import jax  # pylint: disable=g-import-not-at-top
  results = {"machine": {"backend": jax.default_backend(), "cpus": os.cpu_count(), "platform": platform.platform(),
                         "jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
                         "compile_options": CPU_COMPILE_OPTIONS if jax.default_backend() == "cpu" else {}},
             "runs": []}
  for method in args.methods.split(","):
    for dtype, remat in VARIANTS:
      run = measure(method, dtype, remat, args.image_size)
      results["runs"].append(run)
      print(f"{method:4s} {args.image_size}x{args.image_size} {dtype:8s} remat={remat!s:5s} "
            f"temp {run['temp_mib']:8.1f} MiB  arguments {run['argument_mib']:6.1f} MiB  "
            f"total {run['total_mib']:8.1f} MiB  (compiled in {run['compile_s']:.0f} s)", flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
