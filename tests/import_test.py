"""`import jaxad.losses, jaxad.scores` must stay cheap: no TF, grain, orbax or scikit-learn."""

import pathlib
import subprocess
import sys

HEAVY = ("tensorflow", "grain", "orbax", "sklearn")


def test_losses_and_scores_import_no_heavy_dependencies():
  code = (
      "import sys\n"
      "import jaxad.losses, jaxad.scores\n"
      f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
      "print(','.join(heavy))\n"
  )
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False, cwd=pathlib.Path(__file__).resolve().parents[1])
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "", f"heavy modules imported: {result.stdout.strip()}"
