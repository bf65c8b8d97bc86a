r"""Converts MatConvNet's VGG-F / VGG-M (`imagenet-vgg-f.mat`, `imagenet-vgg-m.mat`) into a jaxad checkpoint.

Source: MatConvNet's pretrained models (Chatfield et al. 2014's nets, imported from Caffe by MatConvNet; see
third_party_weights/README.md here). Andrews et al. (2016) name the MatConvNet-retrained `imagenet-matconvnet-vgg-{f,m}.mat`; those
are converted the same way (they have no LRN layers, which the converter detects).

  wget http://www.vlfeat.org/matconvnet/models/imagenet-vgg-f.mat
  wget http://www.vlfeat.org/matconvnet/models/imagenet-vgg-m.mat
  python third_party_weights/convert_matconvnet.py --input imagenet-vgg-f.mat --output /abs/path/vgg_f

Reading: `scipy.io.loadmat` (MAT v5/v7; no pickle, no code runs). Both SimpleNN layouts are accepted:
  * normalisation in `meta.normalization` (MatConvNet beta17+) or in the top-level `normalization` (older files);
  * conv weights as a `weights` cell {W, b} (beta17+) or as the fields `filters` / `biases` (older files);
  * LRN layers of type 'normalize' or 'lrn' with `param` = [N kappa alpha beta] (vl_nnnormalize's convention);
  * `pad` as one number or [top bottom left right], `stride` and `pool` as one number or [vertical horizontal];
  * dropout layers (kept by some files) are skipped; the final softmax ('prob') may be there or not.
The layer list is checked against `jaxad.models.vgg.matconvnet_layers(arch, lrn=...)`: order, types, the names of
the weight layers (conv1..conv5, fc6..fc8; other layers are told by position and type), strides, pads, pool sizes
and methods, weight shapes, and the image size and mean image shape. A file that differs is refused with every
mismatch listed (exit status 1), never converted approximately.

Mapping (no transpose: MatConvNet's filters are [height, width, in, out] like flax's HWIO):
  layers{conv<i> | fc<j>}.weights{1} (or .filters)  [h, w, in, out]  -> params/<name>/kernel  (float32)
  layers{conv<i> | fc<j>}.weights{2} (or .biases)   [1, out]/[out, 1] -> params/<name>/bias   [out]
  normalization.averageImage [224, 224, 3] (mean image) or 3 values   -> meta/average_image [224, 224, 3] / [1, 1, 3]
  normalization.imageSize                                              -> meta/image_size [3] (int32)
  layers{norm1, norm2}.param [N kappa alpha beta] (only if present)   -> meta/lrn [2, 4] (float32)
MATLAB drops trailing singleton dimensions; they are restored (a [h, w, in] filter bank with one output is
[h, w, in, 1]). The output directory is an Orbax `StandardCheckpointer` checkpoint of `{'params': ..., 'meta': ...}`
written with `jaxad.models.weights.save`; `jaxad.models.vgg.load_converted(directory)` rebuilds the model (arch told
by conv1, LRN from meta/lrn, classes from fc8), its variables and the preprocessing (0-255 RGB, resize, mean
subtraction). A plain `weights.load` + `merge_params` must skip the meta collection (`dont_load=[r'^meta/']`).

The output is checked before anything is read: an --output that exists is refused unless --force (which replaces
only an existing checkpoint); an --output that is, lies in or contains --input is always refused. Exit status: 0 done,
1 bad input file, 2 bad --output (nothing read or written). The file's sha256 is printed for third_party_weights/README.md, and its
MD5 is compared with the MD5s MatConvNet publishes (doc/site/docs/pretrained.md; beta17 versions of the files).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import os
import pathlib
import sys
from typing import Any

import numpy as np

try:
  import jaxad  # noqa: F401
except ImportError:  # run as a script from a source checkout
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from jaxad.errors import DataError, UserError  # noqa: E402
from jaxad.models import vgg, weights  # noqa: E402

MODELS_URL = "http://www.vlfeat.org/matconvnet/models/"
URLS = {"vgg_f": MODELS_URL + "imagenet-vgg-f.mat", "vgg_m": MODELS_URL + "imagenet-vgg-m.mat"}
# MD5s that MatConvNet publishes for its current (beta17+) files; the older beta16 copies differ.
PUBLISHED_MD5 = {
    "imagenet-vgg-f.mat": "f666c61dc968c413ef664a7e17b01144",
    "imagenet-vgg-m.mat": "1c164950e882b4ea11623e669a86b1c4",
    "imagenet-matconvnet-vgg-f.mat": "b359b6ad071155eafa35c84a78f397c7",
    "imagenet-matconvnet-vgg-m.mat": "1bcad2e93b0cc6da3b7d1bf610582279",
}
DOWNLOAD_HINT = ("MatConvNet's VGG-F and VGG-M are at:\n"
                 f"  wget {URLS['vgg_f']}\n"
                 f"  wget {URLS['vgg_m']}\n"
                 "See third_party_weights/README.md.")
LRN_TYPES = ("normalize", "lrn")  # MatConvNet's two names for vl_nnnormalize layers


class ConversionError(UserError, ValueError):
  """The .mat file is not the VGG-F / VGG-M that jaxad builds (every mismatch is listed)."""


@dataclasses.dataclass
class FileLayer:
  """One SimpleNN layer as read from the file (numbers as tuples; absent fields None).

  `index` is the 1-based position in the file's `layers` cell; `type` has 'normalize' renamed 'lrn'.
  """
  index: int
  name: str
  type: str
  weights: tuple[np.ndarray, np.ndarray] | None = None
  stride: tuple[float, ...] | None = None
  pad: tuple[float, ...] | None = None
  pool: tuple[float, ...] | None = None
  method: str | None = None
  param: tuple[float, ...] | None = None
  leak: float = 0.0
  dilate: tuple[float, ...] | None = None


@dataclasses.dataclass
class MatNet:
  """A SimpleNN net read from a .mat file.

  Attributes:
    layers: every layer, in order.
    average_image: the mean, float32 [H, W, 3] (mean image) or [1, 1, 3] (per-channel), as in the file.
    image_size: normalization.imageSize (at least height and width).
    normalization_layout: 'meta.normalization' or 'normalization' (top level, older files).
    weights_layout: 'weights' ({W, b} cells), 'filters/biases' (older files) or 'none'.
  """
  layers: list[FileLayer]
  average_image: np.ndarray
  image_size: tuple[int, ...]
  normalization_layout: str
  weights_layout: str


# --- Reading MAT structures ----------------------------------------------------------------------------------------


def _is_struct(v: Any) -> bool:
  return hasattr(v, "_fieldnames")


def _unwrap(v: Any) -> Any:
  """A MATLAB 1x1 cell or struct array -> its element (loadmat keeps them as object arrays)."""
  while isinstance(v, np.ndarray) and v.dtype == object and v.size == 1:
    v = v.flat[0]
  return v


def _field(struct: Any, name: str) -> Any:
  return _unwrap(getattr(struct, name)) if name in getattr(struct, "_fieldnames", ()) else None


def _text(v: Any) -> str:
  if v is None:
    return ""
  if isinstance(v, str):
    return v
  return "".join(str(s) for s in np.ravel(v))


def _numbers(v: Any) -> tuple[float, ...] | None:
  if v is None:
    return None
  a = np.asarray(v)
  if a.dtype == object or a.dtype.kind not in "biuf":
    return None
  return tuple(float(x) for x in a.ravel(order="F"))


def _weights(layer: Any) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
  """(W, b) of a layer and the layout it was found in ('weights', 'filters/biases' or 'none')."""
  if "weights" in layer._fieldnames:
    cell = getattr(layer, "weights")
    items = list(np.ravel(cell, order="F")) if isinstance(cell, np.ndarray) and cell.dtype == object else [cell]
    items = [np.asarray(_unwrap(x)) for x in items]
    if len(items) >= 2:
      return (items[0], items[1]), "weights"
    return None, "weights"
  if "filters" in layer._fieldnames:
    biases = _field(layer, "biases")
    return (np.asarray(_field(layer, "filters")), np.asarray(biases if biases is not None else [])), "filters/biases"
  return None, "none"


def read_matconvnet(path: str | os.PathLike) -> MatNet:
  """Reads a MatConvNet SimpleNN .mat file (either layout, see the module docstring) with scipy.io.loadmat.

  Raises:
    DataError: the file is missing (with the download hint), is not a MAT v5/v7 file, or has no SimpleNN `layers`
      or normalisation.
  """
  import scipy.io  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(f"Input file {str(path)!r} not found.\n{DOWNLOAD_HINT}")
  try:
    data = scipy.io.loadmat(str(path), struct_as_record=False, squeeze_me=False)
  except NotImplementedError as e:  # scipy's answer to MAT v7.3 (HDF5)
    raise DataError(f"{str(path)!r} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; MatConvNet's models are "
                    "v5/v7. Re-download it, or re-save it in MATLAB with save(..., '-v7').") from e
  except Exception as e:  # scipy raises ValueError/TypeError/OSError for files that are not MAT files
    raise DataError(f"{str(path)!r} is not a readable MATLAB .mat file ({type(e).__name__}: {e}).") from e

  if "layers" not in data:
    raise DataError(f"{str(path)!r} has no 'layers' variable, so it is not a MatConvNet SimpleNN net (found "
                    f"{sorted(k for k in data if not k.startswith('__'))}). DagNN files are not supported.")
  cells = data["layers"]
  cells = list(np.ravel(cells, order="F")) if isinstance(cells, np.ndarray) else [cells]
  layers, layouts = [], set()
  for i, cell in enumerate(cells, start=1):
    layer = _unwrap(cell)
    if not _is_struct(layer):
      raise DataError(f"{str(path)!r}: layers{{{i}}} is not a struct ({type(layer).__name__}).")
    kind = _text(_field(layer, "type"))
    kind = "lrn" if kind in LRN_TYPES else kind
    w, layout = _weights(layer) if kind == "conv" else (None, "none")
    if kind == "conv":
      layouts.add(layout)
    leak = _numbers(_field(layer, "leak"))
    layers.append(FileLayer(index=i, name=_text(_field(layer, "name")), type=kind, weights=w,
                            stride=_numbers(_field(layer, "stride")), pad=_numbers(_field(layer, "pad")),
                            pool=_numbers(_field(layer, "pool")), method=_text(_field(layer, "method")) or None,
                            param=_numbers(_field(layer, "param")), leak=leak[0] if leak else 0.0,
                            dilate=_numbers(_field(layer, "dilate"))))

  meta = _unwrap(data.get("meta"))
  if _is_struct(meta) and _field(meta, "normalization") is not None:
    norm, norm_layout = _field(meta, "normalization"), "meta.normalization"
  elif "normalization" in data:
    norm, norm_layout = _unwrap(data["normalization"]), "normalization"
  else:
    raise DataError(f"{str(path)!r} has neither meta.normalization nor a top-level normalization, so its mean image "
                    "is unknown; it is not one of MatConvNet's ImageNet models.")
  if not _is_struct(norm) or _field(norm, "averageImage") is None:
    raise DataError(f"{str(path)!r}: {norm_layout} has no averageImage.")
  average = np.asarray(_field(norm, "averageImage"), dtype=np.float32)
  size = _numbers(_field(norm, "imageSize")) or (*vgg.IMAGE_SIZE, 3)
  return MatNet(layers=layers, average_image=average, image_size=tuple(int(round(v)) for v in size),
                normalization_layout=norm_layout,
                weights_layout="+".join(sorted(layouts - {"none"})) or "none")


# --- Checking the layer list ---------------------------------------------------------------------------------------


def _pair(values, n: int) -> tuple[float, ...] | None:
  """A MatConvNet size field as n numbers (a single number repeats), or None when it has another length."""
  if values is None:
    return None
  if len(values) == 1:
    return values * n
  return tuple(values) if len(values) == n else None


def _filters(w: np.ndarray) -> np.ndarray:
  """MATLAB drops trailing singleton dimensions: a [h, w, in] filter bank with one output comes back 4-D."""
  w = np.asarray(w)
  return w.reshape(w.shape + (1,) * (4 - w.ndim)) if 0 < w.ndim < 4 else w


def _fmt(values) -> str:
  return "[" + " ".join(f"{v:g}" for v in values) + "]" if values is not None else "(absent)"


def _compare(expected: vgg.MatLayer, got: FileLayer) -> list[str]:
  """Mismatches between an expected layer and the file's layer of the same type at the same place."""
  where = f"{expected.name} (layer {got.index}{', ' + repr(got.name) if got.name != expected.name else ''})"
  problems = []
  if expected.type in ("conv", "pool"):
    stride = _pair(got.stride, 2) if got.stride is not None else (1.0, 1.0)
    pad = _pair(got.pad, 4) if got.pad is not None else (0.0,) * 4
    if stride != tuple(float(v) for v in expected.stride):
      problems.append(f"{where}: stride {_fmt(got.stride)}, expected {_fmt(expected.stride)}")
    if pad != tuple(float(v) for v in expected.pad):
      problems.append(f"{where}: pad {_fmt(got.pad)}, expected [top bottom left right] {_fmt(expected.pad)}")
  if expected.type == "conv":
    if got.dilate is not None and any(v != 1 for v in got.dilate):
      problems.append(f"{where}: dilate {_fmt(got.dilate)}, expected 1")
    if got.weights is None:
      problems.append(f"{where}: no weights (neither a weights cell {{W, b}} nor filters/biases)")
    else:
      w, b = got.weights
      w_shape, (kernel, bias) = _filters(w).shape, expected.weights
      if w_shape != kernel:
        problems.append(f"{where}: filters have shape {tuple(w_shape)}, expected [h w in out] {kernel}")
      if np.size(b) != bias[0]:
        problems.append(f"{where}: biases have {np.size(b)} values (shape {np.shape(b)}), expected {bias[0]}")
  elif expected.type == "pool":
    if _pair(got.pool, 2) != tuple(float(v) for v in expected.pool):
      problems.append(f"{where}: pool size {_fmt(got.pool)}, expected {_fmt(expected.pool)}")
    if (got.method or "max") != expected.method:
      problems.append(f"{where}: method {got.method!r}, expected {expected.method!r}")
  elif expected.type == "lrn":
    p = got.param
    if p is None or len(p) != 4 or p[0] < 1 or not float(p[0]).is_integer() or not np.all(np.isfinite(p)):
      problems.append(f"{where}: param {_fmt(p)} is not [N kappa alpha beta] with an integer N >= 1")
  elif expected.type == "relu" and got.leak:
    problems.append(f"{where}: leaky ReLU (leak {got.leak:g}), expected a plain ReLU")
  return problems


