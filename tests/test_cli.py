"""The `wattsight` command, run in-process through ``wattsight.cli.main``: help, exit codes, messages."""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import pytest

from wattsight import __version__, plugins
from wattsight.cli import main, parser
from wattsight.sample import check_probe_id

GOOD = 'site = "lyon"\n[bus]\nsecret = "s3cret"\n[drivers.rack]\ntype = "dummy"\ncount = 2\n'


@pytest.fixture
def cli(capsys):
    """Run ``wattsight ARGS`` in this process: (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _subcommands(p: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every verb and sub-verb of the parser (so a verb added later is checked too)."""
    out = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(prefix + (name,))
                out.extend(_subcommands(sub, prefix + (name,)))
    return out


VERBS = _subcommands(parser())


# -- help -------------------------------------------------------------------------------------
def test_main_help_exits_0_and_shows_examples(cli):
    code, out, _ = cli("--help")
    assert code == 0
    assert "example" in out.lower()
    for verb in ("run", "probe", "plugins", "config"):
        assert verb in out


def test_the_verbs_are_the_public_ones():
    assert {v[0] for v in VERBS} >= {"run", "probe", "plugins", "config"}
    assert {v for v in VERBS if v[0] == "config"} >= {("config",), ("config", "sample"), ("config", "check"),
                                                      ("config", "import-kwapi")}


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_each_verb_help_exits_0_and_shows_examples(cli, verb):
    code, out, _ = cli(*verb, "--help")
    assert code == 0
    assert out.startswith(f"usage: wattsight {' '.join(verb)}")
    assert "example" in out.lower(), f"`wattsight {' '.join(verb)} --help` shows no example"


def test_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"wattsight {__version__}"


def test_no_verb_or_an_unknown_verb_is_a_usage_error(cli):
    assert cli()[0] == 2
    code, _, err = cli("frobnicate")
    assert code == 2 and "frobnicate" in err


def test_extra_arguments_are_refused_outside_probe(cli):
    code, _, err = cli("plugins", "--bogus")
    assert code == 2 and "--bogus" in err


# -- plugins ----------------------------------------------------------------------------------
def test_plugins_lists_dummy_and_replay_and_the_store(cli):
    code, out, _ = cli("plugins")
    assert code == 0
    drivers, _, consumers = out.partition("consumers:")
    assert "drivers:" in drivers
    for name in ("dummy", "replay"):
        assert f"  {name} " in drivers
        assert f"wattsight.drivers.{name}:" in drivers
    assert "  store " in consumers


def test_plugins_lists_every_registered_plugin(cli):
    out = cli("plugins")[1]
    for name in plugins.names(plugins.DRIVERS) + plugins.names(plugins.CONSUMERS):
        assert f"  {name} " in out
    assert "cannot load" not in out


