r"""Jezequel et al.'s multi-task WRN-16-4: train-step throughput against a PyTorch twin, and scorer cost against MHRot.

  python benchmarks/ssl_throughput.py --out=benchmarks/results/ssl_throughput.json

1. Training, fp32 on the CPU: the configs' real step (configs/ssl_cifar10.py = configs/common.py
   `self_supervised()`, built by `jaxad.methods.ssl_multitask.method` and `jaxad.train.make_train_step`): 32 original
   32x32x3 images per step, flipped at random and expanded inside the jitted step into 13 transformed copies (3
   x-shifts, 3 y-shifts, 4 rotations, 3 jigsaw permutations) = 416 images through WRN-16-4 and four dense heads
   with dropout 0.3; loss = per-example sum of the 13 cross-entropies; SGD Nesterov 0.9, lr 0.1 (cosine), coupled
   weight decay 5e-4. Its twin is benchmarks/peers/wrn_torch.py (same network, expansion, loss and optimizer),
   measured eager in NCHW and with `channels_last`. Throughput is in transformed images per second (416 per step).
   The three variants run in one process in alternating rounds (the order rotates each round), each round timing
   `--steps` steps after a warm-up step, and the medians over rounds are reported. The machine is shared: the
   1-minute load average is recorded before every round (this process itself adds about 2 to it on 2 cores), and
   `others_cores_rounds` is what decides whether a round was disturbed: the CPU cores other processes kept busy
   during it (/proc/stat minus this process's own CPU time; `steal_cores_rounds`: time the hypervisor took).
2. Scoring: the time per *original* test image of `ssl_multitask`'s scorer (13 forward passes per image) and of
   MHRot's (36: every (x-shift, y-shift, rotation) combination), both on WRN-16-4 with the configs' eval batch of
   250, through each method's own jitted `Scorer.fn` on variables from `model.init`.

FLOPs: counted analytically for the WRN-16-4 forward at 32x32 (2 per multiply-add of every conv and dense layer;
BN, ReLU, pooling and the transforms are left out); a training image costs 3x its forward (forward, input
gradient, weight gradient). The fraction of the machine's fp32 matmul peak uses a measured peak: the best of
`jnp.dot` and `torch.mm` on 2048^2 and 4096^2 fp32 matrices in this process (benchmarks/peers/measure.py).

Memory, all in one process: before the timed rounds, one untimed call per variant runs while a thread samples the
bytes live in glibc malloc (`HeapSampler`, never while timing: its `mallinfo2()` calls slow the step it watches;
XLA's CPU buffers and torch's tensors both come from malloc); `step_heap_mib` is the most the step added over what
was live when that call began (activations, gradients, the expanded batch, the new state before the old is freed),
`heap_peak_mib` the process's live total at that moment (both frameworks' models included). Live bytes, not the
resident set, since the allocator keeps what one framework freed and would hide the next one's allocations (the
tracemalloc idea, for native memory). For jaxad XLA's `memory_analysis()` of the compiled step is given beside it
(`xla_temp_mib`: buffers alive within the step; `xla_argument_mib`: state and batch). `peak_rss_mib` is the
process's peak resident set (`resource.getrusage`), `baseline_rss_mib` the one before jax and torch are imported.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time

from peers.measure import matmul_peak_gflops, rounds_of, write_results  # benchmarks/peers, beside this file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "..")
BATCH = 32  # originals per training step (the config's; checked against it below)
SIZE = 32


# ---------------------------------------------------------------------------------------------------------------
# FLOPs. The machine's peak, the CPU use of other processes and the heap: benchmarks/peers/measure.py.


def wrn_forward_flops(depth: int, width: int, size: int, head_outputs: int) -> dict:
  """FLOPs (2 per multiply-add) of one image through a pre-activation WRN with dense heads of `head_outputs` total.

  3x3 stem 3 -> 16 at full size; stage s (strides 1, 2, 2) has n = (depth - 4) / 6 blocks of two 3x3 convs, the
  first strided, plus a 1x1 projection in its first block where the shape changes; the heads read 64w features.
  """
  n, side, cin = (depth - 4) // 6, size, 16
  conv = 2 * size * size * 9 * 3 * 16
  for cout, stride in ((16 * width, 1), (32 * width, 2), (64 * width, 2)):
    for i in range(n):
      s = stride if i == 0 else 1
      side = -(-side // s)
      conv += 2 * side * side * 9 * (cin * cout + cout * cout)
      if i == 0 and (cin != cout or s != 1):
        conv += 2 * side * side * cin * cout
      cin = cout
  dense = 2 * cin * head_outputs
  return {"conv": conv, "dense": dense, "forward": conv + dense, "train": 3 * (conv + dense)}


# ---------------------------------------------------------------------------------------------------------------
# The measured variants: each `run(n)` performs n training steps and returns their wall time in seconds.


def jaxad_train(config, steps_per_epoch: int) -> tuple:
  """The jaxad step exactly as the trainer builds it; returns (run, facts)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxad import optim, parallel, train  # pylint: disable=g-import-not-at-top
  from jaxad.methods import get_method  # pylint: disable=g-import-not-at-top
  from jaxad.methods.base import DataSpec, TrainPhase  # pylint: disable=g-import-not-at-top

  built = get_method(config.method)(config, DataSpec((SIZE, SIZE, 3), 10))
  (phase,) = built.phases
  assert isinstance(phase, TrainPhase) and phase.batch_size == BATCH, phase
  mesh = parallel.make_mesh()
  x = np.random.default_rng(0).uniform(-1, 1, size=(BATCH, SIZE, SIZE, 3)).astype(np.float32)  # 'signed' inputs
  tx = optim.make_optimizer(phase.optim, steps_per_epoch=steps_per_epoch)
  state = parallel.replicate(train.init_state(phase, jax.random.key(0), {"image": x}, {}, tx), mesh)
  batch = parallel.shard_batch({"image": x}, mesh)
  from step_timing import compiled_step  # pylint: disable=g-import-not-at-top  (benchmarks/, this folder)
  return compiled_step(phase, state, batch, steps_per_epoch)


