"""The data layer's ETL flow on the sample shop in ``examples/data``.

Extract, validate, transform (a join of orders with customers) and load run as stored
Prefect steps: a rerun takes finished stages from the store. The dataset lands in a
SQLite database as real tables you can query with plain SQL.

Run it with ``python examples/etl_pipeline.py [--db URL] [--store URL]``.
"""

from __future__ import annotations

import argparse
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

import sqlalchemy as sa
from pydantic import BaseModel, Field

from results_flow import ResultsManager
from results_flow.data import (
    DatabaseDataManager,
    File,
    FileSchema,
    ForeignKey,
    JoinTransformer,
    SimpleETLFactory,
    TableSchema,
    default_validators,
    schema,
)
from results_flow.data.flow import etl_flow

SAMPLES = Path(__file__).resolve().parent / "data"


class Country(StrEnum):
    GB = "GB"
    US = "US"
    NL = "NL"


class Customer(BaseModel):
    id: int
    name: str
    email: str | None = None
    country: Country
    signed_up: date


class Order(BaseModel):
    order_id: int
    customer_id: int
    sku: str
    quantity: int = Field(gt=0)
    amount: Decimal
    ordered_at: datetime


class Category(BaseModel):
    id: int
    name: str


class Product(BaseModel):
    sku: str
    name: str
    category_id: int
    price: Decimal
    tags: list[str] = Field(default_factory=list)


SCHEMAS = [
    schema("customers", Customer, primary_key="id", unique=["email"]),
    schema(
        "orders",
        Order,
        primary_key="order_id",
        foreign_keys=[
            ForeignKey("customer_id", "customers", "id"),
            ForeignKey("sku", "products", "sku"),
        ],
    ),
    FileSchema(
        "catalogue",
        "json",
        [
            TableSchema("categories", Category, primary_key="id", unique=["name"]),
            TableSchema(
                "products",
                Product,
                primary_key="sku",
                foreign_keys=[ForeignKey("category_id", "categories", "id")],
            ),
        ],
    ),
]


def main(db_url: str, store_url: str | None = None, samples: Path = SAMPLES) -> int:
    """Load the sample shop as dataset ``shop``; returns the number of order rows loaded."""
    factory = SimpleETLFactory(
        SCHEMAS,
        validators=default_validators(),
        transformers=[
            JoinTransformer("orders", "customers", [("customer_id", "id")], "order_details")
        ],
    )
    manager = DatabaseDataManager(db_url, etl_factory=factory)
    manager.startup()
    files = [
        File.from_path(samples / name) for name in ("customers.csv", "orders.csv", "catalogue.json")
    ]
    store = ResultsManager(store_url)
    result = etl_flow(manager, files, "shop", store=store, overwrite=True)
    print(f"status: {result.status}")
    for message in result.validation_result.messages:
        print(f"  {message}")
    table = manager.table_name("shop", "order_details")
    with manager.engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT order_id, name, amount FROM {table} ORDER BY order_id")
        ).all()
    print(f"{len(rows)} rows in SQL table {table}, e.g. {tuple(rows[0])}")
    print(f"stage outputs: {store.list_ids('etl/shop')}")
    return len(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db", default="sqlite:///results_store/shop.db", help="where the dataset goes"
    )
    parser.add_argument(
        "--store", default=None, help="where stage outputs go (default store if unset)"
    )
    args = parser.parse_args()
    # Run as a script, this folder is on sys.path: share the demo's Prefect settings.
    from parallel_resume import temporary_server

    with temporary_server():
        main(args.db, args.store)
