"""heart.config: loading, defaults, and error reports that name file, line and key."""
from __future__ import annotations

import os
import shutil
import stat
import textwrap
from pathlib import Path

import pytest
from conftest import KEY_HEX, lineno, need, write_key

from heart import config as hc

REPO = Path(__file__).resolve().parent.parent
DUMMY = "/usr/lib/ocf/resource.d/heartbeat/Dummy"

BASE = """\
[cluster]
name = "web"
id = 7
node = "alpha"

[timing]
interval = "100ms"
deadtime = "500ms"

[auth]
key_file = "authkey"

[[link]]
name = "lan"
port = 694

[[node]]
name = "alpha"
id = 1
addresses = { lan = "192.0.2.1" }

[[node]]
name = "beta"
id = 2
addresses = { lan = "192.0.2.2:7001" }

[[resource]]
name = "www"
type = "ocf"
agent = "heartbeat:Dummy"
params = { state = "/run/heart/{node}-www.state" }
monitor_interval = "10s"

[[resource]]
name = "app"
type = "script"
script = "app.sh"
params = { port = 8080, debug = true }

[[group]]
name = "web"
resources = ["www"]
nodes = ["beta", "alpha"]
auto_failback = false

[[handler]]
events = ["node_down", "resource_acquire"]
command = "./notify.sh --all"
"""


def need_dummy() -> None:
    need(None if os.access(DUMMY, os.X_OK) else
         f"{DUMMY} missing (install the resource-agents package)")


