r"""Verified downloads, and the folder datasets that tfds does not serve: MVTec AD.

  python -m jaxad.data.downloads mvtec DIR      # 4.9 GB archive, checksum verified, extracted into DIR

The archive streams to a temporary file beside its destination, its SHA-256 is checked, and only then is it
extracted (tarfile's 'data' filter: no absolute paths, links out of DIR or device files), so DIR never holds a
partial dataset that looks complete. Without internet, download the same archive elsewhere and pass
`--archive=PATH` (or extract it yourself: any folder in MVTec AD's layout works with `data.folder.root`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request

from jaxad.errors import DataError

# The official archive (MVTec's download page links it after accepting the licence); the checksum is the one
# anomalib publishes for the same file (anomalib/data/datamodules/image/mvtecad.py).
MVTEC_ARCHIVE_URL = ("https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download/"
                     "420938113-1629952094/mvtec_anomaly_detection.tar.xz")
MVTEC_SHA256 = "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d"


def file_digest(path: str, algorithm: str = "sha256", *, chunk_size: int = 1 << 24) -> str:
  """The hex digest of a file ('sha256', 'md5', any hashlib name), read in chunks."""
  digest = hashlib.new(algorithm)
  with open(path, "rb") as f:
    while chunk := f.read(chunk_size):
      digest.update(chunk)
  return digest.hexdigest()


def fetch(url: str, path: str, *, checksum: str, algorithm: str = "sha256", name: str = "", offline_hint: str = "",
          timeout: float = 60.0, chunk_size: int = 1 << 24) -> str:
  """Downloads `url` to `path` unless `path` already is the file with this checksum; returns `path`.

  Streams to a temporary file beside `path`, checks the digest, and only then renames it into place (atomic), so
  `path` is either absent or complete.

  Raises:
    DataError: no network (naming the URL and `offline_hint`, by default "fetch it elsewhere and pass
      --archive=PATH"), or a download whose checksum differs (nothing is written).
  """
  if os.path.isfile(path) and file_digest(path, algorithm, chunk_size=chunk_size) == checksum:
    return path
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".part")
  digest, done, error = hashlib.new(algorithm), 0, None
  try:
    with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
      total = int(response.headers.get("Content-Length") or 0)
      while chunk := response.read(chunk_size):
        out.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        if done % (1 << 30) < len(chunk):
          logging.info("%s: %.1f of %.1f GB", name or url, done / 2**30, total / 2**30)
  except (urllib.error.URLError, OSError, ValueError) as e:  # no network, refused, timeout, disk full, bad URL
    error = e
  if error is not None:
    os.remove(tmp)
    hint = offline_hint or f"fetch the file elsewhere ({algorithm} {checksum}) and pass it with --archive=PATH"
    raise DataError(f"Could not download {name + ' from ' if name else ''}{url} ({type(error).__name__}: {error}). "
                    f"Without internet, {hint}.") from error
  if digest.hexdigest() != checksum:
    os.remove(tmp)
    raise DataError(f"The download of {url} has {algorithm} {digest.hexdigest()}, expected {checksum} ({done} bytes): "
                    "it is truncated or corrupted; nothing was written. Try again.")
  os.replace(tmp, path)
  return path


def extract(archive: str, root: str) -> None:
  """Extracts a tar archive into `root` through a sibling temporary folder, then moves its entries into place."""
  os.makedirs(root, exist_ok=True)
  staging = tempfile.mkdtemp(dir=root, prefix=".extracting-")
  try:
    with tarfile.open(archive) as tar:
      tar.extractall(staging, filter="data")
  except (tarfile.TarError, OSError, EOFError) as e:
    raise DataError(f"Cannot extract {archive} ({type(e).__name__}: {e}): the archive is damaged; download it "
                    "again.") from e
  for name in os.listdir(staging):
    target = os.path.join(root, name)
    if not os.path.exists(target):
      os.replace(os.path.join(staging, name), target)
  shutil.rmtree(staging, ignore_errors=True)


def download_mvtec(root: str, *, archive: str = "", url: str = MVTEC_ARCHIVE_URL, sha256: str = MVTEC_SHA256) -> str:
  """MVTec AD in `root` (`root/<category>/train/good/...`): downloaded, verified and extracted; returns `root`.

  Categories already present are kept as they are. `archive`: a local copy of the archive (verified the same way).
  Licence: CC BY-NC-SA 4.0 (non-commercial use only), https://www.mvtec.com/company/research/datasets/mvtec-ad.
  """
  from jaxad.data.folder import MVTEC_CATEGORIES, MVTEC_URL  # pylint: disable=g-import-not-at-top  (PIL)
  if all(os.path.isdir(os.path.join(root, c, "train")) for c in MVTEC_CATEGORIES):
    return root
  if archive:
    if not os.path.isfile(archive):
      raise DataError(f"MVTec AD archive {archive} does not exist.")
    got = file_digest(archive)
    if got != sha256:
      raise DataError(f"{archive} has sha256 {got}, expected {sha256}: it is not the MVTec AD "
                      f"archive or it is damaged. Download it again from {MVTEC_URL}.")
  else:
    archive = fetch(url, os.path.join(root, os.path.basename(url)), checksum=sha256, name="MVTec AD")
  extract(archive, root)
  return root


def main(argv: list[str]) -> int:
  args = [a for a in argv[1:] if not a.startswith("--")]
  options = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
  if len(args) != 2 or args[0] != "mvtec" or set(options) - {"archive"}:
    print("usage: python -m jaxad.data.downloads mvtec DIR [--archive=PATH]", file=sys.stderr)
    return 2
  try:
    root = download_mvtec(args[1], archive=options.get("archive", ""))
  except DataError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"MVTec AD is in {root} (licence CC BY-NC-SA 4.0: non-commercial use only).")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
