"""docs/CONTRIBUTING.md's recipe runs as written: its python blocks, in order, in a fresh process (they register a
model, a dataset and a claim, which must not leak into the other tests' registry)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import archzoo

ROOT = Path(__file__).resolve().parents[1]


def test_every_python_block_of_the_recipe_runs(tmp_path):
    text = (ROOT / "docs" / "CONTRIBUTING.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 6                                     # models, data, claim, and three training examples
    script = tmp_path / "recipe.py"
    script.write_text("from pathlib import Path\nimport torch\ntorch.set_num_threads(1)\n"
                      f"TMP = Path({str(tmp_path)!r})\n" + "\n".join(blocks))
    src = str(Path(archzoo.__file__).resolve().parents[1])          # this archzoo, installed or not
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
