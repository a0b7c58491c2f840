"""Build of heart-ha: the heart._core extension = Cython layer + libheart.

libheart's C sources are picked by tools/heart_sources.py, the same rule
CMakeLists.txt uses: src_c/core/*.c plus one src_c/platform/<backend>/
(HEART_BACKEND, else detected from the OS; no backend is a build error).
"""
import importlib.util
import os
import sys
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent


def _load_rule():
    spec = importlib.util.spec_from_file_location(
        "heart_sources", ROOT / "tools" / "heart_sources.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rule = _load_rule()
try:
    backend = rule.pick_backend()
except rule.BackendError as exc:
    sys.exit(f"heart-ha build: {exc}")

c_sources = rule.sources(backend)
libraries = ["crypto", "m", "pthread"]
if backend == "sunos":
    libraries += ["socket", "nsl"]  # socket(3SOCKET), if_nametoindex on Solaris
compile_args = ["-std=gnu11", "-fvisibility=hidden", "-Wall",
                "-Wno-unused-function"]
if os.environ.get("HEART_DEBUG"):
    compile_args += ["-O0", "-g"]

ext = Extension(
    "heart._core._ext",
    sources=["heart/_core/_ext.pyx"] + c_sources,
    include_dirs=["src_c/include", "src_c/core"],
    define_macros=[("_GNU_SOURCE", None)],
    libraries=libraries,
    extra_compile_args=compile_args,
    depends=[str(p.relative_to(ROOT)) for p in (ROOT / "src_c").rglob("*.h")]
    + ["heart/_core/libheart.pxd"]
    + [str(p.relative_to(ROOT)) for p in (ROOT / "heart/_core").glob("*.pxi")],
)

from Cython.Build import cythonize  # noqa: E402  (after the backend check)

setup(
    ext_modules=cythonize(
        [ext],
        compiler_directives={"language_level": "3", "embedsignature": True},
        include_path=["."],
    ),
)
