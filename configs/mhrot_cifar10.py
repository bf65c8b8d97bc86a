r"""MHRot (Hendrycks et al. 2019), Jezequel et al.'s strongest self-supervised baseline, CIFAR-10 one-vs-all.

  python -m jaxad.main --config=configs/mhrot_cifar10.py:normal_class=1 --workdir=/tmp/mhrot_c1

Arguments: normal_class (0-9), seed, dataset ('cifar10', 'cifar100' with its 20 super-classes, 'fashion_mnist',
'mnist'), runlocal.
Rotation (4) + x-translation (3) + y-translation (3) heads on a WRN-16-4; each training image under one random
(x, y) shift and all four rotations; score = minus the sum over the 36 joint transforms of the three heads' true-label
probabilities (ss-ood's test.py). ss-ood's CIFAR one-class network and recipe are not public: jaxad uses its
one-class ImageNet recipe (SGD 0.1, Nesterov, momentum 0.9, weight decay 5e-4, per-step cosine, 64 originals x 4
rotations per step) on the WRN-16-4 of Jezequel et al., inputs in [-1, 1], 8-px shifts with a reflect-101 border,
random horizontal flips, 15 epochs.
Paper (Jezequel et al. Table 2): CIFAR-100 83.6, MNIST 95.2, F-MNIST 92.5; no CIFAR-10 value.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  return common.ssl_baseline(parse_arg(arg, **common.BASELINE_ARGS), common.mhrot_recipe)
