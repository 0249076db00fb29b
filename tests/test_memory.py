"""wattsight.memory: glibc keeps large freed blocks for the next flush instead of giving them back
and faulting them in again page by page."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from wattsight import memory

ALLOCATE_TWICE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from wattsight.memory import keep_freed_memory
    print(keep_freed_memory() if sys.argv[1] == "keep" else None)
    a = np.ones(32 << 20)  # 256 MB, freed, then asked for again (a flush's temporaries)
    del a
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    b = np.ones(32 << 20)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def faults_of_a_second_array(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", ALLOCATE_TWICE, mode], capture_output=True, text=True, check=True)
    kept, faults = out.stdout.split()
    return kept, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_a_large_array_freed_is_reused_without_faulting_its_pages_in_again():
    kept, faults_kept = faults_of_a_second_array("keep")
    _, faults_default = faults_of_a_second_array("defaults")
    assert kept == "True"
    # defaults: the 256 MB come back from the kernel (65,536 pages of 4 kB; 128 or more with 2 MB pages)
    assert faults_default > 10 * max(faults_kept, 1) and faults_default > 50, (faults_default, faults_kept)


class FakeLibc:
    def __init__(self, answer: int = 1, glibc: bool = True) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer
        if glibc:
            self.gnu_get_libc_version = lambda: b"2.36"

        def mallopt(param: int, value: int) -> int:  # a function, as ctypes gives: it takes argtypes
            self.calls.append((param, value))
            return self.answer

        self.mallopt = mallopt


def test_the_settings_passed_to_mallopt():
    libc = FakeLibc()
    assert memory.keep_freed_memory(512, 1024, libc=libc)
    assert libc.calls == [(memory.M_ARENA_MAX, 1), (memory.M_MMAP_THRESHOLD, 1 << 30), (memory.M_TRIM_THRESHOLD, 512 << 20)]


def test_another_c_library_is_left_alone():
    libc = FakeLibc(glibc=False)
    assert not memory.keep_freed_memory(libc=libc) and libc.calls == []


def test_a_refused_setting_is_reported(caplog):
    assert not memory.keep_freed_memory(libc=FakeLibc(answer=0))
    assert "mallopt refused" in caplog.text


@pytest.mark.parametrize("mb", [0, 2048, 4096])
def test_sizes_mallopt_cannot_take_are_refused_with_the_range(mb):
    with pytest.raises(ValueError, match="expected 1..2047"):
        memory.keep_freed_memory(keep_mb=mb, libc=FakeLibc())


@pytest.mark.parametrize("role, kept", [("store,api", True), ("drivers", False)])
def test_wattsight_run_keeps_freed_memory_when_it_runs_a_store(monkeypatch, tmp_path, role, kept):
    from wattsight import app, cli

    called, served = [], []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: called.append(True) or True)
    monkeypatch.setattr(app, "serve", lambda cfg, roles, on_ready=None: served.append(roles))
    assert cli.main(["run", "--demo", "--data-dir", str(tmp_path), "--role", role]) == 0
    assert served == [set(role.split(","))] and called == ([True] if kept else [])