def make_exe(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def tree(tmp_path):
    """A directory with a key file, app.sh and notify.sh, as BASE expects."""
    need_dummy()
    write_key(tmp_path / "authkey")
    make_exe(tmp_path / "app.sh")
    make_exe(tmp_path / "notify.sh")
    return tmp_path


def write(tree: Path, text: str, name: str = "heart.toml") -> str:
    p = tree / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def errors(path: str, **kw) -> list[hc.ConfigIssue]:
    with pytest.raises(hc.ConfigError) as ei:
        hc.load(path, **kw)
    return ei.value.issues


def only(issues: list[hc.ConfigIssue]) -> hc.ConfigIssue:
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


def by_key(issues: list[hc.ConfigIssue], key: str) -> hc.ConfigIssue:
    found = [i for i in issues if i.key == key]
    assert found, f"no issue for {key}: " + "\n".join(map(str, issues))
    return found[0]


# --------------------------------------------------------------------------
# Valid files
# --------------------------------------------------------------------------

def test_valid_config_values_and_defaults(tree):
    cfg = hc.load(write(tree, BASE))
    assert cfg.path == str(tree / "heart.toml")
    assert (cfg.cluster_name, cfg.cluster_id, cfg.node_name) == ("web", 7, "alpha")
    assert cfg.state_dir == "/var/lib/heart"
    assert cfg.socket == "/run/heart/heart.sock"
    assert cfg.attributes_interval_us == 5_000_000

    t = cfg.timing
    assert (t.interval_us, t.warntime_us, t.deadtime_us, t.initdead_us) == \
        (100_000, 300_000, 500_000, 2_000_000)
    assert (t.detector, t.phi_threshold, t.phi_min_std_us, t.phi_acceptable_pause_us) == \
        ("fixed", 8.0, None, 0)
    assert (cfg.engine.realtime_priority, cfg.engine.lock_memory, cfg.engine.spin_us) == \
        (0, False, 0)

    assert cfg.auth.key_file == str(tree / "authkey")   # relative to the config file
    assert cfg.auth.algorithm == "aes-256-gcm"
    assert cfg.auth.keys == {1: bytes.fromhex(KEY_HEX)}
    assert cfg.auth.send_key == 1

    (lan,) = cfg.links
    assert (lan.name, lan.kind, lan.port, lan.group, lan.bind, lan.ttl, lan.line) == \
        ("lan", "unicast", 694, None, None, 1, lineno(BASE, "[[link]]"))
    assert [n.name for n in cfg.nodes] == ["alpha", "beta"]
    assert cfg.local.id == 1
    assert cfg.node("beta").addresses == {"lan": ("192.0.2.2", 7001)}
    assert cfg.node("alpha").addresses == {"lan": ("192.0.2.1", 694)}   # link's port
    assert [n.name for n in cfg.peers] == ["beta"]
    assert cfg.node_by_id(2).name == "beta"
    assert cfg.node("beta").line == lineno(BASE, "[[node]]", 2)

    q = cfg.quorum
    assert (q.ping_nodes, q.ping_interval_us, q.ping_timeout_us, q.wait_for_all,
            q.no_quorum_policy, q.fence, q.fence_timeout_us) == \
        ([], 1_000_000, 1_000_000, False, "release", None, 60_000_000)

    www, app = cfg.resources["www"], cfg.resources["app"]
    assert list(cfg.resources) == ["www", "app"]
    assert (www.type, www.agent, www.ocf_root, www.group) == \
        ("ocf", "heartbeat:Dummy", "/usr/lib/ocf", "web")
    assert (www.timeout_us, www.monitor_interval_us, www.monitor_timeout_us, www.retries) == \
        (20_000_000, 10_000_000, 20_000_000, 2)
    assert www.params == {"state": "/run/heart/alpha-www.state"}    # {node}
    assert app.script == str(tree / "app.sh")
    assert app.params == {"port": "8080", "debug": "true"}
    assert app.monitor_interval_us == 0 and app.group is None

    # groups first, then lone resources with every node in file order
    assert [(u.name, u.resources, u.nodes, u.auto_failback, u.is_group) for u in cfg.units] == [
        ("web", ["www"], ["beta", "alpha"], False, True),
        ("app", ["app"], ["alpha", "beta"], True, False),
    ]
    assert cfg.unit_of("www").name == "web"
    assert cfg.unit_of("web").name == "web"
    assert cfg.unit_of("app").is_group is False
    with pytest.raises(KeyError):
        cfg.unit_of("nothing")

    (h,) = cfg.handlers
    assert h.events == frozenset({"node_down", "resource_acquire"})
    assert h.command == [str(tree / "notify.sh"), "--all"]
    assert h.timeout_us == 10_000_000


def test_contrib_example_loads(tree):
    text = (REPO / "contrib" / "heart.toml").read_text()
    assert 'key_file = "/etc/heart/authkey"' in text
    text = text.replace('key_file = "/etc/heart/authkey"', f'key_file = "{tree / "authkey"}"')
    if shutil.which("logger") is None:
        text = text.replace('command = "logger -t heart-event"',
                            f'command = "{tree / "notify.sh"}"')
    for node in ("alpha", "beta"):
        cfg = hc.load(write(tree, text, "example.toml"), node_name=node)
        assert cfg.local.name == node
    assert cfg.resources["www"].agent == "heartbeat:Dummy"
    assert cfg.resources["www"].ocf_root == "/usr/lib/ocf"
    assert [lk.name for lk in cfg.links] == ["lan", "backup"]
    assert cfg.units[0].name == "website" and cfg.units[0].auto_failback is False
    assert cfg.quorum.ping_nodes == ["192.0.2.254"]


def test_node_substitution_in_paths(tree):
    text = BASE.replace('node = "alpha"\n', 'state_dir = "/tmp/lab/{node}"\n'
                                           'socket = "lab/{node}.sock"\n')
    path = write(tree, text)
    for node in ("alpha", "beta"):
        cfg = hc.load(path, node_name=node)
        assert cfg.state_dir == f"/tmp/lab/{node}"
        assert cfg.socket == str(tree / "lab" / f"{node}.sock")
        assert cfg.resources["www"].params["state"] == f"/run/heart/{node}-www.state"


def test_node_name_from_hostname(tree, monkeypatch):
    monkeypatch.setattr(hc._socket, "gethostname", lambda: "beta.example.net")
    cfg = hc.load(write(tree, BASE.replace('node = "alpha"\n', "")))
    assert cfg.node_name == "beta"
    monkeypatch.setattr(hc._socket, "gethostname", lambda: "gamma")
    i = only(errors(write(tree, BASE.replace('node = "alpha"\n', ""))))
    assert i.key == "cluster.node" and i.line == 1
    assert '"gamma"' in i.message and "alpha, beta" in i.message


def test_node_argument_overrides_and_is_checked(tree):
    path = write(tree, BASE)
    assert hc.load(path, node_name="beta").local.name == "beta"
    i = only(errors(path, node_name="betta"))
    assert i.key == "cluster.node" and i.line == lineno(BASE, 'node = "alpha"')
    assert "--node" in i.message and 'did you mean "beta"' in i.message


def test_read_keys_false_skips_the_key_file(tree):
    (tree / "authkey").unlink()
    path = write(tree, BASE)
    assert errors(path)
    cfg = hc.load(path, read_keys=False)
    assert cfg.auth.keys == {} and cfg.socket == "/run/heart/heart.sock"


# --------------------------------------------------------------------------
# Errors: one kind at a time, with line and key
# --------------------------------------------------------------------------

def test_issue_and_error_format(tree):
    text = BASE.replace('deadtime = "500ms"', 'deadtime = "50"')
    path = write(tree, text)
    with pytest.raises(hc.ConfigError) as ei:
        hc.load(path)
    i = only(ei.value.issues)
    ln = lineno(text, 'deadtime = "50"')
    assert (i.file, i.line, i.key) == (path, ln, "timing.deadtime")
    assert str(i) == (f'{path}:{ln}: timing.deadtime: "50" has no unit; expected a '
                      f'duration such as "500ms" or "2s"')
    assert str(ei.value) == str(i)
    assert str(hc.ConfigIssue("f", None, "", "m")) == "f: m"


def test_syntax_error_has_line(tree):
    text = BASE.replace('port = 694', 'port 694')
    i = only(errors(write(tree, text)))
    assert i.line == lineno(text, "port 694")
    assert "TOML syntax error" in i.message


def test_unquoted_duration_syntax_error_hints_quotes(tree):
    text = BASE.replace('interval = "100ms"', "interval = 100ms")
    i = only(errors(write(tree, text)))
    assert i.line == lineno(text, "interval = 100ms")
    assert 'interval = "100ms"' in i.message


def test_key_set_twice_is_located(tree):
    text = BASE.replace('id = 2\n', 'id = 2\nid = 3\n')
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, "id = 3"), "node[1].id")
    assert f"line {lineno(text, 'id = 2')}" in i.message


