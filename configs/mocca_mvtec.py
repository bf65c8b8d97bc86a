r"""MOCCA (Massoli et al.) on one MVTec AD category: residual autoencoder, then one hypersphere per chosen layer.

  python -m jaxad.data.downloads mvtec /data/mvtec        # once: 4.9 GB, CC BY-NC-SA 4.0 (non-commercial)
  python -m jaxad.main --config=configs/mocca_mvtec.py:root=/data/mvtec,category=carpet --workdir=/tmp/carpet

Arguments: root (the folder holding the category folders), category (one of the 15), recipe ('' = the category's;
'texture' or 'object' for a folder in MVTec AD's layout under another name, e.g. benchmarks/mocca_mvtec_synthetic.py's
generated 'woven' set, which then gets no paper value), boundary ('soft' or 'hard'),
layers ('' = the default below, else names joined by '+', e.g. 'fc1+code'), seed, runlocal (a tiny budget: 2 + 2
epochs, smaller images, for a first try or a test).

Recipe, from the paper (section IV-B, IV-D, Eq. 7, Table VII), its code (spec section 4.3) or jaxad's choice:
* data: images in [-1, 1]; textures (carpet, grid, leather, tile, wood) resized to 512x512 and trained on random
  64x64 crops (64 per image per epoch, 2 images per step: the code's 128-patch batch), rotated by U[0, 45] degrees
  with reflected borders; a test texture image is scored by the maximum over its 64 non-overlapping patches
  (scorer 'hypersphere', Eq. 7; 'hypersphere_patch_mean' is the mean, for comparison). Objects resized to
  128x128, whole; bottle, hazelnut, metal_nut and screw rotated by U[-45, 45] degrees (black corners), the others
  not (the code's lists: orientation is their defect).
* network: the code's residual encoder (3x3 stem, residual block, three down-sampling blocks, two FC layers,
  sigmoid code of 128 as the README's command) with its mirrored decoder, and the paper's selector heads
  (model.selector='mlp'; 'pool' is plain average pooling). Candidate layers: conv, res, down1, down2, down3, fc1,
  fc2, code.
* layers: ('down3', 'fc1', 'code') for every category, the paper's layers 4, 5, 6 (its best on leather, Table VII,
  soft boundary; "6" is the last layer, the code's sigmoid output). The paper picks a combination per class but
  publishes none besides leather, and the code's default is the last layer only.
* optimisation: Adam, lr 1e-3 (the paper's set is {1e-2, 1e-3}, dropped x0.1 "at specific epochs depending on the
  class"; the code's default is 1e-4) with x0.1 at 3/4 of training, weight decay 0.5e-6 (code), nu 0.1 (code),
  soft radii after a warm-up of a tenth of the epochs (the code's CLI default is 5 epochs), and the hypersphere
  phase keeps its epoch with the lowest mean loss (the code's best_oc_model). Epochs are jaxad's choice (20 for
  textures, 200 for objects; the code's default is one pass over 50,000 pre-augmented samples).
* score: mean over the layers of ||f_l - c_l|| - R_l (the code's MVTec score, not squared; R_l = 0 for 'hard').
Where paper and code differ, jaxad follows the paper: the encoder really starts from the pretrained autoencoder's
weights (the code's key-prefix bug skips the copy, spec section 4.4).
Paper (Tables III-V): mean AUROC 0.88 (soft) / 0.83 (hard), maxBA 0.83 / 0.80 over the 15 categories.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, root="", category="carpet", recipe="", boundary="soft", layers="", seed=1, runlocal=False)
  c = common.mocca_mvtec(args.category, args.recipe)
  c.seed = args.seed
  c.data.folder.root = args.root
  c.objective.boundary = args.boundary
  if args.layers:
    c.objective.layers = tuple(args.layers.split("+"))
  if args.runlocal:
    texture = c.patches.size > 0
    c.data.folder.size = (128, 128) if texture else (64, 64)  # 4 patches of 64 per texture image
    c.patches.per_image = 4 if texture else 1
    for phase in (c.pretrain, c.train):
      phase.epochs, phase.batch_size = 2, 4
      phase.schedule, phase.schedule_kwargs = "constant", {}
    c.objective.warmup_epochs = 1
    c.eval.batch_size = 8
    c.log_every_steps = 1
  return c
