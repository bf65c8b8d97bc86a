r"""Deep SAD (Ruff et al. 2020) on the ResNet26 of Deecke et al. 2021, with CIFAR-100 OE as labelled anomalies.

  python -m jaxad.main --config=configs/sad_cifar10.py:normal_class=3,source=/abs/weights/resnet26_transferad \
      --workdir=/tmp/sad_c3

Arguments: protocol ('one_vs_rest' or 'leave_one_out', where normal_class is the held-out class), normal_class,
seed, source ('random' or a converted source checkpoint), runlocal.
Loss on the 256-d pooled features: ||z - c||^2 for normal images, eta / (||z - c||^2 + 1e-6) for OE images
(semi-target -1), eta 1; c = mean pooled feature of the normal training images under the source net (eps 0.1
guard); score ||z - c||^2. This is ADIB with alpha = 0 and a hypersphere loss (the paper's SAD). Training as ADIB.
Paper: SAD appears in Figs. 1, 2 and 5 (MPI3D, small modes) only. jaxad: not yet measured.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, **common.TRANSFER_ARGS)
  c = common.cifar10_transfer(args, "sad")
  c.objective.update(loss="sad", regularizer="none")
  return c
