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
                              "initdead": "2m"}
    assert data["auth"] == {"key_file": "authkey", "send_key": 1}
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
    assert data["timing"] == {"interval": "1s", "deadtime": "10s",
                              "warntime": "5s",      # no warntime: heartbeat's, deadtime / 2
                              "initdead": "10s"}     # raised to deadtime, reported
    by = {(i.file, i.line, i.directive): i for i in conv.report}
    assert by[("ha.cf", 4, "initdead")].action == "changed"
    assert by[("ha.cf", None, "warntime")].action == "changed"
    assert "heartbeat's default, 5s (half the deadtime)" in by[("ha.cf", None, "warntime")].message
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
    assert tomllib.loads(a.toml)["auth"]["send_key"] == 3
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
    assert "unknown directive" in item.message and 'did you mean "deadtime"?' in item.message


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
    assert data["timing"] == {"interval": "250ms", "deadtime": "1.5s", "warntime": "750ms",
                              "initdead": "3s"}
    # Heart keeps microseconds: 1500us is not truncated to 1ms (nor rounded to 2ms)
    src = _minimal(tmp_path, "keepalive 1500usec\ndeadtime 10msec\nwarntime 4.5ms\n"
                             "initdead 1\nbcast eth0\nnode a b\n")
    data = tomllib.loads(importhb.convert(str(src)).toml)
    assert data["timing"] == {"interval": "1500us", "deadtime": "10ms", "warntime": "4500us",
                              "initdead": "1s"}


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