def torch_train(channels_last: bool, permutations, total_steps: int, shift_px: int, jigsaw_cfg) -> tuple:
  """The PyTorch twin's step on the same kind of batch; returns (run, facts)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from peers import wrn_torch  # pylint: disable=g-import-not-at-top  (benchmarks/peers, beside this file)

  torch.manual_seed(0)
  model = wrn_torch.MultiHeadWRN(16, 4, wrn_torch.TASKS, dropout=0.0, head_dropout=0.3)
  step = wrn_torch.make_train_step(model, permutations, total_steps=total_steps, shift_px=shift_px,
                                   grid=jigsaw_cfg.grid, margin=jigsaw_cfg.margin, channels_last=channels_last)
  x = np.random.default_rng(0).uniform(-1, 1, size=(BATCH, SIZE, SIZE, 3)).astype(np.float32)
  images = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())  # NCHW, once, outside the timed steps

  def run(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
      step(images)  # returns the loss as a float: everything is done when it returns
    return time.perf_counter() - t0

  return run, {"params": sum(p.numel() for p in model.parameters()), "compile_s": 0.0,
               "torch_threads": torch.get_num_threads()}


def check_twin_transforms(obj, permutations) -> dict:
  """The twin's shifts, rotations and jigsaw equal `jaxad.data.pretext`'s on random images (max |difference|)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from jaxad.data import pretext  # pylint: disable=g-import-not-at-top
  from peers import wrn_torch  # pylint: disable=g-import-not-at-top

  j = obj.jigsaw
  s = pretext.translation_shifts(SIZE)[1]
  x = np.random.default_rng(1).normal(size=(4, SIZE, SIZE, 3)).astype(np.float32)
  offsets = np.random.default_rng(2).integers(0, j.margin + 1, size=(4, j.grid * j.grid, 2))
  ours = {"translate_x": pretext.translations_x_all(x, (0, s, -s), border="reflect101"),
          "translate_y": pretext.translations_y_all(x, (0, s, -s), border="reflect101"),
          "rotate": pretext.rotations_all(x),
          "jigsaw": pretext.jigsaw_all(x, jnp.asarray(permutations), jnp.asarray(offsets, jnp.int32), grid=j.grid,
                                       margin=j.margin, fill=0.0)}
  twin = wrn_torch.expand(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), permutations, torch.from_numpy(offsets),
                          shift_px=s, grid=j.grid, margin=j.margin)
  diff = {}
  for task, v in ours.items():
    t = twin[task].numpy().transpose(0, 2, 3, 1).reshape(np.shape(v))
    diff[task] = float(np.abs(np.asarray(v) - t).max())
  if any(d > 0 for d in diff.values()):
    sys.exit(f"The twin's transforms differ from jaxad.data.pretext: max |diff| {diff}")
  return diff


