"""Acme's handlers. The payload of each is a pydantic model: the executor validates the job's payload into
it before the call, and fails the job at once, naming each bad field, when it does not fit."""

from __future__ import annotations

from pydantic import BaseModel, Field

from services.executor import JobContext, handler

__all__ = ["Invoice", "InvoiceLine", "InvoiceTotal", "invoice_total"]


class InvoiceLine(BaseModel):
    sku: str = Field(min_length=1)
    quantity: int = Field(default=1, ge=1)
    unit_cents: int = Field(ge=0)


class Invoice(BaseModel):
    customer: str
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    discount_percent: float = Field(default=0, ge=0, le=100)
    lines: list[InvoiceLine] = Field(min_length=1)


class InvoiceTotal(BaseModel):
    customer: str
    currency: str
    subtotal_cents: int
    total_cents: int


@handler("acme.invoice_total")
def invoice_total(payload: Invoice, ctx: JobContext) -> InvoiceTotal:
    """Total an invoice: the sum of its lines, less the discount (rounded to the cent)."""
    subtotal = sum(line.quantity * line.unit_cents for line in payload.lines)
    total = round(subtotal * (100 - payload.discount_percent) / 100)
    ctx.logger.info("invoice for %s: %d %s", payload.customer, total, payload.currency)
    return InvoiceTotal(
        customer=payload.customer, currency=payload.currency, subtotal_cents=subtotal, total_cents=total
    )
