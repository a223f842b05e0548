"""Colab emulation: a reader opens a chapter in a Colab-like runtime and presses *Run all*.

A fresh virtual environment gets the versions a current Colab runtime has preinstalled
(NumPy 2, TensorFlow 2.19, ...). The kernel imports NumPy and pandas before anything else, as
Colab's does. The chapter's own set-up cell then installs unlearnkit, from this checkout
instead of the repository URL, and the chapter runs to the end. The test asserts that the
install changed no preinstalled package: NumPy is the same version on disk and in the
running kernel, and the GPflow that pip chose imports.

The emulation creates a new environment (about 1.5 GB; pip reuses its wheel cache), so it
runs only when asked for: ``UNLEARNKIT_COLAB_EMULATION=1 python -m pytest tests/test_colab.py``
(``.ci/run`` does). Colab runs Python 3.12: the test uses ``UNLEARNKIT_COLAB_PYTHON`` if set,
else a Python 3.12 it can find, else the Python running the tests.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# What the emulated runtime has before the reader's first cell (issue 14: a current Colab).
COLAB_PREINSTALLED = {
    "pip": "24.1.2",
    "setuptools": "75.2.0",
    "numpy": "2.0.2",
    "scipy": "1.15.3",
    "pandas": "2.2.2",
    "tensorflow": "2.19.0",
    "tensorflow-probability": "0.25.0",
    "tf-keras": "2.19.0",
    "scikit-learn": "1.6.1",
    "matplotlib": "3.10.0",
    # the kernel and what executes the notebook (the same as requirements.txt, so the
    # wheels are reused)
    "ipykernel": "7.4.0",
    "nbclient": "0.11.0",
}

# The shortest chapter; the last cell also imports GPflow through unlearnkit.gp, so the
# GPflow that pip chose is shown to import in this runtime.
CHAPTER = ROOT / "book" / "eubo.ipynb"

MARKER = "COLAB-EMULATION "

pytestmark = pytest.mark.skipif(
    os.environ.get("UNLEARNKIT_COLAB_EMULATION") != "1",
    reason="the Colab emulation builds a 1.5 GB environment: set UNLEARNKIT_COLAB_EMULATION=1",
)


def colab_python() -> str:
    """A Python 3.12 interpreter (Colab's), or the one running the tests."""
    if os.environ.get("UNLEARNKIT_COLAB_PYTHON"):
        return os.environ["UNLEARNKIT_COLAB_PYTHON"]
    candidates = [shutil.which("python3.12") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.12*", "bin", "python3.12")))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys, venv; print(sys.version_info[:2] == (3, 12))"],
            check=False,
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return sys.executable


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=env, cwd=cwd, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode})\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def _installed(python: Path, env: dict[str, str], cwd: Path) -> dict[str, str]:
    out = _run([str(python), "-m", "pip", "list", "--format=json"], env, cwd).stdout
    return {item["name"].lower(): item["version"] for item in json.loads(out)}


