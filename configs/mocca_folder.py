r"""MOCCA (Massoli et al.) on your own images: a folder of normal images, and test folders named by class.

  python -m jaxad.main --config=configs/mocca_folder.py:normal_dir=/data/parts/train,test_dir=/data/parts/test \
      --workdir=/tmp/parts
  python -m jaxad.main --config=configs/mocca_folder.py:mvtec_root=/data/mvtec,category=bottle --workdir=/tmp/bottle
  python -m jaxad.main --mode=predict --workdir=/tmp/parts --images=/data/parts/new   # scores new images

Layout: `normal_dir` holds normal training images; `test_dir` has one sub-folder per class, `good` = normal, every
other sub-folder anomalous (e.g. MVTec AD's `test/`), or give MVTec AD's own layout with `mvtec_root` + `category`.
PNG/JPEG/BMP/TIFF of any size and mode: each image is read as RGB and resized to `size` x `size` (32 for the CIFAR
LeNet). Unreadable files and empty folders stop the run with a message naming them.
Arguments: normal_dir, test_dir, mvtec_root, category, size (32), seed, boundary ('hard' or 'soft'), runlocal.
Recipe: configs/mocca_cifar10.py's (LeNet autoencoder, then one hypersphere per layer; Adam, batch 256), with
Deep SVDD's GCN-L1 + min-max preprocessing, the min-max computed from your normal images; at most 60 + 30 epochs,
since users' folders are small. Results land in the workdir as for every run (summary.json, threshold.json, plots).
"""

from jaxad.config import import_sibling, parse_arg
from jaxad.errors import ConfigError

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, normal_dir="", test_dir="", mvtec_root="", category="", size=32, seed=1, boundary="hard",
                   runlocal=False)
  if bool(args.mvtec_root) == bool(args.normal_dir):
    raise ConfigError("configs/mocca_folder.py needs either normal_dir=...,test_dir=... (your images) or "
                      "mvtec_root=...,category=... (MVTec AD's layout).")
  c = common.hypersphere()
  c.method = "mocca"
  c.seed = args.seed
  c.data.update(name="mvtec" if args.mvtec_root else "folder", preprocess="gcn_l1_minmax", minmax="computed")
  c.data.folder.update(normal_dir=args.normal_dir, test_dir=args.test_dir, root=args.mvtec_root,
                       category=args.category, size=(args.size, args.size), channels=3)
  c.model.update(name="lenet_cifar10", ae_variant="mocca")
  c.pretrain.update(epochs=60, batch_size=32, lr=1e-3, **common.step_decay(40))
  c.train.update(epochs=30, batch_size=32, lr=1e-4, **common.step_decay(20))
  c.objective.update(boundary=args.boundary, layers=("conv1", "conv2", "conv3", "code"), warmup_epochs=5)
  c.log_every_steps = 10
  if args.runlocal:
    c.pretrain.update(epochs=2, batch_size=8)
    c.train.update(epochs=2, batch_size=8)
    c.objective.warmup_epochs = 1
    for phase in (c.pretrain, c.train):
      phase.schedule, phase.schedule_kwargs = "constant", {}
    c.eval.batch_size = 16
    c.log_every_steps = 1
  return c
