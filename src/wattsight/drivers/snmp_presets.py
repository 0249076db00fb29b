"""Where PDU vendors keep power and energy in SNMP, and in which units.

Each :class:`Preset` gives, for the outlets and for the whole PDU, an OID template and the
factor from the agent's integer to SI units (W, or J: 1 Wh = 3600 J, 0.1 kWh = 360 000 J).
Templates use ``{pdu}`` (the PDU, device, unit or daisy-chain index), ``{input}`` (the input,
cord, inlet or branch) and ``{outlet}``.  Sources: the vendors' MIBs (APC PowerNet-MIB,
EATON-EPDU-MIB, Raritan PDU2-MIB, Sentry4-MIB, LIEBERT-GP-PDU-MIB); see docs/drivers/snmp.md.
"""

from __future__ import annotations

from dataclasses import dataclass

WH = 3600.0  # J
TENTH_KWH = 360_000.0  # J


@dataclass(frozen=True)
class Metric:
    """One reading: an OID template, SI units per raw unit, and how the raw value behaves."""

    oid: str
    scale: float
    #: Raritan: the OID of the sensor's decimal digits (value / 10**digits), read once.
    digits_oid: str | None = None
    #: The raw value wraps round to 0 after this many units (an Unsigned32 energy register);
    #: None: it only goes back to 0 when reset.
    wrap: float | None = None
    #: What the MIB calls it (quoted in error messages).
    name: str = ""


@dataclass(frozen=True)
class Preset:
    """A vendor's OIDs for outlets and the whole PDU, and the default indexes."""

    name: str
    mib: str
    pdu: int
    input: int
    power: Metric | None = None
    energy: Metric | None = None
    total_power: Metric | None = None
    total_energy: Metric | None = None
    #: A raw value the vendor uses for "not available" (APC, Eaton, Sentry: -1).
    unavailable: int | None = -1

    def metric(self, key: str) -> Metric | None:
        return getattr(self, key)


_APC = "1.3.6.1.4.1.318.1.1.26"
_EATON = "1.3.6.1.4.1.534.6.6.7"
_RARITAN = "1.3.6.1.4.1.13742.6"
_SENTRY = "1.3.6.1.4.1.1718.4.1"
_LIEBERT = "1.3.6.1.4.1.476.1.42.3.8"

PRESETS: dict[str, Preset] = {
    "apc": Preset(
        "apc", "PowerNet-MIB (rPDU2)", pdu=1, input=1,
        power=Metric(f"{_APC}.9.4.3.1.7.{{outlet}}", 1.0, name="rPDU2OutletMeteredStatusPower (W)"),
        energy=Metric(f"{_APC}.9.4.3.1.11.{{outlet}}", TENTH_KWH, name="rPDU2OutletMeteredStatusEnergy (0.1 kWh)"),
        total_power=Metric(f"{_APC}.4.3.1.5.{{pdu}}", 10.0, name="rPDU2DeviceStatusPower (0.01 kW)"),
        total_energy=Metric(f"{_APC}.4.3.1.9.{{pdu}}", TENTH_KWH, name="rPDU2DeviceStatusEnergy (0.1 kWh)")),
    "eaton": Preset(
        "eaton", "EATON-EPDU-MIB", pdu=0, input=1,
        power=Metric(f"{_EATON}.6.5.1.3.{{pdu}}.{{outlet}}", 1.0, name="outletWatts (W)"),
        energy=Metric(f"{_EATON}.6.5.1.4.{{pdu}}.{{outlet}}", WH, wrap=2.0**32, name="outletWh (Wh)"),
        total_power=Metric(f"{_EATON}.3.5.1.4.{{pdu}}.{{input}}", 1.0, name="inputTotalWatts (W)"),
        total_energy=Metric(f"{_EATON}.3.5.1.5.{{pdu}}.{{input}}", WH, wrap=2.0**32, name="inputTotalWh (Wh)")),
    "raritan": Preset(
        "raritan", "PDU2-MIB", pdu=1, input=1, unavailable=None,
        power=Metric(f"{_RARITAN}.5.4.3.1.4.{{pdu}}.{{outlet}}.5", 1.0,
                     digits_oid=f"{_RARITAN}.3.5.4.1.7.{{pdu}}.{{outlet}}.5",
                     name="measurementsOutletSensorValue activePower (W / 10^digits)"),
        energy=Metric(f"{_RARITAN}.5.4.3.1.4.{{pdu}}.{{outlet}}.8", WH, wrap=2.0**32,
                      digits_oid=f"{_RARITAN}.3.5.4.1.7.{{pdu}}.{{outlet}}.8",
                      name="measurementsOutletSensorValue activeEnergy (Wh / 10^digits)"),
        total_power=Metric(f"{_RARITAN}.5.2.3.1.4.{{pdu}}.{{input}}.5", 1.0,
                           digits_oid=f"{_RARITAN}.3.3.4.1.7.{{pdu}}.{{input}}.5",
                           name="measurementsInletSensorValue activePower (W / 10^digits)"),
        total_energy=Metric(f"{_RARITAN}.5.2.3.1.4.{{pdu}}.{{input}}.8", WH, wrap=2.0**32,
                            digits_oid=f"{_RARITAN}.3.3.4.1.7.{{pdu}}.{{input}}.8",
                            name="measurementsInletSensorValue activeEnergy (Wh / 10^digits)")),
    "servertech": Preset(
        "servertech", "Sentry4-MIB", pdu=1, input=1,
        power=Metric(f"{_SENTRY}.8.3.1.7.{{pdu}}.{{input}}.{{outlet}}", 1.0, name="st4OutletActivePower (W)"),
        energy=Metric(f"{_SENTRY}.8.3.1.14.{{pdu}}.{{input}}.{{outlet}}", WH, name="st4OutletEnergy (Wh)"),
        total_power=Metric(f"{_SENTRY}.3.3.1.3.{{pdu}}.{{input}}", 1.0, name="st4InputCordActivePower (W)"),
        total_energy=Metric(f"{_SENTRY}.3.3.1.10.{{pdu}}.{{input}}", TENTH_KWH,
                            name="st4InputCordEnergy (0.1 kWh)")),
    "liebert": Preset(
        "liebert", "LIEBERT-GP-PDU-MIB", pdu=1, input=1, unavailable=None,
        power=Metric(f"{_LIEBERT}.50.20.1.65.{{pdu}}.{{input}}.{{outlet}}", 1.0, name="lgpPduRcpEntryPwrOut (W)"),
        energy=Metric(f"{_LIEBERT}.50.20.1.85.{{pdu}}.{{input}}.{{outlet}}", TENTH_KWH,
                      name="lgpPduRcpEntryEnergyAccum (0.1 kWh)"),
        total_power=Metric(f"{_LIEBERT}.30.20.1.65.{{pdu}}.{{input}}", 1.0, name="lgpPduPsEntryPwrTotal (W)"),
        total_energy=Metric(f"{_LIEBERT}.30.20.1.50.{{pdu}}.{{input}}", TENTH_KWH,
                            name="lgpPduPsEntryEnergyAccum (0.1 kWh)")),
    "generic": Preset("generic", "OIDs from the configuration", pdu=1, input=1, unavailable=None),
}

#: The preset metrics, with the config keys that override them.
METRIC_KEYS = ("power", "energy", "total_power", "total_energy")