def test_single_bracket_table_twice_suggests_array(tree):
    text = BASE.replace("[[node]]", "[node]")
    i = only(errors(write(tree, text)))
    assert i.line == lineno(text, "[node]", 2)
    assert "[[node]]" in i.message


@pytest.mark.parametrize("value, fragment", [
    ('"50"', '"50" has no unit'),
    ("50", "50 has no unit"),
    ('"5sec"', 'unknown unit "sec"'),
    ('"-1s"', "negative"),
    ('"fast"', "is not a duration"),
    ('"0.5ms"', "too short"),    # interval: at least 1ms
])
def test_bad_duration(tree, value, fragment):
    text = BASE.replace('interval = "100ms"', f"interval = {value}")
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, "interval ="), "timing.interval")
    assert fragment in i.message


def test_unknown_key_suggests_spelling(tree):
    text = BASE.replace('deadtime = "500ms"', 'deadtme = "500ms"')
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, "deadtme"), "timing.deadtme")
    assert "unknown key" in i.message and 'did you mean "deadtime"' in i.message


def test_unknown_key_under_wrong_header(tree):
    text = BASE + 'state_dir = "/tmp/x"\n'    # lands in the last [[handler]]
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, "state_dir"), "handler[0].state_dir")
    assert "[cluster]" in i.message


def test_unknown_table(tree):
    text = BASE + "\n[quorom]\nping_nodes = []\n"
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, "[quorom]"), "quorom")
    assert 'did you mean "quorum"' in i.message


def test_missing_required_key_points_at_table(tree):
    text = BASE.replace('id = 2\n', '')
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, "[[node]]", 2), "node[1].id")
    assert "required key is missing" in i.message


def test_missing_required_table(tree):
    text = BASE.replace('[auth]\nkey_file = "authkey"\n', "")
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (None, "auth")
    assert "[auth]" in i.message


def test_wrong_type(tree):
    text = BASE.replace("id = 7", 'id = "7"')
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, 'id = "7"'), "cluster.id")
    assert "write id = 7" in i.message


def test_duplicate_node_id(tree):
    text = BASE.replace("id = 2", "id = 1")
    i = only(errors(write(tree, text)))
    first = lineno(text, "id = 1")
    assert (i.line, i.key) == (lineno(text, "id = 1", 2), "node[1].id")
    assert i.message == (f'1 is already used by node "alpha" (line {first}); '
                         f'node ids must be unique')