def _files(d: Path) -> dict[str, tuple]:
    """Every path under d with its kind, size and modification time."""
    return {str(p.relative_to(d)): (p.is_dir(), p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in d.rglob("*")}


def test_cli_without_output_prints_and_writes_nothing(tree, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cwd_before, sample_before = _files(tmp_path), _files(DATA / "classic")
    assert set(cwd_before) >= {"resource.d", "init.d", "ocf"}
    assert _cli([str(DATA / "classic")], tree) == 3
    cap = capsys.readouterr()
    assert tomllib.loads(cap.out)["cluster"]["name"] == "heartbeat"
    assert "ha.cf:4: logfile: not converted" in cap.err
    assert _files(tmp_path) == cwd_before
    assert _files(DATA / "classic") == sample_before
    assert not [p for p in tmp_path.rglob("*") if p.name in ("heart.toml", "authkey")]


def test_ip_label_and_broadcast_are_reported(tmp_path):
    src = _minimal(tmp_path, hares="a IPaddr::192.0.2.10/24/eth0:1/192.0.2.127\n")
    conv = importhb.convert(str(src))
    msgs = [i.message for i in conv.report if i.directive.startswith("IPaddr::")]
    assert any("label eth0:1 was dropped" in m for m in msgs)
    assert any("broadcast 192.0.2.127 dropped" in m for m in msgs)
    data = tomllib.loads(conv.toml)
    assert data["resource"][0]["params"] == {"address": "192.0.2.10/24", "interface": "eth0"}


# ---------------------------------------------------------------------------
# Review fixes
# ---------------------------------------------------------------------------

def test_absent_timing_gets_heartbeats_defaults(tmp_path):
    """No keepalive/deadtime/warntime/initdead: heartbeat's defaults (its
    config.c: 1s, 30s, deadtime / 2, deadtime when over 10s) are written, each
    reported, not Heart's 100ms/500ms."""
    src = _minimal(tmp_path)
    conv = importhb.convert(str(src))
    data = tomllib.loads(conv.toml)
    assert data["timing"] == {"interval": "1s", "deadtime": "30s", "warntime": "15s",
                              "initdead": "30s"}
    items = {i.directive: i for i in conv.report if i.file == "ha.cf" and i.line is None
             and i.directive in ("keepalive", "deadtime", "warntime", "initdead")}
    assert sorted(items) == ["deadtime", "initdead", "keepalive", "warntime"]
    assert all(i.action == "changed" and "heartbeat's default" in i.message
               for i in items.values())
    assert "# heartbeat's default keepalive" in conv.toml
    cfg = config.load(str(_write(conv, tmp_path / "out")), "a")
    assert (cfg.timing.interval_us, cfg.timing.warntime_us, cfg.timing.deadtime_us,
            cfg.timing.initdead_us) == (1_000_000, 15_000_000, 30_000_000, 30_000_000)


@pytest.mark.parametrize("deadtime, initdead", [("5", "12s"), ("8", "16s"), ("20", "20s")])
def test_default_initdead_follows_heartbeat(tmp_path, deadtime, initdead):
    src = _minimal(tmp_path, f"keepalive 500ms\ndeadtime {deadtime}\nbcast eth0\nnode a b\n")
    conv = importhb.convert(str(src))
    data = tomllib.loads(conv.toml)
    assert data["timing"]["initdead"] == initdead
    config.load(str(_write(conv, tmp_path / "out")), "a")


def test_default_warntime_is_adjusted_to_hearts_rule(tmp_path):
    # deadtime / 2 = 1s is not above keepalive 1s: Heart needs interval < warntime
    src = _minimal(tmp_path, "keepalive 1\ndeadtime 2\nbcast eth0\nnode a b\n")
    conv = importhb.convert(str(src))
    assert tomllib.loads(conv.toml)["timing"]["warntime"] == "1.5s"
    assert [i.action for i in conv.report if i.directive == "warntime"] == ["changed",
                                                                             "changed"]
    config.load(str(_write(conv, tmp_path / "out")), "a")


def test_derive_key_keeps_at_most_max_keys_active_first(tmp_path):
    src = _minimal(tmp_path)
    lines = ["auth 9"] + [f"{k} sha1 secret-number-{k}-long" for k in range(1, 11)]
    (src / "authkeys").write_text("\n".join(lines) + "\n")
    conv = importhb.convert(str(src), derive_key=True)
    ids = [int(ln.split()[0]) for ln in conv.key_file.splitlines() if not ln.startswith("#")]
    assert len(ids) == config.MAX_KEYS
    assert ids == [9, 1, 2, 3, 4, 5, 6, 7]
    left_out = [(i.line, i.directive) for i in conv.not_converted if i.file == "authkeys"]
    assert left_out == [(9, "8 sha1"), (11, "10 sha1")]
    assert tomllib.loads(conv.toml)["auth"]["send_key"] == 9
    cfg = config.load(str(_write(conv, tmp_path / "out")), "a")
    assert cfg.auth.send_key == 9 and sorted(cfg.auth.keys) == [1, 2, 3, 4, 5, 6, 7, 9]


def test_random_key_has_explicit_send_key(tmp_path):
    src = _minimal(tmp_path)
    (src / "authkeys").write_text("auth 4\n2 md5 x\n4 sha1 y\n")
    conv = importhb.convert(str(src))
    assert tomllib.loads(conv.toml)["auth"] == {"key_file": "authkey", "send_key": 4}
    [line] = [ln for ln in conv.key_file.splitlines() if not ln.startswith("#")]
    assert line.split()[0] == "4" and len(line.split()[1]) == 64


@pytest.mark.parametrize("argv, words", [
    (["--prefix", "0"], "'0' is not a prefix length"),
    (["--prefix", "129"], "'129' is not a prefix length"),
    (["--prefix", "x"], "'x' is not a prefix length"),
    (["--cluster-id", "0"], "'0' is not a cluster id"),
    (["--cluster-id", "4294967296"], "'4294967296' is not a cluster id"),
    (["--node-address", "a"], "expected NODE=ADDRESS"),
    (["--node-address", "a=host.example"], "expected NODE=ADDRESS"),
    (["--node-address", "=192.0.2.1"], "expected NODE=ADDRESS"),
])
def test_bad_options_are_refused_by_argparse(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["dir"] + argv)
    assert exc.value.code == 2
    assert words in capsys.readouterr().err


def test_good_options_are_parsed():
    args = _parser().parse_args(["dir", "--prefix", "64", "--cluster-id", "4294967295",
                                 "--node-address", "a=2001:db8::0001"])
    assert args.prefix == 64 and args.cluster_id == config.MAX_ID
    assert args.node_address == [("a", "2001:db8::1")]


def test_prefix_that_does_not_fit_the_family(tmp_path):
    src = _minimal(tmp_path, hares="a 192.0.2.10 IPv6addr::2001:db8::10\n")
    conv = importhb.convert(str(src), prefix=40, interface="eth0")
    [item] = [i for i in conv.not_converted if i.directive == "192.0.2.10"]
    assert item.message.startswith("no prefix given, and --prefix 40 does not fit an IPv4 "
                                   "address (at most /32)")
    data = tomllib.loads(conv.toml)
    assert [r["params"]["address"] for r in data["resource"]] == ["2001:db8::10/40"]
    with pytest.raises(importhb.HeartbeatImportError, match="not a prefix length"):
        importhb.convert(str(src), prefix=129)


def test_node_address_for_an_unknown_node_is_an_error(tmp_path, tree, capsys):
    src = _minimal(tmp_path, "ucast eth1 192.0.2.2\nbcast eth0\nnode a b\n")
    with pytest.raises(importhb.HeartbeatImportError) as exc:
        importhb.convert(str(src), node_addresses={"c": ["192.0.2.3"]})
    assert str(exc.value) == "--node-address: node 'c' is not one of the nodes in ha.cf (a, b)"
    out = tmp_path / "out"
    assert _cli([str(src), "-o", str(out), "--node-address", "c=192.0.2.3"], tree) == 1
    assert "node 'c' is not one of the nodes" in capsys.readouterr().err
    assert not out.exists()


def test_cli_failure_while_writing_leaves_nothing(tree, tmp_path, monkeypatch, capsys):
    out = tmp_path / "new" / "out"
    real = os.replace

    def failing(a, b):
        if str(b).endswith("heart.toml"):
            raise OSError(28, "No space left on device")
        return real(a, b)

    monkeypatch.setattr(importhb.os, "replace", failing)
    assert _cli([str(DATA / "ipv6"), "-o", str(out)], tree) == 1
    assert "nothing was written" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()     # nor the directories it made
    # an existing OUTDIR keeps nothing either (no key, no temporary files)
    out.mkdir(parents=True)
    assert _cli([str(DATA / "ipv6"), "-o", str(out)], tree) == 1
    assert list(out.iterdir()) == []


def test_cli_key_write_failure_leaves_nothing(tree, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()

    def failing(path, text, overwrite=False):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(config, "write_key_file", failing)
    assert _cli([str(DATA / "ipv6"), "-o", str(out)], tree) == 1
    assert list(out.iterdir()) == []


def test_cli_force_replaces_symlinks_without_following(tree, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("do not touch\n")
    (out / "authkey").symlink_to(victim)
    (out / "heart.toml").symlink_to(victim)
    assert _cli([str(DATA / "ipv6"), "-o", str(out), "--force"], tree) == 0
    assert victim.read_text() == "do not touch\n"
    for name in ("authkey", "heart.toml"):
        assert not (out / name).is_symlink() and (out / name).is_file()
    assert stat.S_IMODE((out / "authkey").stat().st_mode) == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["authkey", "heart.toml"]


def test_write_key_file(tmp_path):
    path = tmp_path / "k"
    config.write_key_file(str(path), "1 " + "ab" * 32 + "\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        config.write_key_file(str(path), "other\n")
    assert path.read_text() == "1 " + "ab" * 32 + "\n"
    config.write_key_file(str(path), "new\n", overwrite=True)
    assert path.read_text() == "new\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
    # a symlink (even a dangling one) is never followed
    target = tmp_path / "target"
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        config.write_key_file(str(link), "x\n")
    assert not target.exists()
    target.write_text("keep\n")
    config.write_key_file(str(link), "y\n", overwrite=True)
    assert target.read_text() == "keep\n" and not link.is_symlink()
    assert link.read_text() == "y\n"
    # a failed overwrite leaves the old file and no temporary file
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError):
        config.write_key_file(str(tmp_path / "dir"), "z\n", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "k", "link", "target"]


def test_write_key_file_cleans_up_a_failed_write(tmp_path, monkeypatch):
    def failing(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(config.os, "fsync", failing)
    with pytest.raises(OSError):
        config.write_key_file(str(tmp_path / "k"), "x\n")
    with pytest.raises(OSError):
        config.write_key_file(str(tmp_path / "k2"), "x\n", overwrite=True)
    assert list(tmp_path.iterdir()) == []


def test_keygen_still_works(tmp_path):
    path = tmp_path / "authkey"
    res = subprocess.run([sys.executable, "-m", "heart", "keygen", str(path)],
                         capture_output=True, text=True, cwd=ROOT, check=False, timeout=60)
    assert res.returncode == 0, res.stderr
    [line] = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    assert line.split()[0] == "1" and len(line.split()[1]) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
