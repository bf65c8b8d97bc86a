r"""Andrews et al. (2016) Table 3, MNIST tasks 1-4, with the weights that exist on this machine.

  JAXAD_DATA_DIR=DIR python benchmarks/reproduce_andrews.py --backbones=greyscale,vgg_f_random,wrn_ssl [--trials=0,1,2]

MatConvNet's ImageNet VGG-F / VGG-M files cannot be downloaded here, so only the GS row is Table 3's own recipe:
* `greyscale`: configs/andrews_gs_mnist.py, the paper's GS baseline (the 28x28 digit itself, no weights);
* `vgg_f_random`: configs/andrews_vggf_mnist.py with weights=random: VGG-F's architecture, 224x224 inputs, random
  weights: the floor the paper's ImageNet features should beat;
* `wrn_ssl`: a small trained network as a transferred source: a WRN-10-1 trained on CIFAR-10 class 1 (automobile)
  by Jezequel et al.'s multi-task self-supervision (`workdirs/reproduce_jezequel/cifar10/G+J_c1_s1`, made by
  benchmarks/reproduce_jezequel.py), features 'block3' and 'pool' of its trunk; digits replicated to RGB, resized to
  32x32 and scaled to [-1, 1] as that run's images were.
Everything else is the paper's protocol: 2,048 normal training images, 512 + 512 test images fixed across the 3
trials, unit-length features, linear one-class SVMs, AUROC averaged over 21 values of nu in [0.01, 0.99].
Workdirs: `workdirs/reproduce_andrews/<backbone>/task<t>_trial<k>`; the runs: benchmarks/results/andrews_mnist.json;
the table (`python -m jaxad.report workdirs/reproduce_andrews --metric=ocsvm_auroc --layout=wide`, the paper's
values beside each row with every deviation from its recipe) beside it (.md) and on stdout after every run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from jaxad import report, train  # noqa: E402
from jaxad.config import import_sibling  # noqa: E402

WRN_SOURCE = "workdirs/reproduce_jezequel/cifar10/G+J_c1_s1"


def config_for(backbone: str, task: int, trial: int):
  if backbone == "greyscale":
    return import_sibling(os.path.join(REPO, "configs", "andrews_gs_mnist.py"), "andrews_gs_mnist").get_config(
        f"task={task},trial={trial}")
  path = os.path.join(REPO, "configs", "andrews_vggf_mnist.py")
  c = import_sibling(path, "andrews_vggf_mnist").get_config(f"task={task},trial={trial},weights=random")
  if backbone == "wrn_ssl":
    with open(os.path.join(REPO, WRN_SOURCE, "config.json")) as f:
      model = json.load(f)["model"]
    c.model.update(name="wide_resnet", weights=os.path.join(REPO, WRN_SOURCE, "checkpoints", "train", "output"),
                   input_scaling="tf", input_size=32,
                   kwargs={k: v for k, v in model.items() if k in ("depth", "width", "dropout", "head_dropout",
                                                                   "conv_init")})
    c.model.kwargs.heads = (("translate_x", 3), ("translate_y", 3), ("rotate", 4), ("jigsaw", 3))
    c.objective.layers = ("block3", "pool")
  return c


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--backbones", default="greyscale,vgg_f_random,wrn_ssl")
  p.add_argument("--tasks", default="1,2,3,4")
  p.add_argument("--trials", default="0,1,2")
  p.add_argument("--workdir", default="workdirs/reproduce_andrews")
  p.add_argument("--out", default="benchmarks/results/andrews_mnist.json")
  args = p.parse_args()
  runs = []
  if os.path.exists(args.out):  # resume a partial sweep
    with open(args.out) as f:
      runs = json.load(f)["runs"]
  done = {(r["backbone"], r["task"], r["trial"]) for r in runs}
  for backbone in args.backbones.split(","):
    for task in map(int, args.tasks.split(",")):
      for trial in map(int, args.trials.split(",")):
        if (backbone, task, trial) in done:
          continue
        config = config_for(backbone, task, trial)
        t0 = time.time()
        summary = train.train_and_evaluate(config, os.path.join(args.workdir, backbone, f"task{task}_trial{trial}"))
        runs.append({"backbone": backbone, "task": task, "trial": trial, "wall_s": time.time() - t0,
                     "auroc": {layer: summary[f"test/{layer}/ocsvm_auroc"] for layer in config.objective.layers}})
        write(args.out, runs, args.workdir)


def write(out, runs, workdir):
  """The runs to `out` (JSON); the table `python -m jaxad.report WORKDIR --metric=ocsvm_auroc --layout=wide`
  prints, with the paper's Table 3 values (jaxad/papers.py), beside it (.md) and on stdout."""
  with open(out, "w") as f:
    json.dump({"runs": runs}, f, indent=1)
  text = report.wide_markdown(report.table(report.collect(workdir), "ocsvm_auroc"))
  with open(os.path.splitext(out)[0] + ".md", "w") as f:
    f.write(text)
  print(text, flush=True)


if __name__ == "__main__":
  main()