def test_duplicate_node_name(tree):
    text = BASE.replace('name = "beta"', 'name = "alpha"')
    issues = errors(write(tree, text))
    i = by_key(issues, "node[1].name")
    assert i.line == lineno(text, 'name = "alpha"', 2)
    assert "already the name of node[0]" in i.message


def test_unknown_node_in_group(tree):
    text = BASE.replace('nodes = ["beta", "alpha"]', 'nodes = [\n  "beta",\n  "gamma",\n]')
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, '"gamma"'), "group[0].nodes[1]")
    assert 'no node named "gamma"' in i.message and "alpha, beta" in i.message


def test_unknown_resource_in_group(tree):
    text = BASE.replace('resources = ["www"]', 'resources = ["www", "db"]')
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, '"db"'), "group[0].resources[1]")


def test_resource_in_group_must_not_set_nodes(tree):
    text = BASE.replace('monitor_interval = "10s"', 'monitor_interval = "10s"\nnodes = ["alpha"]')
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, 'nodes = ["alpha"]'), "resource[0].nodes")
    assert 'group "web"' in i.message


def test_resource_in_two_groups_and_shared_namespace(tree):
    text = BASE + '\n[[group]]\nname = "app"\nresources = ["www"]\n'
    issues = errors(write(tree, text))
    assert by_key(issues, "group[1].name").line == lineno(text, 'name = "app"', 2)
    assert "share one namespace" in by_key(issues, "group[1].name").message
    assert "already in group" in by_key(issues, "group[1].resources[0]").message


def test_key_file_mode_0644_refused(tree):
    os.chmod(tree / "authkey", 0o644)
    i = only(errors(write(tree, BASE)))
    key = str(tree / "authkey")
    assert (i.file, i.line, i.key) == (key, None, "")
    assert str(i) == f"{key}: mode 0644 lets group or others read it; chmod 600 {key}"


def test_key_file_missing(tree):
    (tree / "authkey").unlink()
    i = only(errors(write(tree, BASE)))
    assert (i.line, i.key) == (lineno(BASE, "key_file"), "auth.key_file")
    assert "does not exist" in i.message and "heart keygen" in i.message


@pytest.mark.parametrize("line, fragment", [
    ("2 abcd", "has 4 characters; expected 64 hex digits"),
    (f"0 {KEY_HEX}", "is not a number from 1 to 255"),
    (f"256 {KEY_HEX}", "is not a number from 1 to 255"),
    (f"2 {KEY_HEX} extra", "found 3 fields"),
    ("2 " + "zz" * 32, "not hex digits"),
    (f"1 {KEY_HEX}", "key id 1 is already used on line 2"),
])
def test_malformed_key_line(tree, line, fragment):
    write_key(tree / "authkey", f"# keys\n1 {KEY_HEX}\n\n{line}\n")
    i = only(errors(write(tree, BASE)))
    assert (i.file, i.line) == (str(tree / "authkey"), 4)
    assert fragment in i.message
    assert "zzzz" not in i.message and KEY_HEX not in i.message   # never echo key material


def test_empty_key_file_and_send_key(tree):
    write_key(tree / "authkey", "# nothing\n")
    assert "contains no keys" in only(errors(write(tree, BASE))).message
    write_key(tree / "authkey", f"3 {KEY_HEX}\n# comment\n5 {KEY_HEX[::-1]}  # new\n")
    cfg = hc.load(write(tree, BASE))
    assert sorted(cfg.auth.keys) == [3, 5] and cfg.auth.send_key == 3
    text = BASE.replace('key_file = "authkey"', 'key_file = "authkey"\nsend_key = 4')
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, "send_key"), "auth.send_key")
    assert "3, 5" in i.message


def test_unicast_link_needs_every_address(tree):
    text = BASE.replace('addresses = { lan = "192.0.2.2:7001" }\n', "")
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, "[[node]]", 2), "node[1].addresses.lan")
    assert 'node "beta" has no address on unicast link "lan"' in i.message


