r"""Per-image speed of a sweep's training step: T tasks unrolled or vmapped into one program, against one task alone.

  python benchmarks/sweep_step.py --tasks=4,16 --out=benchmarks/results/sweep_step.json

configs/dsvdd_cifar10.py's AE ('pretrain') and encoder ('train') steps at batch 200 on random CIFAR-sized images,
built by `jaxad.sweep.tasks_step` as a sweep builds them (every task the same state and batch: the speed does not
depend on the values). Each (phase, form) runs in its own process; the JSON has img/s per task-image (median of
`--steps` timed steps after one compiling call) and the compile time (the first call, less one step).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def measure(phase_name: str, form: str, tasks: int, steps: int) -> dict:
  sys.path.insert(0, REPO)
  from jaxad import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_cpu_defaults()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxad import optim, sweep, train  # pylint: disable=g-import-not-at-top
  from jaxad.config import load_config  # pylint: disable=g-import-not-at-top
  from jaxad.methods import get_method  # pylint: disable=g-import-not-at-top
  from jaxad.methods.base import DataSpec, Output, default_init  # pylint: disable=g-import-not-at-top

  config = load_config(os.path.join(REPO, "configs", "dsvdd_cifar10.py"))
  x = np.random.default_rng(0).uniform(size=(config.pretrain.batch_size, 32, 32, 3)).astype(np.float32)
  method = get_method(config.method)(config, DataSpec(x.shape[1:]))
  index, phase = next((i, p) for i, p in enumerate(method.phases) if p.name == phase_name)
  previous = {}
  for i, p in enumerate(method.phases[:index]):  # untimed; a step's cost does not depend on its starting values
    if p.name == "center":  # the encoder phase starts from the AE's encoder and a center
      ae = previous["pretrain"].variables
      encoder = {"params": ae["params"]["encoder"], "batch_stats": ae["batch_stats"]["encoder"]}
      previous[p.name] = Output(encoder, {"centers": {"code": jnp.full((128,), 0.1)}})
    else:
      previous[p.name] = (p.init or default_init(p.model))(jax.random.key(i), {"image": x}, previous)
  tx = optim.make_optimizer(phase.optim, steps_per_epoch=25)
  state = train.init_state(phase, jax.random.key(0), {"image": x}, previous, tx)
  keyed = train.make_keyed_train_step(phase, 25)
  key = jax.random.key_data(jax.random.key(1))
  if form == "alone":
    n, batch = 1, {"image": jnp.asarray(x)}
    step = jax.jit(lambda s, b: keyed(s, b, jax.random.wrap_key_data(key)), donate_argnums=0)
  else:
    n, stack = tasks, (lambda a: jnp.stack([a] * tasks))
    state, batch, keys = jax.tree.map(stack, state), {"image": stack(jnp.asarray(x))}, stack(key)
    step = jax.jit(lambda s, b: sweep.tasks_step(keyed, form, tasks)(s, b, keys), donate_argnums=0)
  t0 = time.perf_counter()
  state, m = step(state, batch)
  jax.block_until_ready(m)
  first = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, m = step(state, batch)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  dt = statistics.median(times)
  return {"phase": phase_name, "form": form, "tasks": n, "img_per_s_per_task_image": n * len(x) / dt,
          "ms_per_step": 1e3 * dt, "compile_s": first - dt}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--tasks", default="4,16", help="comma-separated task counts")
  parser.add_argument("--steps", type=int, default=4)
  parser.add_argument("--out", default="benchmarks/results/sweep_step.json")
  parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._child:  # pylint: disable=protected-access
    phase, form, tasks = args._child  # pylint: disable=protected-access
    print(json.dumps(measure(phase, form, int(tasks), args.steps)))
    return
  rows = []
  for phase in ("pretrain", "train"):
    for form, tasks in [("alone", 1)] + [(f, int(t)) for t in args.tasks.split(",") for f in ("unroll", "vmap")]:
      proc = subprocess.run([sys.executable, __file__, f"--steps={args.steps}", "--_child", phase, form, str(tasks)],
                            capture_output=True, text=True, check=True)
      rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
      r = rows[-1]
      print(f"{phase:9s} {form:7s} T={r['tasks']:3d} {r['img_per_s_per_task_image']:7.1f} img/s per task-image  "
            f"compile {r['compile_s']:5.1f} s", flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump({"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "rows": rows}, f, indent=2)


if __name__ == "__main__":
  main()
