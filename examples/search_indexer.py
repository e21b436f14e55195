"""Keep one search document per (channel, product): availability and price.

An example consumer of `stock.changed` and `price.changed`. The documents live in SQLite
(a file, or memory); each event that changes a document "pushes" it, here as the JSON line
an indexer would send to its search engine:

    {"op": "index", "id": "1-1207", "doc": {"available": true, "price": "119.90", ...}}

    python -m examples.search_indexer --db search.sqlite --channel 1

As in the ERP example, the sequence guard is in the UPSERT's WHERE clause, so a duplicate or
an older event neither changes a document nor pushes it again. Decimals stay exact: they are
kept as their text and compared as Decimals.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Final

import orjson

from publisher.consumer import (
    RedisStore,
    SequenceStore,
    Subscription,
    change_patterns,
    microseconds,
    stop_on_signals,
)
from publisher.events import (
    CloudEvent,
    PriceChanged,
    PriceDeleted,
    PriceReloaded,
    StockChanged,
    StockDeleted,
    StockReloaded,
)

Push = Callable[[dict[str, Any]], None]

_CREATE: Final = """
CREATE TABLE IF NOT EXISTS documents (
    channel_id      INTEGER NOT NULL,
    product         INTEGER NOT NULL,
    stock           INTEGER,
    stock_key       INTEGER,
    stock_modified  INTEGER,
    stock_sequence  INTEGER,
    stock_event_id  TEXT,
    price           TEXT,
    retail_price    TEXT,
    currency        TEXT,
    price_key       INTEGER,
    price_modified  INTEGER,
    price_sequence  INTEGER,
    price_event_id  TEXT,
    PRIMARY KEY (channel_id, product)
)
"""

# The contract's order: (modified_date, sequence), dates as microseconds since the epoch.
_GUARD: Final = """
WHERE documents.{r}sequence IS NULL
   OR documents.{r}key IS NOT excluded.{r}key
   OR (excluded.{r}modified, excluded.{r}sequence)
      > (documents.{r}modified, documents.{r}sequence)
   OR ((excluded.{r}modified, excluded.{r}sequence)
       = (documents.{r}modified, documents.{r}sequence)
       AND documents.{r}event_id <> excluded.{r}event_id)
"""

_UPSERT_STOCK: Final = """
INSERT INTO documents
    (channel_id, product, stock, stock_key, stock_modified, stock_sequence, stock_event_id)
VALUES (:channel_id, :product, :stock, :key, :modified, :sequence, :event_id)
ON CONFLICT (channel_id, product) DO UPDATE SET
    stock = excluded.stock,
    stock_key = excluded.stock_key,
    stock_modified = excluded.stock_modified,
    stock_sequence = excluded.stock_sequence,
    stock_event_id = excluded.stock_event_id
""" + _GUARD.replace("{r}", "stock_")

_UPSERT_PRICE: Final = """
INSERT INTO documents
    (channel_id, product, price, retail_price, currency, price_key, price_modified,
     price_sequence, price_event_id)
VALUES (:channel_id, :product, :price, :retail_price, :currency, :key, :modified, :sequence,
        :event_id)
ON CONFLICT (channel_id, product) DO UPDATE SET
    price = excluded.price,
    retail_price = excluded.retail_price,
    currency = excluded.currency,
    price_key = excluded.price_key,
    price_modified = excluded.price_modified,
    price_sequence = excluded.price_sequence,
    price_event_id = excluded.price_event_id
""" + _GUARD.replace("{r}", "price_")


# A reload event (after the publisher lost its state): the documents whose record the
# reloaded list no longer holds, last changed before the load began (`reload_drops`), lose
# it as by a deletion dated `started_at` (sequence 0: any event of that date still wins).
# A document without the value (deleted already) is left as it is: nothing to push.
_SWEEP: Final = """
UPDATE documents SET {cleared}, {r}modified = :started, {r}sequence = 0, {r}event_id = :event_id
WHERE channel_id = :channel_id AND {r}key IS NOT NULL AND {r}modified < :started
  AND (:lowest IS NULL OR {r}key >= :lowest) AND (:highest IS NULL OR {r}key <= :highest)
  AND {r}key NOT IN (SELECT value FROM json_each(:keys))
  AND {first} IS NOT NULL
