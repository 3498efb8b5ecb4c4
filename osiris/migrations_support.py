"""What autogenerate compares: our models, not the tables pgqueuer's own DDL creates."""

from __future__ import annotations


def include_object(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    if type_ == "table" and reflected and compare_to is None and str(name).startswith("pgqueuer"):
        return False
    return True
