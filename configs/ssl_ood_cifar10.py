r"""Jezequel et al.'s out-of-distribution protocol: all of CIFAR-10 is normal; the anomalies are SVHN's or CIFAR-100's
test images (Table 6).

  python -m jaxad.main --config=configs/ssl_ood_cifar10.py:ood=cifar100 --workdir=/tmp/ssl_ood_c100

Arguments: ood ('svhn' or 'cifar100'), seed, tasks ('geometric+jigsaw', 'geometric', 'jigsaw'), runlocal.
Training: the 50,000 CIFAR-10 training images; test: the 10,000 CIFAR-10 test images (label 0) and the OOD test split
(label 1; SVHN: 26,032 images, CIFAR-100: 10,000). Recipe: configs/ssl_cifar10.py (the paper gives no other).
Paper (Table 6): AUROC 98.8 (SVHN), 83.4 (CIFAR-100).
"""

from jaxad.config import import_sibling, parse_arg
from jaxad.errors import ConfigError

common = import_sibling(__file__, "common")

OOD_SETS = ("svhn", "cifar100")


def get_config(arg=None):
  args = parse_arg(arg, ood="svhn", seed=1, tasks="geometric+jigsaw", runlocal=False)
  if args.ood not in OOD_SETS:
    raise ConfigError(f"ood must be one of {OOD_SETS}, got {args.ood!r}.")
  c = common.self_supervised()
  c.seed = args.seed
  c.objective.tasks = args.tasks
  c.data.update(name="cifar10", protocol="ood")
  c.data.ood.name = args.ood
  return common.self_supervised_runlocal(c) if args.runlocal else c
