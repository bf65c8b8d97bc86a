r"""Source weights for ADIB/ADRA on 96x96 data (STL-10): ResNet26 (TransferAD layout) trained on ImageNet at 96x96.

  python -m jaxad.main --config=configs/pretrain_resnet26_imagenet96.py --workdir=/ckpt/src_in96
  # then e.g. transfer.source=/ckpt/src_in96/source for an STL-10 run (data.name='stl10')

Deecke et al. (2021) initialise their STL-10 models from "ResNet26 trained on ImageNet at a resolution of 96x96";
neither the weights nor the code were released. tfds offers ImageNet only as 'imagenet2012' (full size, manual
download, variable image shapes, which jaxad's in-memory arrays do not take) or 'imagenet_resized' at 8/16/32/64
pixels. jaxad's choice: tfds 'imagenet_resized/64x64' (jaxad name 'imagenet64'; 1,281,167 train and 50,000
validation images, 1000 classes), kept at 64x64 on the host (~63 GB float32 for the train split) and upsampled
bilinearly to 96x96 on the device, batch by batch (`model.input_size=96`). The net therefore sees 96x96 inputs whose
detail is that of 64x64 images: a stand-in for the paper's 96x96 model, not a reproduction (the STL-10 tables stay
weights-dependent). A true 96x96 source needs imagenet2012 resized to 96 offline and saved as
`$JAXAD_DATA_DIR/imagenet96.npz`-style arrays (not wired up here).

Arguments: seed, epochs (default 40), runlocal (4 steps of 16 images, 64 validation images).
Recipe (jaxad's choice; the paper gives none): ImageNet mean/std, RandomCrop(64, pad 4) + flip before the upsampling,
batch 256, SGD 0.1, Nesterov momentum 0.9, coupled weight decay 1e-4, lr x0.1 at epochs 20, 30 and 35 (scaled with
`epochs`); export to `<workdir>/source`. summary.json: test/top1, test/top5 on the validation set. jaxad: not
measured (no ImageNet on the build machine).
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, seed=1, epochs=40, runlocal=False)
  c = common.supervised()
  c.seed = args.seed
  c.data.update(name="imagenet64", source="tfds")
  c.model.update(num_classes=1000, input_size=96)
  e = args.epochs
  c.train.update(epochs=e, batch_size=256, lr=0.1, weight_decay=1e-4, **common.step_decay(e // 2, e * 3 // 4, e * 7 // 8))
  c.log_every_steps = 200
  if args.runlocal:
    common.supervised_runlocal(c)
  return c
