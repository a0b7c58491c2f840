"""The shape of the project that the design card fixes."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import heart._core as core

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import heart_sources


def test_no_python_h_under_src_c():
    include = re.compile(r'^\s*#\s*include\s*[<"]Python\.h[>"]', re.MULTILINE)
    offenders = [p for p in (ROOT / "src_c").rglob("*.[ch]")
                 if include.search(p.read_text(errors="replace"))]
    assert offenders == []


def test_platform_code_only_in_platform_folders():
    """Core code must not include an OS-specific header for the jobs the
    platform interface owns."""
    for p in (ROOT / "src_c" / "core").glob("*.c"):
        text = p.read_text()
        for header in ("sys/epoll.h", "sys/timerfd.h", "sys/eventfd.h", "linux/"):
            assert header not in text, f"{p.name} includes {header}"


def test_source_rule_picks_core_plus_one_backend():
    srcs = heart_sources.sources("linux")
    assert all(s.startswith(("src_c/core/", "src_c/platform/linux/")) for s in srcs)
    assert any(s.startswith("src_c/platform/linux/") for s in srcs)
    none = heart_sources.sources("none")
    assert not any("platform/linux" in s for s in none)
    with pytest.raises(heart_sources.BackendError, match="bogus"):
        heart_sources.pick_backend("bogus")
    with pytest.raises(heart_sources.BackendError, match="HEART_BACKEND=none"):
        heart_sources.pick_backend(None, system="plan9")
    # The folders the porting issue names: platform/sunos (DLPI), platform/bsd.
    for system, backend in (("sunos", "sunos"), ("freebsd", "bsd"), ("darwin", "bsd"),
                            ("openbsd", "bsd"), ("netbsd", "bsd"), ("linux", "linux")):
        assert heart_sources.pick_backend(None, system=system) == backend
        srcs = heart_sources.sources(backend)
        assert any(s.startswith(f"src_c/platform/{backend}/") for s in srcs)
        assert all(s.startswith(("src_c/core/", f"src_c/platform/{backend}/")) for s in srcs)


def test_source_rule_stops_on_a_detected_backend_without_a_folder(tmp_path, monkeypatch):
    """A port whose folder is missing is a build error naming the folder and
    HEART_BACKEND=none, not a silent fallback."""
    for d in ("core", "platform/linux", "platform/none"):
        (tmp_path / d).mkdir(parents=True)
    monkeypatch.setattr(heart_sources, "SRC", tmp_path)
    monkeypatch.delenv("HEART_BACKEND", raising=False)
    with pytest.raises(heart_sources.BackendError, match="src_c/platform/bsd/") as exc:
        heart_sources.pick_backend(None, system="freebsd")
    assert "not written yet" in str(exc.value) and "HEART_BACKEND=none" in str(exc.value)
    assert heart_sources.pick_backend("none") == "none"


def test_source_rule_script_output_is_what_cmake_reads():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "heart_sources.py"),
                          "--backend", "none"], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "backend=none"
    assert out[1:] == heart_sources.sources("none")


def _stub_names():
    tree = ast.parse((ROOT / "heart" / "_core" / "__init__.pyi").read_text())
    names, members = set(), {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        if isinstance(node, ast.ClassDef):
            members[node.name] = {
                n.name if isinstance(n, ast.FunctionDef) else n.target.id
                for n in node.body
                if isinstance(n, ast.FunctionDef)
                or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))}
    return names, members


def test_stubs_match_the_module():
    names, members = _stub_names()
    public = set(core.__all__)
    assert public <= names, f"missing from the stub: {public - names}"
    for cls in ("Engine", "Event", "Keyring"):
        runtime = {n for n in dir(getattr(core, cls)) if not n.startswith("_")}
        stub = {n for n in members[cls] if not n.startswith("_")}
        assert runtime == stub, f"{cls}: stub-only {stub - runtime}, missing {runtime - stub}"
