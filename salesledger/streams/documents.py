"""The documents topic's records: sales document events and period actions, as Avro datums.

``{prefix}.documents`` carries, in source commit order, three kinds of record (single-object
Avro, :mod:`salesledger.streams.serde`):

- ``salesledger.SalesDocumentEvent`` (``schemas/sales_document.v4.avsc``; v2 adds the invoice line ``kind``, v3 the opening
  balance's ``receivables`` and ``advances``, v4 its ``invoices`` taken over at go-live): one whole document
  as of one source transaction, from :class:`~salesledger.streams.assembly.DocumentEvent`;
- ``salesledger.PeriodAction`` (``schemas/period_action.v1.avsc``): ``period lock`` / ``period
  unlock`` / ``held release`` from the CLI. They travel on the same one-partition topic so the
  posting stage applies them in one total order with the documents (a lock takes effect between
  two documents, the same way on every replay).
- ``salesledger.ExchangeRateEvent`` (``schemas/exchange_rate.v1.avsc``): one exchange rate
  (a ``sales.currency_rates`` row inserted or updated), from
  :class:`~salesledger.streams.assembly.RateEvent`, in commit order with the documents, so the
  posting stage sets it (``engine.set_rate``) between the same two documents on every replay.

:func:`document_datum` / :func:`document_from_datum` convert between the model
(:mod:`salesledger.ledger.model`) and the datum, :func:`rate_datum` builds a rate's;
:func:`decode_documents_record` tells the kinds apart by the writer schema. Pure: no Kafka client.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from salesledger.ledger.model import (
    DOCUMENT_CLASSES,
    Allocation,
    AnyDocument,
    ExchangeRate,
    GoodsReceipt,
    Invoice,
    InvoiceLine,
    OpeningBalance,
    OpeningAdvance,
    OpeningInvoice,
    OpeningInvoiceLine,
    OpeningReceivable,
    OpeningStockLine,
    Payment,
    ReceiptLine,
    ReturnLine,
    SalesReturn,
    SourcePosition,
    WriteOff,
    WriteOffLine,
)
from salesledger.streams.assembly import DocumentEvent, RateEvent
from salesledger.streams.deadletter import RejectedRecord
from salesledger.streams.serde import AvroSerde

DOCUMENT_SUBJECT = "sales_document"
ACTION_SUBJECT = "period_action"
RATE_SUBJECT = "exchange_rate"
_DOCUMENT_RECORD = "salesledger.SalesDocumentEvent"
_ACTION_RECORD = "salesledger.PeriodAction"
_RATE_RECORD = "salesledger.ExchangeRateEvent"


class NotADocumentRecord(RejectedRecord):
    """A record of the documents topic that is neither a document event nor a period action."""

    reason = "unexpected_record"


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodActionEvent:
    """A period action read from the documents topic: ``action`` lock | unlock | release,
    ``through`` (lock), ``document_key`` (release), ``actor`` and ``at`` (who, when, UTC),
    ``action_id`` (uuid4 of the request)."""

    action: str
    through: dt.date | None = None
    document_key: str | None = None
    actor: str | None = None
    at: dt.datetime | None = None
    action_id: str = ""

    def datum(self) -> dict[str, Any]:
        """The Avro datum (``schemas/period_action.v1.avsc``)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentVersionEvent:
    """A document event read back: ``key``, ``operation``, ``version`` (commit LSN, event
    index), the model ``document`` and the transaction's commit time."""

    key: str
    operation: str
    version: tuple[int, int]
    document: AnyDocument


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeRateEvent:
    """An exchange rate read back: ``key`` ``rate:<currency>:<date>``, ``version`` (commit LSN,
    event index), the engine's ``rate`` (per one unit) and the source position."""

    key: str
    version: tuple[int, int]
    rate: ExchangeRate
    source: SourcePosition


# --------------------------------------------------------------------------- model -> datum


def _source(source: SourcePosition | None) -> dict[str, Any]:
    source = source or SourcePosition()
    return {"lsn": source.lsn, "tx_id": source.tx_id, "commit_time": source.commit_time}


