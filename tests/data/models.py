"""Row models and schemas of the sample shop in examples/data, shared by the data tests."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field

from results_flow.data import File, FileSchema, ForeignKey, TableSchema, schema

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


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


def shop_schemas() -> list[FileSchema]:
    """customers.csv, orders.csv and the two-table catalogue.json, with their keys."""
    return [
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


def shop_files(folder: Path = EXAMPLES) -> list[File]:
    """The three sample files (from ``folder``, the examples by default)."""
    return [
        File.from_path(folder / "customers.csv"),
        File.from_path(folder / "orders.csv"),
        File.from_path(folder / "catalogue.json"),
    ]


def copy_shop(folder: Path) -> Path:
    """Copy the sample files into ``folder`` (to be edited by a test); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("customers.csv", "orders.csv", "catalogue.json"):
        (folder / name).write_bytes((EXAMPLES / name).read_bytes())
    return folder
