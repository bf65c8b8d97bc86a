r"""Deep SVDD (Ruff et al. 2018) on the ResNet26 of Deecke et al. 2021: one-class loss, no outlier exposure.

  python -m jaxad.main --config=configs/dsvdd_resnet26_cifar10.py:normal_class=3,source=/abs/weights/resnet26_transferad \
      --workdir=/tmp/dsvdd26_c3

Arguments: protocol ('one_vs_rest' or 'leave_one_out', where normal_class is the held-out class), normal_class,
seed, source ('random' or a converted source checkpoint), runlocal.
Loss mean ||z - c||^2 on the 256-d pooled features, c = their mean over the normal training images under the
source net (eps 0.1 guard); score ||z - c||^2. Batches of 128 normal images (the paper's batch size; no OE), same
augmentation and SGD schedule as ADIB. Caveat: BN affine parameters and no-bias convs still let the features
collapse toward c (Deep SVDD's bias argument covers only biases); the paper trains DSVDD this way too.
Paper: DSVDD appears on MPI3D (Fig. 1) and as 64.8 mAUC in the text of section 5.3. jaxad: not yet measured.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, **common.TRANSFER_ARGS)
  c = common.cifar10_transfer(args, "dsvdd_resnet26")
  c.objective.update(loss="one_class", regularizer="none")
  c.oe.per_batch = 0
  if args.runlocal:
    c.train.batch_size = 8
  return c
