"""Building the product's wheel, and installing the product into a fresh virtual environment.

``test_install.py`` builds the wheel (:func:`build_wheel`); ``test_dockerfile.py`` installs the
product with the Dockerfile's own pip command into a :class:`Venv`. A fresh venv sees nothing
of the repository or of ``.venv`` (no system site packages, no PYTHONPATH, not run from the
repository), so only what the install put there can be imported. Dependencies come from the
package index through pip's cache: after ``make venv`` a warm machine installs from locally
cached wheels.

The venv is made without pip of its own: the tests' pip installs into it (``pip --python``),
which saves installing and byte-compiling pip there (~3 CPU-s); nothing of the product runs
pip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.settings import REPO_ROOT

#: Seconds one pip run may take (a cold cache downloads chDB, ~150 MB).
INSTALL_TIMEOUT = 900.0
#: What building the wheel reads: pyproject.toml's readme, packages and package-dir.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "streams", "schemas")
#: Variables that would let a child see something other than its own install.
LEAKY = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")


def output_tail(done: subprocess.CompletedProcess[str], lines: int = 40) -> str:
    text = (done.stdout or "") + (done.stderr or "")
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Venv:
    """A virtual environment made from the interpreter running the tests."""

    root: Path

    @classmethod
    def create(cls, root: Path) -> Venv:
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120
        )
        return cls(root)

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process of this venv: its ``bin`` first, no SPM_* of ours."""
        env = {k: v for k, v in os.environ.items() if k not in LEAKY and not k.startswith("SPM_")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', os.defpath)}"
        env["VIRTUAL_ENV"] = str(self.root)
        return {**env, **extra}

    def run(
        self, *args: str | Path, cwd: Path, timeout: float = 120.0, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run a command of this venv (``args[0]`` is looked up in its ``bin`` first)."""
        argv = [str(arg) for arg in args]
        argv[0] = shutil.which(argv[0], path=str(self.bin)) or argv[0]
        return subprocess.run(
            argv,
            cwd=cwd,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def pip_install(self, *args: str | Path, cwd: Path, **env: str) -> None:
        """``pip install ARGS`` into this venv (the tests' pip, run on the venv's interpreter by
        ``--python``); a failure shows pip's last lines."""
        done = self.run(
            sys.executable,
            "-m",
            "pip",
            "--python",
            self.python,
            "install",
            *args,
            cwd=cwd,
            timeout=INSTALL_TIMEOUT,
            **env,
        )
        assert done.returncode == 0, f"pip install {' '.join(map(str, args))}:\n{output_tail(done)}"


def build_wheel(out: Path) -> Path:
    """The product's wheel, built (``pip wheel --no-deps``) from a clean copy of its sources.

    A copy, because an in-tree build reuses ``build/`` and could ship modules that no longer
    exist in the tree.
    """
    source = out / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in WHEEL_SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out / "dist"), str(source)],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"building the wheel failed:\n{output_tail(done)}"
    [wheel] = (out / "dist").glob("*.whl")
    return wheel
