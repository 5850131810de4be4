#!/usr/bin/env python3
"""Makes TOOL_DIR/.venv hold TOOL_DIR/requirements.txt, once; the tests call it before using a
Python tool (moto, schemathesis), so nothing needs a manual install.

    python3 tools/ensure_venv.py tools/moto

A stamp (a copy of the requirements) is written last, so a half-made virtualenv is never taken for
a ready one, and a change to the requirements makes it again. Several test binaries may get here
at once: one installs, the others wait on the lock.
"""

import fcntl
import pathlib
import shutil
import subprocess
import sys
import tempfile


def main(tool_dir: pathlib.Path) -> None:
    requirements = (tool_dir / "requirements.txt").read_bytes()
    venv = tool_dir / ".venv"
    stamp = venv / "installed-requirements.txt"

    def ready() -> bool:
        return stamp.is_file() and stamp.read_bytes() == requirements

    if ready():
        return
    lock_path = pathlib.Path(tempfile.gettempdir()) / f"hermes-venv-{tool_dir.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():
            return
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin/pip"), "install", "--quiet", "--disable-pip-version-check",
             "-r", str(tool_dir / "requirements.txt")],
            check=True,
        )
        stamp.write_bytes(requirements)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ensure_venv.py TOOL_DIR")
    main(pathlib.Path(sys.argv[1]).resolve())
