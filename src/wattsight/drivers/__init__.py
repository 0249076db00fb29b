"""Drivers: one module per meter family.  A driver only reads its meter.

See :mod:`wattsight.drivers.base` for the contract.
"""
