r"""The embedded default: MOCCA on scikit-learn's 8x8 digits (no download), all ten one-vs-rest tasks.

  python -m jaxad.main --config=configs/quickstart.py --workdir=/tmp/jaxad_quickstart

Digits are upsampled to 28x28 for Deep SVDD's MNIST LeNet; each class has about 90 training images, so this is a
demonstration that runs in minutes on a laptop CPU, not a benchmark. Prints a per-class AUROC table.
Arguments: normal_class (-1 = all ten, the default), seed, boundary ('soft' or 'hard'), method ('mocca' or 'dsvdd'),
runlocal.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, normal_class=-1, seed=1, boundary="hard", method="mocca", runlocal=False)
  c = common.hypersphere()
  c.method = args.method
  c.seed = args.seed
  c.data.update(name="digits", source="digits", minmax="computed", image_size=28)
  if args.normal_class < 0:
    c.data.normal_classes = tuple(range(10))
  else:
    c.data.normal_class = args.normal_class
  c.model.update(name="lenet_mnist", rep_dim=32)
  c.pretrain.update(epochs=60, batch_size=32, lr=1e-3, **common.step_decay(40))
  c.train.update(epochs=30, batch_size=32, lr=1e-4, **common.step_decay(20))
  c.objective.update(boundary=args.boundary, layers=("conv1", "conv2", "code") if args.method == "mocca" else ("code",),
                     warmup_epochs=5)
  c.log_every_steps = 50
  c.checkpoint_every_epochs = 10
  if args.runlocal:
    c.data.normal_classes = (0, 1) if args.normal_class < 0 else ()
    c.pretrain.epochs, c.train.epochs, c.objective.warmup_epochs = 2, 2, 1
    for phase in (c.pretrain, c.train):  # too short for the lr decay
      phase.schedule, phase.schedule_kwargs = "constant", {}
  return c
