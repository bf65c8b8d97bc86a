r"""Deep SVDD (Ruff et al. 2018) on CIFAR-10 one-vs-rest: LeNet autoencoder pretraining, then one hypersphere.

  python -m jaxad.main --config=configs/dsvdd_cifar10.py:normal_class=3,seed=1,boundary=soft --workdir=/tmp/dsvdd

Arguments: normal_class (0-9), seed, boundary ('hard' = Deep SVDD one-class, 'soft' = soft-boundary), runlocal.
Recipe (authors' code and README): GCN-L1 + per-class min-max; Adam 1e-4, coupled wd 0.5e-6, batch 200; AE 350
epochs (lr x0.1 at 250), then 150 epochs (x0.1 at 50); soft boundary with nu 0.1 and 10 warm-up epochs.
Paper (MOCCA Table II citing Deep SVDD): mean AUROC 0.634 (soft) / 0.648 (one-class). jaxad: see README.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, normal_class=0, seed=1, boundary="hard", runlocal=False)
  c = common.hypersphere()
  c.method = "dsvdd"
  c.seed = args.seed
  c.data.normal_class = args.normal_class
  c.objective.boundary = args.boundary
  return common.hypersphere_runlocal(c, train_limit=1000) if args.runlocal else c
