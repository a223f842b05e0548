"""The book's structure: every chapter exists, and every notebook starts with the
hidden Colab set-up cell that installs unlearnkit from the repository named in
``_config.yml`` (the one place the URL is written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def _source(path: Path) -> Path:
    for suffix in (".ipynb", ".md"):
        if path.with_suffix(suffix).exists():
            return path.with_suffix(suffix)
    raise FileNotFoundError(path)


NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


@pytest.mark.parametrize("name", _toc_files())
def test_toc_entry_exists(name: str) -> None:
    assert _source(ROOT / name).exists()


def test_every_notebook_is_in_the_toc() -> None:
    listed = {str(_source(ROOT / name).relative_to(ROOT)) for name in _toc_files()}
    for notebook in NOTEBOOKS:
        assert str(notebook.relative_to(ROOT)) in listed, f"{notebook.name} is not in _toc.yml"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_colab_setup(notebook: Path) -> None:
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    cells = json.loads(notebook.read_text())["cells"]
    first = next(cell for cell in cells if cell["cell_type"] == "code")
    source = "".join(first["source"])
    assert "remove-cell" in first["metadata"].get("tags", [])
    assert f"git+{url}" in source, "the set-up cell must install from _config.yml's repository.url"
    for needed in ("TF_CPP_MIN_LOG_LEVEL", "np.random.seed", "tf.random.set_seed"):
        assert needed in source
    # The install keeps Colab's NumPy 2 (tests/test_colab.py): no restart to advise.
    assert "restart" not in source.lower()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_stored_errors(notebook: Path) -> None:
    cells = json.loads(notebook.read_text())["cells"]
    outputs = [o for cell in cells for o in cell.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
