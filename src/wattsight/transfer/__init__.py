"""The ``export`` and ``import`` verbs: samples out of the store to files, and files into it.

:mod:`wattsight.cli` declares them with :func:`add_commands`, which makes each parser with
:func:`wattsight.cli_tools.add_verb` and binds it to :func:`run` (``args.func``), as
:func:`wattsight.cli_tools.add_commands` does.  The work is done in :mod:`.export` and
:mod:`.import_`; formats in :mod:`.tables` (Parquet, CSV), :mod:`.hdf5` and :mod:`.kwapi`
(kwapi-g5k HDF5 and Kwapi RRD); the stores in :mod:`.stores`.
docs/export-import.md is the user's page.
"""

from __future__ import annotations

from ..cli_tools import add_verb


def add_commands(sub) -> None:
    """Add ``export`` and ``import`` to the ``wattsight`` sub-command parsers."""
    e = add_verb(
        sub, "export", help="write stored samples to a Parquet, CSV or HDF5 file",
        description="Write the samples of some probes over a time range to a file: one row per sample "
                    "(probe, metric, unit, kind, provenance, measured_at, value). Reads the configured "
                    "store directly, also while wattsight runs, in bounded memory.",
        examples=["wattsight export --all --from 2024-05-01 --to 2024-06-01 -o may.parquet -c site.toml",
                  "wattsight export --probes 'lyon.taurus-*' --metrics power --from now-1d -o day.csv",
                  "wattsight export --probes lyon.taurus-7,lyon.taurus-8 --format hdf5 -o two.h5"])
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--probes", help="comma-separated probe ids; shell patterns such as 'lyon.taurus-*' work")
    which.add_argument("--all", action="store_true", help="every stored probe")
    e.add_argument("--metrics", help="comma-separated metrics (default: all of the chosen probes')")
    e.add_argument("--from", dest="start", metavar="TIME",
                   help="first time, included: ISO 8601, epoch seconds or now-1d (default: the first sample)")
    e.add_argument("--to", dest="end", metavar="TIME", help="end time, excluded (default: after the last sample)")
    e.add_argument("--format", choices=("parquet", "csv", "hdf5"), help="default: from the file name's suffix")
    e.add_argument("-o", "--output", required=True, help="the file to write ('-' for CSV on standard output)")
    _common(e)
    e.set_defaults(func=run)

    i = add_verb(
        sub, "import", help="read Parquet, CSV, HDF5 exports and Kwapi HDF5/RRD dumps into the store",
        description="Add the samples of files to the configured store. A sample whose probe, metric and "
                    "time are already stored (or came earlier in the files) is skipped, so importing a "
                    "file twice changes nothing. An embedded store must not be open in a running "
                    "wattsight (stop it while importing).",
        examples=["wattsight import may.parquet -c site.toml",
                  "wattsight import /var/lib/kwapi/hdf5/2016_01_01_power_store.h5 -c site.toml",
                  "wattsight import /var/lib/kwapi/rrd --names lyon.taurus-7,lyon.taurus-8 -c site.toml"])
    i.add_argument("files", nargs="+", metavar="FILE", help="files, or folders of files (Kwapi's rrd_dir)")
    i.add_argument("--format", choices=("auto", "parquet", "csv", "hdf5", "kwapi-hdf5", "rrd"), default="auto",
                   help="default auto: from the file's first bytes")
    i.add_argument("--site", help="site for probe names without one (Kwapi RRD, CSV from elsewhere)")
    i.add_argument("--names", help="RRD: probe ids to match Kwapi's uuid5 file names against "
                                   "(the configuration's probes are tried too)")
    i.add_argument("--metric", help="kwapi-hdf5: the metric when the file name does not say; "
                                    "rrd: the metric name (default power, or network_rate for a DERIVE)")
    _common(i)
    i.set_defaults(func=run)


def _common(p) -> None:
    p.add_argument("-c", "--config", help="the TOML configuration whose [store] to use (default: $WATTSIGHT_CONFIG, "
                                          "else the embedded default's store)")
    p.add_argument("--store", metavar="DIR", help="an embedded store folder (overrides [store])")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")


def run(args) -> int:
    """Run a parsed ``export`` or ``import``."""
    if args.verb == "export":
        from .export import export

        return export(args)
    from .import_ import import_files

    return import_files(args)

