"""The billing tests' fixed price sheet (see `price_sheet.yaml`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from switchyard.common.policy import Policy, load_policy

PRICE_SHEET = Path(__file__).with_name("price_sheet.yaml")


def price_sheet() -> Policy:
    return load_policy(PRICE_SHEET)


def write_price_sheet(path: Path, *, version: str, prices: dict[str, float] | None = None) -> Path:
    """The price sheet as another version at `path`, with the output price per 1K tokens of each model in
    `prices` changed: an operator's repricing."""
    changes = prices or {}
    sheet = yaml.safe_load(PRICE_SHEET.read_text())
    sheet["version"] = version
    for model in sheet["models"]:
        model["output_per_1k"] = changes.get(model["id"], model["output_per_1k"])
    path.write_text(yaml.safe_dump(sheet))
    return path
