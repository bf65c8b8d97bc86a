r"""Wall time of a Deep SVDD one-vs-rest table (classes x seeds) as one program, against separate runs.

  JAXAD_DATA_DIR=DIR python benchmarks/sweep_table.py --classes=0,1,2,3,4,5,6,7,8,9 --seeds=1,2,3 \
      --ae_epochs=1 --epochs=1 --out=benchmarks/results/sweep_table.json

configs/dsvdd_cifar10.py (one-class boundary) at a reduced budget (`--ae_epochs` + `--epochs`, constant learning
rate), every arm in a fresh process timed from its start to its last result, as a user would run it:

* `sweep`: `config.sweep` (jaxad.sweep) trains all tasks in one vmapped program;
* `separate`: one `jaxad.main` run per seed over all classes (`data.normal_classes`), the way jaxad ran a table
  before, summed over the seeds;
* `authors_estimate`: the PyTorch twin of the authors' trainer (benchmarks/peers/dsvdd_trainer_torch.py: Dataset +
  DataLoader, Adam, the same epochs) timed on one class, plus its scoring of the 10,000 test images (autoencoder and
  encoder, eval mode, batch 200), times the number of tasks: the authors' code runs its classes and seeds one
  after another.

`--train_limit` / `--test_limit` (jaxad's `data.train_limit` / `data.test_limit`) shrink every task alike.

Each sweep task's AUROC is compared with its separate run's (`max_abs_auroc_diff`). The JSON has every arm's wall
time, the tasks' AUROCs and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _config(args, seeds, sweep: bool):
  from jaxad.config import load_config  # pylint: disable=g-import-not-at-top
  c = load_config(os.path.join(REPO, "configs", "dsvdd_cifar10.py"))
  c.data.normal_classes = tuple(args.classes)
  c.data.train_limit, c.data.test_limit = args.train_limit, args.test_limit
  for phase, epochs in ((c.pretrain, args.ae_epochs), (c.train, args.epochs)):
    phase.epochs, phase.schedule, phase.schedule_kwargs = epochs, "constant", {}
  c.log_every_steps = 1000
  if sweep:
    c.sweep.update(enabled=True, seeds=tuple(seeds))
  else:
    c.seed = seeds[0]
  return c


def child(args) -> None:
  """One arm in this fresh process; prints its wall time and AUROCs as JSON."""
  t0 = time.perf_counter()
  from jaxad import train, xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_cpu_defaults()
  arm, workdir = args._child  # pylint: disable=protected-access
  if arm == "sweep":
    summary = train.train_and_evaluate(_config(args, args.seeds, True), workdir)
    auroc = {k: v for k, v in summary.items() if k.endswith("test/hypersphere/auroc")}
  else:
    seed = int(arm.removeprefix("separate_"))
    summary = train.train_and_evaluate(_config(args, [seed], False), os.path.join(workdir, f"seed_{seed}"))
    auroc = {f"seed_{seed}/{k.split('/')[0]}/test/hypersphere/auroc": v for k, v in summary.items()
             if k.startswith("class_") and k.endswith("test/hypersphere/auroc")}
  print(json.dumps({"seconds": time.perf_counter() - t0, "auroc": auroc}))


def authors_estimate(args) -> dict:
  """The twin of the authors' trainer on one class (its train images, then the test set scored), in seconds."""
  sys.path.insert(0, HERE)
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from peers import dsvdd_trainer_torch, lenet_torch  # pylint: disable=g-import-not-at-top
  from jaxad.data import transforms  # pylint: disable=g-import-not-at-top
  data = np.load(os.path.join(os.environ["JAXAD_DATA_DIR"], "cifar10.npz"))
  k = args.classes[0]
  minmax = transforms.PUBLISHED_MINMAX["cifar10"][k]
  t0 = time.perf_counter()
  normal = data["x_train"][data["y_train"].ravel() == k]
  test = data["x_test"]
  if args.train_limit:  # as many images as jaxad's runs (its subset is random; the time depends only on the count)
    normal = normal[:args.train_limit]
  if args.test_limit:
    test = test[:args.test_limit]
  train = dsvdd_trainer_torch.epoch_times(normal, minmax, ae_epochs=args.ae_epochs, epochs=args.epochs)
  t1 = time.perf_counter()
  loader = torch.utils.data.DataLoader(dsvdd_trainer_torch.OneClassCifar(test, minmax), batch_size=200)
  ae, net = lenet_torch.LeNetAE().eval(), lenet_torch.LeNetEncoder().eval()
  with torch.no_grad():
    for x, _ in loader:  # the authors test the autoencoder and the Deep SVDD network separately
      ae(x)
    for x, _ in loader:
      net(x)
  t2 = time.perf_counter()
  return {"train_s": t1 - t0, "test_s": t2 - t1, "per_task_s": t2 - t0, "epochs": train}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--classes", type=lambda s: [int(x) for x in s.split(",")], default=list(range(10)))
  parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3])
  parser.add_argument("--ae_epochs", type=int, default=1)
  parser.add_argument("--epochs", type=int, default=1)
  parser.add_argument("--train_limit", type=int, default=0, help="> 0: that many training images per class")
  parser.add_argument("--test_limit", type=int, default=0, help="> 0: that many test images")
  parser.add_argument("--arms", default="sweep,separate,authors")
  parser.add_argument("--workdir", default="workdirs/sweep_table")
  parser.add_argument("--out", default="benchmarks/results/sweep_table.json")
  parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._child:  # pylint: disable=protected-access
    child(args)
    return
  tasks = len(args.classes) * len(args.seeds)
  common = [f"--classes={','.join(map(str, args.classes))}", f"--seeds={','.join(map(str, args.seeds))}",
            f"--ae_epochs={args.ae_epochs}", f"--epochs={args.epochs}", f"--train_limit={args.train_limit}",
            f"--test_limit={args.test_limit}"]
  arms = args.arms.split(",")
  results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "tasks": tasks,
             "classes": args.classes, "seeds": args.seeds, "ae_epochs": args.ae_epochs, "epochs": args.epochs,
             "train_limit": args.train_limit, "test_limit": args.test_limit,
             "arms": {}}

  def run(arm: str) -> dict:
    workdir = os.path.join(args.workdir, arm)
    shutil.rmtree(workdir, ignore_errors=True)  # a timed run starts from nothing
    proc = subprocess.run([sys.executable, __file__, *common, "--_child", arm, workdir], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode:
      raise SystemExit(f"{arm} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])

  for arm in arms:
    if arm == "sweep":
      results["arms"][arm] = run(arm)
    elif arm == "separate":
      per_seed = [run(f"separate_{s}") for s in args.seeds]
      results["arms"]["separate"] = {"seconds": sum(r["seconds"] for r in per_seed),
                                     "per_seed_seconds": [r["seconds"] for r in per_seed],
                                     "auroc": {k: v for r in per_seed for k, v in r["auroc"].items()}}
    elif arm == "authors":
      est = authors_estimate(args)
      results["arms"]["authors_estimate"] = {"seconds": est["per_task_s"] * tasks, **est}
    print(f"{arm}: done", flush=True)
  separate = results["arms"].get("separate")
  for arm, r in results["arms"].items():
    if arm == "sweep" and separate:
      r["max_abs_auroc_diff"] = max(abs(r["auroc"][k] - v) for k, v in separate["auroc"].items())
  base = {name: r["seconds"] for name, r in results["arms"].items()}
  if "sweep" in base:
    results["speedup_vs"] = {f"sweep_over_{b}": base[b] / base["sweep"] for b in base if b != "sweep"}
  for name, seconds in base.items():
    print(f"{name:18s} {seconds:9.1f} s")
  print(json.dumps(results.get("speedup_vs", {}), indent=1))
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
