"""CLI argument parsing and status formatting (the commands themselves run in test_cluster)."""

from __future__ import annotations

import argparse

import pytest

from pydispatch.cli.main import (
    build_parser,
    format_status,
    parse_amount,
    parse_label,
    parse_resources,
)
from pydispatch.runtime.cluster import _format_resources
from pydispatch.scheduling.placer import amount_text


@pytest.mark.parametrize(
    ("text", "amount"),
    [("4", 4.0), ("8GiB", 8 * 2**30), ("1.5k", 1500.0), ("2 Mi", 2 * 2**20), ("1e3", 1000.0)],
)
def test_parse_amount(text: str, amount: float) -> None:
    assert parse_amount(text) == amount


@pytest.mark.parametrize("amount", [8 * 2**30, 2**29, 1.5 * 2**40, 0.5, 3.0, 12_345_678.0])
def test_amount_text_is_readable_and_parses_back(amount: float) -> None:
    text = amount_text(amount)
    assert "e+" not in text
    assert parse_amount(text.replace(",", "")) == amount


def test_bad_amounts_and_labels_are_argument_errors() -> None:
    for bad in ("", "lots", "4 bananas", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_amount(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_resources("cpu")
    with pytest.raises(argparse.ArgumentTypeError):
        parse_label("zone")


def test_resources_survive_the_local_cluster_command_line() -> None:
    resources = {"cpu": 2.0, "memory": float(2**30), "gpu": 0.5, "tiny": 1e-9}
    assert parse_resources(_format_resources(resources)) == resources


def test_worker_arguments() -> None:
    args = build_parser().parse_args(
        ["worker", "tcp://h:5555", "--resources", "cpu=4,memory=8GiB,gpu=1", "--label", "zone=a"]
    )
    assert args.resources == {"cpu": 4.0, "memory": 8.0 * 2**30, "gpu": 1.0}
    assert args.label == [("zone", "a")]


def test_format_status_is_readable() -> None:
    status = {
        "queued": 3, "running": 1, "finished": 10, "failed": 0, "cancelled": 1, "retried": 2,
        "discarded_late_results": 0, "protocol_errors": 0,
        "workers": [{
            "name": "w0", "node": "n", "pid": 1, "slots": 2, "slots_used": 1,
            "resources": {"memory": 2.0**30}, "free_resources": {"memory": 2.0**29},
            "labels": {"zone": "a"}, "seconds_since_heartbeat": 0.25, "draining": True,
            "data_address": "",
        }],
    }  # fmt: skip
    text = format_status(status)
    assert "queued 3" in text
    assert "1/2" in text
    assert "memory=512MiB/1GiB" in text
    assert "draining" in text
