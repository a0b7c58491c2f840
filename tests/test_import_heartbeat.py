"""heart import-heartbeat: heartbeat v1 configurations (ha.cf, haresources,
authkeys) in tests/data/heartbeat/ are converted, and the result passes
``heart check-config`` for every node of the cluster.

Resource scripts and OCF agents the samples name are created as stubs in a
temporary tree (``--script-dir`` / ``--ocf-root``), so that check-config's
"exists and is executable" check is real and does not depend on what this
machine has installed.
"""
from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from heart import config, importhb

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python < 3.11
    import tomli as tomllib

DATA = Path(__file__).parent / "data" / "heartbeat"
ROOT = Path(__file__).resolve().parent.parent

SCRIPTS = {"resource.d": ["httpd"], "init.d": ["postgresql", "Xinetd"]}
AGENTS = ["Filesystem", "LVM", "MailTo", "apache"]

# Exactly the directives each sample cannot convert: (file, line, directive).
NOT_CONVERTED = {
    "classic": [("ha.cf", 4, "logfile"), ("ha.cf", 5, "logfacility")],
    "multilink": [
        ("ha.cf", 2, "debugfile"), ("ha.cf", 3, "use_logd"), ("ha.cf", 9, "serial"),
        ("ha.cf", 10, "baud"), ("ha.cf", 20, "respawn"), ("ha.cf", 21, "crm"),
        ("haresources", 5, "mysql::/etc/my.cnf"), ("haresources", 6, "192.0.2.22"),
        ("haresources", 6, "gamma"),
    ],
    "ipv6": [],
}


def _exe(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


@pytest.fixture
def tree(tmp_path: Path) -> dict:
    """Stub scripts (resource.d before init.d, like heartbeat) and OCF agents."""
    dirs = []
    for d, names in SCRIPTS.items():
        dirs.append(str(tmp_path / d))
        for n in names:
            _exe(tmp_path / d / n)
    (tmp_path / "init.d").mkdir(exist_ok=True)
    for a in AGENTS:
        _exe(tmp_path / "ocf" / "resource.d" / "heartbeat" / a)
    return {"script_dirs": dirs, "ocf_root": str(tmp_path / "ocf")}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="heart import-heartbeat", description=importhb.DESCRIPTION)
    importhb.add_arguments(p)
    return p


def _cli(argv: list[str], tree: dict) -> int:
    extra = ["--ocf-root", tree["ocf_root"]]
    for d in tree["script_dirs"]:
        extra += ["--script-dir", d]
    return importhb.run(_parser().parse_args(argv + extra))


def _check_config(path: Path, node: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "heart", "check-config", "-c", str(path),
                           "--node", node], capture_output=True, text=True, cwd=ROOT, check=False,
                          timeout=60)


def _write(conv: importhb.Conversion, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "heart.toml").write_text(conv.toml)
    key = out / "authkey"
    key.write_text(conv.key_file)
    key.chmod(0o600)
    return out / "heart.toml"


def _where(conv: importhb.Conversion) -> list[tuple]:
    return [(i.file, i.line, i.directive) for i in conv.not_converted]


# ---------------------------------------------------------------------------
# The samples
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("sample", sorted(NOT_CONVERTED))
def test_sample_converts_and_passes_check_config(sample, tree, tmp_path, capsys):
    out = tmp_path / "out"
    status = _cli([str(DATA / sample), "-o", str(out)], tree)
    printed = capsys.readouterr().out
    assert status == (3 if NOT_CONVERTED[sample] else 0), printed
    assert "passes heart check-config" in printed
    key = out / "authkey"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    conv = importhb.convert(str(DATA / sample), **tree)
    assert _where(conv) == NOT_CONVERTED[sample]
    for item in conv.not_converted:
        assert f"{item.file}:{item.line}: {item.directive}: not converted" in printed
    # check-config, as the daemon would load it, on every node of the cluster
    data = tomllib.loads((out / "heart.toml").read_text())
    nodes = [n["name"] for n in data["node"]]
    assert nodes == conv.nodes
    for node in nodes:
        res = _check_config(out / "heart.toml", node)
        assert res.returncode == 0, res.stderr
        assert f"this node {node}" in res.stdout