def _describe(layer) -> str:
  if isinstance(layer, vgg.MatLayer):
    return f"{layer.name} ({layer.type})"
  return f"{layer.name!r} ({layer.type or 'no type'}) at layer {layer.index}"


def infer_arch(net: MatNet) -> str | None:
  """'vgg_f' or 'vgg_m' from the shape of the file's conv1 filters, or None."""
  for layer in net.layers:
    if layer.name == "conv1" and layer.type == "conv" and layer.weights is not None:
      shape = _filters(layer.weights[0]).shape
      for arch in vgg.ARCHS:
        if shape == vgg.matconvnet_layers(arch)[0].weights[0]:
          return arch
  return None


@dataclasses.dataclass
class Check:
  """What `check` found: the mismatches (empty: the file fits) and the settings read from the file."""
  problems: list[str]
  lrn: tuple[tuple[float, ...], ...] | None
  num_classes: int
  skipped: list[str]


def check(net: MatNet, arch: str) -> Check:
  """Compares the file's layers and normalisation with jaxad's `arch` (see the module docstring); raises nothing."""
  layers = [layer for layer in net.layers if layer.type != "dropout"]
  skipped = [layer.name for layer in net.layers if layer.type == "dropout"]
  norms = [layer for layer in layers if layer.type == "lrn"]
  fc8 = next((layer for layer in layers if layer.name == "fc8" and layer.weights is not None), None)
  num_classes = int(_filters(fc8.weights[0]).shape[-1]) if fc8 is not None and _filters(fc8.weights[0]).ndim == 4 \
      else 1000
  expected = vgg.matconvnet_layers(arch, lrn=bool(norms), num_classes=num_classes)
  if not layers or layers[-1].type != "softmax":
    expected = expected[:-1]  # the final softmax is optional: jaxad returns the logits

  def token(layer):  # weight layers are matched by name, the others by type and place
    return f"conv:{layer.name}" if layer.type == "conv" else layer.type

  problems = []
  matcher = difflib.SequenceMatcher(None, [token(e) for e in expected], [token(g) for g in layers], autojunk=False)
  for op, e1, e2, g1, g2 in matcher.get_opcodes():
    if op == "equal":
      for e, g in zip(expected[e1:e2], layers[g1:g2]):
        problems.extend(_compare(e, g))
      continue
    exp, got = expected[e1:e2], layers[g1:g2]
    for e, g in zip(exp, got):
      problems.append(f"layer {g.index} is {g.name!r} ({g.type or 'no type'}) where {_describe(e)} is expected")
    problems.extend(f"missing layer {_describe(e)}" for e in exp[len(got):])
    problems.extend(f"unexpected layer {_describe(g)}" for g in got[len(exp):])

  h_w = tuple(net.image_size[:2])
  if h_w != vgg.IMAGE_SIZE:
    problems.append(f"normalization.imageSize is {list(net.image_size)}, expected {list(vgg.IMAGE_SIZE)} (fc6 is a 6x6 "
                    "conv over pool5 of a 224x224 image)")
  mean = net.average_image
  if not (mean.size == 3 or (mean.ndim == 3 and mean.shape == (*h_w, 3))):
    problems.append(f"normalization.averageImage has shape {mean.shape}; expected a [{h_w[0]} {h_w[1]} 3] mean image "
                    "or 3 channel means")
  lrn = None
  if norms and not problems:
    lrn = tuple(tuple(float(v) for v in layer.param) for layer in norms)
  return Check(problems, lrn, num_classes, skipped)


