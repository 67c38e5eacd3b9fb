"""The SQL of ReadModels.find/count for both dialects, written so both give the same answers:
fields compare as JSON text (true/false/5/"x"); ordering puts numbers (numerically) before strings
(bytewise) before everything else, missing and null last, then the document key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Where = Mapping[str, str | int | None]
Dialect = Literal["postgres", "sqlite"]

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def as_text(value: str | int) -> str:
    """A value as the JSON text of a top-level field reads (bool before int: bool is an int)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _checked(name: str) -> str:
    if not _FIELD.fullmatch(name):
        raise ValueError(f"field name {name!r} must be a plain identifier")
    return name


def _rank(kind: str, numbers: tuple[str, ...], strings: str) -> str:
    """Numbers, then strings, then other values, then null or missing, in either direction."""
    number_kinds = ", ".join(f"'{name}'" for name in numbers)
    return (
        f"CASE WHEN {kind} IS NULL OR {kind} = 'null' THEN 3 WHEN {kind} IN ({number_kinds})"
        f" THEN 0 WHEN {kind} = '{strings}' THEN 1 ELSE 2 END"
    )


@dataclass
class DocumentQuery:
    """Builds `WHERE … ORDER BY …` over the documents table, binding every value and field name."""

    dialect: Dialect
    params: list[object] = field(default_factory=list)

    def bind(self, value: object) -> str:
        self.params.append(value)
        return f"${len(self.params)}" if self.dialect == "postgres" else f"?{len(self.params)}"

    def field_name(self, name: str) -> str:
        return f"{self.bind(_checked(name))}::text"

    def field_text(self, name: str) -> str:
        """The field as text; NULL when it is missing or JSON null."""
        if self.dialect == "postgres":
            return f"(doc ->> {self.field_name(name)})"
        path = self.bind("$." + _checked(name))
        # json_extract turns true/false into 1/0; Postgres' ->> keeps the JSON words.
        return (
            f"(CASE json_type(doc, {path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'"
            f" ELSE CAST(json_extract(doc, {path}) AS TEXT) END)"
        )

    def where(self, collection: str, where: Where | None) -> str:
        clauses = [f"collection = {self.bind(collection)}"]
        for name, value in (where or {}).items():
            text = self.field_text(name)
            if value is None:
                clauses.append(f"{text} IS NULL")
            else:
                clauses.append(f"{text} = {self.bind(as_text(value))}")
        return " WHERE " + " AND ".join(clauses)

    def order(self, order_by: str | None, descending: bool) -> str:
        key = "key" if self.dialect == "sqlite" else 'key COLLATE "C"'
        if order_by is None:
            return f" ORDER BY {key}"
        direction = "DESC" if descending else "ASC"
        if self.dialect == "postgres":
            kind = f"jsonb_typeof(doc -> {self.field_name(order_by)})"
            number = f"CASE WHEN {kind} = 'number' THEN ({self.field_text(order_by)})::numeric END"
            text = f'{self.field_text(order_by)} COLLATE "C"'
            rank = _rank(kind, numbers=("number",), strings="string")
            return f" ORDER BY {rank}, {number} {direction}, {text} {direction}, {key}"
        path = self.bind("$." + _checked(order_by))
        rank = _rank(f"json_type(doc, {path})", numbers=("integer", "real"), strings="text")
        return f" ORDER BY {rank}, json_extract(doc, {path}) {direction}, {key}"

    def page(self, limit: int, offset: int) -> str:
        return f" LIMIT {self.bind(limit)} OFFSET {self.bind(offset)}"


def find_sql(
    dialect: Dialect,
    collection: str,
    where: Where | None,
    order_by: str | None,
    descending: bool,
    limit: int,
    offset: int,
) -> tuple[str, list[object]]:
    query = DocumentQuery(dialect)
    sql = (
        "SELECT doc FROM documents"
        + query.where(collection, where)
        + query.order(order_by, descending)
        + query.page(limit, offset)
    )
    return sql, query.params


def count_sql(dialect: Dialect, collection: str, where: Where | None) -> tuple[str, list[object]]:
    query = DocumentQuery(dialect)
    return "SELECT count(*) FROM documents" + query.where(collection, where), query.params
