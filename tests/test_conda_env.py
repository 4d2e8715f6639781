"""The `--sdm conda` path, as far as it can be checked without conda or a channel: the env file the rules
name, its post-deploy script, and the whole chain (Snakemake finds the script, runs it in the new
environment from its copy under .snakemake/conda/, and it installs this checkout) with a stand-in
`conda` executable that creates an empty environment whose `python` records how it was called."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO

RULES = REPO / "workflow" / "rules"


def _conda_env() -> Path:
    """The env file of every rule: common.smk's CONDA_ENV, relative to workflow/rules as Snakemake reads it."""
    (value,) = re.findall(r'^CONDA_ENV = "([^"]+)"$', (RULES / "common.smk").read_text(), re.M)
    return (RULES / value).resolve()


def _post_deploy(env_file: Path) -> Path:
    """Snakemake's name for it: the env file's .yaml/.yml replaced by .post-deploy.sh."""
    return env_file.with_name(re.sub(r"\.ya?ml$", ".post-deploy.sh", env_file.name))


def _rules_and_envs() -> list[tuple[str, str | None]]:
    """(rule, the expression after its `conda:` directive) for every rule of the workflow."""
    found = []
    for smk in sorted(RULES.glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0]
            conda = re.search(r"^    conda:\n\s+(\S+)", block, re.M)
            found.append((name, conda.group(1) if conda else None))
    return found


def test_every_rule_names_the_workflow_env_and_it_exists():
    rules = _rules_and_envs()
    assert len(rules) > 10, rules
    missing = [name for name, env in rules if env != "CONDA_ENV" and name != "all"]
    assert not missing, f"rules without `conda: CONDA_ENV`: {missing}"
    env_file = _conda_env()
    assert env_file.is_file(), env_file
    assert env_file.is_relative_to(REPO / "workflow"), env_file


def test_workflow_env_is_environment_yml_without_the_editable_install():
    """Same channels and packages as environment.yml (which tests/test_packaging.py compares with
    pyproject.toml), minus `-e .[test]`, which would point into .snakemake/conda/ in the copy."""
    by_hand = yaml.safe_load((REPO / "environment.yml").read_text())
    rules = yaml.safe_load(_conda_env().read_text())
    assert rules["channels"] == by_hand["channels"]

    def split(env):
        plain = [d for d in env["dependencies"] if not isinstance(d, dict)]
        (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
        return plain, pip

    plain, pip = split(by_hand)
    rules_plain, rules_pip = split(rules)
    assert rules_plain == plain
    assert "-e .[test]" in pip, "environment.yml should install the checkout by hand"
    assert rules_pip == [line for line in pip if not line.startswith("-")]


def test_post_deploy_script_is_an_executable_shell_script():
    script = _post_deploy(_conda_env())
    assert script.is_file(), f"{script} missing: Snakemake looks for it beside {_conda_env().name}"
    assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    subprocess.run(["bash", "-n", str(script)], check=True)


# --- the script, run as Snakemake runs it ----------------------------------------------------------


def _fake_env(prefix: Path, record: Path) -> Path:
    """An environment at `prefix` whose python writes its arguments, working dir and
    BERTLOTTERY_SOURCE_DIR as JSON lines to `record`."""
    (prefix / "bin").mkdir(parents=True)
    python = prefix / "bin" / "python"
    python.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(record)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'args': sys.argv[1:], 'cwd': os.getcwd(),"
        " 'source': os.environ.get('BERTLOTTERY_SOURCE_DIR')}) + '\\n')\n"
    )
    python.chmod(0o755)
    return python


def _run_copy(tmp_path: Path, cwd: Path, source_dir: str | None) -> tuple[subprocess.CompletedProcess, Path]:
    """Copy the script to <workdir>/.snakemake/conda/<hash>.post-deploy.sh and run it with the env
    activated (CONDA_PREFIX), from `cwd`, as Snakemake does."""
    conda_dir = tmp_path / "work" / ".snakemake" / "conda"
    prefix = conda_dir / "0123abcd"
    record = tmp_path / "record.jsonl"
    _fake_env(prefix, record)
    copy = conda_dir / "0123abcd.post-deploy.sh"
    copy.write_bytes(_post_deploy(_conda_env()).read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "BERTLOTTERY_SOURCE_DIR"} | {"CONDA_PREFIX": str(prefix)}
    if source_dir is not None:
        env["BERTLOTTERY_SOURCE_DIR"] = source_dir
    out = subprocess.run(["bash", str(copy)], cwd=cwd, env=env, capture_output=True, text=True)
    return out, record


