"""The worker's price gauge: what dashboards multiply active tracks by for spend per hour."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import REGISTRY, generate_latest

from bot import metrics


def test_publish_price_exports_the_configured_cost_per_minute() -> None:
    metrics.publish_price(Decimal("0.025"), "EUR")
    assert REGISTRY.get_sample_value("transcriber_cost_per_minute", {"currency": "EUR"}) == 0.025
    assert b'transcriber_cost_per_minute{currency="EUR"} 0.025' in generate_latest()
