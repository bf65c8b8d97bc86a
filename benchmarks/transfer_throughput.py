r"""ADRA vs ADIB: train-step throughput (img/s) and peak memory of ResNet26 with and without residual adapters.

  JAXAD_DATA_DIR=DIR python benchmarks/transfer_throughput.py --out=benchmarks/results/transfer_throughput.json

Each method runs in its own process (peak RSS is per process), with the configs' real step: 64 normal + 64 OE
images, the recipe's crop+flip (on the device, inside the step), SGD, ADIB's L2-SP over the 3x3 kernels against
theta_0, ADRA's frozen 3x3 kernels through `optim.trainable` (frozen leaves get no gradient use, so XLA drops their
weight-gradient convolutions). The method's fit phases ('source': random init here, theta_0) run untimed first;
the jitted step is timed after compilation and a warm-up, on random images of the given size. Memory: the process's
peak RSS (host RAM on CPU, including the Python/JAX runtime, `baseline_rss_mib` before jax is imported) and XLA's
`memory_analysis()` of the compiled step (`xla_temp_mib`: activations and gradients alive within the step;
`xla_argument_mib`: params, optimizer state, batch). `--dtype=bfloat16` and `--remat` set `config.model.dtype` and
`config.model.remat` (on CPU, remat needs benchmarks/remat_memory.py's compile option to take effect, used here too).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CONFIGS = {"adib": "adib_cifar10.py", "adra": "adra_cifar10.py", "hsc": "hsc_cifar10.py"}


def measure(method: str, steps: int, image_size: int, dtype: str = "float32", remat: bool = False) -> dict:
  sys.path.insert(0, REPO)
  from jaxad import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_cpu_defaults()
  baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxad import optim, train  # pylint: disable=g-import-not-at-top
  from jaxad.config import load_config  # pylint: disable=g-import-not-at-top
  from jaxad.models import count_params  # pylint: disable=g-import-not-at-top
  from remat_memory import CPU_COMPILE_OPTIONS  # pylint: disable=g-import-not-at-top  (benchmarks/, this folder)
  from step_timing import run_steps, transfer_step_inputs  # pylint: disable=g-import-not-at-top  (benchmarks/)

  config = load_config(os.path.join(REPO, "configs", CONFIGS[method]))
  config.model.dtype, config.model.remat = dtype, remat
  bs = config.train.batch_size
  # No data is loaded (the step never sees the OE set itself: random images); source=random.
  phase, state, batch = transfer_step_inputs(config, image_size)
  rules = optim.trainable_rules(phase.optim)
  mask = optim.trainable_mask(state.params, rules) if rules else None
  n_trainable = (sum(int(np.size(p)) for p, t in zip(jax.tree.leaves(state.params), jax.tree.leaves(mask)) if t)
                 if mask is not None else count_params(state.params))
  t0 = time.perf_counter()
  # Since the phases rebuild the step includes the recipe's crop+flip (`phase.augment`), which ran on the host,
  # outside the timed step, when benchmarks/results/transfer_throughput.json was measured.
  step_fn = train.make_train_step(phase, 79, jax.random.key(1))
  options = CPU_COMPILE_OPTIONS if remat and jax.default_backend() == "cpu" else None
  step = jax.jit(step_fn, donate_argnums=0).lower(state, batch).compile(options)
  compile_s = time.perf_counter() - t0
  mem = step.memory_analysis()  # XLA's own accounting of the step's buffers (what a GPU/TPU would need)
  state, _ = run_steps(step, state, batch, 3)  # warm-up
  state, dt = run_steps(step, state, batch, steps)
  return {"method": method, "image_size": image_size, "batch_size": bs, "steps": steps, "dtype": dtype, "remat": remat,
          "img_per_s": steps * bs / dt, "ms_per_step": 1e3 * dt / steps, "compile_s": compile_s,
          "params": count_params(state.params), "trainable_params": n_trainable,
          "baseline_rss_mib": baseline, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
          "xla_temp_mib": mem.temp_size_in_bytes / 2**20, "xla_argument_mib": mem.argument_size_in_bytes / 2**20,
          "xla_output_mib": mem.output_size_in_bytes / 2**20}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="benchmarks/results/transfer_throughput.json")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--methods", default="adib,adra")
  parser.add_argument("--image_sizes", default="32")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="config.model.dtype")
  parser.add_argument("--remat", action="store_true", help="config.model.remat: rematerialise the residual blocks")
  parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._child:  # pylint: disable=protected-access
    method, steps, size = args._child  # pylint: disable=protected-access
    print(json.dumps(measure(method, int(steps), int(size), args.dtype, args.remat)))
    return
  results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                         "python": platform.python_version(), "xla_flags": os.environ.get("XLA_FLAGS", "")},
             "runs": []}
  for size in map(int, args.image_sizes.split(",")):
    for method in args.methods.split(","):
      proc = subprocess.run([sys.executable, __file__, "--_child", method, str(args.steps), str(size),
                             f"--dtype={args.dtype}", *(["--remat"] if args.remat else [])],
                            capture_output=True, text=True, check=False)
      if proc.returncode:
        sys.exit(f"{method} at {size}x{size} failed:\n{proc.stderr[-3000:]}")
      run = json.loads(proc.stdout.strip().splitlines()[-1])
      results["runs"].append(run)
      print(f"{method:5s} {size:3d}x{size:<3d} {run['img_per_s']:7.1f} img/s  {run['ms_per_step']:7.0f} ms/step  "
            f"peak {run['peak_rss_mib']:.0f} MiB  XLA temp {run['xla_temp_mib']:.0f} MiB  "
            f"trainable {run['trainable_params']:,}/{run['params']:,}",
            flush=True)
  by = {(r["method"], r["image_size"]): r for r in results["runs"]}
  for size in map(int, args.image_sizes.split(",")):
    if ("adib", size) in by and ("adra", size) in by:
      a, b = by[("adib", size)], by[("adra", size)]
      ratio = {"image_size": size, "adra_over_adib_img_per_s": b["img_per_s"] / a["img_per_s"],
               "adra_over_adib_peak_rss": b["peak_rss_mib"] / a["peak_rss_mib"],
               "adra_over_adib_xla_temp": b["xla_temp_mib"] / a["xla_temp_mib"],
               "adib_minus_adra_peak_rss_mib": a["peak_rss_mib"] - b["peak_rss_mib"]}
      results.setdefault("ratios", []).append(ratio)
      print(f"{size}x{size}: ADRA/ADIB throughput x{ratio['adra_over_adib_img_per_s']:.2f}, peak RSS "
            f"x{ratio['adra_over_adib_peak_rss']:.2f} ({ratio['adib_minus_adra_peak_rss_mib']:+.0f} MiB saved), XLA "
            f"temp buffers x{ratio['adra_over_adib_xla_temp']:.2f}")
  import jax  # pylint: disable=g-import-not-at-top
  results["machine"]["jax"] = jax.__version__
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
