"""The billing tests' fixed price sheet (see `price_sheet.yaml`)."""

from __future__ import annotations

from pathlib import Path

from switchyard.common.policy import Policy, load_policy

PRICE_SHEET = Path(__file__).with_name("price_sheet.yaml")


def price_sheet() -> Policy:
    return load_policy(PRICE_SHEET)
