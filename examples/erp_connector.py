"""Keep an ERP table of stock levels and prices per (channel, product) up to date.

An example consumer of `stock.changed` and `price.changed`, on PostgreSQL:

    python -m examples.erp_connector --dsn postgresql://postgres@127.0.0.1/test --channel 1

Idempotent by construction, in the database itself: each row keeps, per resource, the record
key, sequence and event id it was last written from, and the UPSERT's WHERE clause lets only
a newer event through (a higher sequence; or the same sequence with another id, which
supersedes a version the producer never committed; or another record key, a record
replaced). So a duplicate, a redelivery or an older event changes nothing, whatever the
consumer's store remembers, even with several consumers on one queue. `revision` counts the
writes a row has taken, which makes that visible.

It assumes what Akinon does: a sales channel has one stock list and one price list, so a
product has at most one stock record and one price record per channel.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, Final

import psycopg
from psycopg import sql

from publisher.consumer import (
    RedisStore,
    SequenceStore,
    Subscription,
    change_patterns,
    stop_on_signals,
)
from publisher.events import CloudEvent, PriceChanged, RecordRejected, StockChanged

log = logging.getLogger("erp_connector")

DEFAULT_TABLE: Final = "erp_stock_price"

_CREATE: Final = """
CREATE TABLE IF NOT EXISTS {table} (
    channel_id      bigint      NOT NULL,
    product         bigint      NOT NULL,
    stock_key       bigint,
    stock           integer,
    stock_sequence  bigint,
    stock_event_id  text,
    price_key       bigint,
    price           numeric,
    retail_price    numeric,
    currency        text,
    price_sequence  bigint,
    price_event_id  text,
    revision        integer     NOT NULL DEFAULT 1,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, product)
)
"""

# {r} is the resource's column prefix: stock_ or price_. The WHERE clause is the guard.
_GUARD: Final = """
WHERE t.{r}sequence IS NULL
   OR t.{r}key IS DISTINCT FROM EXCLUDED.{r}key
   OR t.{r}sequence < EXCLUDED.{r}sequence
   OR (t.{r}sequence = EXCLUDED.{r}sequence AND t.{r}event_id <> EXCLUDED.{r}event_id)
"""

_UPSERT_STOCK: Final = """
INSERT INTO {table} AS t
    (channel_id, product, stock_key, stock, stock_sequence, stock_event_id)
VALUES (%(channel_id)s, %(product)s, %(key)s, %(stock)s, %(sequence)s, %(event_id)s)
ON CONFLICT (channel_id, product) DO UPDATE SET
    stock_key = EXCLUDED.stock_key,
    stock = EXCLUDED.stock,
    stock_sequence = EXCLUDED.stock_sequence,
    stock_event_id = EXCLUDED.stock_event_id,
    revision = t.revision + 1,
    updated_at = now()
""" + _GUARD.replace("{r}", "stock_")

_UPSERT_PRICE: Final = """
INSERT INTO {table} AS t
    (channel_id, product, price_key, price, retail_price, currency, price_sequence,
     price_event_id)
VALUES (%(channel_id)s, %(product)s, %(key)s, %(price)s, %(retail_price)s, %(currency)s,
        %(sequence)s, %(event_id)s)
ON CONFLICT (channel_id, product) DO UPDATE SET
    price_key = EXCLUDED.price_key,
    price = EXCLUDED.price,
    retail_price = EXCLUDED.retail_price,
    currency = EXCLUDED.currency,
    price_sequence = EXCLUDED.price_sequence,
    price_event_id = EXCLUDED.price_event_id,
    revision = t.revision + 1,
    updated_at = now()
""" + _GUARD.replace("{r}", "price_")


class ErpConnector:
    """Apply stock and price events to one PostgreSQL table, each at most once."""

    def __init__(self, db: psycopg.Connection[Any], table: str = DEFAULT_TABLE) -> None:
        self.db = db
        self.table = table
        self._stock = self._statement(_UPSERT_STOCK)
        self._price = self._statement(_UPSERT_PRICE)

    def _statement(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(table=sql.Identifier(self.table))

    def create_table(self) -> None:
        """Create the table if it does not exist."""
        self.db.execute(self._statement(_CREATE))

    def handle(self, event: CloudEvent[Any]) -> None:
        """Apply one event: the `Subscription` handler."""
        if isinstance(event, StockChanged):
            self._write(self._stock, event, stock=event.data.after.stock)
        elif isinstance(event, PriceChanged):
            after = event.data.after
            self._write(
                self._price,
                event,
                price=after.price,
                retail_price=after.retail_price,
                currency=after.currency_type,
            )
        elif isinstance(event, RecordRejected):
            log.warning("Akinon sent a record we cannot use: %s", event.data.reason)

    def _write(
        self, statement: sql.Composed, event: StockChanged | PriceChanged, **values: Any
    ) -> None:
        data = event.data
        params = {
            "channel_id": data.channel_id,
            "product": data.after.product,
            "key": data.key,
            "sequence": data.sequence,
            "event_id": event.id,
            **values,
        }
        # One statement, autocommit: the row and its guard columns change together or not.
        written = self.db.execute(statement, params).rowcount
        log.info(
            "%s key=%s seq=%s %s",
            event.type,
            data.key,
            data.sequence,
            "applied" if written else "older or equal: kept the row",
        )

    def rows(self) -> list[dict[str, Any]]:
        """Return every row (without `updated_at`), ordered by channel and product."""
        query = sql.SQL(
            "SELECT channel_id, product, stock_key, stock, stock_sequence, stock_event_id,"
            " price_key, price, retail_price, currency, price_sequence, price_event_id, revision"
            " FROM {table} ORDER BY channel_id, product"
        ).format(table=sql.Identifier(self.table))
        with self.db.cursor(row_factory=psycopg.rows.dict_row) as cursor:
            return list(cursor.execute(query))


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.erp_connector", description=__doc__)
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", "amqp://localhost//"))
    parser.add_argument(
        "--dsn", default=os.environ.get("ERP_DSN", "postgresql://postgres@127.0.0.1/test")
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--table", default=DEFAULT_TABLE)
    parser.add_argument("--queue", default="erp.stock-price")
    parser.add_argument("--channel", type=int, action="append", default=[])
    parser.add_argument("--prefetch", type=int, default=50)
    parser.add_argument("--max-attempts", type=int, default=5)
    parser.add_argument("--once", action="store_true", help="Stop when the queue is idle.")
    parser.add_argument("--idle", type=float, default=2.0, help="Idle seconds for --once.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT/SIGTERM (or, with --once, until the queue is idle)."""
    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    store: SequenceStore | None = (
        RedisStore.from_url(args.redis_url, args.queue) if args.redis_url else None
    )
    with psycopg.connect(args.dsn, autocommit=True) as db:
        connector = ErpConnector(db, args.table)
        connector.create_table()
        with Subscription(
            args.amqp_url,
            queue=args.queue,
            patterns=change_patterns(args.channel),
            handler=connector.handle,
            dedupe=store,
            prefetch=args.prefetch,
            max_attempts=args.max_attempts,
        ) as subscription:
            if args.once:
                print(subscription.drain(args.idle).as_dict())
            else:
                subscription.run(stop_on_signals())
    return 0


if __name__ == "__main__":
    sys.exit(main())
