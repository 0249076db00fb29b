"""The configuration file: errors (file:line, key, expected, hint), defaults, sample, Kwapi import."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

import pydantic
import pytest

from wattsight import config, plugins
from wattsight.config import ApiConfig, BusConfig, ProbeConfig, StoreConfig, key_lines, load, loads
from wattsight.config.models import RecorderConfig
from wattsight.drivers.base import DriverConfig
from wattsight.errors import ConfigError, PluginError

DATA = Path(__file__).parent / "data"
OK_BUS = '[bus]\nsecret = "s3cr3t"\n'


def _dummy_loads() -> bool:
    try:
        plugins.load("dummy")
    except PluginError:
        return False
    return True


needs_dummy = pytest.mark.skipif(not _dummy_loads(), reason="the dummy driver is not installed yet")


def error_of(text: str, path: str = "/etc/wattsight/wattsight.toml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        loads(text, path)
    return info.value


# -- the section models ------------------------------------------------------------------------
def test_section_defaults_follow_the_contract():
    bus, store, api = BusConfig(), StoreConfig(), ApiConfig()
    assert bus.endpoint.startswith("ipc://") and bus.endpoint.endswith("/wattsight-bus")
    assert (bus.connect, bus.secret, bus.secret_file) == ([], None, None)
    assert (bus.window, bus.linger, bus.batch_max) == (300.0, 0.05, 50_000)
    assert store.backend == "embedded" and store.path.name == "store" and store.fsync is False
    assert store.flush_interval == 60.0
    assert (api.listen, api.max_points, api.max_gap, api.price_per_kwh, api.currency) == (
        "127.0.0.1:8080", 10_000, 5.0, 0.0, "EUR")
    assert ProbeConfig() == ProbeConfig(aliases=[], nodes=[], description="")


def test_sections_are_frozen_and_refuse_unknown_keys():
    with pytest.raises(pydantic.ValidationError):
        BusConfig().window = 3  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        ApiConfig(lisen="x")  # type: ignore[call-arg]


@pytest.mark.parametrize("endpoint", ["ipc:///run/wattsight/bus", "tcp://10.0.0.1:5555", "tcp://*:5555",
                                      "tcp://[::1]:5555", "tcp://bus.lyon.grid5000.fr:5555", "inproc://bus"])
def test_good_endpoints(endpoint):
    assert BusConfig(endpoint=endpoint, connect=[endpoint]).endpoint == endpoint


def test_a_minimal_file_loads():
    cfg = loads('site = "lyon"\n' + OK_BUS)
    assert cfg.site == "lyon" and cfg.path is None and cfg.drivers == {} and cfg.bus_secret() == b"s3cr3t"


# -- errors: file, line, key, expected, hint ------------------------------------------------------
def test_unknown_key_names_line_and_suggests_the_closest():
    err = error_of('site = "lyon"\n[bus]\nsecret = "s"\nwindw = 10\n')
    assert (err.file, err.line, err.key) == ("/etc/wattsight/wattsight.toml", 4, "bus.windw")
    assert str(err).startswith("/etc/wattsight/wattsight.toml:4: bus.windw: unknown key")
    assert "did you mean 'window'?" in str(err)


def test_unknown_section_suggests_the_closest():
    err = error_of(OK_BUS + "\n[stor]\npath = '/x'\n")
    assert err.line == 4 and err.key == "stor" and "did you mean 'store'?" in str(err)


def test_wrong_type_says_what_was_expected_in_plain_words():
    err = error_of(OK_BUS + 'linger = "soon"\n')
    assert err.line == 3 and err.key == "bus.linger"
    assert "'soon' is not a number" in str(err) and "a number of seconds" in err.expected
    assert "pydantic" not in str(err) and "type=" not in str(err)
    err = error_of("[api]\nmax_points = 1.5\n" + OK_BUS)
    assert err.line == 2 and "whole number" in err.expected



# -- strict values: a quoted number or boolean is an error, not a conversion ---------------------
@pytest.mark.parametrize("text, line, key, words, expected", [
    ('[store]\nfsync = "yes"\n', 2, "store.fsync", "'yes' is not a boolean", "a boolean"),
    ('[store]\nfsync = "true"\n', 2, "store.fsync", "'true' is not a boolean", "a boolean"),
    ("[store]\nfsync = 1\n", 2, "store.fsync", "1 is not a boolean", "a boolean"),
    ('[bus]\nsecret = "s"\nlinger = "0.05"\n', 3, "bus.linger", "'0.05' is not a number",
     "a number of seconds"),
    ("[bus]\nsecret = \"s\"\nwindow = true\n", 3, "bus.window", "True is not a number",
     "a number of seconds"),
    ('[api]\nmax_points = "10"\n', 2, "api.max_points", "'10' is not a whole number", "a whole number"),
    ("[api]\nmax_points = 10.0\n", 2, "api.max_points", "10.0 is not a whole number", "a whole number"),
    ('[api]\nprice_per_kwh = "0.25"\n', 2, "api.price_per_kwh", "'0.25' is not a number", "a number"),
])
def test_a_quoted_number_or_boolean_is_an_error(text, line, key, words, expected):
    err = error_of(text + ("" if "secret" in text else OK_BUS))
    assert (err.line, err.key) == (line, key) and expected in err.expected
    assert str(err).startswith(f"/etc/wattsight/wattsight.toml:{line}: {key}: {words} (expected {expected}")


def test_a_quoted_value_that_would_be_right_unquoted_says_so():
    assert error_of(OK_BUS + 'linger = "0.05"\n').hint == "remove the quotes: 0.05"
    assert error_of('[store]\nfsync = "false"\n' + OK_BUS).hint == "remove the quotes: false"
    assert error_of('[store]\nfsync = "yes"\n' + OK_BUS).hint == "write true or false, without quotes"
    assert error_of("[store]\nfsync = 1\n" + OK_BUS).hint == "write true or false"
    assert error_of(OK_BUS + 'linger = "soon"\n').hint is None


def test_strictness_keeps_ints_for_floats_and_strings_for_paths(tmp_path):
    cfg = loads(OK_BUS + "window = 10\nlinger = 0\n[api]\nmax_gap = 7\nprice_per_kwh = 1\n"
                f'[store]\npath = "{tmp_path}"\nflush_interval = 30\n')
    assert (cfg.bus.window, cfg.bus.linger, cfg.api.max_gap, cfg.api.price_per_kwh) == (10.0, 0.0, 7.0, 1.0)
    assert isinstance(cfg.bus.window, float) and cfg.store.flush_interval == 30.0
    assert cfg.store.path == tmp_path and StoreConfig(path=str(tmp_path)).path == tmp_path
    with pytest.raises(pydantic.ValidationError):
        BusConfig(linger="0.05")


@needs_dummy
@pytest.mark.skipif(not DriverConfig.model_config.get("strict"),
                    reason="drivers/base.py: DriverConfig is not strict yet")
def test_driver_sections_are_strict_too():
    head = OK_BUS + '[drivers.rack]\ntype = "dummy"\ncount = 2\n'
    err = error_of(head + 'period = "0.5"\n')
    assert (err.line, err.key) == (6, "drivers.rack.period") and "'0.5' is not a number" in str(err)
    err = error_of(head + 'enabled = "no"\n')
    assert (err.line, err.key) == (6, "drivers.rack.enabled") and "a boolean" in err.expected
    assert loads(head + "period = 2\nmin = 90\n").drivers["rack"].period == 2.0

def test_out_of_range_value():
    err = error_of(OK_BUS + "window = -1\n")
    assert err.key == "bus.window" and "more than 0" in err.expected


def test_bad_endpoint_lists_the_accepted_forms():
    err = error_of(OK_BUS + 'endpoint = "localhost:5555"\n')
    assert err.line == 3 and err.key == "bus.endpoint"
    for form in ("ipc://", "tcp://<host>:<port>", "inproc://"):
        assert form in str(err)
    assert error_of(OK_BUS + 'connect = ["tcp://a:5555", "udp://b:1"]\n').key.startswith("bus.connect")


def test_bad_listen_address():
    err = error_of(OK_BUS + '[api]\nlisten = "8080"\n')
    assert err.line == 4 and "host:port" in str(err)


def test_missing_secret_says_how_to_create_one():
    err = error_of('site = "lyon"\n[bus]\nwindow = 10\n')
    assert err.key == "bus.secret_file" and err.line == 2
    assert "head -c 32 /dev/urandom | base64 > /etc/wattsight/bus.key" in str(err)
    assert "secret_file" in err.hint


def test_secret_and_secret_file_are_exclusive(tmp_path):
    key = tmp_path / "bus.key"
    key.write_text("k\n")
    key.chmod(0o600)
    err = error_of(f'[bus]\nsecret = "s"\nsecret_file = "{key}"\n')
    assert "either secret or secret_file" in str(err)


def test_secret_file_must_exist(tmp_path):
    err = error_of('[bus]\nsecret_file = "missing.key"\n', str(tmp_path / "w.toml"))
    assert err.line == 2 and str(tmp_path / "missing.key") in str(err) and "head -c 32" in str(err)


def test_secret_file_is_relative_to_the_config_file(tmp_path, caplog):
    (tmp_path / "bus.key").write_text("  abc123\n")
    (tmp_path / "bus.key").chmod(0o600)
    path = tmp_path / "wattsight.toml"
    path.write_text('[bus]\nsecret_file = "bus.key"\n[store]\npath = "data"\n')
    with caplog.at_level(logging.WARNING):
        cfg = load(path)
    assert cfg.path == path and cfg.bus.secret_file == tmp_path / "bus.key"
    assert cfg.store.path == tmp_path / "data" and cfg.bus_secret() == b"abc123"
    assert not caplog.records


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file: the injected opener's twin covers it")
def test_unreadable_secret_file(tmp_path):
    (tmp_path / "bus.key").write_text("k")
    (tmp_path / "bus.key").chmod(0)
    assert "cannot be read" in str(error_of('[bus]\nsecret_file = "bus.key"\n', str(tmp_path / "w.toml")))


def test_a_secret_file_this_user_may_not_read_through_an_injected_opener(tmp_path):
    (tmp_path / "bus.key").write_text("k")
    (tmp_path / "bus.key").chmod(0o600)
    seen = []

    def refuse(path: Path) -> bytes:
        seen.append(path)
        raise PermissionError(13, "Permission denied", str(path))

    with pytest.raises(ConfigError, match="cannot be read by this user") as err:
        loads('[bus]\nsecret_file = "bus.key"\n', str(tmp_path / "w.toml"), opener=refuse)
    assert seen == [tmp_path / "bus.key"] and "bus.secret_file" in str(err.value)
    assert loads('[bus]\nsecret_file = "bus.key"\n', str(tmp_path / "w.toml")).bus_secret() == b"k"


def test_a_key_readable_by_others_is_only_a_warning(tmp_path, caplog):
    (tmp_path / "bus.key").write_text("k")
    (tmp_path / "bus.key").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="wattsight.config"):
        cfg = loads('[bus]\nsecret_file = "bus.key"\n', str(tmp_path / "w.toml"))
    assert cfg.bus_secret() == b"k" and "chmod 600" in caplog.text


def test_unknown_driver_type_lists_the_known_drivers():
    err = error_of(OK_BUS + '\n[drivers.rack]\ntype = "dumy"\nperiod = 1\n')
    assert (err.line, err.key) == (5, "drivers.rack.type")
    assert "unknown driver 'dumy'" in str(err) and "dummy" in err.expected
    assert "did you mean 'dummy'?" in str(err)


def test_driver_without_type():
    err = error_of(OK_BUS + "\n[drivers.rack]\nperiod = 1\n")
    assert err.key == "drivers.rack.type" and err.line == 4 and "missing" in str(err)


@needs_dummy
def test_driver_sections_are_validated_by_the_driver_config():
    cfg = loads(OK_BUS + '[drivers.rack]\ntype = "dummy"\ncount = 2\nperiod = 0.5\n')
    assert isinstance(cfg.drivers["rack"], DriverConfig) and cfg.drivers["rack"].period == 0.5
    err = error_of(OK_BUS + '[drivers.rack]\ntype = "dummy"\ncount = 2\nperiood = 0.5\n')
    assert (err.line, err.key) == (6, "drivers.rack.periood") and "did you mean 'period'?" in str(err)


def test_probe_ids_are_checked_and_dotted_ids_must_be_quoted():
    cfg = loads(OK_BUS + '[probes."lyon.taurus-7"]\naliases = ["t7"]\nnodes = ["lyon.taurus-7"]\n')
    assert cfg.probes["lyon.taurus-7"].aliases == ["t7"]
    err = error_of(OK_BUS + '[probes.lyon.taurus-7]\nnodes = []\n')
    assert err.line == 3 and '[probes."lyon.taurus-7"]' in err.hint
    err = error_of(OK_BUS + '[probes."lyon.t-7"]\nnode = []\n')
    assert (err.line, err.key) == (4, 'probes."lyon.t-7".node') and "did you mean 'nodes'?" in str(err)


def test_consumer_sections_are_validated_by_their_plugin():
    cfg = loads(OK_BUS + '[consumers.prom]\ntype = "remote_write"\nurl = "http://127.0.0.1:9090/api/v1/write"\n')
    assert cfg.consumers["prom"].url == "http://127.0.0.1:9090/api/v1/write"
    err = error_of(OK_BUS + '[consumers.prom]\ntype = "remote_write"\nurl = "http://h/w"\nbatch_mx = 1\n')
    assert err.key == "consumers.prom.batch_mx" and err.line == OK_BUS.count("\n") + 4
    assert "did you mean 'batch_max'?" in str(err)
    assert error_of(OK_BUS + "[consumers.metrics]\nport = 9100\n").key == "consumers.metrics.type"
    assert "unknown consumer 'prometheus'" in str(error_of(OK_BUS + '[consumers.m]\ntype = "prometheus"\n'))


def test_bad_site_name():
    assert error_of('site = "lyon.fr"\n' + OK_BUS).key == "site"


def test_toml_syntax_error_names_the_line():
    err = error_of('site = "lyon"\n[bus\nsecret = "s"\n')
    assert err.line == 2 and "TOML syntax error" in str(err) and err.hint
    assert str(err).startswith("/etc/wattsight/wattsight.toml:2: TOML syntax error")
    assert error_of('site = "lyon\n').line == 1


def test_several_errors_are_reported_together_in_file_order():
    text = ('site = "lyon"\n'               # 1
            "[bus]\n"                      # 2
            'endpoint = "nowhere"\n'       # 3
            'secret = "s"\n'               # 4
            "[api]\n"                      # 5
            'max_points = "many"\n'        # 6
            "[store]\n"                    # 7
            "fsink = true\n")              # 8
    err = error_of(text)
    lines = str(err).splitlines()
    assert len(lines) == 3 and len(err.errors) == 3
    assert [e.line for e in err.errors] == [3, 6, 8]
    assert lines[0] == str(err.errors[0]) and err.line == 3 and err.key == "bus.endpoint"
    assert "bus.endpoint" in lines[0] and "api.max_points" in lines[1] and "did you mean 'fsync'?" in lines[2]
    assert all(line.startswith("/etc/wattsight/wattsight.toml:") for line in lines)


@needs_dummy
def test_a_site_file_loads(tmp_path):
    path = DATA / "config" / "lyon.toml"
    (tmp_path / "lyon.toml").write_text(path.read_text())  # git does not keep the key's mode 0600
    (tmp_path / "bus.key").write_bytes((DATA / "config" / "bus.key").read_bytes())
    (tmp_path / "bus.key").chmod(0o600)
    cfg = load(tmp_path / "lyon.toml")
    assert cfg.site == "lyon" and cfg.bus.connect == ["tcp://forwarder.nancy.example.org:5555"]
    assert cfg.bus_secret() == b"dGVzdC1rZXktbm90LXNlY3JldA==" and cfg.store.fsync is True
    assert cfg.drivers["rack"].metrics == ["power", "energy"] and cfg.api.price_per_kwh == 0.2516
    assert cfg.probes["lyon.taurus-pdu1.4"].nodes == ["lyon.taurus-3", "lyon.taurus-4"]


def test_the_documented_error_example():
    path = DATA / "config" / "broken.toml"
    with pytest.raises(ConfigError) as info:
        load(path)
    lines = str(info.value).splitlines()
    assert [e.line for e in info.value.errors] == [3, 4, 5, 10]
    assert lines[0].startswith(f"{path}:3: bus.secret_file: missing")
    assert "did you mean 'period'?" in lines[3]
    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    assert path.read_text() in doc  # the docs show this very file ...
    for line in lines[:3]:  # ... and what wattsight says about it
        assert line.replace(str(path), "/etc/wattsight/wattsight.toml") in doc


def test_load_names_a_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "nope.toml")
    assert str(tmp_path / "nope.toml") in str(info.value) and "config sample" in str(info.value)


def test_bus_secret_errors_name_the_key(tmp_path):
    cfg = config.Config(bus=BusConfig())
    with pytest.raises(ConfigError, match="bus.secret_file"):
        cfg.bus_secret()
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        config.Config(bus=BusConfig(secret_file=empty)).bus_secret()


# -- the key locator ------------------------------------------------------------------------------
def test_key_lines_handles_tables_quoted_dotted_and_inline_keys():
    text = "\n".join([  # noqa: FLY002 (one line per numbered line reads better)
        'site = "x"',                                   # 1
        "[bus]",                                        # 2
        "connect = [",                                  # 3
        '  "tcp://a:1",  # [not.a.table]',              # 4
        "]",                                            # 5
        'notes = """',                                  # 6
        "window = 1",                                   # 7  (inside a string)
        '"""',                                          # 8
        "linger = 1",                                   # 9
        '[probes."lyon.t-7"]',                          # 10
        "a.b = 1",                                      # 11
        'x = { y = 1, z = { w = [1, 2] }, "k.l" = "s,}" , r = 3 }',  # 12
        "[[consumers]]",                                # 13
        "type = 1",                                     # 14
    ])
    lines = key_lines(text)
    assert lines[("bus", "connect")] == 3 and lines[("bus", "linger")] == 9
    assert ("bus", "window") not in lines
    assert lines[("probes", "lyon.t-7")] == 10 and lines[("probes", "lyon.t-7", "a", "b")] == 11
    for key in ("y", "z", "k.l", "r"):
        assert lines[("probes", "lyon.t-7", "x", key)] == 12
    assert lines[("probes", "lyon.t-7", "x", "z", "w")] == 12
    assert lines[("consumers", "0", "type")] == 14
    assert config.locate(lines, ("bus", "connect", 1)) == 3
    assert config.locate(lines, ("bus", "missing")) == 2
    assert config.locate(lines, ("nowhere",)) is None