def test_address_problems(tree):
    text = BASE.replace('"192.0.2.2:7001"', '"[2001:db8::2]:7001", wan = "192.0.2.9"') \
               .replace('"192.0.2.1"', '"alpha.example"')
    issues = errors(write(tree, text))
    bad = by_key(issues, "node[0].addresses.lan")
    assert bad.line == lineno(text, "alpha.example")
    assert "not a numeric IPv4 or IPv6 address" in bad.message
    assert "no link named" in by_key(issues, "node[1].addresses.wan").message
    # the family check needs two valid addresses
    text = BASE.replace('"192.0.2.2:7001"', '"[2001:db8::2]:7001"')
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, "2001:db8::2"), "node[1].addresses.lan")
    assert "one family" in i.message


def test_address_and_port_must_be_unique_per_link(tree):
    text = BASE.replace('"192.0.2.2:7001"', '"192.0.2.1:694"')
    i = only(errors(write(tree, text)))
    assert i.key == "node[1].addresses.lan" and "already node[0].addresses.lan" in i.message


def test_ipv6_addresses_and_ports(tree):
    text = BASE.replace('"192.0.2.1"', '"2001:db8::1"').replace('"192.0.2.2:7001"',
                                                                 '"[2001:DB8::2]:7001"')
    cfg = hc.load(write(tree, text))
    assert cfg.node("alpha").addresses["lan"] == ("2001:db8::1", 694)
    assert cfg.node("beta").addresses["lan"] == ("2001:db8::2", 7001)


def test_multicast_link(tree):
    text = BASE.replace('port = 694\n', 'port = 694\n\n[[link]]\nname = "mc"\n'
                                        'kind = "multicast"\ngroup = "239.0.0.94"\nttl = 2\n')
    cfg = hc.load(write(tree, text))
    mc = cfg.links[1]
    assert (mc.kind, mc.group, mc.ttl, mc.bind) == ("multicast", "239.0.0.94", 2, None)
    assert "mc" not in cfg.node("beta").addresses          # optional on multicast
    i = only(errors(write(tree, text.replace('group = "239.0.0.94"\n', ""))))
    assert (i.line, i.key) == (lineno(text, 'name = "mc"') - 1, "link[1].group")
    i = only(errors(write(tree, text.replace("239.0.0.94", "192.0.2.9"))))
    assert i.key == "link[1].group" and "not a multicast address" in i.message


def test_warntime_not_below_deadtime(tree):
    text = BASE.replace('deadtime = "500ms"', 'deadtime = "500ms"\nwarntime = "0.5s"')
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, "warntime"), "timing.warntime")
    assert "warntime 500ms must be shorter than deadtime 500ms" in i.message


def test_timing_order_names_defaults(tree):
    text = BASE.replace('deadtime = "500ms"', 'deadtime = "250ms"')
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, "deadtime"), "timing.deadtime")
    assert "warntime 300ms (the default, 3 x interval)" in i.message
    text = BASE.replace('deadtime = "500ms"', 'deadtime = "500ms"\ninitdead = "400ms"')
    i = only(errors(write(tree, text)))
    assert i.key == "timing.initdead" and "must not be shorter than deadtime" in i.message
    # defaults follow the interval; initdead at least 2s
    cfg = hc.load(write(tree, BASE.replace('deadtime = "500ms"\n', "")
                        .replace('"100ms"', '"1s"')))
    t = cfg.timing
    assert (t.warntime_us, t.deadtime_us, t.initdead_us) == (3_000_000, 5_000_000, 10_000_000)


def test_engine_limits(tree):
    text = BASE.replace("[auth]", '[engine]\nrealtime_priority = 120\nspin = "60ms"\n'
                                  "lock_memory = \"yes\"\n\n[auth]")
    issues = errors(write(tree, text))
    assert {i.key for i in issues} == {"engine.realtime_priority", "engine.spin",
                                       "engine.lock_memory"}
    assert "half the heartbeat interval" in by_key(issues, "engine.spin").message
    assert "write lock_memory = true" in by_key(issues, "engine.lock_memory").message


def test_ocf_agent_and_script_checked(tree):
    (tree / "app.sh").chmod(0o644)
    text = BASE.replace('"heartbeat:Dummy"', '"heartbeat:Dumy"')
    issues = errors(write(tree, text))
    agent = by_key(issues, "resource[0].agent")
    assert agent.line == lineno(text, "heartbeat:Dumy")
    assert "does not exist" in agent.message and '"heartbeat:Dummy"' in agent.message
    script = by_key(issues, "resource[1].script")
    assert "is not executable" in script.message
    text = BASE.replace('agent = "heartbeat:Dummy"', 'script = "app.sh"')
    issues = errors(write(tree, text))
    assert "required for type = \"ocf\"" in by_key(issues, "resource[0].agent").message
    assert "applies only to" in by_key(issues, "resource[0].script").message


