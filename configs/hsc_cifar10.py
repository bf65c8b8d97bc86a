r"""HSC (Ruff et al. 2020) on the ResNet26 of Deecke et al. 2021: hypersphere classifier against CIFAR-100 OE.

  python -m jaxad.main --config=configs/hsc_cifar10.py:normal_class=3,source=/abs/weights/resnet26_transferad \
      --workdir=/tmp/hsc_c3

Arguments: protocol ('one_vs_rest' or 'leave_one_out', where normal_class is the held-out class), normal_class,
seed, source ('random' or a converted source checkpoint), reg ('none' = the paper's HSC baseline from theta_0;
'l2_sp' = ablation a_3, HSC with ADIB's alpha*||theta - theta_0||), oe ('cifar100', or 'svhn': Table 6), runlocal.
Loss on the 256-d pooled features: pseudo-Huber d = sqrt(||z||^2 + 1) - 1 for normal images and
-log(1 - exp(-d)) for OE images; score 1 - exp(-d). Training as ADIB (64 + 64, SGD 0.1, wd 1e-4, 100 epochs).
Paper: Table 5 lists HSC at 0.963 mean AUROC (Ruff et al.'s own network, not this ResNet26); Table 4 a_3 (HSC + L2,
leave-one-out) 0.685 mAP; Table 6: 0.702 mean AUROC with SVHN as OE. jaxad: not yet measured.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, reg="none", **common.TRANSFER_ARGS)
  c = common.cifar10_transfer(args, "hsc")
  c.objective.update(loss="hsc", regularizer=args.reg)
  return c
