"""The nvml driver: through a fake NVML seam (no GPU here), and the real seam on this machine."""

from __future__ import annotations

import sys

import pytest

from wattsight import cli
from wattsight.drivers.nvml import (
    DRIVER_NOT_LOADED,
    FUNCTION_NOT_FOUND,
    INVALID_ARGUMENT,
    LIBRARY_NOT_FOUND,
    NO_PERMISSION,
    NOT_SUPPORTED,
    Nvml,
    NvmlConfig,
    NvmlDriver,
    NvmlError,
)
from wattsight.errors import MeterPermissionError, MeterReplyError, MeterUnreachable, MissingDependency

NOW = 1_800_000_000_000


class FakeNvml:
    """A stand-in for the seam: GPUs as dicts, every call recorded; a value may be an NvmlError to raise."""

    def __init__(self, gpus: list[dict], *, init: NvmlError | None = None) -> None:
        self.gpus, self.init_error, self.calls = gpus, init, []

    def _do(self, call: str, value):
        self.calls.append(call)
        if isinstance(value, NvmlError):
            raise value
        return value

    def init(self):
        self._do("init", self.init_error)

    def shutdown(self):
        self._do("shutdown", None)

    def count(self):
        return self._do("count", len(self.gpus))

    def handle(self, index):
        if not 0 <= index < len(self.gpus):
            return self._do("handle", NvmlError(INVALID_ARGUMENT, "Invalid Argument", "nvmlDeviceGetHandleByIndex"))
        return self._do("handle", index)

    def handle_by_uuid(self, uuid):
        found = [i for i, g in enumerate(self.gpus) if g["uuid"] == uuid]
        return self._do("handle_by_uuid", found[0] if found else NvmlError(6, "Not Found", "byUUID"))

    def index(self, h):
        return self._do("index", h)

    def name(self, h):
        return self._do("name", self.gpus[h]["name"])

    def uuid(self, h):
        return self._do("uuid", self.gpus[h]["uuid"])

    def energy_mj(self, h):
        return self._do(f"energy_mj({h})", self.gpus[h]["energy"])

    def power_mw(self, h):
        return self._do(f"power_mw({h})", self.gpus[h]["power"])


def unsupported(call: str) -> NvmlError:
    return NvmlError(NOT_SUPPORTED, "Not Supported", call)


def gpu(i: int, energy=1_234_567, power=250_500) -> dict:
    return {"uuid": f"GPU-000{i}", "name": "NVIDIA A100-SXM4-40GB", "energy": energy, "power": power}


def driver(fake, **settings) -> NvmlDriver:
    cfg = NvmlConfig.model_validate({"type": "nvml", **settings})
    return NvmlDriver(cfg, site="lyon", clock=lambda: NOW, nvml=fake, host="gpu-node")


def values(batch) -> dict:
    return {(s.probe, s.metric): (s.value, s.unit, s.kind) for s in batch.samples()}


def test_every_gpu_gives_its_energy_counter_in_joules_and_its_power_in_watts():
    fake = FakeNvml([gpu(0), gpu(1, energy=5_000, power=61_000)])
    batch = driver(fake).read()
    assert values(batch) == {("lyon.gpu-node-gpu-0", "energy"): (1234.567, "J", "counter"),
                             ("lyon.gpu-node-gpu-0", "power"): (250.5, "W", "gauge"),
                             ("lyon.gpu-node-gpu-1", "energy"): (5.0, "J", "counter"),
                             ("lyon.gpu-node-gpu-1", "power"): (61.0, "W", "gauge")}
    assert set(batch.t.tolist()) == {NOW} and {s.provenance for s in batch.series} == {"measured"}


def test_nvml_is_started_once_and_shut_down_on_close():
    fake = FakeNvml([gpu(0)])
    d = driver(fake, metrics=["energy"])
    d.read()
    d.read()
    assert fake.calls.count("init") == 1 and fake.calls.count("energy_mj(0)") == 2
    assert not any(c.startswith("power") for c in fake.calls)
    d.close()
    assert fake.calls[-1] == "shutdown"


def test_a_gpu_without_the_energy_counter_falls_back_to_power_and_is_not_asked_again():
    fake = FakeNvml([gpu(0), gpu(1, energy=unsupported("nvmlDeviceGetTotalEnergyConsumption"))])
    d = driver(fake, metrics=["energy"])
    assert values(d.read()) == {("lyon.gpu-node-gpu-0", "energy"): (1234.567, "J", "counter"),
                                ("lyon.gpu-node-gpu-1", "power"): (250.5, "W", "gauge")}
    d.read()
    assert fake.calls.count("energy_mj(1)") == 1 and fake.calls.count("power_mw(1)") == 2


def test_an_old_driver_without_the_energy_function_falls_back_to_power_too():
    fake = FakeNvml([gpu(0, energy=NvmlError(FUNCTION_NOT_FOUND, "Function Not Found", "x"))])
    assert list(values(driver(fake, metrics=["energy"]).read())) == [("lyon.gpu-node-gpu-0", "power")]


