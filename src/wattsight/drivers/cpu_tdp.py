"""Thermal design power of common server and desktop CPUs, and the ratios that turn it into watts.

``TABLE`` maps a canonical model ("Xeon Gold 6130", "EPYC 7763", "Ryzen 5950X", "Core i7-8700") to
(TDP in W per package, hardware threads per package), from the vendors' specification pages
(Intel ARK, AMD product pages); :func:`lookup` finds the entry for a ``/proc/cpuinfo`` model name.

A package draws about ``IDLE_RATIO`` x TDP when idle and ``MAX_RATIO`` x TDP at full load:
the end points of the curve Teads measured on bare-metal servers (B. Davy, "Building an AWS EC2
Carbon Emissions Dataset", Teads Engineering, 2021) and that the Green Software Foundation's
Impact Framework uses: 12 % of TDP at 0 % load, 32 % at 10 %, 75 % at 50 %, 102 % at 100 %.
For a CPU not in the table, Cloud Carbon Footprint's average coefficients per logical CPU are
used instead (0.74 W idle, 3.5 W at full load: its AWS average, from SPECpower results).
"""

from __future__ import annotations

import re

#: Fractions of TDP at 0, 10, 50 and 100 % CPU load (Teads / Davy 2021).
TEADS_LOAD = (0.0, 0.10, 0.50, 1.0)
TEADS_TDP = (0.12, 0.32, 0.75, 1.02)
IDLE_RATIO, MAX_RATIO = TEADS_TDP[0], TEADS_TDP[-1]
#: Watts per logical CPU when the model is unknown (Cloud Carbon Footprint, AWS average).
DEFAULT_IDLE_PER_CPU, DEFAULT_MAX_PER_CPU = 0.74, 3.5


def _rows(text: str) -> dict[str, tuple[float, int]]:
    """``"family: model tdp/threads, ..."`` lines as a dict; ``{}`` in the family places the model."""
    out = {}
    for line in text.strip().splitlines():
        family, _, items = line.partition(":")
        for item in items.split(","):
            model, tdp, threads = re.fullmatch(r"\s*(\S+) (\d+)/(\d+)\s*", item).groups()
            family = family.strip() if "{}" in family else family.strip() + " {}"
            out[family.format(model)] = (float(tdp), int(threads))
    return out