def scorer_runner(config, scorer_name: str, eval_batch: int) -> tuple:
  """A method's jitted scorer on an eval batch; returns (run(n) -> seconds for n batches, facts)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxad.methods import get_method  # pylint: disable=g-import-not-at-top
  from jaxad.methods.base import DataSpec  # pylint: disable=g-import-not-at-top

  built = get_method(config.method)(config, DataSpec((SIZE, SIZE, 3), 10))
  scorer = built.scorers[scorer_name]
  (phase,) = built.phases
  x = np.random.default_rng(3).uniform(-1, 1, size=(eval_batch, SIZE, SIZE, 3)).astype(np.float32)
  variables = jax.jit(lambda k, x: phase.model.init(k, x, train=False))(jax.random.key(0), x[:2])
  variables = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
  batch = {"image": jax.device_put(x)}
  t0 = time.perf_counter()
  fn = jax.jit(lambda v, b: scorer.fn(v, {}, b)).lower(variables, batch).compile()
  compile_s = time.perf_counter() - t0
  mem = fn.memory_analysis()

  def run(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
      out = fn(variables, batch)
    jax.block_until_ready(out)
    return time.perf_counter() - t0

  return run, {"compile_s": compile_s, "xla_temp_mib": mem.temp_size_in_bytes / 2**20,
               "heads": dict(phase.model.heads), "depth": phase.model.depth, "width": phase.model.width}


# ---------------------------------------------------------------------------------------------------------------


def _memory(log: dict) -> dict:
  return {"heap_peak_mib": max(log["heap_peak_mib"]), "step_heap_mib": max(log["step_heap_mib"])}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=os.path.join(HERE, "results", "ssl_throughput.json"))
  parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of every variant (medians reported)")
  parser.add_argument("--steps", type=int, default=1, help="timed training steps per variant and round")
  parser.add_argument("--eval_rounds", type=int, default=2, help="alternating rounds of the two scorers (medians)")
  parser.add_argument("--eval_batches", type=int, default=1, help="timed eval batches per scorer and round")
  parser.add_argument("--eval_batch", type=int, default=0, help="images per eval batch (0: the configs', 250)")
  parser.add_argument("--skip", default="", help="comma-separated parts to leave out: train, eval, peak")
  args = parser.parse_args()
  skip = set(filter(None, args.skip.split(",")))
  t_start = time.perf_counter()

  baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  sys.path.insert(0, REPO)
  from jaxad import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_cpu_defaults()  # as jaxad.main does, before jax is imported
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from jaxad.config import load_config  # pylint: disable=g-import-not-at-top
  from jaxad.data import pretext  # pylint: disable=g-import-not-at-top
  from jaxad.methods import mhrot  # pylint: disable=g-import-not-at-top

  ssl_config = load_config(os.path.join(REPO, "configs", "ssl_cifar10.py"))
  mhrot_config = load_config(os.path.join(REPO, "configs", "mhrot_cifar10.py"))
  if ssl_config.train.batch_size != BATCH:
    sys.exit(f"configs/ssl_cifar10.py now has batch {ssl_config.train.batch_size}; this benchmark assumes {BATCH}.")
  obj = ssl_config.objective
  permutations = pretext.jigsaw_permutations(obj.jigsaw.k, grid=obj.jigsaw.grid, seed=obj.jigsaw.seed).tolist()
  copies = 3 + 3 + 4 + int(obj.jigsaw.k)  # each task's classes are its transforms, so also the heads' outputs
  per_step = BATCH * copies
  steps_per_epoch = 5000 // BATCH  # one CIFAR-10 class for training; only the cosine schedule reads it
  flops = wrn_forward_flops(ssl_config.model.depth, ssl_config.model.width, SIZE, copies)

  results = {
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                  "jax": jax.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                  "xla_flags": os.environ.get("XLA_FLAGS", ""), "load_avg_at_start": list(os.getloadavg())},
      "settings": {"rounds": args.rounds, "steps": args.steps, "eval_rounds": args.eval_rounds,
                   "eval_batches": args.eval_batches,
                   "originals_per_step": BATCH, "copies_per_original": copies,
                   "images_per_step": per_step, "dtype": "float32"},
      "flops_per_image": {"wrn16_4_forward_32x32": flops["forward"], "conv": flops["conv"], "dense": flops["dense"],
                          "train": flops["train"]},
      "baseline_rss_mib": baseline,
  }
  if "peak" not in skip:
    peak = matmul_peak_gflops()
    results["machine"]["matmul_peak_gflops"] = {**peak, "best": max(peak.values()), "sizes": [2048, 4096]}
    print(f"fp32 matmul peak: jax {peak['jax']:.0f}, torch {peak['torch']:.0f} GFLOP/s", flush=True)
  peak_best = results["machine"].get("matmul_peak_gflops", {}).get("best")

  if "train" not in skip:
    results["twin_transform_max_abs_diff"] = check_twin_transforms(obj, permutations)
    variants, facts = {}, {}
    variants["jaxad"], facts["jaxad"] = jaxad_train(ssl_config, steps_per_epoch)
    facts["jaxad"]["xla_flops_per_image"] = facts["jaxad"]["xla_flops_per_step"] / per_step
    total = steps_per_epoch * ssl_config.train.epochs
    for name, cl in (("torch_eager", False), ("torch_channels_last", True)):
      variants[name], facts[name] = torch_train(cl, permutations, total, pretext.translation_shifts(SIZE)[1],
                                                obj.jigsaw)
    if len({f["params"] for f in facts.values()}) != 1:
      sys.exit(f"The twin's parameter count differs from jaxad's: { {k: f['params'] for k, f in facts.items()} }")
    for name, run in variants.items():  # warm-up: allocations, thread pools, oneDNN primitive caches
      t = run(1)
      facts[name]["warmup_s"] = t
      print(f"warm-up {name}: {t:.1f} s", flush=True)
    log = rounds_of(variants, args.rounds, args.steps, per_step)
    train_rows = {}
    for name in variants:
      rates = [args.steps * per_step / s for s in log[name]["seconds"]]
      med = statistics.median(rates)
      row = {**facts[name], "img_per_s": med, "img_per_s_rounds": rates,
             "originals_per_s": med / copies, "ms_per_step": 1e3 * per_step / med,
             "gflops_per_s": med * flops["train"] / 1e9, "load1_before_rounds": log[name]["load1"],
             "others_cores_rounds": log[name]["others_cores"], "steal_cores_rounds": log[name]["steal_cores"]}
      if peak_best:
        row["pct_of_matmul_peak"] = 100 * row["gflops_per_s"] / peak_best
      train_rows[name] = {**row, **_memory(log[name])}
    for name in ("torch_eager", "torch_channels_last"):
      train_rows[name]["jaxad_speedup"] = train_rows["jaxad"]["img_per_s"] / train_rows[name]["img_per_s"]
    results["train"] = train_rows

  if "eval" not in skip:
    eval_batch = args.eval_batch or ssl_config.eval.batch_size
    scorers, facts = {}, {}
    for name, config, scorer, passes in (("ssl_multitask", ssl_config, "multitask", copies),
                                         ("mhrot", mhrot_config, "mhrot", len(mhrot.COMBINATIONS))):
      scorers[name], facts[name] = scorer_runner(config, scorer, eval_batch)
      facts[name]["passes_per_image"] = passes
      print(f"compiled {name} scorer ({passes} passes per image) in {facts[name]['compile_s']:.1f} s", flush=True)
    log = rounds_of(scorers, args.eval_rounds, args.eval_batches, eval_batch)
    eval_rows = {"eval_batch": eval_batch}
    for name in scorers:
      ms = [1e3 * s / (args.eval_batches * eval_batch) for s in log[name]["seconds"]]
      med = statistics.median(ms)
      passes = facts[name]["passes_per_image"]
      row = {**facts[name], "ms_per_image": med, "ms_per_image_rounds": ms, "ms_per_pass": med / passes,
             "gflops_per_s": passes * flops["forward"] / (med * 1e-3) / 1e9, "load1_before_rounds": log[name]["load1"],
             "others_cores_rounds": log[name]["others_cores"], "steal_cores_rounds": log[name]["steal_cores"]}
      eval_rows[name] = {**row, **_memory(log[name])}
    eval_rows["mhrot_over_ssl_time"] = eval_rows["mhrot"]["ms_per_image"] / eval_rows["ssl_multitask"]["ms_per_image"]
    eval_rows["mhrot_over_ssl_passes"] = len(mhrot.COMBINATIONS) / copies
    results["eval"] = eval_rows

  write_results(results, args.out, t_start)
  print(markdown(results))


def markdown(results: dict) -> str:
  """The short table of the run."""
  lines = []
  f, m = results["flops_per_image"], results["machine"]
  if "train" in results:
    st = results["settings"]
    lines += [f"Training step, WRN-16-4 + 4 heads, fp32, {m['cpus']} CPUs: {st['originals_per_step']} originals x "
              f"{st['copies_per_original']} copies = {st['images_per_step']} images/step; "
              f"{f['wrn16_4_forward_32x32'] / 1e9:.3f} GFLOP/img forward, {f['train'] / 1e9:.3f} training "
              f"(median of {st['rounds']} rounds of {st['steps']} step(s))", "",
              "| variant | img/s (transformed) | ms/step | GFLOP/s | % of matmul peak | step heap MiB | "
              "jaxad / variant |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results["train"].items():
      lines.append(f"| {name} | {r['img_per_s']:.1f} | {r['ms_per_step']:.0f} | {r['gflops_per_s']:.0f} | "
                   f"{r.get('pct_of_matmul_peak', float('nan')):.0f} | {r['step_heap_mib']:.0f} | "
                   f"{r.get('jaxad_speedup', 1.0):.2f}x |")
  if "eval" in results:
    e = results["eval"]
    lines += ["", f"Scoring (jitted `Scorer.fn`, WRN-16-4, eval batch {e['eval_batch']}, median of "
              f"{results['settings']['eval_rounds']} rounds)", "",
              "| scorer | passes/img | ms per original image | ms per pass | GFLOP/s |", "|---|---:|---:|---:|---:|"]
    for name in ("ssl_multitask", "mhrot"):
      r = e[name]
      lines.append(f"| {name} | {r['passes_per_image']} | {r['ms_per_image']:.1f} | {r['ms_per_pass']:.2f} | "
                   f"{r['gflops_per_s']:.0f} |")
    lines += ["", f"MHRot / ssl_multitask time per image: {e['mhrot_over_ssl_time']:.2f}x "
              f"(passes {e['mhrot_over_ssl_passes']:.2f}x)"]
  others = [c for part in ("train", "eval") for r in results.get(part, {}).values() if isinstance(r, dict)
            for c in r.get("others_cores_rounds", [])]
  if others:
    lines.append(f"other processes during the timed rounds: at most {max(others):.2f} CPU cores busy")
  peak = m.get("matmul_peak_gflops")
  if peak:
    lines.append(f"fp32 matmul peak (best of 2048^2, 4096^2): jax {peak['jax']:.0f}, torch {peak['torch']:.0f} "
                 "GFLOP/s")
  lines.append(f"load average (1 min) at start {m['load_avg_at_start'][0]:.2f}, at end {m['load_avg_at_end'][0]:.2f}; "
               f"wall {results['wall_s']:.0f} s")
  return "\n".join(lines)


if __name__ == "__main__":
  main()
