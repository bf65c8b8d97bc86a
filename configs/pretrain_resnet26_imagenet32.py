r"""Source weights for ADIB/ADRA on 32x32 data: ResNet26 (TransferAD layout) trained on ImageNet 32x32 (tfds).

  python -m jaxad.main --config=configs/pretrain_resnet26_imagenet32.py --workdir=/ckpt/src_in32
  python -m jaxad.main --config=configs/adib_cifar10.py:normal_class=3,source=/ckpt/src_in32/source \
      --workdir=/tmp/adib_c3

Data: tfds 'imagenet_resized/32x32' (jaxad name 'imagenet32'; Chrabaszcz et al.'s box-resized ImageNet, 1,281,167
train images, the 50,000 validation images as test, 1000 classes), ImageNet mean/std standardisation. A GPU/TPU job:
jaxad holds the whole train split in host memory as float32 (~16 GB) and reads it once through tfds.data_source
(see `jaxad.data.sources` for how to get the data; `source=npz` reads `$JAXAD_DATA_DIR/imagenet32.npz` instead).
This is what the paper's CIFAR-10 experiments start from (TransferAD's released `resnet26.pth`, convertible with
third_party_weights/convert_resnet26_torch.py, is such a model); training it here gives a replacement whose
provenance is known.

Arguments: seed, epochs (default 40), runlocal (4 steps of 16 images, 64 validation images).
Recipe (jaxad's choice; the paper gives none): RandomCrop(32, pad 4) + flip, batch 256, SGD 0.1, Nesterov momentum
0.9, coupled weight decay 5e-4, lr x0.1 at epochs 20, 30 and 35 (scaled with `epochs`); export to
`<workdir>/source`. summary.json: test/top1, test/top5 on the validation set. Paper: no accuracy stated; jaxad: not
measured (no ImageNet on the build machine).
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, seed=1, epochs=40, runlocal=False)
  c = common.supervised()
  c.seed = args.seed
  c.data.update(name="imagenet32", source="tfds")
  c.model.num_classes = 1000
  e = args.epochs
  c.train.update(epochs=e, batch_size=256, lr=0.1, weight_decay=5e-4, **common.step_decay(e // 2, e * 3 // 4, e * 7 // 8))
  c.log_every_steps = 200
  if args.runlocal:
    common.supervised_runlocal(c)
  return c
