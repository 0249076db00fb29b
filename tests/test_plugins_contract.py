"""Every registered plugin keeps the contract, and the docs say so.

For each driver found through the ``wattsight.drivers`` entry point (built-in or not): the class
loads, has a ``Config`` deriving from ``DriverConfig`` and a ``SAMPLE`` that validates, has a
page under docs/drivers/, and ``wattsight probe <name> --once`` reads it with the options of its
``SAMPLE`` -- unless ``SAMPLE`` points to hardware (a host, an address, a device), which a test
here cannot reach.  For each consumer: a page under docs/consumers/.  And docs/index.md links to
pages that exist.
"""

from __future__ import annotations

import json
import re
import tomllib
import typing
from pathlib import Path, PurePath

import pytest

from wattsight import cli, config, plugins
from wattsight.drivers.base import Driver, DriverConfig
from wattsight.sample import check_probe_id, is_counter

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DRIVERS = plugins.names(plugins.DRIVERS)
CONSUMERS = plugins.names(plugins.CONSUMERS)

#: Keys and values of a SAMPLE section that mean "a real meter is needed".
HARDWARE_KEYS = {"host", "hosts", "address", "addresses", "url", "urls", "port", "device", "devices",
                 "broker", "bmc", "community", "username", "password", "ip"}
HARDWARE_VALUE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|/dev/|/sys/|/proc/|\d{1,3}(?:\.\d{1,3}){3}\b)", re.I)
#: The options of `wattsight probe` itself (argparse takes them before the driver sees them).
PROBE_OPTIONS = {"once", "json", "site", "help", "h"}


def driver_class(name: str):
    return plugins.load(name, plugins.DRIVERS)


def sample_sections(name: str) -> dict[str, dict]:
    """The ``[drivers.*]`` sections of a driver's SAMPLE."""
    return tomllib.loads(driver_class(name).SAMPLE).get("drivers", {})


def sample_section(name: str) -> dict:
    """The first SAMPLE section of this driver's type."""
    return next(s for s in sample_sections(name).values() if s.get("type") == name)


def own_fields(cls) -> list[str]:
    """The keys a driver adds to the common ones (type, period, timeout, enabled)."""
    return [k for k in cls.Config.model_fields if k not in DriverConfig.model_fields]


def is_path(annotation) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return True
    return any(is_path(a) for a in typing.get_args(annotation))


def hardware(section: dict) -> str | None:
    """``key = value`` of the first setting that points to a real meter, or None."""
    for key, value in section.items():
        values = value if isinstance(value, list) else [value]
        if key.lower() in HARDWARE_KEYS or any(isinstance(v, str) and HARDWARE_VALUE.match(v) for v in values):
            return f"{key} = {value!r}"
    return None


# -- fixtures for files a SAMPLE names ---------------------------------------------------------
TRACE_ROWS = [("lyon.taurus-7", "power", 1_700_000_000.0, 215.5, "W"),
              ("lyon.taurus-7", "power", 1_700_000_001.0, 216.0, "W"),
              ("lyon.taurus-8", "power", 1_700_000_000.0, 180.25, "W")]


def write_csv(path: Path) -> None:
    lines = ["probe,metric,measured_at,value,unit"] + [",".join(map(str, r)) for r in TRACE_ROWS]
    path.write_text("\n".join(lines) + "\n")


def write_parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = list(zip(*TRACE_ROWS))
    pq.write_table(pa.table(dict(zip(("probe", "metric", "measured_at", "value", "unit"), cols))), path)


#: A small file for each kind a SAMPLE may point to (a recorded trace, today).
FILE_FIXTURES = {".csv": write_csv, ".parquet": write_parquet}


