r"""ADRA (Deecke et al. 2021) on CIFAR-10: ResNet26 with residual adapters, frozen 3x3 kernels, BCE against OE.

  python -m jaxad.main --config=configs/adra_cifar10.py:normal_class=3,seed=1,source=/abs/weights/resnet26_transferad \
      --workdir=/tmp/adra_c3

Arguments: protocol ('one_vs_rest' or 'leave_one_out'; with leave_one_out, normal_class is the held-out anomalous
class), normal_class (0-9), seed, source ('random' or a directory written by
`third_party_weights/convert_resnet26_torch.py`; the adapters and the head are always initialised fresh),
adapter_init ('he' as the code, or 'zeros'), oe ('cifar100', or 'svhn': Table 6), runlocal.
Recipe (TransferAD code): a bias-free 1x1 adapter beside every 3x3 conv (stem included), summed before the BN; the
3x3 kernels are frozen, adapters + BN affine + head train (655,425 of 6,481,665 parameters), BN statistics keep
updating, no L2-SP; otherwise as ADIB (64 + 64 batches, SGD 0.1, wd 1e-4, 100 epochs, x0.1 at 60/80).
Paper: one-vs-rest mean AUROC 0.987 (Table 5; 0.753 with SVHN as OE, Table 6); leave-one-out 0.950 mAUC / 0.729
mAP (Table 2). jaxad: at a reduced budget from the CIFAR-100 stand-in source, see README; the full budget needs the
ImageNet-32 source weights.
"""

from jaxad.config import import_sibling, parse_arg
from jaxad.methods import transfer

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, adapter_init="he", **common.TRANSFER_ARGS)
  c = common.cifar10_transfer(args, "adra")
  c.model.update(adapters=True, adapter_init=args.adapter_init)
  c.objective.update(loss="bce", regularizer="none")
  c.train.trainable = transfer.ADRA_TRAINABLE
  return c
