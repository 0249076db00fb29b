"""Readers for what Kwapi and kwapi-g5k kept: their HDF5 files and their RRD files.

**kwapi-g5k HDF5** (PyTables), as written by ``kwapi/plugins/hdf5/hdf5_collector.py``
(openstack-archive/kwapi, kwapi-g5k branch, commit 0393073b):

- one file per data type and period: ``<hdf5_dir>/<YYYY_MM_DD>_<data_type>_store.h5``,
  data_type ``power``, ``network_in`` or ``network_out``;
- one group per site, ``/<site>``; one table per probe, ``/<site>/<host>`` where the host part
  of the probe id has ``.`` written ``__`` and ``-`` written ``_`` (``get_probe_path``);
- the table's rows (``ProbeMeasures``): ``timestamp`` Float64 (s since the epoch), ``measure``
  Int64 (W for power; bytes, the switch port's cumulative counter, for network_in/out);
- the names a probe was also known by (its nodes) are hard links to the same table.

A table reachable under several names is imported once, under the first name in sorted order;
the other names are reported as aliases.

**Kwapi RRD**, as written by ``kwapi/plugins/rrd/rrd.py`` (same repository): one file per probe,
named ``uuid5(NAMESPACE_DNS, probe_id).rrd``, ``--step 1``, ``DS:w:GAUGE:600:0:U`` (power) or
``DS:o:DERIVE:600:0:U`` (a byte counter, stored by RRD as a rate), and six ``RRA:AVERAGE:0.5``
archives: 1 s x 300, 10 s x 360, 15 min x 96, 2 h x 84, 6 h x 124, 1 week x 52.  RRD keeps
consolidated data only: the import takes, for each moment, the finest archive that covers
it, into one series of provenance ``derived`` (a store reads one probe's metric as one series,
so 1 s rows and averages cannot carry different provenances).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import ConfigError, SampleError
from ..sample import Batch, Series
from .hdf5 import h5py_module
from .tables import CHUNK

KWAPI_FILE = re.compile(r"(?:^|_)(power|network_in|network_out)_store\.h5$")
KWAPI_METRICS = {"power": ("W", "gauge"), "network_in": ("B", "counter"), "network_out": ("B", "counter")}


def kwapi_probe_id(site: str, table: str) -> str:
    """The probe id of table ``/<site>/<table>`` (inverse of kwapi-g5k's get_probe_path)."""
    return f"{site}.{'.'.join(part.replace('_', '-') for part in table.split('__'))}"


def is_kwapi_hdf5(path: Path) -> bool:
    """True when ``path`` holds at least one /<site>/<probe> table with timestamp and measure."""
    return bool(_kwapi_tables(h5py_module().File(path, "r"), close=True))


def _kwapi_tables(f, *, close: bool = False) -> dict:
    """{object identity: [(probe id, dataset), ...]} of the kwapi tables in an open file."""
    import h5py

    found: dict = {}
    try:
        for site, group in f.items():
            if not isinstance(group, h5py.Group):
                continue
            for name, ds in group.items():
                if isinstance(ds, h5py.Dataset) and {"timestamp", "measure"} <= set(ds.dtype.names or ()):
                    found.setdefault(ds.id, []).append((kwapi_probe_id(site, name), ds))
    finally:
        if close:
            f.close()
    return found


def read_kwapi_hdf5(path: Path, metric: str | None = None, notes: list[str] | None = None
                    ) -> tuple[int, Iterator[Batch]]:
    """(rows, batches) of a kwapi-g5k HDF5 file; the metric comes from its name or ``metric``."""
    m = KWAPI_FILE.search(path.name)
    metric = metric or (m.group(1) if m else None)
    if metric is None:
        raise ConfigError("cannot tell the metric from the file name", file=str(path),
                          expected="<date>_<power|network_in|network_out>_store.h5",
                          hint="give --metric power (or network_in, network_out)")
    unit, kind = KWAPI_METRICS.get(metric, ("W", "gauge"))
    try:
        f = h5py_module().File(path, "r")
    except OSError as exc:
        raise ConfigError(f"not a readable HDF5 file ({exc})", file=str(path)) from None
    tables = sorted((sorted(names, key=lambda x: x[0]) for names in _kwapi_tables(f).values()),
                    key=lambda names: names[0][0])
    if not tables:
        f.close()
        raise ConfigError("no kwapi table in it", file=str(path),
                          expected="/<site>/<probe> tables with columns timestamp and measure")
    for names in tables:
        if len(names) > 1 and notes is not None:
            notes.append(f"{path.name}: {names[0][0]} also named {', '.join(p for p, _ in names[1:])} "
                         "(hard links to one table: imported once; list them as aliases in [probes])")

    def batches() -> Iterator[Batch]:
        with f:
            for names in tables:
                probe, ds = names[0]
                try:
                    series = Series(probe, metric, unit, kind, "measured")
                except SampleError as exc:
                    raise ConfigError(str(exc), file=f"{path}:{ds.name}") from None
                for lo in range(0, len(ds), CHUNK):
                    rows = ds[lo:lo + CHUNK]
                    ts = rows["timestamp"].astype(np.float64)
                    bad = ~np.isfinite(ts)
                    if bad.any():
                        raise ConfigError(f"record {lo + int(np.argmax(bad))}: timestamp {ts[bad][0]} is not a time",
                                          file=f"{path}:{ds.name}")
                    yield Batch.of_series(series, np.round(ts * 1000).astype(np.int64),
                                          rows["measure"].astype(np.float64))

    return sum(len(names[0][1]) for names in tables), batches()


# -- RRD -----------------------------------------------------------------------------------
def rrd_probe_id(path: Path, names: list[str], site: str | None) -> str:
    """The probe id of a Kwapi RRD file: its uuid5 name matched against ``names``, or its stem."""
    stem = path.stem
    try:
        wanted = uuid.UUID(stem)
    except ValueError:
        return stem if "." in stem or not site else f"{site}.{stem}"
    for name in names:
        for candidate in dict.fromkeys((name, name.split(".", 1)[-1])):
            if uuid.uuid5(uuid.NAMESPACE_DNS, candidate) == wanted:
                if "." in candidate:
                    return candidate
                if site or "." in name:
                    return f"{site}.{candidate}" if site else name
    raise ConfigError(f"the file is named after uuid5(probe id) and none of the {len(names)} names given "
                      "matches", file=str(path),
                      hint="give the probe ids with --names a,b,... (and --site for ids without a site), "
                           "or -c with the site's configuration")


def read_rrd(path: Path, names: list[str], site: str | None = None, metric: str | None = None
             ) -> tuple[int, Iterator[Batch]]:
    """(rows, batches) of a Kwapi RRD file, through ``rrdtool dump`` (Debian package rrdtool)."""
    probe = rrd_probe_id(path, names, site)
    root = _dump(path)
    try:
        step, last = int(root.findtext("step")), int(root.findtext("lastupdate"))
        dss = [(d.findtext("name").strip(), d.findtext("type").strip()) for d in root.findall("ds")]
    except (TypeError, ValueError):
        raise ConfigError("rrdtool dump gave no step, lastupdate or ds", file=str(path)) from None
    parts: list[Batch] = []
    for k, (ds, typ) in enumerate(dss):
        if typ == "GAUGE":
            name, unit = metric or "power", "W"
        else:  # DERIVE / COUNTER / ABSOLUTE: RRD kept a per-second rate, not the counter
            name, unit = metric or "network_rate", "B/s"
        if len(dss) > 1:
            name = f"{name}_{ds}"
        parts += _rrd_series(root, k, step, last, probe, name, unit, path)
    batch = Batch.concat(parts)
    return len(batch), iter([batch] if len(batch) else [])


def _dump(path: Path) -> ET.Element:
    exe = shutil.which("rrdtool")
    if exe is None:
        raise ConfigError("importing RRD files needs the rrdtool program", file=str(path),
                          hint="install it: apt install rrdtool (Debian, Ubuntu) or dnf install rrdtool")
    done = subprocess.run([exe, "dump", str(path)], capture_output=True, timeout=120, check=False)
    if done.returncode:
        msg = done.stderr.decode(errors="replace").strip() or f"exit code {done.returncode}"
        raise ConfigError(f"rrdtool dump failed: {msg}", file=str(path), expected="an RRD file")
    try:
        return ET.fromstring(done.stdout)
    except ET.ParseError as exc:
        raise ConfigError(f"rrdtool dump gave unreadable XML ({exc})", file=str(path)) from None


def _rrd_series(root: ET.Element, k: int, step: int, last: int, probe: str, metric: str, unit: str,
                path: Path) -> list[Batch]:
    """The AVERAGE archives of data source ``k``, finest first, each only before the finer ones."""
    archives = []
    for rra in root.findall("rra"):
        if (rra.findtext("cf") or "").strip() != "AVERAGE":
            continue
        pdp = int(rra.findtext("pdp_per_row"))
        rows = rra.find("database").findall("row")
        v = np.array([float(r.findall("v")[k].text) for r in rows], np.float64)
        res = step * pdp
        end = last - last % res
        archives.append((res, end - res * np.arange(len(v))[::-1], v))
    out, covered_from = [], None
    for res, t, v in sorted(archives, key=lambda a: a[0]):
        keep = ~np.isnan(v)
        if covered_from is not None:
            keep &= t <= covered_from
        if len(t):
            covered_from = min(covered_from, int(t[0]) - res) if covered_from is not None else int(t[0]) - res
        try:
            series = Series(probe, metric, unit, "gauge", "derived")
        except SampleError as exc:
            raise ConfigError(str(exc), file=str(path), hint="give --site SITE for a probe id without a site") from None
        if keep.any():
            out.append(Batch.of_series(series, t[keep].astype(np.int64) * 1000, v[keep]))
    return [Batch.concat(out)] if out else []
