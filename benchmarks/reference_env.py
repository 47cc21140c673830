"""The reference environment: a separate virtual environment with PyTorch 2.13.0 (CPU)
and Cellpose 3.1.1.2, the last Cellpose with the CPnet architecture. Cellpose needs
numpy<2.1, so it never shares the main environment; tests and benchmarks run scripts
in it as subprocesses and exchange .npy/.pth files.

`reference_python()` creates it on first use (about 1.5 minutes; a lock keeps parallel
test workers from building it twice) at $BIOMODELS_REFERENCE_VENV, by default
`.venv-cellpose` in the repository.
"""

import fcntl
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "benchmarks", "reference")
REQUIREMENTS = ("torch==2.13.0", "cellpose==3.1.1.2")


def venv_path():
    return os.environ.get("BIOMODELS_REFERENCE_VENV", os.path.join(ROOT, ".venv-cellpose"))


def reference_python():
    """The reference environment's python, created if missing."""
    venv = venv_path()
    python = os.path.join(venv, "bin", "python")
    ready = os.path.join(venv, ".biomodels-ready")
    os.makedirs(os.path.dirname(venv) or ".", exist_ok=True)
    with open(venv.rstrip("/") + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(ready):
            subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
            pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            # torch first: pip takes the local CPU build of 2.13.0, which cellpose's torch>=1.6 then accepts
            subprocess.run(pip + [REQUIREMENTS[0]], check=True)
            subprocess.run(pip + [REQUIREMENTS[1]], check=True)
            open(ready, "w").close()
    return python


def run_script(name, *args, timeout=600):
    """Run benchmarks/reference/<name> in the reference environment; returns its stdout."""
    result = subprocess.run([reference_python(), os.path.join(SCRIPTS, name), *map(str, args)],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed in the reference environment:\n{result.stderr[-4000:]}")
    return result.stdout
