"""Consumers: what takes batches off the bus, one verb each -- ``handle(batch, raw=None)``.

The built-in ones are registered as entry points in the ``wattsight.consumers`` group, like a
third party's would be (``wattsight plugins`` lists them):

- ``store``  -- the embedded store (:mod:`wattsight.consumers.store`): write-ahead log, memory
  tail, Parquet segments; what the API reads.

The REST API (:mod:`wattsight.consumers.api`) reads the store rather than the bus.
"""
