r"""Training throughput (img/s) and peak memory of the LeNet autoencoder and encoder steps under XLA CPU flag sets
(and, as one more variant, with flax's max pool in place of jaxad's).

  python benchmarks/lenet_throughput.py --rounds=3 --out=benchmarks/results/lenet_throughput.json

The levers of `jaxad.xla_flags`: each flag set (VARIANTS) runs in its own process (XLA_FLAGS must be set before jax
starts), on random CIFAR-sized images with the configs' batch sizes: the jitted train step of each training phase
is timed after compilation and a warm-up (fit phases, e.g. the hypersphere centers between the two, run untimed on
the same random images). The variants alternate within each of `--rounds` rounds, the 1-minute load average is
recorded before each process, and the JSON has every round plus the medians.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys

_YNN = "--xla_cpu_experimental_ynn_fusion_type="
VARIANTS = {
    "default": "",
    "ynn_individual_dot": _YNN + "individual_dot",
    "ynn_dot_eltwise_reduce": _YNN + "individual_dot,eltwise,reduce",
    "ynn_dot+onednn": _YNN + "individual_dot --xla_cpu_use_onednn=true",
    "ynn_dot+no_tree_reduction": _YNN + "individual_dot --xla_disable_hlo_passes=tree_reduction_rewriter",
    # Convolutions through another library than XLA's default (Eigen): YNNPACK, XNNPACK or oneDNN.
    "ynn_dot+ynn_conv": _YNN + "individual_dot,individual_convolution",
    "ynn_dot+xnn_conv": _YNN + "individual_dot --xla_cpu_experimental_xnn_fusion_type=individual_convolution",
    "ynn_dot+onednn_conv": _YNN + "individual_dot --xla_cpu_experimental_onednn_fusion_type=individual_convolution",
    # Not a flag: jaxad's default flags with flax's nn.max_pool in place of the LeNets' `layers.max_pool_2x2`.
    "ynn_dot+flax_max_pool": _YNN + "individual_dot",
}
FLAX_POOL = "ynn_dot+flax_max_pool"


def measure(config_name: str, steps: int) -> dict:
  import jax
  import numpy as np
  from jaxad import optim, parallel, train
  from jaxad.config import load_config
  from jaxad.methods import get_method
  from jaxad.methods.base import DataSpec, FitPhase
  from step_timing import fit_phase, run_steps  # pylint: disable=g-import-not-at-top  (benchmarks/, this folder)

  if os.environ.get("_LENET_FLAX_POOL") == "1":
    import flax.linen as nn
    from jaxad.models import lenet
    lenet._pool = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))  # pylint: disable=protected-access
  config = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", config_name))
  mesh = parallel.make_mesh()
  x = np.random.default_rng(0).uniform(size=(512, 32, 32, 3)).astype(np.float32)
  method = get_method(config.method)(config, DataSpec(x.shape[1:]))
  out, outputs = {}, {}
  for i, phase in enumerate(method.phases):
    if isinstance(phase, FitPhase):  # not timed: e.g. the hypersphere 'center', over the 512 random images at once
      outputs[phase.name] = fit_phase(config, method, i, outputs, x, mesh, batch_size=512)
      continue
    bs = phase.batch_size
    tx = optim.make_optimizer(phase.optim, steps_per_epoch=20)
    batch = {"image": x[:bs]}
    state = parallel.replicate(train.init_state(phase, jax.random.key(0), batch, outputs, tx), mesh)
    step = jax.jit(train.make_train_step(phase, 20, jax.random.key(1)), donate_argnums=0)
    batch = parallel.shard_batch(batch, mesh)
    state, compile_s = run_steps(step, state, batch, 1)  # the first call compiles
    state, _ = run_steps(step, state, batch, 3)  # warm-up
    state, dt = run_steps(step, state, batch, steps)
    out[phase.name] = {"batch_size": bs, "steps": steps, "img_per_s": steps * bs / dt, "compile_s": compile_s}
    outputs[phase.name] = state.output()
  out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="benchmarks/results/lenet_throughput.json")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--configs", default="mocca_cifar10.py,dsvdd_cifar10.py")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--variants", default="", help="comma-separated VARIANTS names; default all")
  parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._child:  # pylint: disable=protected-access
    print(json.dumps(measure(args._child[0], int(args._child[1]))))  # pylint: disable=protected-access
    return
  results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
             "rounds": args.rounds, "runs": []}
  variants = args.variants.split(",") if args.variants else list(VARIANTS)
  for config in args.configs.split(","):
    per_round = {name: [] for name in variants}
    for r in range(args.rounds):
      order = variants[r % len(variants):] + variants[:r % len(variants)]  # rotate: no variant always runs first
      for name in order:
        env = dict(os.environ, XLA_FLAGS=VARIANTS[name], JAXAD_XLA_CPU_DEFAULTS="0",
                   _LENET_FLAX_POOL="1" if name == FLAX_POOL else "0")
        load = os.getloadavg()[0]
        proc = subprocess.run([sys.executable, __file__, "--_child", config, str(args.steps)], env=env,
                              capture_output=True, text=True, check=True)
        per_round[name].append({"load_avg_1min": load, **json.loads(proc.stdout.strip().splitlines()[-1])})
    for name, rounds in per_round.items():
      phases = [k for k, v in rounds[0].items() if isinstance(v, dict) and "img_per_s" in v]
      run = {"config": config, "xla_flags": name, "flags": VARIANTS[name], "rounds": rounds,
             **{k: {"img_per_s": statistics.median(r[k]["img_per_s"] for r in rounds),
                    "batch_size": rounds[0][k]["batch_size"]} for k in phases},
             "peak_rss_mib": max(r["peak_rss_mib"] for r in rounds)}
      results["runs"].append(run)
      loads = ", ".join(f"{r['load_avg_1min']:.1f}" for r in rounds)
      print(f"{config:20s} {name:26s} " + "  ".join(f"{k} {run[k]['img_per_s']:7.1f} img/s" for k in phases)
            + f"  peak {run['peak_rss_mib']:.0f} MiB  (load before each round: {loads})", flush=True)
  import jax  # pylint: disable=g-import-not-at-top
  results["machine"]["jax"] = jax.__version__
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
