"""cli.py: every command of the table resolves to its module's `main_<command>`, `--help` lists them all,
and an unknown command exits non-zero with the usage."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertlottery import cli


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_resolves_to_its_main_function(command):
    module_name, help_ = cli.COMMANDS[command]
    module = importlib.import_module(module_name)
    entry = getattr(module, "main_" + command.replace("-", "_"), None)
    assert callable(entry), f"{module_name} has no main_{command.replace('-', '_')}"
    assert help_ and help_ == help_.strip()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m bertlottery ...` in a fresh interpreter that imports the package under test."""
    package_root = str(Path(cli.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "bertlottery", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m bertlottery <command> [options]")
    commands = result.stdout.split("\ncommands:\n", 1)[1]
    listed = [line.split()[0] for line in commands.splitlines() if line.strip()]
    assert listed == list(cli.COMMANDS)
    for name, (_, help_) in cli.COMMANDS.items():
        assert help_ in result.stdout, name


def test_no_arguments_prints_the_usage(capsys):
    cli.main([])
    assert capsys.readouterr().out == cli._usage() + "\n"


def test_unknown_command_exits_non_zero_with_the_usage():
    result = run_cli("no-such-command")
    assert result.returncode != 0
    assert "bertlottery: unknown command 'no-such-command'" in result.stderr
    assert "usage: python -m bertlottery <command> [options]" in result.stderr
    assert all(name in result.stderr for name in cli.COMMANDS)


def test_unknown_command_in_process_raises_system_exit():
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert "unknown command" in str(exc.value.code) and cli._usage() in str(exc.value.code)
