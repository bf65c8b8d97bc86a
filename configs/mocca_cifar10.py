r"""MOCCA (Massoli et al.) on CIFAR-10 one-vs-rest: LeNet autoencoder, then one hypersphere per layer.

  python -m jaxad.main --config=configs/mocca_cifar10.py:normal_class=3,seed=1 --workdir=/tmp/mocca

Arguments: normal_class (0-9), seed, boundary ('soft' or 'hard'), runlocal.
Recipe: the paper's Adam lr 1e-3 (AE) / 1e-4 (encoder), batch 256, code 128, nu 0.1, average-pooled conv1..conv3
pre-BN outputs + code as the layers; epochs are not in the paper or its code (both default to 1), so jaxad uses
Deep SVDD's (AE 350 with x0.1 at 250; encoder 150 with x0.1 at 50) and 10 warm-up epochs for the radii.
Paper (Table I/II): mean AUROC 0.676 (soft) / 0.669 (hard). jaxad: see README.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, normal_class=0, seed=1, boundary="soft", runlocal=False)
  c = common.hypersphere()
  c.method = "mocca"
  c.seed = args.seed
  c.data.normal_class = args.normal_class
  c.model.ae_variant = "mocca"
  c.pretrain.update(batch_size=256, lr=1e-3)
  c.train.update(batch_size=256, lr=1e-4)
  c.objective.update(boundary=args.boundary, layers=("conv1", "conv2", "conv3", "code"))
  return common.hypersphere_runlocal(c, train_limit=1024) if args.runlocal else c
