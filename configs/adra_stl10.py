r"""ADRA (Deecke et al. 2021) on STL-10 semantic AD at 96x96: ResNet26 with residual adapters on frozen ImageNet-96
3x3 kernels, BCE against STL-10's unlabelled split. The flagship command of jaxad:

  python -m jaxad.main --config=configs/adra_stl10.py --workdir=/tmp/adra_stl10

Without the data (`$JAXAD_DATA_DIR/stl10.npz`, or tfds 'stl10' prepared) or the source weights (default
`workdirs/pretrain_resnet26_imagenet96/source`, made by configs/pretrain_resnet26_imagenet96.py) this stops at once,
naming each missing file and the command that produces it.

Arguments: normal_class (0-9; with the default protocol 'leave_one_out' it names the held-out anomalous class),
protocol ('leave_one_out' or 'one_vs_rest'), seed, source (directory of source weights, or 'random'), data_dir
(folder of stl10.npz; default $JAXAD_DATA_DIR), data_source ('auto': fail at once unless stl10.npz or a
prepared tfds 'stl10' is there; 'tfds': let tfds download it on first use; 'npz'), adapter_init ('he' as the
code, or 'zeros'), runlocal.
Recipe: as configs/adra_cifar10.py (bias-free 1x1 adapters beside every 3x3 conv, 3x3 kernels frozen, adapters + BN
+ head train: 655,425 of 6,481,665 parameters; 64 + 64 batches, SGD 0.1, wd 1e-4, 100 epochs, x0.1 at 60/80), with
ImageNet mean/std and the 100,000 'unlabelled' STL-10 images as OE.
Paper: STL-10 leave-one-out mean AP 0.429 (Table 3). jaxad: not measured (no STL-10 or ImageNet on the build machine).
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")
from jaxad.methods import transfer


def get_config(arg=None):
  args = parse_arg(arg, adapter_init="he", **common.STL10_ARGS)
  c = common.stl10_transfer(args, "adra")
  c.model.update(adapters=True, adapter_init=args.adapter_init)
  c.objective.update(loss="bce", regularizer="none")
  c.train.trainable = transfer.ADRA_TRAINABLE
  return c
