"""Row models and schemas of the sample shop in examples/data, shared by the data tests."""

from __future__ import annotations

import copy
from pathlib import Path

from examples.etl_pipeline import SCHEMAS, Category, Country, Customer, Order, Product
from results_flow.data import File, FileSchema

__all__ = [
    "Category",
    "Country",
    "Customer",
    "Order",
    "Product",
    "copy_shop",
    "shop_files",
    "shop_schemas",
]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


def shop_schemas() -> list[FileSchema]:
    """customers.csv, orders.csv and the two-table catalogue.json, with their keys
    (the example's own schemas, copied so a test cannot change them for the next)."""
    return copy.deepcopy(SCHEMAS)


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