def _body(document: AnyDocument) -> dict[str, Any]:
    if isinstance(document, Invoice):
        return {"customer": document.customer, "warehouse": document.warehouse,
                "payment_terms_days": document.payment_terms_days,
                "prices_include_vat": document.prices_include_vat,
                "lines": [dataclasses.asdict(line) for line in document.lines]}
    if isinstance(document, Payment):
        return {"customer": document.customer, "method": document.method,
                "amount": document.amount,
                "allocations": [dataclasses.asdict(a) for a in document.allocations]}
    if isinstance(document, SalesReturn):
        return {"customer": document.customer, "warehouse": document.warehouse,
                "against": document.against,
                "lines": [dataclasses.asdict(line) for line in document.lines]}
    if isinstance(document, GoodsReceipt):
        return {"supplier": document.supplier, "warehouse": document.warehouse,
                "lines": [dataclasses.asdict(line) for line in document.lines]}
    if isinstance(document, WriteOff):
        return {"warehouse": document.warehouse, "reason": document.reason,
                "lines": [dataclasses.asdict(line) for line in document.lines]}
    if isinstance(document, OpeningBalance):
        return {"stock": [dataclasses.asdict(line) for line in document.stock],
                "receivables": [dataclasses.asdict(item) for item in document.receivables],
                "advances": [dataclasses.asdict(adv) for adv in document.advances],
                "invoices": [dataclasses.asdict(ref) for ref in document.invoices]}
    raise TypeError(f"not a document: {type(document).__name__}")


def document_datum(event: DocumentEvent) -> dict[str, Any]:
    """The ``salesledger.SalesDocumentEvent`` datum of an assembled document event. A deleted
    document keeps its last content as body (the posting stage reverses from its own stored
    posting anyway, CDC-06)."""
    doc = event.document
    return {
        "document_type": doc.doc_type, "document_id": doc.id, "number": doc.number,
        "operation": event.operation,
        "version": {"commit_lsn": event.version[0], "event_index": event.version[1]},
        "source": _source(event.source), "status": doc.status, "date": doc.date,
        "currency": doc.currency, "branch": doc.branch, "entered_at": doc.entered_at,
        "body": _body(doc),
    }


def rate_datum(event: RateEvent) -> dict[str, Any]:
    """The ``salesledger.ExchangeRateEvent`` datum of an assembled rate (the serde refuses a
    rate with more than 6 decimals: ``DecimalOutOfRange``, never rounded)."""
    return {"currency": event.currency, "date": event.date, "rate": event.rate,
            "version": {"commit_lsn": event.version[0], "event_index": event.version[1]},
            "source": _source(event.source)}


# --------------------------------------------------------------------------- datum -> model


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _opening_invoice(datum: dict[str, Any]) -> OpeningInvoice:
    lines = tuple(OpeningInvoiceLine(**line) for line in datum["lines"])
    return OpeningInvoice(**{**datum, "lines": lines})


def _fields_from_body(doc_type: str, body: dict[str, Any]) -> dict[str, Any]:
    if doc_type == "invoice":
        return {"customer": body["customer"], "warehouse": body["warehouse"],
                "payment_terms_days": body["payment_terms_days"],
                "prices_include_vat": body["prices_include_vat"],
                "lines": tuple(InvoiceLine(**line) for line in body["lines"])}
    if doc_type == "payment":
        return {"customer": body["customer"], "method": body["method"], "amount": body["amount"],
                "allocations": tuple(Allocation(**a) for a in body["allocations"])}
    if doc_type == "return":
        return {"customer": body["customer"], "warehouse": body["warehouse"],
                "against": body["against"],
                "lines": tuple(ReturnLine(**line) for line in body["lines"])}
    if doc_type == "goods_receipt":
        return {"supplier": body["supplier"], "warehouse": body["warehouse"],
                "lines": tuple(ReceiptLine(**line) for line in body["lines"])}
    if doc_type == "write_off":
        return {"warehouse": body["warehouse"], "reason": body["reason"],
                "lines": tuple(WriteOffLine(**line) for line in body["lines"])}
    if doc_type == "opening_balance":
        return {"stock": tuple(OpeningStockLine(**line) for line in body["stock"]),
                "receivables": tuple(OpeningReceivable(**i) for i in body.get("receivables", ())),
                "advances": tuple(OpeningAdvance(**a) for a in body.get("advances", ())),
                "invoices": tuple(_opening_invoice(ref) for ref in body.get("invoices", ()))}
    raise NotADocumentRecord(f"unknown document type {doc_type!r}")


