"""The REST API consumer: ``/api/v1``, Kwapi's ``/v1`` and Prometheus ``/metrics``.

``create_app(ApiContext(store, topology, config, ...))`` returns the FastAPI app; it only
reads from what it is given and owns no thread.  See ``docs/consumers/api.md``.
"""

from .app import ApiContext, create_app

__all__ = ["ApiContext", "create_app"]
