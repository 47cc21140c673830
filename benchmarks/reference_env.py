"""The reference environments: virtual environments beside the main one, for tools that
cannot share it. Tests and benchmarks run scripts in them as subprocesses and exchange
.npy/.pth files.

- "cellpose" (`reference_python()`): PyTorch 2.13.0 (CPU) and Cellpose 3.1.1.2, the last
  Cellpose with the CPnet architecture; Cellpose needs numpy<2.1, so it never shares the
  main environment. At $BIOMODELS_REFERENCE_VENV, by default `.venv-cellpose`.
- "bioimageio-cellpose": bioimage.io's own tools (bioimageio.core 0.11) with Cellpose
  3.1.1.2 and TensorFlow 2.21 (numpy 2.0), where bioimageio.core runs a package's
  cellpose_flow_dynamics. At $BIOMODELS_BIOIMAGEIO_VENV, by default
  `.venv-bioimageio-cellpose`.

Each is created on first use (a few minutes; a lock keeps parallel test workers from
building it twice).
"""

import fcntl
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "benchmarks", "reference")
#: name -> (the variable that places it, its default folder, pip installs in order)
ENVIRONMENTS = {
    # torch first: pip takes the local CPU build of 2.13.0, which cellpose's torch>=1.6 then accepts
    "cellpose": ("BIOMODELS_REFERENCE_VENV", ".venv-cellpose", (("torch==2.13.0",), ("cellpose==3.1.1.2",))),
    # pydantic 2.13.5: bioimageio.spec 0.5.12 fails with 2.14
    "bioimageio-cellpose": ("BIOMODELS_BIOIMAGEIO_VENV", ".venv-bioimageio-cellpose",
                            (("tensorflow==2.21.*", "numpy<2.1", "torch==2.13.0", "cellpose==3.1.1.2",
                              "bioimageio.core==0.11.0", "pydantic==2.13.5"),)),
}


def venv_path(name="cellpose"):
    variable, default, _ = ENVIRONMENTS[name]
    return os.environ.get(variable, os.path.join(ROOT, default))


def environment_python(name):
    """The python of the environment `name` (ENVIRONMENTS), created if missing."""
    venv = venv_path(name)
    python = os.path.join(venv, "bin", "python")
    ready = os.path.join(venv, ".biomodels-ready")
    os.makedirs(os.path.dirname(venv) or ".", exist_ok=True)
    with open(venv.rstrip("/") + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(ready):
            subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
            pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            for requirements in ENVIRONMENTS[name][2]:
                subprocess.run(pip + list(requirements), check=True)
            open(ready, "w").close()
    return python


def reference_python():
    """The Cellpose reference environment's python, created if missing."""
    return environment_python("cellpose")


def run_script(name, *args, timeout=600):
    """Run benchmarks/reference/<name> in the reference environment; returns its stdout."""
    result = subprocess.run([reference_python(), os.path.join(SCRIPTS, name), *map(str, args)],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed in the reference environment:\n{result.stderr[-4000:]}")
    return result.stdout