def document_from_datum(datum: dict[str, Any]) -> DocumentVersionEvent:
    """The model document of a ``SalesDocumentEvent`` datum (amounts stay exact ``Decimal``).

    Raises:
        NotADocumentRecord: a document type the model does not know or a missing body.
    """
    doc_type = datum["document_type"]
    if datum["body"] is None:
        raise NotADocumentRecord(f"{doc_type}:{datum['number']} carries no body")
    src = datum["source"] or {}
    source = SourcePosition(lsn=src.get("lsn"), tx_id=src.get("tx_id"),
                            commit_time=_aware(src.get("commit_time")))
    version = (datum["version"]["commit_lsn"], datum["version"]["event_index"])
    cls = DOCUMENT_CLASSES[doc_type]
    document = cls(id=datum["document_id"], number=datum["number"], date=datum["date"],
                   currency=datum["currency"], version=version[0], status=datum["status"],
                   branch=datum.get("branch"), entered_at=_aware(datum.get("entered_at")),
                   source=source, **_fields_from_body(doc_type, datum["body"]))
    return DocumentVersionEvent(key=document.key, operation=datum["operation"], version=version,
                                document=document)


def rate_from_datum(datum: dict[str, Any]) -> ExchangeRateEvent:
    """The engine's :class:`~salesledger.ledger.model.ExchangeRate` of an ``ExchangeRateEvent``
    datum, with its key, version and source."""
    src = datum["source"] or {}
    rate = ExchangeRate(currency=datum["currency"], date=datum["date"], rate=datum["rate"])
    return ExchangeRateEvent(
        key=f"rate:{rate.currency}:{rate.date.isoformat()}",
        version=(datum["version"]["commit_lsn"], datum["version"]["event_index"]), rate=rate,
        source=SourcePosition(lsn=src.get("lsn"), tx_id=src.get("tx_id"),
                              commit_time=_aware(src.get("commit_time"))))


def decode_documents_record(serde: AvroSerde, value: bytes | None
                            ) -> DocumentVersionEvent | PeriodActionEvent | ExchangeRateEvent | None:
    """Decode one value of the documents topic; None for a tombstone.

    Raises:
        RejectedRecord: undecodable bytes, unknown writer schema (CDC-14), or a record of
            another type (:class:`NotADocumentRecord`).
    """
    if value is None:
        return None
    writer, _ = serde.writer_of(value)
    datum = serde.decode(value)
    assert datum is not None
    if writer.full_name == _DOCUMENT_RECORD:
        try:
            return document_from_datum(datum)
        except (KeyError, TypeError, ValueError) as error:
            raise NotADocumentRecord(f"document datum unusable: {type(error).__name__}: {error}"
                                     ) from None
    if writer.full_name == _ACTION_RECORD:
        return PeriodActionEvent(action=datum["action"], through=datum.get("through"),
                                 document_key=datum.get("document_key"),
                                 actor=datum.get("actor"), at=_aware(datum.get("at")),
                                 action_id=datum.get("action_id") or "")
    if writer.full_name == _RATE_RECORD:
        return rate_from_datum(datum)
    raise NotADocumentRecord(f"{writer.full_name} does not belong on the documents topic")


__all__ = [
    "ACTION_SUBJECT",
    "DOCUMENT_SUBJECT",
    "DocumentVersionEvent",
    "ExchangeRateEvent",
    "NotADocumentRecord",
    "PeriodActionEvent",
    "RATE_SUBJECT",
    "decode_documents_record",
    "document_datum",
    "document_from_datum",
    "rate_datum",
    "rate_from_datum",
]
