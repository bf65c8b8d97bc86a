r"""ADIB (Deecke et al. 2021) on STL-10 semantic AD at 96x96: ResNet26 from ImageNet-96 weights, BCE against STL-10's
unlabelled split + alpha * L2-SP.

  python -m jaxad.main --config=configs/adib_stl10.py:normal_class=3,seed=1 --workdir=/tmp/adib_stl10_c3

Without the data (`$JAXAD_DATA_DIR/stl10.npz`, or tfds 'stl10' prepared) or the source weights (default
`workdirs/pretrain_resnet26_imagenet96/source`, made by configs/pretrain_resnet26_imagenet96.py) this stops at once,
naming each missing file and the command that produces it.

Arguments: normal_class (0-9; with the default protocol 'leave_one_out' it names the held-out anomalous class, the
other 9 are normal), protocol ('leave_one_out' or 'one_vs_rest'), seed, source (directory of source weights, or
'random' for no transfer), data_dir (folder of stl10.npz; default $JAXAD_DATA_DIR), data_source ('auto': fail at
once unless stl10.npz or a prepared tfds 'stl10' is there; 'tfds': let tfds download it on first use; 'npz'),
squared (Li et al.'s (alpha/2)||.||^2), runlocal.
Recipe: as configs/adib_cifar10.py (64 normal + 64 OE per batch, RandomCrop(96, pad 4) + flip, SGD 0.1, momentum
0.9, coupled wd 1e-4, 100 epochs, x0.1 at 60/80, alpha 1e-2 unsquared over the 3x3 kernels), with ImageNet mean/std
standardisation (STL-10 is drawn from ImageNet) and the 100,000 'unlabelled' STL-10 images as OE.
Paper: STL-10 leave-one-out mean AP 0.495 (Table 3). jaxad: not measured (no STL-10 or ImageNet on the build machine).
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, squared=False, **common.STL10_ARGS)
  c = common.stl10_transfer(args, "adib")
  c.objective.update(loss="bce", regularizer="l2_sp", alpha=1e-2, squared=args.squared)
  return c
