r"""MPI3D-real interventions and colour shift (Deecke et al. 2021 section 5.1): ADIB and baselines on 64x64 photos.

  python -m jaxad.main --config=configs/adib_mpi3d.py:anomaly=shape,seed=1,source=/abs/weights/resnet26_transferad \
      --workdir=/tmp/adib_mpi3d_shape_s1
  python -m jaxad.main --config=configs/adib_mpi3d.py:protocol=color_shift,trial=2,method=sad,seed=1,source=... \
      --workdir=/tmp/sad_mpi3d_colors3_s1

Data: `mpi3d_real.npz` (12 GB, memory-mapped) from `path`, else `$JAXAD_DATA_DIR/mpi3d_real.npz` (or
`--config.data.data_dir`); get it with `python -c "from jaxad.data import mpi3d; mpi3d.download('DIR/mpi3d_real.npz')"`
or from https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/mpi3d_real.npz (md5 in
`jaxad.data.mpi3d.MD5`); a missing file ends with one error line that says so. How jaxad reads the paper's protocol
(views, the held-out test views, OE) is in `jaxad/data/mpi3d.py`.

Arguments: protocol ('interventions': normal = small red cone at every training view, anomaly = one intervention,
`anomaly` 'color' red -> blue, 'shape' cone -> cube or 'size' small -> large, Fig. 1; 'color_shift': cone normal,
cube anomalous, trial k = 0..5 has the first k+1 colours of red, blue, green, white, brown, olive as normal and
tests cones vs. cubes of all colours, Fig. 2), anomaly, trial, method ('adib', 'adra', 'sad', 'hsc',
'dsvdd_resnet26': jaxad.methods.transfer's methods; the paper's figures show DSVDD, SAD, ADRA, ADIB), seed (the
run's seed; it also picks the held-out test views, data.protocol_seed), source ('random' or a ResNet26 source
directory: the net is size-independent, so the ImageNet-32 weights of configs/adib_cifar10.py load as they are;
the paper starts every method from ImageNet weights), path, runlocal.
OE: the protocol's own (`oe.name='mpi3d'`): every image that is neither the normal object nor has the anomalous
value (interventions), or the other shapes in the normal colours (colour shift). The paper uses all of them
(849,600 images for 'color'); jaxad holds OE in memory as uint8 (12 KiB per image), so `oe.limit` keeps a fixed
random 50,000 (0.6 GiB); `--config.oe.limit=0` takes all (~9.8 GiB for 'color').
Recipe (paper section 5.1): the same ResNet26 (TransferAD layout, 64x64 input, no resizing) for every method,
ImageNet mean/std standardisation (the source's statistics; MPI3D has none of its own), RandomCrop(64, pad 4) +
flip on normal and OE images, batches of 64 normal + 64 OE (Deep SVDD: 128 normal), SGD 0.1, momentum 0.9, wd
1e-4, 100 epochs, lr x0.1 at 60 and 80; ADIB: L2-SP alpha 1e-2; ADRA: only adapters, BN and head train; 5 seeds.
Paper: AUROC per intervention in Fig. 1 (curves only; in the text, DSVDD scores 0.117 on the colour intervention)
and per colour-shift trial in Fig. 2. jaxad: not yet measured (no MPI3D file on the build machine).
"""

from jaxad.config import import_sibling, parse_arg
from jaxad.errors import ConfigError
from jaxad.methods import transfer

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, protocol="interventions", anomaly="color", trial=0, method="adib", seed=1, source="random",
                   path="", runlocal=False)
  c = common.transfer_base()
  c.oe.update(name="mpi3d", limit=50_000)
  common.set_method(c, args.method, where="MPI3D")  # Deep SVDD: no OE
  c.seed = args.seed
  c.data.update(name="mpi3d", protocol_seed=args.seed, standardize_stats="imagenet64")
  c.data.mpi3d.update(protocol=args.protocol, anomaly=args.anomaly, trial=args.trial, path=args.path)
  c.transfer.source = args.source
  if args.source != "random":  # fail at flag parsing, before a workdir is made
    transfer.check_source(args.source, ConfigError)
  return common.transfer_runlocal(c) if args.runlocal else c
