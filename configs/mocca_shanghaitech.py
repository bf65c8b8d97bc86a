r"""MOCCA (Massoli et al.) on ShanghaiTech Campus: a 3-D convolutional autoencoder with LSTM selectors, end to end.

  python -m jaxad.main --config=configs/mocca_shanghaitech.py:root=/data/shanghaitech --workdir=/tmp/shanghaitech

Data (not downloadable by script): the dataset page https://svip-lab.github.io/dataset/campus_dataset.html links the
archive; extract it so that `<root>/training/frames/<video>/*.jpg` (the training videos ship as .avi: extract each
with `ffmpeg -i training/videos/01_001.avi training/frames/01_001/%03d.jpg`), `<root>/testing/frames/<video>/*.jpg`
and `<root>/testing/test_frame_mask/<video>.npy` exist (`jaxad.data.video`). A run without them stops with one
line naming the missing folder.
Arguments: root, boundary ('soft' or 'hard'), layers ('' = the default below, else names joined by '+', from
block1..block5, fc1, code), seed, runlocal (a tiny network on 8-frame clips of 32x64, for a first try or a test).

Recipe, from the paper (sections IV-C, IV-D, V-D, Eq. 8), its code (spec section 4.3; `main_shanghaitech.py`,
`trainers/trainer_shanghaitech.py`) or jaxad's choice:
* data: clips of 16 frames resized to 256x512, pixels / 255 (code), background removed as LSA and the code's data
  did ('mog_image': a MOG2 background image per video, |frame - background| summed over RGB > 128, dilated 5 times;
  data.video.background='mog' is a per-frame mixture of Gaussians, 'none' keeps the frames). Training clips do not
  overlap (train_stride 16: about 17,000 clips per epoch; the code draws 10,000 random clips per epoch); test clips
  slide by one frame (code).
* network: the code's 3-D conv autoencoder (five residual blocks, two FC layers, code 1024 as the README's command)
  with a one-layer LSTM of 100 units per chosen layer, replacing the image selectors (paper); layers
  ('block5', 'fc1', 'code') are jaxad's choice (the paper picks per dataset and publishes none; the code's default
  is the last layer only).
* training: one end-to-end phase (paper): summed squared reconstruction error + the soft (nu 0.1) or hard
  multi-layer hypersphere loss, summed over layers (code); centres from the untrained network over 10,000 training
  clips (the code: one epoch); Adam lr 1e-3 (the paper's set is {1e-2, 1e-3}), weight decay 0.5e-6, batch 4 (code),
  radii after 5 warm-up epochs (code), 10 epochs with x0.1 after 8 (jaxad's choice: neither paper nor code gives
  epochs); the epoch with the lowest mean loss is kept (code).
* scores: per frame, the mean over layers of ||f - c||^2 - R^2 of the LSTM outputs, averaged over the clips that
  contain the frame and min-max normalised within each video (Eq. 8); frame-level AUROC over all test videos.
Paper (Table VI): AUROC 0.730 (soft) / 0.725 (hard).
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, root="", boundary="soft", layers="", seed=1, runlocal=False)
  c = common.mocca_video()
  c.seed = args.seed
  c.data.video.root = args.root
  c.objective.boundary = args.boundary
  if args.layers:
    c.objective.layers = tuple(args.layers.split("+"))
  if args.runlocal:
    c.data.video.update(size=(32, 64), clip_len=8, train_stride=4, test_stride=2)
    c.model.update(rep_dim=16, kwargs=dict(lstm_dim=8, widths=(4, 4, 8, 8, 8), fc_dim=32))
    c.train.update(epochs=2, batch_size=2)
    c.train.schedule, c.train.schedule_kwargs = "constant", {}
    c.objective.update(warmup_epochs=1, center_clips=0)
    c.eval.batch_size = 4
    c.log_every_steps = 1
  return c
