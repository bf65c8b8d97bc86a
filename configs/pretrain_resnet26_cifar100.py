r"""A local stand-in source model: ResNet26 (TransferAD layout) trained to classify CIFAR-100, exported for ADIB/ADRA.

  python -m jaxad.main --config=configs/pretrain_resnet26_cifar100.py --workdir=/tmp/src_c100
  python -m jaxad.main --config=configs/adib_cifar10.py:normal_class=3,source=/tmp/src_c100/source \
      --workdir=/tmp/adib_c3_from_c100

Deecke et al. (2021) start from ImageNet 32x32 weights; where those cannot be downloaded, this trains a source model
on the real CIFAR-100 train arrays ($JAXAD_DATA_DIR/cifar100.npz or tfds 'cifar100') and writes it to
`<workdir>/source` (the converter's format; `transfer.load_source` drops the 100-way head). It is a stand-in for
tests and demos, not the paper's theta_0: CIFAR-100 is also ADIB's OE set for CIFAR-10, so the source has already
seen the OE images (with labels), which ImageNet's net had not.

Arguments: seed, epochs (default 40), runlocal (4 steps of 16 images, 64 test images; also the test of the
ADIB-from-stand-in path).
Recipe (jaxad's choice; the paper gives no pretraining recipe): CIFAR-100's own per-channel mean/std
(`transforms.CIFAR100_MEAN/STD`), RandomCrop(32, pad 4) + flip, batch 128, SGD 0.1, Nesterov momentum 0.9, coupled
weight decay 5e-4, lr x0.1 at 50% and 75% of the epochs; summary.json holds test/top1 and test/top5 on the 10,000
CIFAR-100 test images. jaxad: not measured at full budget (a 2-core CPU trains ResNet26 at ~30 img/s, ~30 min
per epoch).
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, seed=1, epochs=40, runlocal=False)
  c = common.supervised()
  c.seed = args.seed
  c.data.update(name="cifar100", standardize_stats="cifar100_own")
  c.model.num_classes = 100
  c.train.update(epochs=args.epochs, batch_size=128, lr=0.1, weight_decay=5e-4,
                 **common.step_decay(args.epochs // 2, args.epochs * 3 // 4))
  if args.runlocal:
    common.supervised_runlocal(c)
  return c
