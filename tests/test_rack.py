"""A simulated rack read by a real ``wattsight run``: 10 BMCs, 2 PDUs of 24 outlets, 1 switch.

Every meter is a real protocol peer on 127.0.0.1: five ``ipmi_sim`` BMCs, five Redfish BMCs
(DMTF mockups), two ``snmpsim`` PDUs (APC, 24 outlets each) and one ``snmpsim`` switch (24
ports).  All are polled at 1 Hz by one process.  The test checks that every probe shows in the
API with the value its peer serves, that stopping one peer only stops *its* probes (the others
go on, and the runner reports the dead one by name), and that its probes come back when it
returns.  No timing threshold: "goes on" and "stopped" are read from the samples' own times.
"""

from __future__ import annotations

import time

import pytest
from peers import ipmi_sim, snmpsim
from peers.redfish import RedfishPeer
from procs import Wattsight, free_port

pytestmark = pytest.mark.slow

SITE = "rack"
N_IPMI = N_REDFISH = 5
OUTLETS = PORTS = 24
REDFISH_ENV = "/redfish/v1/Chassis/1U/EnvironmentMetrics"  # what the redfish driver reads first


def redfish_watts(i: int) -> float:
    return 310.5 + 10 * i


def _toml_value(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def rack_config(tmp, ipmis, redfishes, pdus, switch) -> str:
    lines = [f'site = "{SITE}"', "[bus]", f'endpoint = "ipc://{tmp}/bus"', 'secret = "rack-test-key"',
             "[store]", f'path = "{tmp}/store"']
    sections: dict[str, dict] = {}
    for i, bmc in enumerate(ipmis, 1):
        sections[f"bmc-i{i}"] = {"type": "ipmi", "host": bmc.host, "port": bmc.port, "username": bmc.username,
                                 "password": bmc.password, "client": "pyghmi", "name": f"node-i{i}",
                                 # pyghmi stalls on ~1 % of reads from ipmi_sim for up to 2 s
                                 # (docs/drivers/ipmi.md): a late read skips ticks, not an error
                                 "timeout": 3.0}
    for i, bmc in enumerate(redfishes, 1):
        sections[f"bmc-r{i}"] = {"type": "redfish", "url": bmc.url, "username": bmc.username,
                                 "password": bmc.password, "auth": "session", "probe": f"node-r{i}"}
    for name, pdu in pdus.items():
        sections[name] = {"type": "snmp", "host": "127.0.0.1", "port": pdu.port, "community": "public",
                          "preset": "apc", "outlets": OUTLETS, "probe": f"{name}-{{outlet}}"}
    sections["switch"] = {"type": "snmp-switch", "host": "127.0.0.1", "port": switch.port,
                          "community": "public", "ports": PORTS, "probe": "sw-{port}"}
    for name, section in sections.items():
        lines.append(f"[drivers.{name}]")
        lines.append("period = 1.0")
        lines += [f"{k} = {_toml_value(v)}" for k, v in section.items()]
    return "\n".join(lines) + "\n"


def last_times(ws: Wattsight) -> dict[str, float]:
    """Probe id -> the newest measured_at over its metrics (probes with a sample only)."""
    out = {}
    for p in ws.get("/api/v1/probes")["probes"]:
        if p["last"]:
            out[p["id"]] = max(m["measured_at"] for m in p["last"].values())
    return out


@pytest.fixture
def rack(tmp_path):
    if ipmi_sim.missing() is not None:
        pytest.skip(ipmi_sim.missing())
    if snmpsim.responder() is None:
        pytest.skip("snmpsim-command-responder not found (pip install snmpsim)")
    peers = []
    try:
        ipmis = []
        for i in range(1, N_IPMI + 1):
            ipmis.append(ipmi_sim.IpmiSim(tmp_path / f"ipmi-{i}", watts=200.0 + 20 * i, dcmi=False).start())
            peers.append(ipmis[-1])
        redfishes = []
        for i in range(1, N_REDFISH + 1):
            redfishes.append(RedfishPeer("public-rackmount1").start())
            peers.append(redfishes[-1])
            redfishes[-1].set(REDFISH_ENV, "/PowerWatts/Reading", redfish_watts(i))  # each its own value
        pdus = {}
        for name in ("pdu-a", "pdu-b"):
            pdu = snmpsim.SnmpSim(tmp_path / name)
            pdu.write("public", snmpsim.pdu_records("apc", OUTLETS))
            pdus[name] = pdu.start()
            peers.append(pdu)
        switch = snmpsim.SnmpSim(tmp_path / "switch")
        switch.write("public", snmpsim.switch_records(PORTS))
        peers.append(switch.start())
        cfg = tmp_path / "rack.toml"
        cfg.write_text(rack_config(tmp_path, ipmis, redfishes, pdus, switch))
        ws = Wattsight(["-c", str(cfg)], tmp_path, listen=f"127.0.0.1:{free_port()}")
        try:
            ws.wait_ready()
            yield ws, ipmis, redfishes, pdus, switch
        finally:
            ws.stop()
    finally:
        for peer in peers:
            peer.stop()


def expected_probes() -> set[str]:
    ids = {f"{SITE}.node-i{i}" for i in range(1, N_IPMI + 1)}
    ids |= {f"{SITE}.node-r{i}" for i in range(1, N_REDFISH + 1)}
    ids |= {f"{SITE}.{pdu}-{o}" for pdu in ("pdu-a", "pdu-b") for o in range(1, OUTLETS + 1)}
    ids |= {f"{SITE}.sw-{p}" for p in range(1, PORTS + 1)}
    return ids


def test_a_rack_polled_at_1_hz_shows_every_probe_and_survives_one_dead_peer(rack):
    ws, ipmis, _redfishes, pdus, _switch = rack
    want = expected_probes()

    # 1. every probe shows in the API (those and no other), with the value its peer serves
    ws.wait_for(lambda: want <= set(last_times(ws)), timeout=90, what="every probe of the rack in the API")
    probes = {p["id"]: p for p in ws.get("/api/v1/probes")["probes"]}
    assert set(probes) == want and len(probes) == N_IPMI + N_REDFISH + 2 * OUTLETS + PORTS
    last = {(pid, metric): m["value"] for pid, p in probes.items() for metric, m in p["last"].items()}
    for i, bmc in enumerate(ipmis, 1):
        assert last[f"{SITE}.node-i{i}", "power"] == sum(bmc.sensor_watts(s) for s in bmc.power_sensors)
    for i in range(1, N_REDFISH + 1):
        assert last[f"{SITE}.node-r{i}", "power"] == redfish_watts(i)
    for pdu in ("pdu-a", "pdu-b"):
        for o in range(1, OUTLETS + 1):
            assert last[f"{SITE}.{pdu}-{o}", "power"] == snmpsim.power_w(o)
            energy = snmpsim.energy_wh(o) // 100 * 100 * 3600  # J: the PDU counts in 0.1 kWh
            assert last[f"{SITE}.{pdu}-{o}", "energy"] == pytest.approx(energy)
    for port in range(1, PORTS + 1):
        assert last[f"{SITE}.sw-{port}", "network_in"] == snmpsim.octets_in(port)
        assert last[f"{SITE}.sw-{port}", "network_out"] == snmpsim.octets_out(port)
    # energy: the PDU's counter stands still in the simulator (0 J, not an integral of its power);
    # a BMC's constant power integrated over the time its samples cover
    def energies():  # once two samples of node-i1 cover some time
        got = ws.get("/api/v1/energy", probes=f"{SITE}.pdu-a-1,{SITE}.node-i1", **{"from": "-1h"})["probes"]
        return got if got[f"{SITE}.node-i1"]["covered_s"] > 0 else None

    got = ws.wait_for(energies, timeout=30, what="node-i1's energy over a covered span")
    assert (got[f"{SITE}.pdu-a-1"]["method"], got[f"{SITE}.pdu-a-1"]["joules"]) == ("counter", 0.0)
    node = got[f"{SITE}.node-i1"]
    assert node["method"] == "integrated"
    assert node["joules"] == pytest.approx(last[f"{SITE}.node-i1", "power"] * node["covered_s"], rel=1e-9)

    # 2. stop one PDU: only its 24 probes stop, and its driver is reported by name
    pdu_b = {f"{SITE}.pdu-b-{o}" for o in range(1, OUTLETS + 1)}
    others = want - pdu_b
    errors_before = {d["driver"]: d["errors"] for d in ws.get("/api/v1/drivers")["drivers"]}
    pdus["pdu-b"].stop()
    stopped_at = time.time()

    def others_moved_on(since: float):
        now = last_times(ws)
        return now if all(now[p] > since + 3 for p in others) else None

    during = ws.wait_for(lambda: others_moved_on(stopped_at), timeout=60,
                         what="every other probe read 3 s after pdu-b stopped")
    # nothing of pdu-b's was measured after its peer stopped, and nothing arrives later either
    # (everything measured before the stop came through the same bus before the others' newer samples)
    assert max(during[p] for p in pdu_b) <= stopped_at, "pdu-b's probes went on without their peer"
    later = ws.wait_for(lambda: others_moved_on(max(during[p] for p in others)), timeout=60,
                        what="every other probe read once more")
    assert {p: later[p] for p in pdu_b} == {p: during[p] for p in pdu_b}
    state = {d["driver"]: d for d in ws.get("/api/v1/drivers")["drivers"]}
    assert state["pdu-b"]["errors"] > 0 and "127.0.0.1" in (state["pdu-b"]["last_error"] or "")
    new_errors = {name: (d["errors"] - errors_before[name], d["last_error"]) for name, d in state.items()
                  if name != "pdu-b" and d["errors"] > errors_before[name]}
    assert not new_errors, f"other drivers failed while pdu-b was down: {new_errors}"

    # 3. the peer returns on the same port: its probes come back by themselves
    pdus["pdu-b"].start()
    back_at = time.time()
    ws.wait_for(lambda: all(t > back_at for t in last_times(ws).values()), timeout=90,
                what="every probe, pdu-b's too, read again after pdu-b came back")
