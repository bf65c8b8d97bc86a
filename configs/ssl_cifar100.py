r"""Jezequel et al. on CIFAR-100 one-vs-all over the 20 coarse super-classes (the paper's CIFAR-100 protocol).

  python -m jaxad.main --config=configs/ssl_cifar100.py:normal_class=4 --workdir=/tmp/ssl_c100_4

Arguments: normal_class (0-19, a super-class), seed, tasks ('geometric+jigsaw', 'geometric', 'jigsaw'), runlocal.
Each super-class has 2,500 training images; the test set is all 10,000 test images, label 1 = another super-class.
Recipe: configs/ssl_cifar10.py. Paper (Tables 2, 4): mean AUROC 85.8 (G+J), 83.6 (G), 80.1 (J); GeoTrans 84.7,
MHRot 83.6.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, **common.SSL_ARGS)
  return common.ssl_one_vs_all(args, "cifar100", label_mode="coarse")