def test_handler_events(tree):
    text = BASE.replace('events = ["node_down", "resource_acquire"]', 'events = ["*"]')
    assert hc.load(write(tree, text)).handlers[0].events == frozenset(hc.HANDLER_EVENTS)
    text = BASE.replace('"resource_acquire"', '"resource_aquire"')
    i = only(errors(write(tree, text)))
    assert (i.line, i.key) == (lineno(text, "events"), "handler[0].events[1]")
    assert 'did you mean "resource_acquire"' in i.message


def test_handler_command_must_exist(tree):
    text = BASE.replace('command = "./notify.sh --all"',
                        'command = ["no-such-program-xyz", "a b"]')
    i = only(errors(write(tree, text)))
    assert i.key == "handler[0].command" and "not found in PATH" in i.message


def test_quorum_section(tree):
    text = BASE + textwrap.dedent("""\
        [quorum]
        ping_nodes = ["192.0.2.254", "2001:db8::fe"]
        ping_interval = "2s"
        ping_timeout = "500ms"
        wait_for_all = true
        no_quorum_policy = "freeze"
        fence = "./notify.sh 'fence it'"
        fence_timeout = "30s"
        """)
    q = hc.load(write(tree, text)).quorum
    assert q.ping_nodes == ["192.0.2.254", "2001:db8::fe"]
    assert (q.ping_interval_us, q.ping_timeout_us, q.wait_for_all, q.no_quorum_policy,
            q.fence_timeout_us) == (2_000_000, 500_000, True, "freeze", 30_000_000)
    assert q.fence == [str(tree / "notify.sh"), "fence it"]
    bad = text.replace('"freeze"', '"stop"').replace('"192.0.2.254"', '"gateway"')
    issues = errors(write(tree, bad))
    assert by_key(issues, "quorum.ping_nodes[0]").line == lineno(bad, "ping_nodes")
    assert '"stop" is not one of' in by_key(issues, "quorum.no_quorum_policy").message


def test_several_errors_reported_together_in_line_order(tree):
    os.chmod(tree / "authkey", 0o640)
    text = (BASE.replace("id = 7", "id = 0")
                .replace('deadtime = "500ms"', 'deadtime = 500')
                .replace('port = 694', 'port = 694\ncolour = "red"')
                .replace("id = 2", "id = 1")
                .replace('nodes = ["beta", "alpha"]', 'nodes = ["beta", "gamma"]'))
    path = write(tree, text)
    with pytest.raises(hc.ConfigError) as ei:
        hc.load(path)
    issues = ei.value.issues
    assert [(i.key, i.line) for i in issues if i.file == path] == [
        ("cluster.id", lineno(text, "id = 0")),
        ("timing.deadtime", lineno(text, "deadtime = 500")),
        ("link[0].colour", lineno(text, "colour")),
        ("node[1].id", lineno(text, "id = 1", 2)),
        ("group[0].nodes[1]", lineno(text, '"gamma"')),
    ]
    assert issues[-1].file == str(tree / "authkey") and "0640" in issues[-1].message
    assert len(str(ei.value).splitlines()) == len(issues) == 6


def test_unreadable_config_file(tmp_path):
    i = only(errors(str(tmp_path / "nope.toml")))
    assert i.line is None and "cannot read" in i.message


# --------------------------------------------------------------------------
# Locating lines
# --------------------------------------------------------------------------