def test_classic(tree, tmp_path):
    conv = importhb.convert(str(DATA / "classic"), **tree)
    data = tomllib.loads(conv.toml)
    assert data["timing"] == {"interval": "2s", "deadtime": "30s", "warntime": "10s",
                              "initdead": "120s"}
    assert data["link"] == [{"name": "bcast-eth1", "kind": "broadcast", "port": 694,
                             "group": "255.255.255.255", "interface": "eth1"}]
    assert [(n["name"], n["id"]) for n in data["node"]] == [("alpha", 1), ("beta", 2)]
    res = {r["name"]: r for r in data["resource"]}
    assert list(res) == ["ip-192.0.2.10", "fs-data", "httpd"]
    assert res["ip-192.0.2.10"]["params"] == {"address": "192.0.2.10/24", "interface": "eth0"}
    assert res["fs-data"]["agent"] == "heartbeat:Filesystem"
    assert res["fs-data"]["params"] == {"device": "/dev/sdb1", "directory": "/data",
                                        "fstype": "ext4"}
    # found in resource.d, the first place heartbeat looks
    assert res["httpd"]["script"] == os.path.join(tree["script_dirs"][0], "httpd")
    assert data["group"] == [{"name": "ip-192.0.2.10-group",
                              "resources": ["ip-192.0.2.10", "fs-data", "httpd"],
                              "nodes": ["alpha", "beta"], "auto_failback": True}]
    cfg = config.load(str(_write(conv, tmp_path)), "beta")
    assert cfg.timing.interval_us == 2_000_000 and cfg.timing.deadtime_us == 30_000_000


def test_multilink(tree, tmp_path):
    conv = importhb.convert(str(DATA / "multilink"), **tree)
    data = tomllib.loads(conv.toml)
    assert data["timing"] == {"interval": "500ms", "deadtime": "5s", "warntime": "2s",
                              "initdead": "20s"}
    links = {lk["name"]: lk for lk in data["link"]}
    assert links["ucast-eth1"] == {"name": "ucast-eth1", "kind": "unicast", "port": 694,
                                   "interface": "eth1"}
    # udpport 695 came before mcast, but mcast names its own port
    assert links["mcast-eth2"]["port"] == 694
    assert links["mcast-eth2"]["group"] == "239.0.0.94"
    assert [n["addresses"] for n in data["node"]] == [
        {"ucast-eth1": "192.0.2.1"}, {"ucast-eth1": "192.0.2.2"}, {"ucast-eth1": "192.0.2.3"}]
    assert data["quorum"]["ping_nodes"] == ["192.0.2.254"]
    # the continued line became one group, in order
    assert data["group"][0]["resources"] == ["ip-192.0.2.20", "lvm-vg0", "postgresql"]
    assert data["group"][1] == {"name": "ip-192.0.2.21-group", "resources": ["ip-192.0.2.21"],
                                "nodes": ["beta", "alpha", "gamma"], "auto_failback": True}
    checks = [i for i in conv.report if i.action == importhb.CHECK]
    assert any(i.directive == "ucast eth1" and "alpha = 192.0.2.1" in i.message
               for i in checks)
    assert conv.key_file.splitlines()[-1].startswith("3 ")


def test_multilink_with_interface_and_prefix(tree, tmp_path):
    conv = importhb.convert(str(DATA / "multilink"), interface="eth0", prefix=24, **tree)
    assert ("haresources", 6, "192.0.2.22") not in _where(conv)
    assert ("haresources", 6, "gamma") not in _where(conv)
    data = tomllib.loads(conv.toml)
    assert data["group"][2]["nodes"] == ["gamma", "alpha", "beta"]
    changed = [i for i in conv.report if i.directive == "192.0.2.22"]
    assert [i.action for i in changed] == ["changed", "changed"]
    config.load(str(_write(conv, tmp_path)), "gamma")


def test_ipv6(tree, tmp_path):
    conv = importhb.convert(str(DATA / "ipv6"), **tree)
    data = tomllib.loads(conv.toml)
    res = {r["name"]: r for r in data["resource"]}
    assert res["ip-192.0.2.30"]["params"]["address"] == "192.0.2.30/24"   # from 255.255.255.0
    assert res["ip-2001-db8--30"]["params"] == {"address": "2001:db8::30/64",
                                                "interface": "eth0"}
    # "BETA.example.net" in haresources is node beta.example.net
    assert data["group"][1]["nodes"] == ["beta.example.net", "alpha.example.net"]
    assert all(g["auto_failback"] is False for g in data["group"])   # nice_failback on
    assert data["engine"] == {"realtime_priority": 10, "lock_memory": True}
    assert [lk["name"] for lk in data["link"]] == ["mcast-eth1", "bcast-eth2", "bcast-eth3"]
    assert data["timing"]["initdead"] == "10s"   # raised to deadtime, reported
    by = {(i.file, i.line, i.directive): i for i in conv.report}
    assert by[("ha.cf", 4, "initdead")].action == "changed"
    crc = by[("authkeys", 1, "auth 2")]
    assert crc.action == "changed" and "did NOT authenticate" in crc.message
    cfg = config.load(str(_write(conv, tmp_path)), "alpha.example.net")
    assert cfg.auth.send_key == 2