# -- the sample -----------------------------------------------------------------------------------
def test_sample_loads():
    cfg = loads(config.SAMPLE, "<sample>")
    assert cfg.site == "local" and cfg.probes


def test_sample_shows_every_key():
    sample = config.SAMPLE
    for model in (BusConfig, StoreConfig, ApiConfig, RecorderConfig, ProbeConfig, DriverConfig):
        for name in model.model_fields:
            assert re.search(rf"^#? *{name} = ", sample, re.MULTILINE), \
                f"{model.__name__}.{name} is not in SAMPLE"
    for section in ("site", "[bus]", "[store]", "[api]", "[probes.", "[consumers.", "[drivers."):
        assert section in sample


@needs_dummy
def test_sample_has_a_section_per_registered_driver():
    sample, cfg = config.SAMPLE, loads(config.SAMPLE)
    for name in plugins.names():
        try:
            cls = plugins.load(name)
        except PluginError:
            continue
        if getattr(cls, "SAMPLE", ""):
            assert cls.SAMPLE.strip() in sample
            assert any(type(d) is cls.Config for d in cfg.drivers.values())


# -- the embedded default -------------------------------------------------------------------------
def test_default_creates_a_private_key_and_the_runtime_dir(tmp_path):
    cfg = config.default(data_dir=tmp_path)
    key = tmp_path / "bus.key"
    assert cfg.site == "local" and cfg.drivers == {} and cfg.path is None
    assert cfg.bus.secret_file == key and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(cfg.bus_secret()) == 44  # 32 bytes in base64
    assert cfg.store.path == tmp_path / "store"
    assert cfg.bus.endpoint.startswith("ipc://") and Path(cfg.bus.endpoint[6:]).parent.is_dir()
    assert config.default(data_dir=tmp_path).bus_secret() == cfg.bus_secret()  # the key is kept


@needs_dummy
def test_default_demo_runs_a_simulated_rack(tmp_path):
    cfg = config.default(demo=True, data_dir=tmp_path)
    assert cfg.site == "demo" and cfg.drivers["rack"].type == "dummy"


def test_every_setting_is_documented():
    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    for model in (BusConfig, StoreConfig, ApiConfig, RecorderConfig, ProbeConfig, DriverConfig):
        for name in model.model_fields:
            assert f"`{name}`" in doc, f"{model.__name__}.{name} is not in docs/configuration.md"


def test_an_error_about_a_credential_never_repeats_its_value():
    text = ('[bus]\nsecret = "x"\n[drivers.m]\ntype = "http"\nurl = "http://127.0.0.1:9/"\n'
            'probes = ["a"]\nusername = "u"\npassword = 98765432\n')
    with pytest.raises(ConfigError) as err:
        config.loads(text, "site.toml")
    message = str(err.value)
    assert "password" in message and "site.toml:8" in message
    assert "98765432" not in message and "hidden" in message