def test_locator_handles_strings_arrays_and_inline_tables():
    text = textwrap.dedent('''\
        [cluster]
        note = """
        [[node]]
        name = "x"
        """
        'quoted key' = 'lit # not a comment'
        a.b = 1

        [[node]]   # first
        name = "alpha"
        addresses = { lan = "192.0.2.1", wan = "198.51.100.1" }

        [[node]]
        name = "beta"
        list = [
          "one",  # comment
          [1, 2],
          { k = "v" },
        ]
        [node.extra]
        x = 1
        ''')
    loc = hc._Locator.scan(text)
    assert loc.exact(("cluster", "note")) == 2
    assert loc.exact(("cluster", "quoted key")) == 6
    assert loc.exact(("cluster", "a", "b")) == 7
    assert loc.exact(("node", 0)) == 9
    assert loc.exact(("node", 0, "name")) == 10
    assert loc.exact(("node", 0, "addresses", "wan")) == 11
    assert loc.exact(("node", 1)) == 13
    assert loc.exact(("node", 1, "list", 0)) == 16
    assert loc.exact(("node", 1, "list", 1, 1)) == 17
    assert loc.exact(("node", 1, "list", 2, "k")) == 18
    assert loc.exact(("node", 1, "extra", "x")) == 21
    assert loc.line_of(("node", 1, "missing")) == 13
    assert loc.line_of(("node", 1, "list", 7)) == 15
    assert ("node", 2) not in loc.lines      # the one inside the string was skipped


def test_format_key():
    assert hc.format_key(("node", 1, "addresses", "lan")) == "node[1].addresses.lan"
    assert hc.format_key(("resource", 0, "params", "a b")) == 'resource[0].params."a b"'


# --------------------------------------------------------------------------
# Durations and key generation
# --------------------------------------------------------------------------

@pytest.mark.parametrize("text, us", [
    ("250us", 250), ("50ms", 50_000), ("1.5s", 1_500_000), ("2m", 120_000_000),
    ("1h", 3_600_000_000), (" 10 ms ", 10_000), ("0s", 0), (".5s", 500_000),
])
def test_parse_duration(text, us):
    assert hc.parse_duration(text) == us


def test_format_duration():
    assert [hc.format_duration(x) for x in (0, 250, 50_000, 1_500_000, 120_000_000)] == \
        ["0s", "250us", "50ms", "1.5s", "2m"]


def test_generate_key_file(tmp_path):
    path = tmp_path / "authkey"
    hc.generate_key_file(str(path), key_id=9)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_text()
    with pytest.raises(FileExistsError):
        hc.generate_key_file(str(path))
    assert path.read_text() == before
    with pytest.raises(ValueError):
        hc.generate_key_file(str(tmp_path / "k2"), key_id=256)
    assert not (tmp_path / "k2").exists()
    # it loads, and two files never share a key
    need_dummy()
    make_exe(tmp_path / "app.sh")
    make_exe(tmp_path / "notify.sh")
    cfg = hc.load(write(tmp_path, BASE))
    assert list(cfg.auth.keys) == [9] and len(cfg.auth.keys[9]) == 32
    hc.generate_key_file(str(tmp_path / "other"))
    assert (tmp_path / "other").read_text().split()[-1] != before.split()[-1]


def test_locator_finds_every_key_of_mutated_files():
    """Random variants of the example (lines dropped, tricky TOML inserted):
    whenever tomllib accepts one, every key and array element has a line, and
    a key's line mentions that key."""
    import random
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    src = (REPO / "contrib" / "heart.toml").read_text().splitlines()
    extra = ['x = """\n[[node]]\nname = 1\n"""', "y = '''\n[a]\n'''", "[t.s]\nr = 1",
             'z = [\n 1, # c\n [2, {q = 1}],\n]', '"k.e.y" = 1', "w.v.u = 'a'",
             "[[link.sub]]\nm = 1", "d = 1979-05-27 07:32:00Z", 's = "a\\"b # x"',
             "e = { a.b = 1, c = [ { d = 2 } ] }"]

    def paths(obj, pre=()):
        items = obj.items() if isinstance(obj, dict) else \
            enumerate(obj) if isinstance(obj, list) else ()
        for k, v in items:
            yield pre + (k,)
            yield from paths(v, pre + (k,))

    rnd = random.Random(7)
    checked = 0
    for _ in range(400):
        lines = [ln for ln in src if rnd.random() < 0.8]
        for _ in range(rnd.randint(0, 4)):
            lines.insert(rnd.randint(0, len(lines)), rnd.choice(extra))
        text = "\n".join(lines) + "\n"
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            continue
        loc = hc._Locator.scan(text)
        rows = text.splitlines()
        for p in paths(data):
            ln = loc.exact(p)
            assert ln is not None, (p, text)
            if isinstance(p[-1], str):
                assert p[-1] in rows[ln - 1].replace('"', ""), (p, ln, text)
        checked += 1
    assert checked > 50