# ---------------------------------------------------------------------------
# authkeys
# ---------------------------------------------------------------------------

def test_random_key_is_new_each_time_and_valid(tree):
    a = importhb.convert(str(DATA / "classic"), **tree)
    b = importhb.convert(str(DATA / "classic"), **tree)
    assert a.key_file != b.key_file
    ka = [ln for ln in a.key_file.splitlines() if not ln.startswith("#")]
    assert len(ka) == 1 and ka[0].split()[0] == "1" and len(ka[0].split()[1]) == 64


def test_derived_keys_are_the_same_on_every_node(tree, tmp_path):
    a = importhb.convert(str(DATA / "multilink"), derive_key=True, **tree)
    b = importhb.convert(str(DATA / "multilink"), derive_key=True, **tree)
    assert a.key_file == b.key_file
    keys = [ln.split() for ln in a.key_file.splitlines() if not ln.startswith("#")]
    assert [k[0] for k in keys] == ["3", "2"]    # the sending key first; crc has no secret
    assert ("authkeys", 3, "1 crc") in _where(a)
    cfg = config.load(str(_write(a, tmp_path)), "alpha")
    assert cfg.auth.send_key == 3 and sorted(cfg.auth.keys) == [2, 3]


@pytest.mark.parametrize("text, line, words", [
    ("1 sha1 secret\n", None, "no \"auth N\" line"),
    ("auth 2\n1 sha1 secret\n", 1, "there is no key 2"),
    ("auth 1\n1 sha256 secret\n", 2, "unknown method 'sha256'"),
    ("auth 1\n1 sha1\n", 2, "expected \"1 sha1 SECRET\""),
    ("auth 1\n1 sha1 a\n1 md5 b\n", 3, "defined twice"),
    ("auth one\n1 sha1 a\n", 1, "expected \"auth N\""),
    ("auth 1\nkey sha1 a\n", 2, "got 'key'"),
])
def test_malformed_authkeys(tmp_path, text, line, words):
    src = _minimal(tmp_path)
    (src / "authkeys").write_text(text)
    with pytest.raises(importhb.HeartbeatImportError) as exc:
        importhb.convert(str(src))
    assert exc.value.file == "authkeys" and exc.value.line == line
    assert words in str(exc.value)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

def _minimal(tmp_path: Path, hacf: str = "bcast eth0\nnode a b\n",
             hares: str = "a 192.0.2.10/24/eth0\n") -> Path:
    src = tmp_path / "ha.d"
    src.mkdir(exist_ok=True)
    (src / "ha.cf").write_text(hacf)
    (src / "haresources").write_text(hares)
    (src / "authkeys").write_text("auth 1\n1 sha1 secret\n")
    return src