RETURNING product
"""
_SWEEPS: Final = {
    "stock": _SWEEP.format(cleared="stock = NULL", r="stock_", first="stock"),
    "price": _SWEEP.format(
        cleared="price = NULL, retail_price = NULL, currency = NULL", r="price_", first="price"
    ),
}


def print_push(action: dict[str, Any]) -> None:
    """Show what would be sent to the search engine: one JSON line per document."""
    print(orjson.dumps(action).decode(), flush=True)


def document(row: sqlite3.Row) -> dict[str, Any]:
    """Turn a stored row into the search document (pure)."""
    price = Decimal(row["price"]) if row["price"] is not None else None
    retail = Decimal(row["retail_price"]) if row["retail_price"] is not None else None
    return {
        "channel_id": row["channel_id"],
        "product": row["product"],
        "available": None if row["stock"] is None else row["stock"] > 0,
        "stock": row["stock"],
        "price": row["price"],
        "currency": row["currency"],
        "retail_price": row["retail_price"],
        "on_sale": price is not None and retail is not None and price < retail,
    }


class SearchIndexer:
    """Fold stock and price events into per-product documents; push each real change."""

    def __init__(self, db: sqlite3.Connection, push: Push = print_push) -> None:
        self.db = db
        self.db.row_factory = sqlite3.Row
        self.push = push
        self.db.execute(_CREATE)
        # A file made by the 1.0 example gains the columns of the 1.1 order.
        present = {row[1] for row in self.db.execute("PRAGMA table_info(documents)")}
        for column in ("stock_modified", "price_modified"):
            if column not in present:
                self.db.execute(f"ALTER TABLE documents ADD COLUMN {column} INTEGER")

    def handle(self, event: CloudEvent[Any]) -> None:
        """Apply one event: the `Subscription` handler. Other event types are not indexed.

        A deleted stock or price leaves the document without it (unknown availability, no
        price), its guard columns kept so no older event can bring it back.
        """
        if isinstance(event, StockChanged):
            self._apply(
                _UPSERT_STOCK, event, event.data.after.product, stock=event.data.after.stock
            )
        elif isinstance(event, PriceChanged):
            after = event.data.after
            self._apply(
                _UPSERT_PRICE,
                event,
                after.product,
                price=str(after.price),
                retail_price=None if after.retail_price is None else str(after.retail_price),
                currency=after.currency_type,
            )
        elif isinstance(event, StockDeleted):
            self._apply(_UPSERT_STOCK, event, event.data.before.product, stock=None)
        elif isinstance(event, PriceDeleted):
            gone = {"price": None, "retail_price": None, "currency": None}
            self._apply(_UPSERT_PRICE, event, event.data.before.product, **gone)
        elif isinstance(event, StockReloaded | PriceReloaded):
            self._reloaded(event)

    def _reloaded(self, event: StockReloaded | PriceReloaded) -> None:
        """Drop from the documents what a reload of the whole list no longer found."""
        data = event.data
        params = {
            "channel_id": data.channel_id,
            "lowest": data.lowest_key,
            "highest": data.highest_key,
            "keys": orjson.dumps(data.keys).decode(),
            "started": microseconds(data.started_at),
            "event_id": event.id,
        }
        products = [row[0] for row in self.db.execute(_SWEEPS[data.resource.value], params)]
        for product in products:
            row = self.db.execute(
                "SELECT * FROM documents WHERE channel_id = ? AND product = ?",
                (data.channel_id, product),
            ).fetchone()
            self.push({"op": "index", "id": f"{data.channel_id}-{product}", "doc": document(row)})

    def _apply(
        self,
        statement: str,
        event: StockChanged | PriceChanged | StockDeleted | PriceDeleted,
        product: int,
        **values: Any,
    ) -> None:
        data = event.data
        params = {
            "channel_id": data.channel_id,
            "product": product,
            "key": data.key,
            "modified": microseconds(data.modified_date),
            "sequence": data.sequence,
            "event_id": event.id,
            **values,
        }
        if self.db.execute(statement, params).rowcount == 0:
            return  # the guard kept the stored version: nothing new to push
        row = self.db.execute(
            "SELECT * FROM documents WHERE channel_id = ? AND product = ?",
            (data.channel_id, product),
        ).fetchone()
        key = f"{data.channel_id}-{product}"
        self.push({"op": "index", "id": key, "doc": document(row)})

    def documents(self) -> list[dict[str, Any]]:
        """Return every document, ordered by channel and product."""
        rows = self.db.execute("SELECT * FROM documents ORDER BY channel_id, product")
        return [document(row) for row in rows]


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.search_indexer", description=__doc__)
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", "amqp://localhost//"))
    parser.add_argument("--db", default=":memory:", help="SQLite file for the documents.")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--queue", default="search.products")
    parser.add_argument("--channel", type=int, action="append", default=[])
    parser.add_argument("--prefetch", type=int, default=200)
    parser.add_argument("--once", action="store_true", help="Stop when the queue is idle.")
    parser.add_argument("--idle", type=float, default=2.0, help="Idle seconds for --once.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, push: Push = print_push) -> int:
    """Run the indexer until SIGINT/SIGTERM (or, with --once, until the queue is idle)."""
    args = _arguments(argv)
    logging.basicConfig(level=logging.WARNING)
    store: SequenceStore | None = (
        RedisStore.from_url(args.redis_url, args.queue) if args.redis_url else None
    )
    db = sqlite3.connect(args.db, isolation_level=None)
    try:
        indexer = SearchIndexer(db, push)
        with Subscription(
            args.amqp_url,
            queue=args.queue,
            patterns=change_patterns(args.channel),
            handler=indexer.handle,
            dedupe=store,
            prefetch=args.prefetch,
        ) as subscription:
            if args.once:
                subscription.drain(args.idle)
            else:
                subscription.run(stop_on_signals())
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
