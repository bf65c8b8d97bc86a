r"""jaxad against PyTorch twins of the papers' code: training throughput side by side, in one process.

  python benchmarks/peers_benchmark.py --workloads=lenet_ae,lenet_encoder,adib,adra,wrn,dsvdd_epoch --rounds=3 \
      --out=benchmarks/results/peers.json

Workloads (jaxad's side is always the real config's jitted step, built as the trainer builds it):
* lenet_ae, lenet_encoder: configs/dsvdd_cifar10.py's 'pretrain' and 'train' steps (Deep SVDD's LeNet autoencoder
  and encoder, batch 200, Adam 1e-4, coupled wd 0.5e-6, hard boundary to a fixed center) on random [0, 1] images,
  vs benchmarks/peers/lenet_torch.py.
* adib, adra: configs/adib_cifar10.py and configs/adra_cifar10.py (ResNet26, 64 normal + 64 OE images with the
  on-device crop + flip, SGD; ADIB's L2-SP, ADRA's frozen 3x3 kernels) vs benchmarks/peers/resnet26_torch.py.
* wrn: configs/ssl_cifar10.py's multi-task WRN-16-4 step (32 originals x 13 transformed copies) vs
  benchmarks/peers/wrn_torch.py, as benchmarks/ssl_throughput.py builds both.
* dsvdd_epoch: end to end on one CIFAR-10 class ($JAXAD_DATA_DIR/cifar10.npz, class --normal_class): jaxad's
  trainer (`jaxad.train.Runner`, configs/dsvdd_cifar10.py with one epoch per phase and a constant lr) runs the
  autoencoder phase, the center and the encoder phase; each phase's wall time is everything the trainer does for
  it (initialisation, tracing and a compilation-cache load, the input pipeline with its GCN + min-max
  preprocessing, the steps, metrics and the end-of-epoch checkpoint). Against it
  benchmarks/peers/dsvdd_trainer_torch.py: the authors' loop shape (Dataset + DataLoader, batch 200, shuffled,
  num_workers 0). JAX's persistent compilation cache is switched on for this workload, and each variant runs once
  untimed first (jaxad compiles there; its times are kept under `warmup`).

Each workload's variants (jaxad, PyTorch eager NCHW, PyTorch channels_last; the epoch loop has one PyTorch variant)
run in alternating rounds, the order rotating each round, each round timing `--steps` steps (one epoch per phase
for dsvdd_epoch) after one untimed warm-up call. Before every round the 1-minute load average is recorded (this
process adds about its thread count to it), and during it `others_cores`: the cores other processes kept busy
(/proc/stat minus this process's CPU time). Rounds with `others_cores` above `--max_others_cores` are not counted;
when no round of a variant is clean the median of all is reported and flagged `all_rounds_disturbed`. jaxad's
processes set the XLA flags `jaxad.main` would for the workload's model family (`WORKLOAD_MODELS`,
`jaxad.xla_flags.FAMILY_FLAGS`; a user's XLA_FLAGS win), recorded per variant as `xla_flags`.

FLOPs per image are analytic (2 per multiply-add of every conv and dense layer; BN, activations, pooling left out),
training = 3x forward (forward, input gradient, weight gradient; an upper bound for ADRA, whose frozen kernels
need no weight gradient). `pct_of_matmul_peak` divides the achieved FLOP/s by the best fp32 GEMM rate of jax and
torch in this process (benchmarks/peers/measure.py). `jaxad_over_best_peer` is jaxad's median img/s over the best
PyTorch variant's. The markdown table (README's performance table) goes to `--md` (default: `--out` with .md).
`--quick` is a smoke run, not a measurement: no warm-up, one round of one step, a small matmul for the peak, and
dsvdd_epoch on 400 images (its jaxad phases then include their compilation).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

from peers import measure  # benchmarks/peers, beside this file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORKLOADS = ("lenet_ae", "lenet_encoder", "adib", "adra", "wrn", "dsvdd_epoch")
# Timed steps per round when --steps is 0: about 5-15 s of work per variant and round on 2 CPU cores.
DEFAULT_STEPS = {"lenet_ae": 10, "lenet_encoder": 10, "adib": 3, "adra": 3, "wrn": 1, "dsvdd_epoch": 1}
TORCH_STEP_VARIANTS = (("torch_eager", False), ("torch_channels_last", True))


@dataclasses.dataclass
class Workload:
  """What `rounds_of` times, and how to read its seconds: `images` per call of `run(1)`, FLOPs per image."""
  description: str
  variants: dict[str, Callable]
  facts: dict[str, dict]
  images: int
  flops_forward: int
  unit: str = "step"  # or 'epoch'
  notes: dict = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# jaxad's side.


def _config(name: str):
  from jaxad.config import load_config  # pylint: disable=g-import-not-at-top
  return load_config(os.path.join(REPO, "configs", name))


def _fit_before(config, method, index: int, x, mesh) -> dict:
  """The outputs of the phases before `method.phases[index]` on random images: fit phases fitted, training phases
  at their initialisation (not timed; a training phase's step cost does not depend on its starting weights)."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxad.methods.base import FitPhase, default_init  # pylint: disable=g-import-not-at-top
  from step_timing import fit_phase  # pylint: disable=g-import-not-at-top  (benchmarks/, this folder)

  outputs = {}
  for i, p in enumerate(method.phases[:index]):
    if isinstance(p, FitPhase):
      outputs[p.name] = fit_phase(config, method, i, outputs, x, mesh, batch_size=len(x))
    else:
      outputs[p.name] = (p.init or default_init(p.model))(jax.random.key(i), {"image": x}, outputs)
  return outputs


def _jaxad_config_step(config, phase_name: str, x, labels=None, steps_per_epoch: int = 25) -> tuple[Callable, dict]:
  """The config's phase `phase_name` as the trainer jits it, on the batch `x` (`step_timing.compiled_step`)."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxad import optim, parallel, train  # pylint: disable=g-import-not-at-top
  from jaxad.methods import get_method  # pylint: disable=g-import-not-at-top
  from jaxad.methods.base import DataSpec  # pylint: disable=g-import-not-at-top
  from step_timing import compiled_step  # pylint: disable=g-import-not-at-top  (benchmarks/, this folder)

  mesh = parallel.make_mesh()
  method = get_method(config.method)(config, DataSpec(x.shape[1:]))
  index, phase = next((i, p) for i, p in enumerate(method.phases) if p.name == phase_name)
  if phase.batch_size != len(x):
    sys.exit(f"{config.method} phase {phase_name!r} now has batch {phase.batch_size}; this benchmark uses {len(x)}.")
  previous = _fit_before(config, method, index, x, mesh)
  batch = {"image": x} if labels is None else {"image": x, "label": labels}
  tx = optim.make_optimizer(phase.optim, steps_per_epoch=steps_per_epoch)
  state = parallel.replicate(train.init_state(phase, jax.random.key(0), batch, previous, tx), mesh)
  return compiled_step(phase, state, parallel.shard_batch(batch, mesh), steps_per_epoch)


# ---------------------------------------------------------------------------------------------------------------
# Workloads.


def _torch_steps(make: Callable[[bool], Callable[[], None]]) -> tuple[dict, dict]:
  import torch  # pylint: disable=g-import-not-at-top
  variants, facts = {}, {}
  for name, channels_last in TORCH_STEP_VARIANTS:
    step = make(channels_last)

    def run(n: int, step=step) -> float:
      t0 = time.perf_counter()
      for _ in range(n):
        step()  # eager CPU torch: the update is done when it returns
      return time.perf_counter() - t0

    variants[name], facts[name] = run, {"torch_threads": torch.get_num_threads()}
  return variants, facts


def lenet(kind: str, args) -> Workload:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from peers import lenet_torch  # pylint: disable=g-import-not-at-top

  config = _config("dsvdd_cifar10.py")
  phase = "pretrain" if kind == "ae" else "train"
  bs = config[phase].batch_size
  x = np.random.default_rng(0).uniform(size=(bs, 32, 32, 3)).astype(np.float32)
  run, facts = _jaxad_config_step(config, phase, x, steps_per_epoch=5000 // bs)
  variants, tfacts = _torch_steps(lambda cl: lenet_torch.make_lenet_step(kind, batch_size=bs, channels_last=cl))
  return Workload(f"Deep SVDD LeNet {'autoencoder' if kind == 'ae' else 'encoder'} step (configs/dsvdd_cifar10.py "
                  f"'{phase}', batch {bs})", {"jaxad": run, **variants}, {"jaxad": facts, **tfacts}, bs,
                  lenet_torch.forward_flops(kind))


def transfer(method: str, args) -> Workload:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from peers import resnet26_torch  # pylint: disable=g-import-not-at-top  (written beside this file)

  config = _config(f"{method}_cifar10.py")
  bs, size = config.train.batch_size, 32
  normal = bs - config.oe.per_batch
  x = np.random.default_rng(0).normal(size=(bs, size, size, 3)).astype(np.float32)
  labels = np.repeat(np.int32([0, 1]), [normal, bs - normal])
  run, facts = _jaxad_config_step(config, "train", x, labels, steps_per_epoch=79)
  variants, tfacts = _torch_steps(lambda cl: resnet26_torch.make_transfer_step(
      method, normal=normal, oe=bs - normal, size=size, channels_last=cl))
  flops = resnet26_torch.forward_flops(size, method=method)
  notes = {"train_flops": "3x forward; an upper bound for ADRA (frozen 3x3 kernels: no weight gradient)"}
  return Workload(f"{method.upper()} ResNet26 step (configs/{method}_cifar10.py, {normal} normal + {bs - normal} OE, "
                  f"{size}x{size})", {"jaxad": run, **variants}, {"jaxad": facts, **tfacts}, bs, flops, notes=notes)


def wrn(args) -> Workload:
  import ssl_throughput  # pylint: disable=g-import-not-at-top  (benchmarks/, this folder)
  from jaxad.data import pretext  # pylint: disable=g-import-not-at-top

  config = _config("ssl_cifar10.py")
  if config.train.batch_size != ssl_throughput.BATCH:
    sys.exit(f"configs/ssl_cifar10.py now has batch {config.train.batch_size}; ssl_throughput assumes "
             f"{ssl_throughput.BATCH}.")
  obj = config.objective
  permutations = pretext.jigsaw_permutations(obj.jigsaw.k, grid=obj.jigsaw.grid, seed=obj.jigsaw.seed).tolist()
  copies = 3 + 3 + 4 + int(obj.jigsaw.k)
  spe = 5000 // ssl_throughput.BATCH
  ssl_throughput.check_twin_transforms(obj, permutations)
  variants, facts = {}, {}
  variants["jaxad"], facts["jaxad"] = ssl_throughput.jaxad_train(config, spe)
  for name, cl in TORCH_STEP_VARIANTS:
    variants[name], facts[name] = ssl_throughput.torch_train(cl, permutations, spe * config.train.epochs,
                                                             pretext.translation_shifts(32)[1], obj.jigsaw)
  flops = ssl_throughput.wrn_forward_flops(config.model.depth, config.model.width, 32, copies)["forward"]
  return Workload(f"Jezequel et al. multi-task WRN-16-4 step (configs/ssl_cifar10.py, {ssl_throughput.BATCH} "
                  f"originals x {copies} copies)", variants, facts, ssl_throughput.BATCH * copies, flops,
                  notes={"images": "transformed images"})


def dsvdd_epoch(args) -> Workload:
  """One epoch per phase of the real trainer on one CIFAR-10 class, vs the authors' DataLoader loop."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxad import parallel, train  # pylint: disable=g-import-not-at-top
  from jaxad.methods.base import TrainPhase  # pylint: disable=g-import-not-at-top
  from peers import dsvdd_trainer_torch, lenet_torch  # pylint: disable=g-import-not-at-top

  # Later runs of the trainer's phases load their programs instead of compiling them again (the warm-up compiles).
  jax.config.update("jax_compilation_cache_dir",
                    os.path.join(tempfile.gettempdir(), f"jaxad-peers-jax-cache-{os.getuid()}"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  config = _config(f"dsvdd_cifar10.py:normal_class={args.normal_class}")
  for phase in (config.pretrain, config.train):  # one epoch; the lr decay moves to its end (after the last step)
    phase.epochs, phase.schedule_kwargs.milestones = 1, (1,)
  config.data.test_limit = 100  # the test set is not used; a small one keeps the set-up short
  if args.quick:
    config.data.train_limit = 2 * config.pretrain.batch_size
  method, sources = train.build(config)
  mesh = parallel.make_mesh()
  normal = sources["normal"]
  images, minmax = normal.field("image"), (normal.preprocess.lo, normal.preprocess.hi)

  def run_jaxad(n: int) -> dict:
    del n
    with tempfile.TemporaryDirectory(prefix="peers-dsvdd-") as workdir:
      runner = train.Runner(config, workdir, method, sources, mesh)
      outputs, times, ordinal = {}, {}, 0
      for i, phase in enumerate(method.phases):
        t0 = time.perf_counter()
        if isinstance(phase, TrainPhase):
          out = runner.train_phase(phase, ordinal, outputs)
          ordinal += 1
        else:
          out = runner.fit_phase(phase, i, outputs)
        jax.block_until_ready(out.variables)
        times[phase.name] = time.perf_counter() - t0
        outputs[phase.name] = out
      logged = {}
      with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:  # the trainer's own img/s of the epoch (its clock starts before the first step)
          record = json.loads(line)
          logged[record["stage"]] = record["img_per_s"]
    return {"seconds": times["pretrain"] + times["train"], "ae_epoch_s": times["pretrain"],
            "center_s": times["center"], "encoder_epoch_s": times["train"], "logged_img_per_s": logged}

  def run_torch(n: int) -> dict:
    del n
    r = dsvdd_trainer_torch.epoch_times(images, minmax, batch_size=config.pretrain.batch_size)
    return {"seconds": r["ae_epoch_s"][0] + r["encoder_epoch_s"][0], "ae_epoch_s": r["ae_epoch_s"][0],
            "center_s": r["center_s"], "encoder_epoch_s": r["encoder_epoch_s"][0]}

  flops = (lenet_torch.forward_flops("ae") + lenet_torch.forward_flops("encoder")) // 2  # per image and phase
  return Workload(f"Deep SVDD end to end, one epoch per phase on CIFAR-10 class {args.normal_class} "
                  f"({len(images)} images, batch {config.pretrain.batch_size})",
                  {"jaxad": run_jaxad, "torch_dataloader": run_torch}, {"jaxad": {}, "torch_dataloader": {}},
                  2 * len(images), flops, unit="epoch",
                  notes={"images": "images trained per round: one AE epoch + one encoder epoch",
                         "flops_forward": "mean of the AE's and the encoder's forward"})


# The model each workload's jaxad side trains (for its family's XLA flags, `jaxad.xla_flags.FAMILY_FLAGS`).
WORKLOAD_MODELS = {"lenet_ae": "lenet_cifar10", "lenet_encoder": "lenet_cifar10", "adib": "resnet26_transferad",
                   "adra": "resnet26_transferad", "wrn": "wide_resnet", "dsvdd_epoch": "lenet_cifar10"}
BUILDERS = {"lenet_ae": lambda a: lenet("ae", a), "lenet_encoder": lambda a: lenet("encoder", a),
            "adib": lambda a: transfer("adib", a), "adra": lambda a: transfer("adra", a), "wrn": wrn,
            "dsvdd_epoch": dsvdd_epoch}


# ---------------------------------------------------------------------------------------------------------------


def summarise(w: Workload, log: dict, steps: int, peak: float | None, max_others: float) -> dict:
  """The JSON of one workload: per variant its rounds, the kept rounds' medians, FLOP/s, % of peak, ratios."""
  per_round = steps * w.images
  train_flops = 3 * w.flops_forward
  rows = {}
  for name, r in log.items():
    kept = measure.kept_rounds(r["others_cores"], max_others)
    rates = [per_round / s for s in r["seconds"]]
    med = measure.median_of_kept(rates, kept)
    row = {**w.facts.get(name, {}), "img_per_s": med, "img_per_s_rounds": rates, "seconds_rounds": r["seconds"],
           "load1_before_rounds": r["load1"], "others_cores_rounds": r["others_cores"],
           "steal_cores_rounds": r["steal_cores"], "rounds_kept": kept, "all_rounds_disturbed": not kept,
           "gflops_per_s": med * train_flops / 1e9, "heap_peak_mib": max(r["heap_peak_mib"]),
           "step_heap_mib": max(r["step_heap_mib"])}
    if w.unit == "step":
      row["ms_per_step"] = 1e3 * w.images / med
    else:
      for key in ("ae_epoch_s", "center_s", "encoder_epoch_s"):
        values = [e[key] for e in r["extra"]]
        row[key], row[f"{key}_rounds"] = measure.median_of_kept(values, kept), values
      if r["extra"] and "logged_img_per_s" in r["extra"][0]:
        row["logged_img_per_s_rounds"] = [e["logged_img_per_s"] for e in r["extra"]]
    if peak:
      row["pct_of_matmul_peak"] = 100 * row["gflops_per_s"] / peak
    rows[name] = row
  peers = [n for n in rows if n != "jaxad"]
  best = max(peers, key=lambda n: rows[n]["img_per_s"])
  for n in peers:
    rows[n]["jaxad_over_variant"] = rows["jaxad"]["img_per_s"] / rows[n]["img_per_s"]
  out = {"description": w.description, "unit": w.unit, "images_per_round": per_round,
         "steps_per_round": steps if w.unit == "step" else None,
         "flops_per_image": {"forward": w.flops_forward, "train": train_flops}, "notes": w.notes,
         "variants": rows, "best_peer": best,
         "jaxad_over_best_peer": rows["jaxad"]["img_per_s"] / rows[best]["img_per_s"]}
  if w.unit == "epoch":
    for key in ("ae_epoch_s", "encoder_epoch_s"):
      out[f"jaxad_over_best_peer_{key.replace('_s', '')}"] = rows[best][key] / rows["jaxad"][key]
  return out


class _IsolatedVariant:
  """`run(n)` of one workload variant served by a process of its own (spawned; one per variant).

  Side by side in one process the frameworks slow each other: PyTorch's OpenMP workers spin for a while after every
  op and XLA's thread pool keeps its own threads, so whichever runs takes cores from the other's idle pool. Measured
  here (LeNet, batch 200): in one shared process jaxad's AE step ran at 203 img/s and PyTorch channels_last's at 305,
  alone in their own processes at 251-275 and 525. Each child builds the workload, keeps its variant, and times
  `run(n)` on request, returning its own CPU time (so the parent can tell other processes' load from it), and
  measures its heap during a separate, untimed call (`heap`; see `measure.HeapSampler` for why not while timing).
  """

  def __init__(self, name: str, variant: str, args):
    import multiprocessing  # pylint: disable=g-import-not-at-top
    ctx = multiprocessing.get_context("spawn")
    self.conn, child = ctx.Pipe()
    self.proc = ctx.Process(target=_serve, args=(name, variant, vars(args), child), daemon=True)
    self.proc.start()
    status, payload = self.conn.recv()
    if status != "ready":
      self.proc.join()
      raise RuntimeError(f"{name}/{variant} could not be built in its process:\n{payload}")
    self.workload = payload  # the child's Workload without its callables

  def __call__(self, n: int):
    return self._ask(n)

  def heap(self, n: int) -> tuple[float, float]:
    """`measure.heap_of` in the child: (peak, added) MiB of its live heap during one untimed `run(n)`."""
    return tuple(self._ask(("heap", n)))

  def _ask(self, request):
    self.conn.send(request)
    status, payload = self.conn.recv()
    if status != "ok":
      raise RuntimeError(payload)
    return payload

  def close(self) -> None:
    self.conn.send(None)
    self.proc.join(timeout=60)


def build_workload(name: str, args: argparse.Namespace | None = None) -> Workload:
  """Workload `name` in this process, after setting its model family's XLA flags as jaxad.main does (so: before
  the process's first jax computation); `args` are this script's flags, their defaults when None."""
  from jaxad import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_cpu_defaults(WORKLOAD_MODELS.get(name, ""))
  return BUILDERS[name](args or make_parser().parse_args([]))


def _serve(name: str, variant: str, args: dict, conn) -> None:
  """The child of `_IsolatedVariant`: builds workload `name`, then runs its `variant` on request until told None."""
  sys.path[:0] = [HERE, REPO]
  try:
    w = build_workload(name, argparse.Namespace(**args))
    w.facts.setdefault(variant, {})["xla_flags"] = os.environ.get("XLA_FLAGS", "")  # this variant process's flags
    run = w.variants[variant]
    conn.send(("ready", dataclasses.replace(w, variants={variant: None})))
  except Exception:  # pylint: disable=broad-except
    conn.send(("error", traceback.format_exc()))
    return
  while (request := conn.recv()) is not None:
    try:
      if isinstance(request, tuple):  # ("heap", n): an untimed call under the heap sampler
        conn.send(("ok", measure.heap_of(run, request[1])))
        continue
      cpu0 = resource.getrusage(resource.RUSAGE_SELF)
      out = run(request)
      cpu1 = resource.getrusage(resource.RUSAGE_SELF)
      out = dict(out) if isinstance(out, dict) else {"seconds": out}
      out.update(child_cpu_s=(cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime))
      conn.send(("ok", out))
    except Exception:  # pylint: disable=broad-except
      conn.send(("error", traceback.format_exc()))


def _isolated_workload(name: str, args) -> tuple[Workload, list]:
  """The workload with every variant served by its own process, and those processes' proxies (to close)."""
  first = _IsolatedVariant(name, "jaxad", args)
  w = first.workload
  proxies = {"jaxad": first, **{v: _IsolatedVariant(name, v, args) for v in w.facts if v != "jaxad"}}
  facts = {v: p.workload.facts[v] for v, p in proxies.items()}
  return dataclasses.replace(w, variants=proxies, facts=facts), list(proxies.values())


def run_workload(name: str, args, rounds: int, peak: float) -> dict:
  proxies = []
  if args.isolate:
    w, proxies = _isolated_workload(name, args)
  else:
    w = BUILDERS[name](args)
  steps = 1 if w.unit == "epoch" else (args.steps or (1 if args.quick else DEFAULT_STEPS[name]))
  for v, run in w.variants.items():  # warm-up: compilation (epoch), allocations, thread pools, oneDNN caches
    if args.quick:
      break
    t0 = time.perf_counter()
    out = run(1)
    w.facts[v]["warmup"] = out if isinstance(out, dict) else {"seconds": out}
    print(f"warm-up {v}: {time.perf_counter() - t0:.1f} s", flush=True)
  log = measure.rounds_of(w.variants, rounds, steps, w.images)
  for p in proxies:
    p.close()
  return summarise(w, log, steps, peak, args.max_others_cores)


def make_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, of {WORKLOADS}")
  parser.add_argument("--rounds", type=int, default=0, help="alternating rounds (default 3; 1 with --quick)")
  parser.add_argument("--steps", type=int, default=0, help=f"timed steps per variant and round (0: {DEFAULT_STEPS})")
  parser.add_argument("--out", default=os.path.join(HERE, "results", "peers.json"))
  parser.add_argument("--md", default="", help="the markdown table (default: --out with .md)")
  parser.add_argument("--max_others_cores", type=float, default=measure.DEFAULT_MAX_OTHERS_CORES,
                      help="rounds in which other processes kept more cores busy are not counted")
  parser.add_argument("--normal_class", type=int, default=3, help="dsvdd_epoch's CIFAR-10 class")
  parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                      help="each variant in a process of its own (default); --no-isolate: all in this process")
  parser.add_argument("--quick", action="store_true", help="smoke run: no warm-up, 1 round of 1 step, a small "
                      "matmul peak, dsvdd_epoch on 400 images")
  return parser


def main(argv=None):
  parser = make_parser()
  args = parser.parse_args(argv)
  names = [n for n in args.workloads.split(",") if n]
  unknown = [n for n in names if n not in WORKLOADS]
  if unknown:
    parser.error(f"unknown workloads {unknown}; choose from {WORKLOADS}")
  rounds = args.rounds or (1 if args.quick else 3)
  t_start = time.perf_counter()

  baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  sys.path.insert(0, REPO)
  if not args.isolate:  # one process for every family: the default flags (isolated variants set their family's)
    from jaxad import xla_flags  # pylint: disable=g-import-not-at-top
    xla_flags.apply_cpu_defaults()
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  results = {
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                  "jax": jax.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                  "xla_flags": os.environ.get("XLA_FLAGS", ""), "load_avg_at_start": list(os.getloadavg())},
      "settings": {"workloads": names, "rounds": rounds, "steps": args.steps or "per workload", "quick": args.quick,
                   "max_others_cores": args.max_others_cores, "dtype": "float32",
                   "isolate": args.isolate},
      "baseline_rss_mib": baseline, "workloads": {}, "errors": {},
  }
  sizes, reps = ((256,), 1) if args.quick else ((2048, 4096), 3)
  peak = measure.matmul_peak_gflops(sizes, reps)
  results["machine"]["matmul_peak_gflops"] = {**peak, "best": max(peak.values()), "sizes": list(sizes)}
  print(f"fp32 matmul peak: jax {peak['jax']:.0f}, torch {peak['torch']:.0f} GFLOP/s", flush=True)

  for name in names:
    print(f"== {name}", flush=True)
    try:  # one workload failing (a twin not written yet, no dataset, a bug) leaves the others' results
      results["workloads"][name] = run_workload(name, args, rounds, results["machine"]["matmul_peak_gflops"]["best"])
    except Exception as e:  # pylint: disable=broad-except
      results["errors"][name] = f"{type(e).__name__}: {e}"
      traceback.print_exc()
    gc.collect()

  measure.write_results(results, args.out, t_start)
  table = markdown(results)
  md = args.md or os.path.splitext(args.out)[0] + ".md"
  with open(md, "w") as f:
    f.write(table + "\n")
  print(table)
  if results["errors"]:
    sys.exit(f"workloads that did not run: {results['errors']}")


VARIANT_NAMES = {"jaxad": "jaxad", "torch_eager": "PyTorch eager (NCHW)",
                 "torch_channels_last": "PyTorch channels_last",
                 "torch_dataloader": "PyTorch, the authors' DataLoader loop"}


def markdown(results: dict) -> str:
  """README's performance table: one row per workload and variant."""
  m, st = results["machine"], results["settings"]
  peak = m["matmul_peak_gflops"]
  where = "each variant in its own process" if st.get("isolate") else "in one process"
  lines = [f"fp32, {m['cpus']} CPU cores, jax {m['jax']}, torch {m['torch']}; medians of {st['rounds']} alternating "
           f"round(s), {where} (rounds with more than {st['max_others_cores']} cores busy in other processes "
           f"not counted); % of the {peak['best']:.0f} GFLOP/s fp32 matmul peak; training FLOPs = 3x forward."
           + (" **--quick smoke run: not a measurement.**" if st["quick"] else ""), "",
           "| workload | variant | img/s | ms/step or s/epoch | GFLOP/img (train) | % of matmul peak | jaxad / variant "
           "| rounds kept |", "|---|---|---:|---:|---:|---:|---:|---:|"]
  for name, w in results["workloads"].items():
    for i, (v, r) in enumerate(w["variants"].items()):
      if w["unit"] == "step":
        per = f"{r['ms_per_step']:,.0f} ms"
      else:
        per = f"AE {r['ae_epoch_s']:.1f} s + enc. {r['encoder_epoch_s']:.1f} s"
      ratio = f"{r['jaxad_over_variant']:.2f}x" if "jaxad_over_variant" in r else "1.00x"
      kept = f"{len(r['rounds_kept'])}/{len(r['img_per_s_rounds'])}" + (" (all disturbed)"
                                                                        if r["all_rounds_disturbed"] else "")
      lines.append(f"| {name if i == 0 else ''} | {VARIANT_NAMES.get(v, v)} | {r['img_per_s']:,.1f} | {per} | "
                   f"{w['flops_per_image']['train'] / 1e9:.3f} | {r.get('pct_of_matmul_peak', float('nan')):.1f}% | "
                   f"{ratio} | {kept} |")
  lines.append("")
  for name, w in results["workloads"].items():
    lines.append(f"- {name}: {w['description']}; jaxad / best peer ({VARIANT_NAMES.get(w['best_peer'])}) = "
                 f"{w['jaxad_over_best_peer']:.2f}x")
  for name, err in results.get("errors", {}).items():
    lines.append(f"- {name}: not run ({err})")
  lines.append(f"load average (1 min) at start {m['load_avg_at_start'][0]:.2f}, at end {m['load_avg_at_end'][0]:.2f}; "
               f"wall {results['wall_s']:.0f} s")
  return "\n".join(lines)


if __name__ == "__main__":
  main()
