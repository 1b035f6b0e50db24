#!/usr/bin/env python3
"""Create (or update) m2v's managed engine environment.

    python3 install/setup.py --env PATH [--device auto|cpu|cuda] [--ray] [--dev] [--python PY]

Idempotent: a stamp file in the environment records what was installed; a
second run with the same requirements only verifies the imports. Standard
library only, so Blender's bundled Python or any Python 3.11+ can run it (the engine stack needs 3.11).
Progress lines go to stdout as ``[step/total] text`` (the add-on shows them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STAMP = "m2v-env.json"
ENGINE_REQS = HERE / "requirements-engine.txt"
NODEPS_REQS = HERE / "requirements-nodeps.txt"
DEV_REQS = HERE / "requirements-dev.txt"
#: Ray for ``engine render --ray`` (with --ray, and with --dev for the tests).
RAY_REQS = HERE / "requirements-ray.txt"
LTS_REQS = HERE / "requirements-blender-lts.txt"
#: With --dev, Blender 4.2 LTS (bpy) goes into this sub-folder of the environment.
LTS_ENV = "blender-4.2"
#: Smaller CPU-only torch wheels, only when the user asks for --device cpu.
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

CHECK = r"""
import json, sys
import numpy, scipy, librosa, soundfile, open_clip, torch, torchvision, kornia
import taming.modules.diffusionmodules.model, taming.modules.vqvae.quantize
import opentimelineio
# The adapters are plugins: OTIO loads them by name (a direct import fails on their relative imports).
for name in ("fcp_xml", "fcpx_xml", "cmx_3600", "kdenlive"):
    opentimelineio.adapters.from_name(name).module()
cuda = torch.cuda.is_available()
mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
print(json.dumps({"python": sys.version.split()[0], "torch": torch.__version__,
                  "torch_cuda": torch.version.cuda, "cuda_available": cuda, "mps_available": mps,
                  "numpy": numpy.__version__, "librosa": librosa.__version__, "open_clip": open_clip.__version__}))
"""


def env_python(env: Path) -> Path:
    """The interpreter inside a virtual environment."""
    if os.name == "nt":
        return env / "Scripts" / "python.exe"
    return env / "bin" / "python"


def _say(step: int, total: int, text: str) -> None:
    print(f"[{step}/{total}] {text}", flush=True)


def _run(cmd: list[str]) -> None:
    print("  $ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def install_melt() -> None:
    """``--dev``: MLT's ``melt`` (Kdenlive's engine) for the hand-off test, best-effort from Debian's packages.

    Only as root where ``apt-get`` exists; anything else is a warning (the test is then skipped), never a failure.
    """
    import shutil

    if shutil.which("melt"):
        return
    if not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        print(
            "  warning: melt (MLT) is not installed and cannot be here (needs root and apt-get): "
            "the Kdenlive hand-off test will be skipped",
            flush=True,
        )
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "melt"]
    print("  adding melt (MLT) for the Kdenlive hand-off test", flush=True)
    for attempt in ([install], [["apt-get", "update"], install]):
        try:
            ok = all(
                subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900).returncode == 0
                for cmd in attempt
            )
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok and shutil.which("melt"):
            return
    print("  warning: apt-get could not install melt: the Kdenlive hand-off test will be skipped", flush=True)


def requirements_digest(files: list[Path], device: str) -> str:
    h = hashlib.sha256(device.encode())
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", required=True, help="folder of the environment to create or update")
    ap.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="cpu: CPU-only torch (smaller download); auto/cuda: PyPI's default build",
    )
    ap.add_argument("--dev", action="store_true", help="also install test and lint tools and Blender's bpy module")
    ap.add_argument("--ray", action="store_true", help="also install Ray, to render chains on a cluster (--ray)")
    ap.add_argument("--python", default=sys.executable, help="base interpreter for the environment (default: this one)")
    args = ap.parse_args(argv)

    env = Path(args.env).expanduser().resolve()
    py = env_python(env)
    version = subprocess.run(
        [args.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip()
    if tuple(int(x) for x in (version or "0.0").split(".")) < (3, 11):
        print(
            f"error: the engine needs Python 3.11 or newer; {args.python} is {version or 'not runnable'}",
            file=sys.stderr,
        )
        return 2
    with_ray = args.ray or args.dev
    files = [ENGINE_REQS, NODEPS_REQS] + ([DEV_REQS] if args.dev else []) + ([RAY_REQS] if with_ray else [])
    digest = requirements_digest(files, args.device)
    stamp_path = env / STAMP
    total = 4
    _say(1, total, f"environment at {env}")
    if not py.exists():
        if Path(args.python).resolve() == Path(sys.executable).resolve():
            venv.EnvBuilder(with_pip=True, clear=False).create(env)
        else:
            _run([args.python, "-m", "venv", str(env)])
    old = json.loads(stamp_path.read_text()) if stamp_path.exists() else {}
    if old.get("digest") == digest:
        _say(2, total, "packages already installed (requirements unchanged)")
    else:
        _say(2, total, "installing packages (torch is large: this can take several minutes)")
        pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
        extra = ["--extra-index-url", CPU_INDEX] if args.device == "cpu" else []
        _run(pip + extra + ["-r", str(ENGINE_REQS)])
        _run(pip + ["--no-deps", "-r", str(NODEPS_REQS)])
        if args.dev:
            _run(pip + ["-r", str(DEV_REQS)])
        if with_ray:
            _run(pip + ["-r", str(RAY_REQS)])
    if args.dev and sys.version_info[:2] == (3, 11):
        lts = env / LTS_ENV
        lts_py = env_python(lts)
        lts_stamp = lts / STAMP
        lts_digest = requirements_digest([LTS_REQS], "lts")
        if not lts_py.exists():
            venv.EnvBuilder(with_pip=True).create(lts)
        if not lts_stamp.exists() or json.loads(lts_stamp.read_text()).get("digest") != lts_digest:
            print("  adding Blender 4.2 LTS (bpy) for the add-on tests", flush=True)
            _run(
                [
                    str(lts_py),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--progress-bar",
                    "off",
                    "-r",
                    str(LTS_REQS),
                ]
            )
            lts_stamp.write_text(json.dumps({"digest": lts_digest}))
    if args.dev:
        install_melt()
    _say(3, total, "checking the engine's imports")
    proc = subprocess.run([str(py), "-c", CHECK], capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        print(f"error: the environment at {env} cannot import the engine's packages (see above)", file=sys.stderr)
        return 1
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info.update({"digest": digest, "device": args.device, "dev": args.dev, "ray": with_ray, "engine_src": str(ROOT)})
    tmp = stamp_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, stamp_path)
    found = "CUDA" if info["cuda_available"] else "Apple MPS" if info["mps_available"] else "CPU only"
    _say(4, total, f"ready: torch {info['torch']} ({found}), python {info['python']}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as e:
        print(f"error: setup step failed (exit {e.returncode}): {' '.join(map(str, e.cmd))}", file=sys.stderr)
        sys.exit(1)
