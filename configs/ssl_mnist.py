r"""Jezequel et al. on MNIST one-vs-all (28x28 grey images).

  python -m jaxad.main --config=configs/ssl_mnist.py:normal_class=0 --workdir=/tmp/ssl_mnist0

Arguments: normal_class (0-9), seed, tasks ('geometric+jigsaw', 'geometric', 'jigsaw'), runlocal.
Recipe: configs/ssl_cifar10.py, with shifts of 7 px (a quarter of 28) and jigsaw cells of 9 px (patches of 7).
Paper (Table 2): mean AUROC 96.0; GeoTrans 96.9, MHRot 95.2.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, **common.SSL_ARGS)
  return common.ssl_one_vs_all(args, "mnist")
