"""Writing into a workdir safely: whole files or none, and a full or read-only disk as one clear error.

Every result file of a run (summary.json, threshold.json, scores.npz, plots, config.json) is written through
`atomic_open`: into a temporary file beside it, renamed over the target only once complete, so a full disk, a kill
or an exception never leaves a truncated file that a later reader would trust. Orbax checkpoints are atomic in the
same way (a temporary folder renamed when complete); `remove_partial_saves` deletes the temporary folders a failed
save leaves behind, which hold nothing a run could resume from.

`disk_error_message` recognises a full disk, a quota, a read-only file system or a permission error anywhere in an
exception's chain (including orbax/tensorstore's, which arrive as `ValueError: RESOURCE_EXHAUSTED ... [os_error_code
='28']`) and says in one line where, why and what to free or change.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from typing import IO, Iterator

from jaxad.errors import UserError

# errno -> what to do about it.
DISK_ERRNOS = {
    errno.ENOSPC: "free space on that disk or pass a --workdir on a disk with room",
    errno.EDQUOT: "free space within your quota or pass a --workdir elsewhere",
    errno.EFBIG: "raise the file-size limit (ulimit -f) or pass a --workdir elsewhere",
    errno.EROFS: "the file system is read-only: pass a --workdir on a writable disk",
    errno.EACCES: "make the folder writable for this user or pass another --workdir",
    errno.EPERM: "make the folder writable for this user or pass another --workdir",
}
# tensorstore (under orbax) reports the OS error inside a message: "... [os_error_code='28']" or the strerror text.
_TEXT_ERRNOS = [(re.compile(r"os_error_code='?(\d+)"), None)] + [
    (re.compile(re.escape(os.strerror(n))), n) for n in DISK_ERRNOS]
_ORBAX_TMP = ".orbax-checkpoint-tmp"


class DiskError(UserError, OSError):
  """The workdir's disk is full, over quota, read-only or not writable (the message says which and what to do)."""


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
  """Opens a temporary file beside `path` for writing; it replaces `path` only when the block completes.

  `open_kwargs` go to `open` (e.g. `newline=''` for the csv module).

  On any exception the temporary file is removed and `path` keeps its previous content (or stays absent).

  >>> import tempfile, os
  >>> p = os.path.join(tempfile.mkdtemp(), 'x.txt')
  >>> with atomic_open(p) as f:
  ...   _ = f.write('done')
  >>> open(p).read()
  'done'
  """
  if mode not in ("w", "wb"):
    raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}.")
  path = os.fspath(path)
  fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=os.path.dirname(path) or ".")
  try:
    with os.fdopen(fd, mode, **open_kwargs) as f:
      yield f
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file what `open` would have
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _chain(e: BaseException) -> Iterator[BaseException]:
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    yield e
    e = e.__cause__ or e.__context__


def disk_errno(e: BaseException) -> tuple[int, str | None] | None:
  """(errno, file name or None) of the first disk error in `e`'s chain (see `DISK_ERRNOS`), or None."""
  for link in _chain(e):
    if isinstance(link, OSError) and link.errno in DISK_ERRNOS:
      return link.errno, link.filename
    text = str(link)
    for pattern, number in _TEXT_ERRNOS:
      m = pattern.search(text)
      if m:
        n = int(m.group(1)) if number is None else number
        if n in DISK_ERRNOS:
          where = re.search(r'(?:file|at local file) "([^"]+)"', text)
          return n, where.group(1) if where else None
  return None


def disk_error_message(e: BaseException, workdir: str) -> str | None:
  """One line for a disk error anywhere in `e`'s chain: where, errno, what to free or change; None otherwise."""
  found = disk_errno(e)
  if found is None:
    return None
  number, filename = found
  target = os.path.abspath(filename or workdir)
  existing = target
  while existing and not os.path.exists(existing):
    existing = os.path.dirname(existing)
  free = ""
  with contextlib.suppress(OSError):
    free = f" ({shutil.disk_usage(existing or '/').free / 2**20:.1f} MiB free there)"
  return (f"Cannot write {target}: {os.strerror(number)} (errno {number}, {errno.errorcode[number]}){free}. Fix: "
          f"{DISK_ERRNOS[number]}. Every checkpoint completed before this is intact and no partial save was kept; "
          "the same command resumes from the last one.")


def tree_nbytes(tree) -> int:
  """Bytes of every array leaf of a pytree (what a checkpoint of it writes, before metadata)."""
  import jax  # pylint: disable=g-import-not-at-top
  return sum(int(getattr(leaf, "nbytes", 0)) for leaf in jax.tree.leaves(tree))


def check_free_space(directory: str, needed: int, what: str) -> None:
  """Raises `DiskError` (errno 28) when the disk of `directory` has less than `needed` bytes (+5%, +1 MiB) free.

  Checked before a checkpoint is written: orbax writes from background threads, and a disk that fills mid-write
  surfaces there as dozens of tracebacks; checking first turns the common case into one line and no partial step.
  """
  existing = os.path.abspath(directory)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  free = shutil.disk_usage(existing).free
  want = int(needed * 1.05) + 2**20
  if free < want:
    raise DiskError(f"Cannot write {what} to {directory}: {free / 2**20:.1f} MiB free, it needs about "
                    f"{want / 2**20:.1f} MiB ({os.strerror(errno.ENOSPC)}, errno {errno.ENOSPC}, ENOSPC). Fix: "
                    f"{DISK_ERRNOS[errno.ENOSPC]}. Every checkpoint completed before this is intact; the same command "
                    "resumes from the last one.")


def remove_partial_saves(workdir: str) -> list[str]:
  """Deletes orbax's temporary folders (`*.orbax-checkpoint-tmp*`, an unfinished save) under `workdir`.

  They are never a checkpoint a run could resume from (orbax renames a folder only once complete). Returns the
  removed paths.
  """
  removed = []
  for root, dirs, _ in os.walk(workdir):
    for d in list(dirs):
      if _ORBAX_TMP in d:
        shutil.rmtree(os.path.join(root, d), ignore_errors=True)
        removed.append(os.path.join(root, d))
        dirs.remove(d)
  return removed
