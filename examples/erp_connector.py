"""Keep an ERP table of stock levels and prices per (channel, product) up to date.

An example consumer of `stock.changed` and `price.changed`, on PostgreSQL:

    python -m examples.erp_connector --dsn postgresql://postgres@127.0.0.1/test --channel 1

Idempotent by construction, in the database itself: each row keeps, per resource, the record
key, `modified_date`, sequence and event id it was last written from, and the UPSERT's WHERE
clause lets only a newer event through, in the contract's order (a later `modified_date`,
or the same one and a higher sequence: it holds after the publisher lost its state; the same
place with another id, which supersedes a version the producer never committed; or another
record key, a record replaced). Deletes clear the values and mark the row's resource
deleted; so does a reload event (after the publisher lost its state) for each row whose
record the reloaded list no longer holds. So a duplicate, a redelivery or an older event
changes nothing, whatever the consumer's store remembers, even with several consumers on one
queue. `revision` counts the writes a row has taken, which makes that visible.

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
from publisher.events import (
    CloudEvent,
    PriceChanged,
    PriceDeleted,
    PriceReloaded,
    RecordRejected,
    StockChanged,
    StockDeleted,
    StockReloaded,
)

log = logging.getLogger("erp_connector")

DEFAULT_TABLE: Final = "erp_stock_price"

_CREATE: Final = """
CREATE TABLE IF NOT EXISTS {table} (
    channel_id      bigint      NOT NULL,
    product         bigint      NOT NULL,
    stock_key       bigint,
    stock           integer,
    stock_deleted   boolean     NOT NULL DEFAULT false,
    stock_modified  timestamptz,
    stock_sequence  bigint,
    stock_event_id  text,
    price_key       bigint,
    price           numeric,
    retail_price    numeric,
    currency        text,
    price_deleted   boolean     NOT NULL DEFAULT false,
    price_modified  timestamptz,
    price_sequence  bigint,
    price_event_id  text,
    revision        integer     NOT NULL DEFAULT 1,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, product)
)
"""

# A table made by the 1.0 example gains the columns of deletes and of the 1.1 order.
_MIGRATE: Final = """
ALTER TABLE {table}
    ADD COLUMN IF NOT EXISTS stock_deleted  boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS stock_modified timestamptz,
    ADD COLUMN IF NOT EXISTS price_deleted  boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS price_modified timestamptz
"""

# {r} is the resource's column prefix: stock_ or price_. The WHERE clause is the guard: the
# contract's order, (modified_date, sequence), with a row written before the order had a
# date falling back to the sequence alone; the same place with another event id supersedes
# a version the publisher never committed; another record key is a record replaced.
_GUARD: Final = """
WHERE t.{r}sequence IS NULL
   OR t.{r}key IS DISTINCT FROM EXCLUDED.{r}key
   OR (t.{r}modified IS NULL AND t.{r}sequence < EXCLUDED.{r}sequence)
   OR (EXCLUDED.{r}modified, EXCLUDED.{r}sequence) > (t.{r}modified, t.{r}sequence)
   OR ((EXCLUDED.{r}modified, EXCLUDED.{r}sequence) = (t.{r}modified, t.{r}sequence)
       AND t.{r}event_id <> EXCLUDED.{r}event_id)
"""

# What each resource writes besides its guard columns: column -> query parameter.
_VALUES: Final = {
    "stock_": ("stock",),
    "price_": ("price", "retail_price", "currency"),
}


def _upsert(r: str) -> str:
    """Return the guarded UPSERT of one resource's columns (prefix `r`)."""
    columns = [f"{r}key", *_VALUES[r], f"{r}deleted", f"{r}modified", f"{r}sequence"]
    columns.append(f"{r}event_id")
    params = ["key", *_VALUES[r], "deleted", "modified", "sequence", "event_id"]
    values = ", ".join(f"%({name})s" for name in params)
    assignments = ",\n    ".join(f"{column} = EXCLUDED.{column}" for column in columns)
    return (
        f"INSERT INTO {{table}} AS t (channel_id, product, {', '.join(columns)})\n"
        f"VALUES (%(channel_id)s, %(product)s, {values})\n"
        f"ON CONFLICT (channel_id, product) DO UPDATE SET\n    {assignments},\n"
        "    revision = t.revision + 1,\n    updated_at = now()" + _GUARD.replace("{r}", r)
    )