def test_a_gpu_with_neither_energy_nor_power_is_a_reply_error_naming_it():
    fake = FakeNvml([gpu(0, energy=unsupported("e"), power=unsupported("p"))])
    with pytest.raises(MeterReplyError, match="GPU 0 \\(NVIDIA A100-SXM4-40GB\\) reports neither"):
        driver(fake).read()


def test_devices_by_index_or_uuid_and_probe_templates():
    fake = FakeNvml([gpu(0), gpu(1), gpu(2)])
    got = values(driver(fake, devices=[2, "GPU-0000"], probe="{uuid}", metrics=["power"]).read())
    assert sorted(got) == [("lyon.GPU-0000", "power"), ("lyon.GPU-0002", "power")]
    assert "count" in fake.calls and "handle_by_uuid" in fake.calls


def test_probes_are_known_without_nvml_when_devices_are_indexes():
    fake = FakeNvml([gpu(0)])
    d = driver(fake, devices=[0, 3])
    assert [p.id for p in d.probes()] == ["lyon.gpu-node-gpu-0", "lyon.gpu-node-gpu-3"] and fake.calls == []
    assert driver(fake).probes() == [] and fake.calls == []


def test_an_unknown_gpu_is_a_reply_error_saying_how_many_there_are():
    with pytest.raises(MeterReplyError, match="no GPU 4 on this host: it has 2 GPU"):
        driver(FakeNvml([gpu(0), gpu(1)]), devices=[4]).read()


@pytest.mark.parametrize("code, error, says", [
    (LIBRARY_NOT_FOUND, MeterUnreachable, "no NVIDIA driver: the NVML library"),
    (DRIVER_NOT_LOADED, MeterUnreachable, "kernel module is not loaded"),
    (NO_PERMISSION, MeterPermissionError, "no permission"),
    (999, MeterUnreachable, "Unknown Error")])
def test_nvml_failing_to_start_is_a_clear_driver_error(code, error, says):
    fake = FakeNvml([gpu(0)], init=NvmlError(code, "Unknown Error" if code == 999 else "x", "nvmlInit"))
    with pytest.raises(error, match=says):
        driver(fake).read()


def test_a_lost_gpu_is_unreachable_and_the_next_read_starts_nvml_again():
    fake = FakeNvml([gpu(0, power=NvmlError(15, "GPU is lost", "nvmlDeviceGetPowerUsage"))])
    d = driver(fake, metrics=["power"])
    with pytest.raises(MeterUnreachable, match="GPU is lost"):
        d.read()
    assert fake.calls[-1] == "shutdown"
    fake.gpus[0]["power"] = 70_000
    assert values(d.read()) == {("lyon.gpu-node-gpu-0", "power"): (70.0, "W", "gauge")}
    assert fake.calls.count("init") == 2


@pytest.mark.parametrize("bad, says", [({"probe": "gpu"}, "alike"), ({"probe": "gpu-{gpu}"}, "placeholders"),
                                       ({"metrics": []}, "at least 1"), ({"metrics": ["heat"]}, "energy")])
def test_bad_settings_are_refused(bad, says):
    with pytest.raises(ValueError, match=says):
        NvmlConfig.model_validate({"type": "nvml", **bad})


def test_without_pynvml_the_real_seam_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(MissingDependency, match=r"nvidia-ml-py.*wattsight\[nvml\]"):
        Nvml().init()


# -- the real seam, on this machine ----------------------------------------------------------------
def test_the_real_seam_reads_this_hosts_gpus_or_says_there_is_no_nvidia_driver():
    d = NvmlDriver(NvmlConfig(type="nvml"), site="lyon")
    try:
        batch = d.read()
    except MeterUnreachable as exc:
        assert "no NVIDIA driver" in str(exc), exc  # this machine: no GPU, no libnvidia-ml
        return
    except MeterPermissionError as exc:
        pytest.skip(f"an NVIDIA GPU is here but NVML may not be used by this user: {exc}")
    finally:
        d.close()
    if not d.gpus and len(batch) == 0:
        pytest.skip("NVML runs here but finds no GPU")
    assert {s.metric for s in batch.samples()} & {"energy", "power"}
    assert all(s.value >= 0 for s in batch.samples())


def test_wattsight_probe_nvml_prints_the_no_driver_error_here(capsys):
    try:
        Nvml().init()
    except NvmlError as exc:
        if exc.code != LIBRARY_NOT_FOUND:
            pytest.skip(f"NVML is here but fails differently: {exc}")
    else:
        pytest.skip("NVML is installed here: the no-driver message cannot be shown")
    assert cli.main(["probe", "nvml", "--once"]) == 1
    assert "no NVIDIA driver" in capsys.readouterr().err