def _cli_value(value) -> str:
    """A TOML value as `wattsight probe` takes it: lists comma-separated, booleans in lower case."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(_cli_value(v) for v in value)
    return str(value)


def _validates(cls, name: str, settings: dict) -> bool:
    try:
        cls.Config.model_validate({"type": name, **settings})
    except ValueError:  # pydantic's ValidationError
        return False
    return True


def probe_arguments(name: str, tmp_path: Path, *, every_key: bool = False) -> list[str]:
    """``--key value`` options for `wattsight probe <name>`, derived from the driver's SAMPLE.

    By default only the settings needed: the required keys, plus SAMPLE keys in order until the
    section validates; with ``every_key``, every key of the SAMPLE section.  Files the SAMPLE
    names are replaced by small ones written in ``tmp_path``; a SAMPLE that points to hardware
    makes the test skip, saying which setting.
    """
    cls, section = driver_class(name), sample_section(name)
    where = hardware(section)
    if where:
        pytest.skip(f"driver {name!r} needs a real meter: its SAMPLE has {where} (test it against a peer)")
    fields = cls.Config.model_fields
    usable = {k: v for k, v in section.items() if k != "type" and not isinstance(v, dict) and v != []}
    for key, value in usable.items():
        if key in fields and is_path(fields[key].annotation) and not Path(value).exists():
            suffix = Path(value).suffix.lower()
            if suffix not in FILE_FIXTURES:
                pytest.skip(f"driver {name!r} reads {key} = {value!r}, which is not here and has no fixture")
            usable[key] = tmp_path / Path(value).name
            FILE_FIXTURES[suffix](usable[key])
    if every_key:
        chosen = usable
    else:
        chosen = {k: v for k, v in usable.items() if fields[k].is_required()}
        for key, value in usable.items():
            if _validates(cls, name, chosen):
                break
            chosen[key] = value
    args: list[str] = []
    for key, value in chosen.items():
        args += [f"--{key.replace('_', '-')}", _cli_value(value)]
    return args


# -- drivers ----------------------------------------------------------------------------------
def test_the_built_in_drivers_are_registered():
    assert {"dummy", "replay"} <= set(DRIVERS)


@pytest.mark.parametrize("name", DRIVERS)
def test_driver_class_loads_with_a_config_and_one_verb(name):
    cls = driver_class(name)
    assert isinstance(cls, type)
    assert isinstance(cls.Config, type) and issubclass(cls.Config, DriverConfig), \
        f"{name}: Config must derive from wattsight.drivers.base.DriverConfig"
    assert (cls.__doc__ or "").strip(), f"{name}: the class needs a docstring (`wattsight plugins` shows it)"
    verb = "stream" if getattr(cls, "push", False) else "read"
    assert callable(getattr(cls, verb, None)), f"{name}: a {'push' if verb == 'stream' else 'polled'} driver needs {verb}()"
    if issubclass(cls, Driver):
        assert getattr(cls, verb) is not getattr(Driver, verb), f"{name}: {verb}() is not implemented"


@pytest.mark.parametrize("name", DRIVERS)
def test_driver_config_keys_are_described(name):
    cls = driver_class(name)
    fields = cls.Config.model_fields
    undescribed = [k for k in own_fields(cls) if not fields[k].description]
    assert not undescribed, f"{name}: Config fields without Field(description=...): {undescribed}"


@pytest.mark.parametrize("name", DRIVERS)
def test_driver_sample_validates_with_its_config(name):
    cls = driver_class(name)
    assert isinstance(cls.SAMPLE, str) and cls.SAMPLE.strip(), f"{name}: SAMPLE is empty"
    sections = sample_sections(name)
    assert sections, f"{name}: SAMPLE has no [drivers.<name>] section"
    assert [s.get("type") for s in sections.values()].count(name) >= 1, \
        f"{name}: no SAMPLE section has type = {name!r}"
    for key, section in sections.items():
        cfg = cls.Config.model_validate(section)
        assert cfg.type == name, f"[drivers.{key}]"


@pytest.mark.parametrize("name", DRIVERS)
def test_driver_sample_loads_as_part_of_a_configuration_file(name):
    text = '[bus]\nsecret = "test"\n\n' + driver_class(name).SAMPLE
    cfg = config.loads(text, "<sample>")
    assert cfg.drivers and all(d.type == name for d in cfg.drivers.values())
    assert all(isinstance(d, driver_class(name).Config) for d in cfg.drivers.values())


@pytest.mark.parametrize("name", DRIVERS)
def test_driver_has_a_docs_page_naming_every_key(name):
    page = DOCS / "drivers" / f"{name}.md"
    assert page.is_file(), f"driver {name!r} has no page {page.relative_to(ROOT)}"
    text = page.read_text()
    missing = [k for k in own_fields(driver_class(name)) if f"`{k}`" not in text]
    assert not missing, f"{page.relative_to(ROOT)} does not document {missing}"


@pytest.mark.parametrize("name", DRIVERS)
def test_every_driver_key_can_be_given_to_wattsight_probe(name):
    # `wattsight probe <driver> --<key> value` is documented to accept every key of the section.
    shadowed = sorted(PROBE_OPTIONS & set(own_fields(driver_class(name))))
    assert not shadowed, (f"{name}: key(s) {shadowed} cannot be set with `wattsight probe`: its own "
                          f"option(s) {['--' + k for k in shadowed]} take them first")


@pytest.mark.parametrize("name", DRIVERS)
def test_wattsight_probe_once_reads_the_driver(name, tmp_path, capsys):
    args = probe_arguments(name, tmp_path)
    code = cli.main(["probe", name, "--once", "--json", *args])
    out, err = capsys.readouterr()
    assert code == 0, f"wattsight probe {name} {' '.join(args)} --once: exit {code}: {err}"
    samples = [json.loads(line) for line in out.splitlines()]
    assert samples, f"wattsight probe {name} --once printed no sample"
    for s in samples:
        assert set(s) == {"probe", "metric", "measured_at", "value", "unit", "kind", "provenance"}
        check_probe_id(s["probe"])
        assert isinstance(s["measured_at"], float) and isinstance(s["value"], float)
        assert s["kind"] == "gauge" or is_counter(s["kind"])
        assert s["provenance"] in ("measured", "derived", "modelled")


@pytest.mark.parametrize("name", DRIVERS)
def test_wattsight_probe_once_prints_a_table(name, tmp_path, capsys):
    args = probe_arguments(name, tmp_path)
    assert cli.main(["probe", name, "--once", *args]) == 0
    out = capsys.readouterr().out
    assert out.split("\n", 1)[0].split() == ["probe", "metric", "measured_at", "value", "unit", "kind",
                                             "provenance"]


@pytest.mark.parametrize("name", DRIVERS)
def test_every_sample_setting_can_be_given_to_wattsight_probe(name, tmp_path, capsys):
    # The CLI promises that a driver's options are the keys of its section: the whole SAMPLE
    # section, given as options, must read as well as the file would.
    args = probe_arguments(name, tmp_path, every_key=True)
    code = cli.main(["probe", name, "--once", "--json", *args])
    err = capsys.readouterr().err
    assert code == 0, f"wattsight probe {name} {' '.join(args)} --once: exit {code}: {err}"


def test_the_hardware_rule_spots_meters_and_not_files():
    assert hardware({"type": "ipmi", "host": "bmc-1"}) == "host = 'bmc-1'"
    assert hardware({"type": "x", "target": "tcp://10.0.0.1:502"}) is not None
    assert hardware({"type": "x", "ports": ["/dev/ttyUSB0"]}) is not None
    assert hardware({"type": "x", "agent": "192.168.1.20"}) is not None
    assert hardware(sample_section("dummy")) is None
    assert hardware(sample_section("replay")) is None


# -- consumers --------------------------------------------------------------------------------
def test_the_built_in_consumers_are_registered():
    assert "store" in CONSUMERS


@pytest.mark.parametrize("name", CONSUMERS)
def test_consumer_class_loads_and_handles_batches(name):
    cls = plugins.load(name, plugins.CONSUMERS)
    assert callable(getattr(cls, "handle", None)), f"consumer {name!r} has no handle(batch)"


@pytest.mark.parametrize("name", CONSUMERS)
def test_consumer_has_a_docs_page(name):
    page = DOCS / "consumers" / f"{name}.md"
    assert page.is_file(), f"consumer {name!r} has no page {page.relative_to(ROOT)}"


# -- docs -------------------------------------------------------------------------------------
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def local_links(page: Path) -> list[str]:
    """Relative link targets of a markdown page (code blocks left out)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z]+:", t)]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    out = set()
    for title in re.findall(r"^#{1,6} +(.+?) *$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_every_page_linked_from_the_index_exists():
    index = DOCS / "index.md"
    links = local_links(index)
    assert links, "docs/index.md links to nothing"
    missing = [t for t in links if not (index.parent / t.split("#")[0]).resolve().exists()]
    assert not missing, f"docs/index.md links to pages that do not exist: {missing}"


def test_the_index_links_every_page_under_docs():
    index = DOCS / "index.md"
    linked = {(index.parent / t.split("#")[0]).resolve() for t in local_links(index)}
    pages = {p.resolve() for p in DOCS.rglob("*.md")} - {index.resolve()}
    unlinked = sorted(str(p.relative_to(DOCS)) for p in pages - linked)
    assert not unlinked, f"docs/index.md does not link {unlinked}"


def test_the_index_links_a_page_per_plugin():
    linked = {(DOCS / t.split("#")[0]).resolve() for t in local_links(DOCS / "index.md")}
    for name in DRIVERS:
        assert (DOCS / "drivers" / f"{name}.md").resolve() in linked, f"index.md does not link drivers/{name}.md"
    for name in CONSUMERS:
        assert (DOCS / "consumers" / f"{name}.md").resolve() in linked, f"index.md does not link consumers/{name}.md"


@pytest.mark.parametrize("page", sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")))
def test_links_between_docs_pages_resolve(page):
    src = DOCS / page
    broken = []
    for target in local_links(src):
        path, _, anchor = target.partition("#")
        dest = (src.parent / path).resolve() if path else src
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"docs/{page}: broken links {broken}"


def test_the_bus_worked_example_matches_the_code():
    """docs/bus.md quotes header bytes and a MAC computed by the code: they must stay true."""
    import msgpack

    from wattsight.bus import sign, topic_of
    from wattsight.codec import encode_batch
    from wattsight.sample import Batch, Series

    doc = (DOCS / "bus.md").read_text()
    key = b"example-bus-key"
    batch = Batch.of_series(Series("lyon.taurus-7", "power", "W"), [1700000000000, 1700000001000], [215.5, 216.0])
    topic = topic_of("lyon", "power")
    header = msgpack.packb({"src": "host1/4242/a1b2c3d4e5f6", "seq": 1, "sent": 1700000001050, "n": 2})
    payload = encode_batch(batch)
    mac = sign(key, topic, header, payload)
    assert mac.hex() in doc
    shell_line = next(line for line in doc.splitlines() if line.startswith("H="))
    assert shell_line == f"H={header.hex()}"
    shell_line = next(line for line in doc.splitlines() if line.startswith("P="))
    assert shell_line == f"P={payload.hex()}"
    assert f"Header, {len(header)} bytes" in doc and f"Payload, {len(payload)} bytes" in doc