def _calls(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_post_deploy_installs_the_checkout_named_by_the_workflow(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    out, record = _run_copy(tmp_path, workdir, str(REPO))
    assert out.returncode == 0, out.stderr
    (call,) = _calls(record)
    assert call["args"] == ["-m", "pip", "install", "--no-deps", "-e", str(REPO)]


def test_post_deploy_falls_back_to_the_working_directory(tmp_path):
    out, record = _run_copy(tmp_path, REPO, None)
    assert out.returncode == 0, out.stderr
    (call,) = _calls(record)
    assert call["args"][-1] == str(REPO)


def test_post_deploy_without_a_checkout_stops_with_a_clear_error(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    out, record = _run_copy(tmp_path, workdir, None)
    assert out.returncode != 0
    assert "no bertlottery pyproject.toml" in out.stderr and "BERTLOTTERY_SOURCE_DIR" in out.stderr
    assert _calls(record) == []


# --- the whole chain, through Snakemake, with a stand-in conda --------------------------------------

FAKE_CONDA = """#!/usr/bin/env bash
# Stand-in for conda: just what Snakemake asks of it when it builds an environment.
set -eu
case "$*" in
  --version) echo "conda 24.11.0" ;;
  "info --json") echo '{"conda_prefix": "'"$FAKE_CONDA_BASE"'", "platform": "linux-64"}' ;;
  "config --get channel_priority --json") echo '{"get": {"channel_priority": "strict"}}' ;;
  "env create "*)
    prefix=$(echo "$*" | sed -E 's/.*--prefix "?([^" ]+)"?.*/\\1/')
    mkdir -p "$prefix/bin"
    cp "$FAKE_CONDA_BASE/python" "$prefix/bin/python"
    echo "$*" >> "$FAKE_CONDA_BASE/calls" ;;
  "clean "*) ;;  # Snakemake's default --conda-cleanup-pkgs tarballs
  *) echo "fake conda: unexpected arguments: $*" >&2; exit 2 ;;
esac
"""

FAKE_ACTIVATE = 'export CONDA_PREFIX="$1"; export PATH="$1/bin:$PATH"\n'


def test_snakemake_builds_the_env_and_installs_this_checkout(tmp_path):
    """`snakemake --sdm conda --conda-create-envs-only` from another working directory: the env file
    is copied under .snakemake/conda/, the post-deploy script beside it runs there in the new env
    (CONDA_PREFIX) and pip-installs the repository this Snakefile belongs to."""
    base = tmp_path / "conda"
    (base / "bin").mkdir(parents=True)
    (base / "bin" / "conda").write_text(FAKE_CONDA)
    (base / "bin" / "conda").chmod(0o755)
    (base / "bin" / "activate").write_text(FAKE_ACTIVATE)
    record = tmp_path / "record.jsonl"
    python = _fake_env(tmp_path / "template", record)
    (base / "python").write_bytes(python.read_bytes())
    (base / "python").chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "BERTLOTTERY_SOURCE_DIR"}
    env |= {"PATH": f"{base / 'bin'}{os.pathsep}{env['PATH']}", "FAKE_CONDA_BASE": str(base),
            "PYTHONPATH": str(REPO / "src")}
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--cores", "1", "--sdm", "conda", "--conda-create-envs-only",
        "--configfile", str(REPO / "config" / "smoke.yaml"),
    ]
    out = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    creates = (base / "calls").read_text().splitlines()
    assert len(creates) == 1, creates  # one env for every rule
    (copy,) = (workdir / ".snakemake" / "conda").glob("*.yaml")
    assert copy.read_text() == _conda_env().read_text()
    (script,) = (workdir / ".snakemake" / "conda").glob("*.post-deploy.sh")
    assert script.read_text() == _post_deploy(_conda_env()).read_text()
    (call,) = _calls(record)
    assert call["args"] == ["-m", "pip", "install", "--no-deps", "-e", str(REPO)]
    assert Path(call["cwd"]).resolve() == workdir.resolve()
    assert call["source"] == str(REPO)