def _sweep(r: str) -> str:
    """Return the UPDATE that applies a reload event to one resource's columns (prefix `r`).

    The rows it matches are those `publisher.consumer.reload_drops` names: the record key in
    the part's span, not in its keys, last changed before the load began. Each is written
    as a deletion dated `started_at` (sequence 0, so any event of that date still wins).
    """
    cleared = ",\n    ".join(f"{column} = NULL" for column in _VALUES[r])
    return (
        f"UPDATE {{table}} AS t SET\n    {cleared},\n    {r}deleted = true,\n"
        f"    {r}modified = %(started)s, {r}sequence = 0, {r}event_id = %(event_id)s,\n"
        "    revision = t.revision + 1, updated_at = now()\n"
        f"WHERE t.channel_id = %(channel_id)s AND NOT t.{r}deleted\n"
        f"  AND (%(lowest)s::bigint IS NULL OR t.{r}key >= %(lowest)s)\n"
        f"  AND (%(highest)s::bigint IS NULL OR t.{r}key <= %(highest)s)\n"
        f"  AND t.{r}modified < %(started)s AND NOT (t.{r}key = ANY(%(keys)s))"
    )


class ErpConnector:
    """Apply stock and price events to one PostgreSQL table, each at most once."""

    def __init__(self, db: psycopg.Connection[Any], table: str = DEFAULT_TABLE) -> None:
        self.db = db
        self.table = table
        self._stock = self._statement(_upsert("stock_"))
        self._price = self._statement(_upsert("price_"))
        self._sweeps = {
            "stock": self._statement(_sweep("stock_")),
            "price": self._statement(_sweep("price_")),
        }

    def _statement(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(table=sql.Identifier(self.table))

    def create_table(self) -> None:
        """Create the table if it does not exist (and add what 1.0 tables lack)."""
        self.db.execute(self._statement(_CREATE))
        self.db.execute(self._statement(_MIGRATE))

    def handle(self, event: CloudEvent[Any]) -> None:
        """Apply one event: the `Subscription` handler.

        A deleted record keeps its row's guard columns (so no older event can bring it
        back) with its values cleared and `<resource>_deleted` set.
        """
        if isinstance(event, StockChanged):
            self._write(self._stock, event, event.data.after.product, stock=event.data.after.stock)
        elif isinstance(event, PriceChanged):
            after = event.data.after
            self._write(
                self._price,
                event,
                after.product,
                price=after.price,
                retail_price=after.retail_price,
                currency=after.currency_type,
            )
        elif isinstance(event, StockDeleted):
            self._write(self._stock, event, event.data.before.product, deleted=True, stock=None)
        elif isinstance(event, PriceDeleted):
            product = event.data.before.product
            gone = {"price": None, "retail_price": None, "currency": None}
            self._write(self._price, event, product, deleted=True, **gone)
        elif isinstance(event, StockReloaded | PriceReloaded):
            self._reloaded(event)
        elif isinstance(event, RecordRejected):
            log.warning("Akinon sent a record we cannot use: %s", event.data.reason)

    def _reloaded(self, event: StockReloaded | PriceReloaded) -> None:
        """Delete the rows whose record a reload of the whole list no longer found."""
        data = event.data
        params = {
            "channel_id": data.channel_id,
            "lowest": data.lowest_key,
            "highest": data.highest_key,
            "keys": data.keys,
            "started": data.started_at,
            "event_id": event.id,
        }
        swept = self.db.execute(self._sweeps[data.resource.value], params).rowcount
        log.info("%s part %d/%d: %d rows deleted", event.type, data.part, data.parts, swept)

    def _write(
        self,
        statement: sql.Composed,
        event: StockChanged | PriceChanged | StockDeleted | PriceDeleted,
        product: int,
        *,
        deleted: bool = False,
        **values: Any,
    ) -> None:
        data = event.data
        params = {
            "channel_id": data.channel_id,
            "product": product,
            "key": data.key,
            "deleted": deleted,
            "modified": data.modified_date,
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
            "SELECT channel_id, product, stock_key, stock, stock_deleted, stock_sequence,"
            " stock_event_id, price_key, price, retail_price, currency, price_deleted,"
            " price_sequence, price_event_id, revision FROM {table} ORDER BY channel_id, product"
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