# -- config -----------------------------------------------------------------------------------
def test_config_check_on_a_good_file_exits_0(cli, tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(GOOD)
    code, out, _ = cli("config", "check", str(path))
    assert code == 0
    assert out.startswith(f"{path}: OK") and "site lyon" in out and "1 driver(s)" in out


def test_config_check_on_a_bad_file_exits_2_and_names_file_and_line(cli, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('site = "lyon"\n[bus]\nsecret = "s"\nwindow = -1\n[drivers.rack]\ntype = "dumy"\n')
    code, out, err = cli("config", "check", str(path))
    assert code == 2 and out == ""
    assert f"{path}:4: bus.window" in err
    assert f"{path}:6: drivers.rack.type" in err and "dummy" in err


def test_config_check_on_a_toml_syntax_error_names_the_line(cli, tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('site = "lyon"\n[bus]\nsecret = s3cret\n')
    code, _, err = cli("config", "check", str(path))
    assert code == 2 and f"{path}:3:" in err


def test_config_check_on_a_missing_file_exits_2_and_names_it(cli, tmp_path):
    path = tmp_path / "nope.toml"
    code, _, err = cli("config", "check", str(path))
    assert code == 2 and str(path) in err


def test_config_sample_is_toml_with_a_section_per_driver(cli):
    code, out, _ = cli("config", "sample")
    assert code == 0
    data = tomllib.loads(out)
    assert {"bus", "store", "api"} <= set(data)
    types = {s.get("type") for s in data.get("drivers", {}).values()}
    assert set(plugins.names()) <= types


def test_config_import_kwapi_prints_a_file_that_checks(cli, tmp_path):
    src = Path(__file__).parent / "data" / "kwapi" / "openstack-dummy.conf"
    code, out, _ = cli("config", "import-kwapi", str(src))
    assert code == 0
    assert tomllib.loads(out)["drivers"]
    (tmp_path / "site.toml").write_text(out)
    code, out, err = cli("config", "check", str(tmp_path / "site.toml"))
    assert code == 0, err


def test_config_import_kwapi_on_a_missing_file_exits_2_and_names_it(cli, tmp_path):
    path = tmp_path / "drivers.conf"
    code, _, err = cli("config", "import-kwapi", str(path))
    assert code == 2 and str(path) in err


# -- probe ------------------------------------------------------------------------------------
def test_probe_an_unknown_driver_fails_and_lists_the_known_ones(cli):
    code, out, err = cli("probe", "no-such-meter", "--once")
    assert code != 0 and out == ""
    assert "no-such-meter" in err
    for name in plugins.names():
        assert name in err


def test_probe_with_an_unknown_option_exits_2_naming_it_and_the_known_ones(cli):
    code, out, err = cli("probe", "dummy", "--bogus", "1")
    assert code == 2 and out == ""
    assert "--bogus" in err
    assert "--probes" in err and "--count" in err  # the options that exist


def test_probe_with_a_bad_value_exits_2_naming_the_key(cli):
    code, _, err = cli("probe", "dummy", "--probes", "node-1", "--min", "lots", "--once")
    assert code == 2 and "min" in err


def test_probe_with_an_option_missing_its_value_exits_2(cli):
    code, _, err = cli("probe", "dummy", "--probes")
    assert code == 2 and "--probes" in err


def test_probe_dummy_once_prints_a_table(cli):
    code, out, _ = cli("probe", "dummy", "--probes", "node-1,lyon.pdu-3", "--once")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["probe", "metric", "measured_at", "value", "unit", "kind", "provenance"]
    assert [line.split()[0] for line in lines[1:]] == ["local.node-1", "lyon.pdu-3"]
    assert all(line.split()[-1] == "modelled" for line in lines[1:])


def test_probe_dummy_once_json_one_object_per_sample(cli):
    code, out, _ = cli("probe", "dummy", "--count", "3", "--metrics", "power,energy", "--site", "nancy",
                       "--json", "--once")
    assert code == 0
    samples = [json.loads(line) for line in out.splitlines()]
    assert len(samples) == 6
    assert {(s["probe"], s["metric"]) for s in samples} == {
        (f"nancy.node-{i}", m) for i in (1, 2, 3) for m in ("power", "energy")}
    for s in samples:
        check_probe_id(s["probe"])
        assert set(s) == {"probe", "metric", "measured_at", "value", "unit", "kind", "provenance"}
        assert s["unit"] == {"power": "W", "energy": "J"}[s["metric"]]


def test_probe_options_accept_key_equals_value_and_dashes(cli):
    code, out, _ = cli("probe", "dummy", "--probes=node-1", "--pattern", "square", "--high-time=10",
                       "--json", "--once")
    assert code == 0 and len(out.splitlines()) == 1


def test_probe_a_replay_trace_that_does_not_exist_exits_1_naming_it(cli, tmp_path):
    path = tmp_path / "missing.csv"
    code, _, err = cli("probe", "replay", "--path", str(path), "--once")
    assert code == 1 and str(path) in err


# -- run (only what fails before anything starts) ----------------------------------------------
@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(GOOD + f'[store]\npath = "{tmp_path / "store"}"\n')
    return path


def test_run_with_an_unknown_role_exits_2(cli, good_file):
    code, _, err = cli("run", "-c", str(good_file), "--role", "drivers,bogus")
    assert code == 2 and "bogus" in err


def test_run_api_without_store_exits_2_with_a_hint(cli, good_file):
    code, _, err = cli("run", "-c", str(good_file), "--role", "api")
    assert code == 2 and "store,api" in err


def test_run_demo_with_a_config_file_exits_2(cli, good_file):
    code, _, err = cli("run", "--demo", "-c", str(good_file))
    assert code == 2 and "--demo" in err


def test_run_with_a_bad_config_file_exits_2_naming_it(cli, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[bus]\n")
    code, _, err = cli("run", "-c", str(path))
    assert code == 2 and f"{path}:" in err and "secret" in err
