r"""MOCCA's MVTec texture pipeline on a generated texture set: the patch maximum vs the patch mean, 1 layer vs several.

  python benchmarks/mocca_mvtec_synthetic.py --out=benchmarks/results/mocca_mvtec_synthetic.json

MVTec AD cannot be downloaded here, so this runs configs/mocca_mvtec.py's texture recipe (`category=woven,
recipe=texture`: a name that is not MVTec's, so no paper value is put beside it) on
`jaxad.data.synthetic.write_texture_dataset`: woven-looking textures with small painted defects (spots and
scratches of about 1% of the image), in MVTec AD's layout. Deviations from the recipe, for this CPU: images of
`--size` (128) instead of 512 and patches of `--patch` (32: 16 per image) instead of 64 (a 64x64 autoencoder step
of 32 patches takes about 4 s here), 8 random crops per image per step, `--epochs` for both phases instead of 20,
48 training images. Each run reports both image scores of the same trained
network: the maximum over the patches (Eq. 7, scorer 'hypersphere') and their mean ('hypersphere_patch_mean'); runs
differ in the layers (the last only, or the recipe's down3 + fc1 + code, or all five from down1) and the boundary.
Workdirs stay in --workdir; results after every run to --out, and the tables
`python -m jaxad.report WORKDIR --layout=wide --scorers=hypersphere,hypersphere_patch_mean [--metric=max_ba]`
prints (AUROC and maxBA, every deviation from the texture recipe listed) beside it (.md) and on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from jaxad import xla_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

xla_flags.apply_cpu_defaults()

from jaxad import report, train  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxad.config import load_config  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxad.data import synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LAYER_SETS = {"code": "code", "down3+fc1+code": "down3+fc1+code", "down1..code": "down1+down2+down3+fc1+code"}


def tables(workdir: str) -> str:
  """AUROC and maxBA of the patch maximum (Eq. 7) and the patch mean, from the runs' workdirs (`jaxad.report`)."""
  runs = report.collect(workdir)
  return "\n".join(report.wide_markdown(report.table(runs, metric, scorers=("hypersphere", "hypersphere_patch_mean")),
                                        legend=False) for metric in ("auroc", "max_ba"))


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--size", type=int, default=128)
  p.add_argument("--patch", type=int, default=32)
  p.add_argument("--epochs", type=int, default=6)
  p.add_argument("--seeds", default="1,2")
  p.add_argument("--layers", default=",".join(LAYER_SETS))
  p.add_argument("--boundaries", default="hard,soft")
  p.add_argument("--workdir", default="workdirs/mocca_mvtec_synthetic")
  p.add_argument("--out", default="benchmarks/results/mocca_mvtec_synthetic.json")
  args = p.parse_args()
  root = os.path.join(args.workdir, "data")
  if not os.path.isdir(os.path.join(root, "woven")):
    synthetic.write_texture_dataset(root, "woven", size=args.size, num_train=48, num_test_good=24,
                                    num_test_defect=12, extent=max(8, args.size // 16))
  runs = json.load(open(args.out))["runs"] if os.path.exists(args.out) else []
  done = {(r["layers"], r["boundary"], r["seed"]) for r in runs}
  for layers in args.layers.split(","):
    for boundary in args.boundaries.split(","):
      for seed in map(int, args.seeds.split(",")):
        if (layers, boundary, seed) in done:
          continue
        c = load_config(os.path.join(REPO, "configs", f"mocca_mvtec.py:root={root},category=woven,recipe=texture,"
                                                      f"boundary={boundary},layers={LAYER_SETS[layers]},seed={seed}"))
        c.data.folder.size = (args.size, args.size)
        c.patches.update(size=args.patch, per_image=8)
        for phase in (c.pretrain, c.train):
          phase.epochs, phase.batch_size = args.epochs, 4
          phase.schedule, phase.schedule_kwargs = "constant", {}
        c.objective.warmup_epochs = 1
        t0 = time.time()
        s = train.train_and_evaluate(c, os.path.join(args.workdir, f"{layers}_{boundary}_seed{seed}"))
        runs.append({"layers": layers, "boundary": boundary, "seed": seed, "wall_s": time.time() - t0,
                     "auroc_max": s["test/hypersphere/auroc"], "auroc_mean": s["test/hypersphere_patch_mean/auroc"],
                     "max_ba_max": s["test/hypersphere/max_ba"],
                     "max_ba_mean": s["test/hypersphere_patch_mean/max_ba"],
                     "reconstruction_auroc_max": s["test/reconstruction/auroc"]})
        print(json.dumps(runs[-1]), flush=True)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
          json.dump({"size": args.size, "patch": args.patch, "epochs": args.epochs, "runs": runs}, f, indent=2)
        with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
          f.write(tables(args.workdir))
  print(tables(args.workdir))


if __name__ == "__main__":
  main()
