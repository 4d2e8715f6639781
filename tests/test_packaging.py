"""Packaging: the wheel carries what the package reads at run time, `--version`, and environment.yml
listing the same packages as pyproject.toml."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_command
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import bertlottery

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

# conda package name -> PyPI name, where they differ (conda entries of environment.yml).
CONDA_TO_PYPI = {"pytorch": "torch", "matplotlib-base": "matplotlib", "py-yaml": "pyyaml"}
# conda entries that are not Python packages of pyproject.toml.
CONDA_ONLY = {"python", "pip"}


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{args}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


# --- version ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[sys.executable, "-m", "bertlottery"], ["bertlottery"]])
def test_version_is_the_installed_metadata(command):
    if command == ["bertlottery"]:
        script = Path(sys.executable).with_name("bertlottery")
        if not script.exists():
            pytest.skip("no bertlottery console script beside this python")
        command = [str(script)]
    out = _run(command + ["--version"], env=os.environ | {"PYTHONPATH": str(REPO / "src")})
    assert out.stdout.strip() == f"bertlottery {importlib.metadata.version('bertlottery')}"


def test_metadata_version_is_the_source_version():
    """pyproject.toml takes the version from bertlottery.__version__ (one place)."""
    assert importlib.metadata.version("bertlottery") == bertlottery.__version__
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "bertlottery.__version__"}


# --- environment.yml and pyproject.toml -----------------------------------------------------------------


def _requirements_of_pyproject() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {canonicalize_name(r.name): r for r in map(Requirement, reqs)}


def _requirements_of_environment() -> tuple[dict[str, Requirement], str]:
    """The environment's packages (conda names mapped to PyPI), and its python spec."""
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    found: dict[str, Requirement] = {}
    python = ""
    for entry in env["dependencies"]:
        if isinstance(entry, dict):  # the pip: section
            for line in entry["pip"]:
                if line.startswith("-"):  # -e .[test]: the project itself
                    continue
                req = Requirement(line)
                found[canonicalize_name(req.name)] = req
            continue
        name, spec = re.match(r"^([A-Za-z0-9_.\-]+)\s*((?:[=<>!~].*)?)$", entry.strip()).groups()
        if name in CONDA_ONLY:
            python = spec if name == "python" else python
            continue
        # conda's `=1.2` means 1.2.*; ranges are written as in pip
        spec = re.sub(r"^=(?!=)", "==", spec) + (".*" if re.match(r"^=[^=<>]*$", spec) else "")
        pypi = CONDA_TO_PYPI.get(name, name)
        found[canonicalize_name(pypi)] = Requirement(f"{pypi}{spec}")
    return found, python


def test_environment_yml_lists_the_packages_of_pyproject():
    ours = _requirements_of_pyproject()
    env, python = _requirements_of_environment()
    assert sorted(env) == sorted(ours), (
        f"only in environment.yml: {sorted(set(env) - set(ours))}; "
        f"only in pyproject.toml: {sorted(set(ours) - set(env))}"
    )
    for name, req in env.items():
        pins = [s.version for s in req.specifier if s.operator == "=="]
        if pins:  # a pinned version (torch): inside pyproject's range
            assert all(ours[name].specifier.contains(v) for v in pins), f"{name}: {req} outside {ours[name]}"
        else:
            assert req.specifier == ours[name].specifier, f"{name}: environment.yml {req}, pyproject {ours[name]}"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    version = python.lstrip("=")
    assert version and Requirement(f"python{requires}").specifier.contains(version + ".0"), (python, requires)


# --- the wheel -----------------------------------------------------------------------------------------


def _installed_satisfies(req: Requirement) -> bool:
    try:
        return req.specifier.contains(Version(importlib.metadata.version(req.name)), prereleases=True)
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the source (pyproject, README, src) so the checkout stays clean."""
    src = tmp_path_factory.mktemp("source")
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copy(REPO / "README.md", src)
    shutil.copytree(REPO / "src", src / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
    # The environment's setuptools when it satisfies [build-system] (no download); else pip fetches it
    # from its configured index into an isolated build environment, as `pip install` does.
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    if all(_installed_satisfies(Requirement(r)) for r in requires):
        command += ["--no-build-isolation", "--no-index"]
    _run(command)
    (found,) = out.glob("bertlottery-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed (non-editable, no dependencies) into a directory of its own."""
    target = tmp_path_factory.mktemp("site")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
          str(wheel)])
    return target


def _outside_env(installed: Path) -> dict[str, str]:
    """Only the installed copy importable (the checkout's src is not on the path)."""
    return os.environ | {"PYTHONPATH": str(installed), "PYTHONNOUSERSITE": "1"}


def test_wheel_holds_every_subpackage_and_the_data_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent.relative_to(REPO / "src").as_posix() for p in (REPO / "src").rglob("__init__.py")}
    assert packages, "no packages found under src"
    for package in packages:
        assert f"{package}/__init__.py" in names, f"{package} is missing from the wheel"
    modules = {p.relative_to(REPO / "src").as_posix() for p in (REPO / "src" / "bertlottery").rglob("*.py")}
    assert modules <= names, f"missing modules: {sorted(modules - names)}"
    assert "bertlottery/resources/config.schema.yaml" in names
    assert "bertlottery/resources/paper_results.yaml" in names


def test_installed_wheel_finds_its_schema_and_paper_numbers(installed, tmp_path):
    probe = (
        "import bertlottery, json\n"
        "from bertlottery.settings import SCHEMA_PATH, TrainingSettings, load_schema\n"
        "from bertlottery.analysis.aggregate import PAPER_RESULTS_PATH, load_paper\n"
        "paper = load_paper()\n"
        "print(json.dumps({'package': bertlottery.__file__, 'schema': str(SCHEMA_PATH),\n"
        "                  'paper': str(PAPER_RESULTS_PATH), 'title': load_schema()['description'][:30],\n"
        "                  'lr': TrainingSettings.from_dict({}, where='probe').learning_rate,\n"
        "                  'paper_keys': sorted(paper)}))\n"
    )
    out = _run([sys.executable, "-c", probe], cwd=tmp_path, env=_outside_env(installed))
    import json

    seen = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("package", "schema", "paper"):
        assert Path(seen[key]).resolve().is_relative_to(installed.resolve()), (key, seen[key])
    assert seen["lr"] == 2e-5 and "performance" in seen["paper_keys"]
    help_ = _run([sys.executable, "-m", "bertlottery", "--help"], cwd=tmp_path, env=_outside_env(installed))
    assert "prepare-data" in help_.stdout
    version = _run([sys.executable, "-m", "bertlottery", "--version"], cwd=tmp_path, env=_outside_env(installed))
    assert version.stdout.strip() == f"bertlottery {bertlottery.__version__}"


def test_workflow_dry_run_with_the_installed_wheel(installed, tmp_path, tiny_model_dir):
    """The Snakefile validates the config against the installed package's schema and finds its paper
    numbers (an input of the report rules) without the source tree on the path."""
    out = _run(tiny_command(tmp_path, tiny_model_dir, "--dry-run", "--quiet", "rules"), cwd=tmp_path, env=_outside_env(installed))
    text = out.stdout + out.stderr
    assert "This was a dry-run" in text
    assert re.search(r"^claims\s+1$", text, re.M) and re.search(r"^tables\s+1$", text, re.M), text[-3000:]
