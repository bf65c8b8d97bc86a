"""README's 'Use jaxad.losses in your own JAX code' example runs as printed."""

import os
import re
import subprocess
import sys

from helpers import REPO  # pylint: disable=g-bad-import-order


def test_readme_losses_example_runs():
  with open(os.path.join(REPO, "README.md")) as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
  example = next(b for b in blocks if "from jaxad import losses" in b)
  out = subprocess.run([sys.executable, "-c", example], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  auroc = float(re.search(r"AUROC (\S+)", out.stdout).group(1))
  assert auroc > 0.9, out.stdout  # the shifted test points are far outside the learned hypersphere
