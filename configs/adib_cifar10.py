r"""ADIB (Deecke et al. 2021) on CIFAR-10: ResNet26 from source weights, BCE against CIFAR-100 OE + alpha*L2-SP.

  python -m jaxad.main --config=configs/adib_cifar10.py:normal_class=3,seed=1,source=/abs/weights/resnet26_transferad \
      --workdir=/tmp/adib_c3

Arguments: protocol ('one_vs_rest' or 'leave_one_out'; with leave_one_out, normal_class is the held-out anomalous
class and the other 9 classes are normal), normal_class (0-9), seed, source ('random' = no transfer, or the
directory written by `python third_party_weights/convert_resnet26_torch.py --input resnet26.pth --output DIR`, or
`<workdir>/source` of a configs/pretrain_resnet26_{imagenet32,cifar100}.py run),
squared (Li et al.'s (alpha/2)||.||^2 instead of the code's ||.||), oe ('cifar100', or 'svhn': Table 6's
alternative OE, SVHN train), runlocal.
Recipe (TransferAD code): CIFAR mean/std standardisation, RandomCrop(32, pad 4) + flip on normal and OE images,
batches of 64 normal + 64 CIFAR-100 train images, SGD 0.1, momentum 0.9, coupled wd 1e-4, 100 epochs, lr x0.1 at
60 and 80; L2-SP alpha 1e-2, unsquared, over the 3x3 conv kernels only; score sigmoid(logit).
Paper: one-vs-rest mean AUROC 0.991 (Table 5; 0.798 with SVHN as OE, Table 6); leave-one-out 0.951 mAUC / 0.746
mAP (Table 2). jaxad: at a reduced budget from the CIFAR-100 stand-in source, see README; the full budget needs the
ImageNet-32 source weights.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, squared=False, **common.TRANSFER_ARGS)
  c = common.cifar10_transfer(args, "adib")
  c.objective.update(loss="bce", regularizer="l2_sp", alpha=1e-2, squared=args.squared)
  return c