@dataclasses.dataclass
class Converted:
  """The result of `convert`: the variables to save and what was read (for the summary line)."""
  variables: dict
  arch: str
  lrn: tuple[tuple[float, ...], ...] | None
  num_classes: int
  skipped: list[str]


def convert(net: MatNet, *, arch: str | None = None) -> Converted:
  """Converts a read file into `{'params': ..., 'meta': ...}` for `jaxad.models.vgg.VGG` (see the module docstring).

  Args:
    net: from `read_matconvnet`.
    arch: 'vgg_f' or 'vgg_m'; None tells them apart by the conv1 filters.

  Raises:
    ConversionError: the arch cannot be told, or the file differs from it (every mismatch listed, one a line).
  """
  if arch is None:
    arch = infer_arch(net)
    if arch is None:
      shapes = {a: vgg.matconvnet_layers(a)[0].weights[0] for a in vgg.ARCHS}
      conv1 = next((layer for layer in net.layers if layer.name == "conv1"), None)
      found = "no conv1 layer" if conv1 is None or conv1.weights is None else \
          f"conv1 filters of shape {_filters(conv1.weights[0]).shape}"
      raise ConversionError(f"Cannot tell VGG-F from VGG-M: the file has {found} (VGG-F {shapes['vgg_f']}, VGG-M "
                            f"{shapes['vgg_m']}). Pass --arch vgg_f or --arch vgg_m to list every mismatch.")
  if arch not in vgg.ARCHS:
    raise ConversionError(f"arch={arch!r} is unknown; valid: {sorted(vgg.ARCHS)}.")
  found = check(net, arch)
  if found.problems:
    raise ConversionError(f"The file is not MatConvNet's {arch} as jaxad builds it ({len(found.problems)} "
                          "mismatches); nothing was written:\n" + "\n".join(f"  {p}" for p in found.problems))
  loaded = {}
  for layer in net.layers:
    if layer.type == "conv":
      w, b = layer.weights
      loaded[f"params/{layer.name}/kernel"] = _filters(w).astype(np.float32)
      loaded[f"params/{layer.name}/bias"] = np.asarray(b, np.float32).reshape(-1)
  model = vgg.VGG(arch=arch, num_classes=found.num_classes, lrn=found.lrn)
  variables = weights.merge_params(loaded, vgg.abstract_variables(model), what="the .mat file's weights",
                                   hint=DOWNLOAD_HINT)
  mean = net.average_image.reshape(1, 1, 3) if net.average_image.size == 3 else net.average_image
  meta = {"average_image": np.ascontiguousarray(mean, np.float32),
          "image_size": np.asarray((*vgg.IMAGE_SIZE, 3), np.int32)}
  if found.lrn is not None:
    meta["lrn"] = np.asarray(found.lrn, np.float32)
  variables["meta"] = meta
  return Converted(variables, arch, found.lrn, found.num_classes, found.skipped)


