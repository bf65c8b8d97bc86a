r"""MOCCA beyond CIFAR-10 at the paper's sizes on this CPU: training throughput, peak memory, time per test video.

  python benchmarks/mocca_throughput.py --out=benchmarks/results/mocca_throughput.json [--steps=3]

Workloads, each in its own process (peak RSS per workload), random inputs at the configs' shapes and batches:
* mvtec_texture: configs/mocca_mvtec.py:category=carpet: 2 images of 512x512 per step, 64 rotated 64x64 crops of
  each (128 patches), the autoencoder step and the hypersphere step (selector heads on down3, fc1, code).
* mvtec_object: category=bottle: 32 rotated 128x128 images per step, both steps.
* shanghaitech: configs/mocca_shanghaitech.py: `--video_batch` clips (default 1; the recipe's batch is 4, whose
  step takes minutes on 2 cores) of 16 frames at 256x512, the end-to-end step; and the scoring forward on batches
  of as many clips, from which the time per test video follows: ShanghaiTech's 107 test videos hold 42,883 frames
  (401 on average), i.e. 386 clips of 16 at stride 1 per video on average.
* background: the host's per-frame cost of a test frame: JPEG decode + resize to 256x512, and the 'mog_image'
  background removal.
Each step is timed over `--steps` calls after the compiling call and one warm-up (fit phases run untimed on the
same random inputs). Patches/s count the network's inputs (crops, images or clips) per second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SHANGHAITECH_TEST_FRAMES, SHANGHAITECH_TEST_VIDEOS = 42883, 107
WORKLOADS = {  # name: (config argument, input shape of one example)
    "mvtec_texture": ("mocca_mvtec.py:root=/none,category=carpet", (512, 512, 3)),
    "mvtec_object": ("mocca_mvtec.py:root=/none,category=bottle", (128, 128, 3)),
    "shanghaitech": ("mocca_shanghaitech.py:root=/none", (16, 256, 512, 3)),
}


def measure(name: str, steps: int, video_batch: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxad import optim, parallel, train  # pylint: disable=g-import-not-at-top
  from jaxad.config import load_config  # pylint: disable=g-import-not-at-top
  from jaxad.methods import get_method  # pylint: disable=g-import-not-at-top
  from jaxad.methods.base import DataSpec, FitPhase  # pylint: disable=g-import-not-at-top
  from step_timing import fit_phase, run_steps  # pylint: disable=g-import-not-at-top

  arg, shape = WORKLOADS[name]
  config = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", arg))
  if name == "shanghaitech":  # one full-size clip step takes minutes here: fewer clips per step, same per-clip cost
    config.train.batch_size = config.eval.batch_size = video_batch
  mesh = parallel.make_mesh()
  rng = np.random.default_rng(0)
  lo = -1.0 if config.data.preprocess == "signed" else 0.0
  n = max(config.eval.batch_size, 8 if name != "shanghaitech" else video_batch)
  x = rng.uniform(lo, 1.0, size=(n, *shape)).astype(np.float32)
  method = get_method(config.method)(config, DataSpec(shape))
  out, outputs = {}, {}
  for i, phase in enumerate(method.phases):
    if isinstance(phase, FitPhase):
      outputs[phase.name] = fit_phase(config, method, i, outputs, x, mesh)
      continue
    bs = phase.batch_size
    batch = {"image": np.resize(x, (bs, *shape))}
    per_step = bs * (config.patches.per_image if config.get("patches") and config.patches.size else 1)
    tx = optim.make_optimizer(phase.optim, steps_per_epoch=20)
    state = parallel.replicate(train.init_state(phase, jax.random.key(0), batch, outputs, tx), mesh)
    step = jax.jit(train.make_train_step(phase, 20, jax.random.key(1)), donate_argnums=0)
    batch = parallel.shard_batch(batch, mesh)
    state, compile_s = run_steps(step, state, batch, 1)
    state, _ = run_steps(step, state, batch, 1)
    state, dt = run_steps(step, state, batch, steps)
    out[phase.name] = {"examples_per_step": bs, "network_inputs_per_step": per_step, "steps": steps,
                       "s_per_step": dt / steps, "inputs_per_s": steps * per_step / dt, "compile_s": compile_s}
    outputs[phase.name] = state.output()
  if name == "shanghaitech":  # scoring: the per-frame scorers' forward over eval batches of clips
    scorer = method.scorers["hypersphere"]
    output = outputs[scorer.phase]
    fn = jax.jit(lambda v, e, b: scorer.fn(v, e, b))
    b = {"image": x[:config.eval.batch_size]}
    jax.block_until_ready(fn(output.variables, output.extra, b))
    t = time.perf_counter()
    for _ in range(steps):
      jax.block_until_ready(fn(output.variables, output.extra, b))
    clips_per_s = steps * config.eval.batch_size / (time.perf_counter() - t)
    clips_per_video = SHANGHAITECH_TEST_FRAMES / SHANGHAITECH_TEST_VIDEOS - config.data.video.clip_len + 1
    out["scoring"] = {"clips_per_s": clips_per_s, "clips_per_test_video": clips_per_video,
                      "s_per_test_video": clips_per_video / clips_per_s}
  out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return out


def background_cost(frames: int = 64) -> dict:
  """Per-frame host cost of reading a 256x512 test frame: JPEG decode + resize, and the 'mog_image' foreground."""
  import io  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from jaxad.data import background  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  raw = (rng.uniform(0, 255, (480, 856, 3))).astype(np.uint8)  # ShanghaiTech's frames are 856x480
  buf = io.BytesIO()
  Image.fromarray(raw).save(buf, format="JPEG")
  t = time.perf_counter()
  decoded = [np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB").resize((512, 256), Image.BILINEAR))
             for _ in range(frames)]
  decode_s = (time.perf_counter() - t) / frames
  t = time.perf_counter()
  background.mog_image_foreground(np.stack(decoded))
  mog_s = (time.perf_counter() - t) / frames
  return {"decode_resize_ms_per_frame": 1e3 * decode_s, "mog_image_ms_per_frame": 1e3 * mog_s}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="benchmarks/results/mocca_throughput.json")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--workloads", default=",".join([*WORKLOADS, "background"]))
  parser.add_argument("--video_batch", type=int, default=1,
                      help="clips per step for shanghaitech (the recipe's 4 takes minutes per step on 2 cores)")
  parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._child:  # pylint: disable=protected-access
    from jaxad import xla_flags  # pylint: disable=g-import-not-at-top
    xla_flags.apply_cpu_defaults()
    name = args._child[0]  # pylint: disable=protected-access
    steps, video_batch = int(args._child[1]), int(args._child[2])  # pylint: disable=protected-access
    result = background_cost() if name == "background" else measure(name, steps, video_batch)
    print(json.dumps(result))
    return
  import jax  # pylint: disable=g-import-not-at-top
  results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                         "jax": jax.__version__}, "video_batch": args.video_batch, "runs": {}}
  if os.path.exists(args.out):  # add to (or replace workloads of) an earlier result file
    with open(args.out) as f:
      results["runs"] = json.load(f).get("runs", {})
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  for name in args.workloads.split(","):
    t = time.time()
    proc = subprocess.run([sys.executable, __file__, "--_child", name, str(args.steps), str(args.video_batch)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
      raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    results["runs"][name] = {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": time.time() - t}
    print(name, json.dumps(results["runs"][name]), flush=True)
    with open(args.out, "w") as f:  # after every workload: a long one cut short loses only itself
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
