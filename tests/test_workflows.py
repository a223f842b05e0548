"""The publishing workflow: lint-clean (actionlint), runs the README's commands, deploys
``_build/html`` to GitHub Pages only from a push to main, and the README names the address
the book is published at (derived from ``repository.url`` in ``_config.yml``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
BOOK_WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
ON_MAIN_PUSH = "github.event_name == 'push' && github.ref == 'refs/heads/main'"


def readme_commands() -> dict[str, str]:
    """The README's two commands: ``{"build": ..., "test": ...}``."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(pip install -r requirements\.txt && .+)$", readme, flags=re.MULTILINE)
    found = {}
    for command in commands:
        if "jupyter-book build" in command:
            found["build"] = command
        elif "pytest" in command:
            found["test"] = command
    assert set(found) == {"build", "test"}, f"the README must give a build and a test command: {commands}"
    return found


def pages_url(url: str | None = None) -> str:
    """``https://github.com/OWNER/REPO`` -> ``https://OWNER.github.io/REPO/`` (GitHub Pages'
    address of a project site); by default for ``repository.url`` in ``_config.yml``."""
    if url is None:
        url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", url)
    assert match, f"repository.url is not a GitHub repository: {url}"
    owner, repo = match.groups()
    return f"https://{owner.lower()}.github.io/{repo}/"


def _actionlint() -> str:
    found = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("actionlint is not installed (requirements.txt installs it)")
    return found


def _workflow(path: Path) -> dict:
    workflow = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def _steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def test_there_are_workflows() -> None:
    assert BOOK_WORKFLOW in WORKFLOWS


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_passes(workflow: Path) -> None:
    result = subprocess.run(
        [_actionlint(), "-no-color", str(workflow.relative_to(ROOT))],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The linter really checks: a workflow with a missing job and a misspelt input fails."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: nowhere\n    steps:\n"
        "      - uses: actions/upload-pages-artifact@v4\n        with:\n          pathh: x\n"
    )
    result = subprocess.run(
        [_actionlint(), "-no-color", str(broken)], check=False, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "nowhere" in result.stdout and "pathh" in result.stdout


def test_triggers_are_main_pushes_and_pull_requests() -> None:
    triggers = _workflow(BOOK_WORKFLOW)["on"]
    assert "main" in triggers["push"]["branches"]
    assert "pull_request" in triggers


def test_build_job_runs_the_readme_commands() -> None:
    workflow = _workflow(BOOK_WORKFLOW)
    runs = [step.get("run", "").strip() for step in _steps(workflow["jobs"]["build"])]
    commands = readme_commands()
    assert commands["test"] in runs
    assert commands["build"] in runs
    assert runs.index(commands["test"]) < runs.index(commands["build"])
    setup = next(
        s for s in _steps(workflow["jobs"]["build"]) if s.get("uses", "").startswith("actions/setup-python")
    )
    assert setup["with"]["cache-dependency-path"] == "requirements.txt"


def test_only_a_push_to_main_deploys() -> None:
    jobs = _workflow(BOOK_WORKFLOW)["jobs"]
    upload = [
        s for s in _steps(jobs["build"]) if s.get("uses", "").startswith("actions/upload-pages-artifact@")
    ]
    assert len(upload) == 1
    assert upload[0]["with"]["path"] == "_build/html"
    assert upload[0]["if"] == ON_MAIN_PUSH
    deploying = {
        name for name, job in jobs.items() if any("deploy-pages" in s.get("uses", "") for s in _steps(job))
    }
    assert deploying == {"deploy"}
    deploy = jobs["deploy"]
    assert deploy["if"] == ON_MAIN_PUSH
    assert deploy["needs"] == "build"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    # The workflow as a whole may only read the repository.
    assert _workflow(BOOK_WORKFLOW)["permissions"] == {"contents": "read"}


def test_ci_runs_the_readme_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    for command in readme_commands().values():
        assert command in ci


def test_readme_names_the_published_book() -> None:
    assert pages_url() in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    ("repository", "site"),
    [
        ("https://github.com/unlearnkit/unlearnkit", "https://unlearnkit.github.io/unlearnkit/"),
        ("https://github.com/Some-Org/my.book.git", "https://some-org.github.io/my.book/"),
    ],
)
def test_pages_url_from_repository_url(repository: str, site: str) -> None:
    assert pages_url(repository) == site