def _md5(path: os.PathLike) -> str:
  h = hashlib.md5()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def main(argv=None) -> int:
  """Command line; returns 0 on success, 1 for a bad input file, 2 for a bad --output (nothing read or written)."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--input", required=True, help="imagenet-vgg-f.mat or imagenet-vgg-m.mat (MatConvNet SimpleNN)")
  parser.add_argument("--output", required=True, help="checkpoint directory to create (Orbax)")
  parser.add_argument("--arch", choices=sorted(vgg.ARCHS), default=None,
                      help="the net in the file (default: told by the conv1 filters)")
  parser.add_argument("--force", action="store_true",
                      help="replace --output if it is an existing checkpoint (other files are never deleted)")
  args = parser.parse_args(argv)

  problem = weights.check_output_path(args.input, args.output, args.force)
  if problem:
    print(f"error: {problem}", file=sys.stderr)
    return 2
  try:
    net = read_matconvnet(args.input)
    print(f"sha256({args.input}) = {weights.sha256(args.input)}")
    md5, published = _md5(args.input), PUBLISHED_MD5.get(os.path.basename(args.input))
    if published:
      name = os.path.basename(args.input)
      verdict = (f"matches the MD5 MatConvNet publishes for {name}" if md5 == published else
                 f"but MatConvNet publishes {published} for {name} (an older beta16 copy, or a modified file?)")
      print(f"md5({args.input}) = {md5}, {verdict}")
    converted = convert(net, arch=args.arch)
    out = weights.save(args.output, converted.variables, force=args.force)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  n = sum(int(np.size(leaf)) for leaf in weights.flatten(converted.variables["params"]).values())
  mean = net.average_image
  mean_text = "per-channel mean " + _fmt(np.ravel(mean)) if mean.size == 3 else f"mean image {list(mean.shape)}"
  lrn_text = "no LRN" if converted.lrn is None else "LRN " + ", ".join(_fmt(p) for p in converted.lrn)
  skipped = f"; skipped {', '.join(converted.skipped)}" if converted.skipped else ""
  print(f"Wrote {out} ({converted.arch}, {converted.num_classes} classes, {n:,} params, {lrn_text}, {mean_text}; "
        f"file layout: {net.normalization_layout}, {net.weights_layout}{skipped}).")
  return 0


if __name__ == "__main__":
  sys.exit(main())
