r"""GeoTrans (Golan & El-Yaniv 2018), Jezequel et al.'s baseline, CIFAR-10 one-vs-all.

  python -m jaxad.main --config=configs/geotrans_cifar10.py:normal_class=1 --workdir=/tmp/geotrans_c1

Arguments: normal_class (0-9), seed, dataset ('cifar10', 'cifar100' with its 20 super-classes, 'fashion_mnist',
'mnist'), runlocal.
72 transforms (flip x 3 x-shifts x 3 y-shifts x 4 rotations, the published order, Keras' reflect border), one 72-way
softmax head on a WRN-10-4 (the authors' network for CIFAR and Fashion-MNIST; Keras He-normal fan-in convolutions),
Adam 1e-3, L2 = weight decay 5e-4, batch 128, 3 epochs over the 72x expanded set (216 passes over the originals
with one random transform per image). Scores: 'dirichlet' (the paper's Dirichlet normality score, fitted on the
softmax outputs of all normal training images) and 'simplified' (mean probability of the true transform).
Paper: CIFAR-10 mean AUROC 86.0 (Golan & El-Yaniv; Jezequel et al. Table 3 repeats it: airplane 74.7, automobile
95.7, bird 78.1, ...).
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  return common.ssl_baseline(parse_arg(arg, **common.BASELINE_ARGS), common.geotrans_recipe)
