import subprocess
import sys

from click.testing import CliRunner

from circuitdb.cli import cli, main


def test_help_lists_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output


def run_main(args):
    return subprocess.run([sys.executable, "-m", "circuitdb", *args], capture_output=True, text=True)


def test_unknown_command_is_usage_error_exit_1():
    r = run_main(["no-such-command"])
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
