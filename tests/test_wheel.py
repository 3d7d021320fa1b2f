"""The package installs from a wheel: build it, install it into a fresh venv outside
the repo, and run ``circuitdb --help`` and a query-file lookup from a temp directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__",
                                ".pytest_cache", "target", ".circuitdb", "runs", "*.pyc")


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 180) -> str:
    r = subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_repo(tmp_path: Path) -> None:
    # Build from a copy so the repo gets no build/ or *.egg-info litter.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=IGNORE)
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)]
    quick = subprocess.run([*build, "--no-isolation"], cwd=str(tmp_path), capture_output=True, text=True, timeout=180)
    if quick.returncode != 0:
        # This interpreter's setuptools/wheel are too old (e.g. a venv's bundled ones):
        # build in an isolated environment from PyPI instead.
        assert "dependencies" in quick.stdout + quick.stderr, quick.stdout[-2000:] + quick.stderr[-2000:]
        _run(build, tmp_path, timeout=300)
    wheels = list(dist.glob("circuitdb-*.whl"))
    assert len(wheels) == 1
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    for needed in ("circuitdb/cli/__init__.py", "circuitdb/loaders/__init__.py", "circuitdb/queries/__init__.py",
                   "circuitdb/cypher/__init__.py", "circuitdb/docker/pom.xml", "circuitdb/docker/compose.yml",
                   "circuitdb/docker/launcher/src/main/java/org/circuitdb/neo4j/CircuitdbNeo4j.java"):
        assert needed in names, f"{needed} missing from the wheel"
    assert any(n.startswith("circuitdb/cypher/schema/") and n.endswith(".cypher") for n in names)

    # A fresh venv outside the repo; system site-packages supply the heavy deps (torch, ...).
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], tmp_path)
    vpy = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(vpy), "install", "-q", "--no-deps",
          "--disable-pip-version-check", "--no-warn-script-location", str(wheels[0])], tmp_path)

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    help_text = _run([str(venv / "bin" / "circuitdb"), "--help"], work, env)
    assert "Usage" in help_text and "db" in help_text

    probe = (
        "import circuitdb, circuitdb.loaders, circuitdb.queries\n"
        "from circuitdb import catalog\n"
        "from importlib import resources\n"
        "name = catalog.names('schema')[0]\n"
        "stmt = catalog.load('schema', name)\n"
        "print(circuitdb.__file__)\n"
        "print(circuitdb.loaders.__file__)\n"
        "print(name, bool(stmt.text.strip()))\n"
        "print(resources.files('circuitdb.docker').joinpath('pom.xml').is_file())\n"
    )
    out = _run([str(vpy), "-c", probe], work, env).splitlines()
    site = str((venv / "lib").resolve())
    assert out[0].startswith(site) and out[1].startswith(site), f"imports resolved outside the venv: {out[:2]}"
    assert not out[0].startswith(str(REPO))
    assert out[2].endswith("True") and out[3] == "True"
