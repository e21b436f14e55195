"""Stand in for Akinon's channel API over real HTTP, with a control API and fault injection.

    from publisher.sandbox import Catalog, SandboxServer, Faults

    catalog = Catalog.seeded(channels=[1, 2], size=1000, seed=42)
    with SandboxServer(catalog) as server:   # port 0: a free port
        ...                                  # talk to server.url with token "sandbox-token"

Modules, from the data outwards: `fields` (record shapes), `recordset` (records and the
inserts/updates work queue), `channels` (a channel's record sets, seeded), `batches`
(acknowledgement state machine), `batch_requests` (the batches and what they acknowledged),
`catalog` (all of it behind one lock), `query` (filters, paging), `faults`, `shapes`, `app`
and `control` (request -> response), `server` (HTTP), `churn` (background changes).
"""

from publisher.sandbox.app import SandboxApp
from publisher.sandbox.catalog import Catalog, Page
from publisher.sandbox.churn import Churner
from publisher.sandbox.errors import InvalidError, NotFoundError, SandboxError
from publisher.sandbox.faults import Faults
from publisher.sandbox.query import Filters, Paging
from publisher.sandbox.recordset import DROP
from publisher.sandbox.server import SandboxServer
from publisher.sandbox.shapes import Shape, ShapeConfig

__all__ = [
    "DROP",
    "Catalog",
    "Churner",
    "Faults",
    "Filters",
    "InvalidError",
    "NotFoundError",
    "Page",
    "Paging",
    "SandboxApp",
    "SandboxError",
    "SandboxServer",
    "Shape",
    "ShapeConfig",
]