def test_missing_ha_cf(tmp_path, tree, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(importhb.HeartbeatImportError, match="ha.cf: does not exist"):
        importhb.convert(str(tmp_path / "empty"))
    assert _cli([str(tmp_path / "empty"), "-o", str(tmp_path / "out")], tree) == 1
    err = capsys.readouterr().err
    assert "ha.cf: does not exist" in err and "nothing was written" in err
    assert not (tmp_path / "out").exists()


def test_unknown_directive_is_reported(tmp_path):
    src = _minimal(tmp_path, "bcast eth0\ndeadtim 10\nnode a b\n")
    conv = importhb.convert(str(src))
    [item] = conv.not_converted
    assert (item.file, item.line, item.directive) == ("ha.cf", 2, "deadtim")
    assert "unknown directive" in item.message and "did you mean deadtime?" in item.message


def test_haresources_unknown_node(tmp_path):
    src = _minimal(tmp_path, hares="a 192.0.2.10/24/eth0\n\n# c\nc httpd\n")
    with pytest.raises(importhb.HeartbeatImportError) as exc:
        importhb.convert(str(src))
    assert str(exc.value).startswith("haresources:4: node 'c' is not one of the nodes in "
                                     "ha.cf (a, b)")


@pytest.mark.parametrize("hacf, line, words", [
    ("bcast eth0\nkeepalive fast\nnode a b\n", 2, "'fast' is not a heartbeat time"),
    ("bcast eth0\nkeepalive 2\ndeadtime 1\nnode a b\n", 3, "not longer than keepalive"),
    ("mcast eth0 192.0.2.1 694 1 0\nnode a b\n", 1, "not a multicast address"),
    ("ucast eth0 peer.example.net\nnode a b\n", 1, "not a numeric IP address"),
    ("bcast eth0\nnode a a\n", 2, "listed twice"),
    ("bcast eth0\n", None, "no node directive"),
    ("serial /dev/ttyS0\nnode a b\n", None, "no bcast, mcast or ucast link"),
])
def test_bad_ha_cf(tmp_path, hacf, line, words):
    src = _minimal(tmp_path, hacf)
    with pytest.raises(importhb.HeartbeatImportError) as exc:
        importhb.convert(str(src))
    assert exc.value.line == line and words in str(exc.value)


def test_time_units(tmp_path):
    src = _minimal(tmp_path, "keepalive 250ms\ndeadtime 1.5\nwarntime 750000us\n"
                             "initdead 3sec\nbcast eth0\nnode a b\n")
    data = tomllib.loads(importhb.convert(str(src)).toml)
    assert data["timing"] == {"interval": "250ms", "deadtime": "1500ms", "warntime": "750ms",
                              "initdead": "3s"}


def test_ucast_with_peer_addresses_only(tmp_path):
    # the usual per-node file: only the peer's address
    src = _minimal(tmp_path, "ucast eth1 192.0.2.2\nbcast eth0\nnode a b\n")
    conv = importhb.convert(str(src))
    assert _where(conv) == [("ha.cf", 1, "ucast eth1")]
    assert "ucast" not in conv.toml.split("[[link]]", 1)[1]
    conv = importhb.convert(str(src), node_addresses={"a": ["192.0.2.1"]})
    assert _where(conv) == []
    data = tomllib.loads(conv.toml)
    assert [n["addresses"] for n in data["node"]] == [{"ucast-eth1": "192.0.2.1"},
                                                      {"ucast-eth1": "192.0.2.2"}]
    config.load(str(_write(conv, tmp_path / "out")), "a")


def test_missing_script_is_reported(tmp_path):
    src = _minimal(tmp_path, hares="a 192.0.2.10/24/eth0 nosuchservice\n")
    conv = importhb.convert(str(src), script_dirs=[str(tmp_path / "none")])
    [item] = [i for i in conv.report if i.directive == "nosuchservice"]
    assert item.action == "check" and "check-config fails until it exists" in item.message
    with pytest.raises(config.ConfigError, match="nosuchservice does not exist"):
        config.load(str(_write(conv, tmp_path / "out")), "a")


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------

def test_cli_refuses_to_overwrite(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert _cli([str(DATA / "ipv6"), "-o", str(out)], tree) == 0
    first = (out / "authkey").read_text()
    assert _cli([str(DATA / "ipv6"), "-o", str(out)], tree) == 1
    assert "use --force" in capsys.readouterr().err
    assert (out / "authkey").read_text() == first
    assert _cli([str(DATA / "ipv6"), "-o", str(out), "--force"], tree) == 0
    assert (out / "authkey").read_text() != first
    assert stat.S_IMODE((out / "authkey").stat().st_mode) == 0o600


def test_cli_without_output_prints_and_writes_nothing(tree, tmp_path, capsys):
    assert _cli([str(DATA / "classic")], tree) == 3
    cap = capsys.readouterr()
    assert tomllib.loads(cap.out)["cluster"]["name"] == "heartbeat"
    assert "ha.cf:4: logfile: not converted" in cap.err
    assert list(tmp_path.iterdir()) == [p for p in tmp_path.iterdir()
                                        if p.name in ("resource.d", "init.d", "ocf")]


def test_ip_label_and_broadcast_are_reported(tmp_path):
    src = _minimal(tmp_path, hares="a IPaddr::192.0.2.10/24/eth0:1/192.0.2.127\n")
    conv = importhb.convert(str(src))
    msgs = [i.message for i in conv.report if i.directive.startswith("IPaddr::")]
    assert any("label eth0:1 was dropped" in m for m in msgs)
    assert any("broadcast 192.0.2.127 dropped" in m for m in msgs)
    data = tomllib.loads(conv.toml)
    assert data["resource"][0]["params"] == {"address": "192.0.2.10/24", "interface": "eth0"}