# family: model TDP-W/threads, ...  (the Xeon E5 lines: Sandy Bridge, v2 Ivy Bridge, v3 Haswell, v4 Broadwell)
TABLE: dict[str, tuple[float, int]] = _rows("""
Xeon E5-{}: 2620 95/12, 2630 95/12, 2650 95/16, 2660 95/16, 2670 115/16, 2680 130/16, 2690 135/16
Xeon E5-{} v2: 2620 80/12, 2630 80/12, 2650 95/16, 2660 95/20, 2670 115/20, 2680 115/20, 2690 130/20, 2697 130/24
Xeon E5-{} v3: 2620 85/12, 2630 85/16, 2640 90/16, 2650 105/20, 2660 105/20, 2670 120/24, 2680 120/24
Xeon E5-{} v3: 2690 135/24, 2695 120/28, 2697 145/28, 2698 135/32, 2699 145/36
Xeon E5-{} v4: 2620 85/16, 2630 85/20, 2630L 55/20, 2640 90/20, 2650 105/24, 2660 105/28, 2680 120/28
Xeon E5-{} v4: 2683 120/32, 2690 135/28, 2695 120/36, 2697 145/36, 2698 135/40, 2699 145/44
Xeon Silver: 4110 85/16, 4114 85/20, 4116 85/24, 4208 85/16, 4210 85/20, 4214 85/24, 4216 100/32
Xeon Silver: 4310 120/24, 4314 135/32
Xeon Gold: 5115 85/20, 5118 105/24, 5120 105/28, 6126 125/24, 6130 125/32, 6132 140/28, 6138 125/40
Xeon Gold: 6140 140/36, 6148 150/40, 6152 140/44, 6154 200/36, 5215 85/20, 5217 115/16, 5218 125/32
Xeon Gold: 5220 125/36, 6230 125/40, 6238 140/44, 6240 150/36, 6242 150/32, 6248 150/40, 6252 150/48
Xeon Gold: 6254 200/36, 5318Y 165/48, 6326 185/32, 6330 205/56, 6338 205/64, 6348 235/56
Xeon Gold: 5418Y 185/48, 6430 270/64, 6448Y 225/64
Xeon Platinum: 8160 150/48, 8168 205/48, 8180 205/56, 8260 165/48, 8268 205/48, 8280 205/56
Xeon Platinum: 8358 250/64, 8380 270/80, 8468 350/96, 8480+ 350/112
EPYC: 7251 120/16, 7281 155/32, 7301 170/32, 7351 170/32, 7401 170/48, 7451 180/48, 7501 170/64
EPYC: 7551 180/64, 7601 180/64
EPYC: 7252 120/16, 7262 155/16, 7272 120/24, 7282 120/32, 7302 155/32, 7352 155/48, 7402 180/48
EPYC: 7452 155/64, 7502 180/64, 7542 225/64, 7552 200/96, 7642 225/96, 7702 200/128, 7742 225/128
EPYC: 7H12 280/128
EPYC: 7313 155/32, 7343 190/32, 7413 180/48, 7443 200/48, 7513 200/64, 7543 225/64, 7643 225/96
EPYC: 7713 225/128, 7763 280/128
EPYC: 9124 200/32, 9254 200/48, 9334 210/64, 9354 280/64, 9454 290/96, 9554 360/128, 9654 360/192
Ryzen: 3600 65/12, 3700X 65/16, 3900X 105/24, 3950X 105/32, 5600X 65/12, 5800X 105/16, 5900X 105/24
Ryzen: 5950X 105/32, 7600X 105/12, 7700X 105/16, 7900X 170/24, 7950X 170/32
Core: i7-6700 65/8, i7-6700K 91/8, i7-7700 65/8, i7-7700K 91/8, i5-8500 65/6, i7-8700 65/12
Core: i7-8700K 95/12, i5-9500 65/6, i7-9700 65/8, i9-9900K 95/16, i7-10700 65/16, i9-10900K 125/20
Core: i7-12700 65/20, i9-12900K 125/24, i7-13700 65/24, i9-13900K 125/32
""")

#: How the canonical name is found in a /proc/cpuinfo model name.
_PATTERNS = (
    (re.compile(r"\b(Platinum|Gold|Silver)\s+(\d{4}[A-Z]?\+?)"), lambda m: f"Xeon {m[1]} {m[2]}"),
    (re.compile(r"\bE5-(\d{4}L?)(?:\s+(v\d))?"), lambda m: f"Xeon E5-{m[1]}{' ' + m[2] if m[2] else ''}"),
    (re.compile(r"\bEPYC\s+(\d{4}|7H12)\b"), lambda m: f"EPYC {m[1]}"),
    (re.compile(r"\bRyzen\s+\d\s+(\d{4}X?)\b"), lambda m: f"Ryzen {m[1]}"),
    (re.compile(r"\b(i[3579]-\d{4,5}K?)\b"), lambda m: f"Core {m[1]}"),
)


def canonical(model_name: str) -> str | None:
    """The table key a ``/proc/cpuinfo`` model name stands for ("Xeon Gold 6130"), or None."""
    for pattern, key in _PATTERNS:
        m = pattern.search(model_name)
        if m:
            return key(m)
    return None


def lookup(model_name: str) -> tuple[str, float, int] | None:
    """(table key, TDP W per package, threads per package) for a model name, or None if unknown."""
    key = canonical(model_name)
    if key is None or key not in TABLE:
        return None
    tdp, threads = TABLE[key]
    return key, tdp, threads
