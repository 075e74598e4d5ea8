"""Tests of Acme's handlers, in-process: ``run_handler`` runs a job through the executor's own machinery
(validation, threads, outcomes) without a database or a service."""

from __future__ import annotations

import acme_jobs.handlers  # noqa: F401 - registers the handlers, as the entry point does in the executor

from services.executor.testing import JobStatus, run_handler


def test_an_invoice_is_totalled_with_its_discount() -> None:
    payload = {"customer": "ada", "discount_percent": 10, "lines": [{"sku": "a", "quantity": 3, "unit_cents": 250}]}
    run = run_handler("acme.invoice_total", payload)
    assert run.status is JobStatus.COMPLETED
    assert run.result == {"customer": "ada", "currency": "EUR", "subtotal_cents": 750, "total_cents": 675}


def test_a_bad_invoice_fails_without_retrying_and_names_each_field() -> None:
    run = run_handler("acme.invoice_total", {"currency": "euro", "lines": []}, attempt=1, max_attempts=5)
    assert run.status is JobStatus.FAILED and not run.will_retry
    assert run.error_message is not None
    for field in ("payload.customer", "payload.currency", "payload.lines"):
        assert field in run.error_message
