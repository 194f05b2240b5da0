"""The API the stream processors use: state in separate tables (documents, stock, customers),
a partial state per document from ``needed_keys``, changed keys written back; and the state
survives pickling (a Faust table codec)."""

from __future__ import annotations

import pickle
from decimal import Decimal as D

from immutables import Map

from salesledger.ledger import LedgerSettings, LedgerState, engine, needed_keys
from salesledger.ledger.bench import generate

from .helpers import AZ


def _full(docs, opening, settings):
    state, _ = engine.post(LedgerState(), opening, settings, AZ)
    out = []
    for doc in docs:
        state, res = engine.post(state, doc, settings, AZ)
        out.append(res)
    return state, out


def test_partial_states_from_tables_give_the_same_ledger() -> None:
    settings = LedgerSettings()
    opening, docs = generate(300, customers=7, skus=5, seed=3)
    full_state, full_results = _full(docs, opening, settings)
    tables = {"documents": {}, "stock": {}, "customers": {}}
    state, _ = engine.post(LedgerState(), opening, settings, AZ)
    for name in tables:
        tables[name].update(getattr(state, name).items())
    held = state.held
    for doc, expected in zip(docs, full_results):
        keys = needed_keys(doc, tables["documents"].get(doc.key))
        partial = LedgerState(
            **{name: Map({k: tables[name][k] for k in keys[name] if k in tables[name]}) for name in tables},
            held=held,
        )
        new, res = engine.post(partial, doc, settings, AZ, retry_held=False)
        assert res.entries == expected.entries
        for name in tables:
            for key, value in getattr(new, name).items():
                tables[name][key] = value
        held = new.held
    for name in tables:
        assert dict(getattr(full_state, name).items()) == tables[name], name


def test_state_round_trips_through_pickle() -> None:
    opening, docs = generate(100, customers=3, skus=3)
    state, _ = _full(docs, opening, LedgerSettings())
    copy = pickle.loads(pickle.dumps(state))
    assert copy == state
    assert sum((p.value for p in copy.stock.values()), D(0)) == sum((p.value for p in state.stock.values()), D(0))