def _reader_notebook(source: Path, repository_url: str, package_dir: Path) -> dict:
    """The chapter as the emulated reader runs it: Colab's kernel start-up first, the set-up
    cell installing from ``package_dir`` instead of the repository, and a last cell that
    reports what the kernel sees."""
    notebook = json.loads(source.read_text())
    cells = notebook["cells"]
    setup = next(cell for cell in cells if cell["cell_type"] == "code")
    text = "".join(setup["source"])
    assert f"git+{repository_url}" in text, "the set-up cell must install from repository.url"
    setup["source"] = text.replace(f"git+{repository_url}", package_dir.as_uri())

    def code_cell(text: str) -> dict:
        return {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": text}

    kernel_start = code_cell(
        textwrap.dedent(
            """\
            # What Colab's kernel has done before the reader's first cell.
            import importlib.util, sys
            import numpy, pandas
            _COLAB = {"numpy_before": numpy.__version__, "python": sys.executable,
                      "unlearnkit_preinstalled": importlib.util.find_spec("unlearnkit") is not None}
            """
        )
    )
    report = code_cell(
        textwrap.dedent(
            f"""\
            import importlib.metadata, json, sys
            import numpy, gpflow, unlearnkit, unlearnkit.gp
            _COLAB.update(numpy_loaded=numpy.__version__,
                          numpy_installed=importlib.metadata.version("numpy"),
                          gpflow=gpflow.__version__, unlearnkit_file=unlearnkit.__file__)
            print({MARKER!r} + json.dumps(_COLAB))
            """
        )
    )
    notebook["cells"] = [kernel_start, *cells, report]
    return notebook


EXECUTE = textwrap.dedent(
    """\
    # Runs in the emulated environment: execute the notebook like a Colab *Run all*.
    import json, os, sys
    import nbformat
    from nbclient import NotebookClient

    source, target, kernel_dir = sys.argv[1:4]
    os.makedirs(os.path.join(kernel_dir, "kernels", "colab"), exist_ok=True)
    with open(os.path.join(kernel_dir, "kernels", "colab", "kernel.json"), "w") as f:
        json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                   "display_name": "Colab emulation", "language": "python"}, f)
    os.environ["JUPYTER_PATH"] = kernel_dir
    notebook = nbformat.read(source, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="colab", allow_errors=False,
                            resources={"metadata": {"path": os.path.dirname(target)}})
    try:
        client.execute()
    finally:
        nbformat.write(notebook, target)
    """
)


def emulate(repository_root: Path, chapter: Path, workdir: Path) -> dict:
    """Build the Colab-like environment under ``workdir``, run ``chapter`` as a reader
    would, and return what the kernel saw and the package versions before and after."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    venv = workdir / "colab-venv"
    clock = time.perf_counter()
    _run([colab_python(), "-m", "venv", str(venv)], env, workdir)
    python = venv / "bin" / "python"
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    pins = [f"{name}=={version}" for name, version in COLAB_PREINSTALLED.items()]
    _run([str(python), "-m", "pip", "install", "--quiet", f"pip=={COLAB_PREINSTALLED['pip']}"], env, workdir)
    # --no-compile: byte-compiling TensorFlow's many sources takes time and changes
    # nothing the reader sees.
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-compile", *pins], env, workdir)
    before = _installed(python, env, workdir)
    seconds = {"colab_runtime": round(time.perf_counter() - clock)}
    clock = time.perf_counter()

    # The package as the repository serves it (no tests, no book, no build artefacts).
    package_dir = workdir / "unlearnkit-src"
    package_dir.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(repository_root / name, package_dir / name)
    shutil.copytree(
        repository_root / "unlearnkit",
        package_dir / "unlearnkit",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    url = yaml.safe_load((repository_root / "_config.yml").read_text())["repository"]["url"]
    notebook = _reader_notebook(chapter, url, package_dir)
    run_dir = workdir / "content"  # Colab's working directory: nothing of the checkout in it
    run_dir.mkdir()
    source = run_dir / chapter.name
    source.write_text(json.dumps(notebook))
    executed = run_dir / f"executed-{chapter.name}"
    (workdir / "execute.py").write_text(EXECUTE)
    failure = None
    try:
        _run(
            [str(python), str(workdir / "execute.py"), str(source), str(executed), str(workdir / "jupyter")],
            env,
            run_dir,
        )
    except AssertionError as error:
        failure = str(error)
    seconds["setup_cell_and_chapter"] = round(time.perf_counter() - clock)
    after = _installed(python, env, workdir)
    seen = None
    if executed.exists():
        for cell in json.loads(executed.read_text())["cells"]:
            for output in cell.get("outputs", []):
                text = "".join(output.get("text", ""))
                if MARKER in text:
                    seen = json.loads(text.split(MARKER, 1)[1].splitlines()[0])
    changed = {
        name: (version, after.get(name)) for name, version in before.items() if after.get(name) != version
    }
    added = {name: version for name, version in after.items() if name not in before}
    return {
        "python": _run([str(python), "--version"], env, workdir).stdout.strip(),
        "kernel": seen,
        "changed": changed,
        "added": added,
        "failure": failure,
        "seconds": seconds,
    }


def test_colab_reader_runs_a_chapter_without_changing_numpy() -> None:
    with tempfile.TemporaryDirectory(prefix="unlearnkit-colab-") as tmp:
        result = emulate(ROOT, CHAPTER, Path(tmp))
    # The result for the CI log and the reviewer (.ci/run prints it).
    (ROOT / "_build").mkdir(exist_ok=True)
    (ROOT / "_build" / "colab-emulation.json").write_text(json.dumps(result, indent=1) + "\n")
    assert result["failure"] is None, result["failure"]
    seen = result["kernel"]
    assert seen is not None, "the chapter did not reach its last cell"
    assert not seen["unlearnkit_preinstalled"], "the set-up cell must have installed unlearnkit"
    assert "colab-venv" in seen["python"] and "colab-venv" in seen["unlearnkit_file"]
    assert seen["numpy_before"] == COLAB_PREINSTALLED["numpy"]
    assert seen["numpy_installed"] == seen["numpy_before"], "installing unlearnkit changed NumPy on disk"
    assert seen["numpy_loaded"] == seen["numpy_before"]
    assert result["changed"] == {}, (
        f"installing unlearnkit changed preinstalled packages: {result['changed']}"
    )
    assert "unlearnkit" in result["added"] and "gpflow" in result["added"]
