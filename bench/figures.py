"""Print benchmark figures: one JSON line each, with the machine they were measured on."""

from __future__ import annotations

import json
import os
import platform


def machine() -> str:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores {cpu}, {mem:.0f} GiB, Python {platform.python_version()}"


def emit_json(figure: str, value: float, unit: str, **extra) -> None:
    row = {"figure": figure, "value": round(value, 6) if isinstance(value, float) else value, "unit": unit, **extra}
    print(json.dumps(row), flush=True)
