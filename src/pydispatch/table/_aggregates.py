"""Aggregates as operators (private; the planner's ``GROUP BY``, see ``_planner``).

With every aggregate decomposable (``COUNT``, ``SUM``, ``MIN``, ``MAX``, ``AVG`` as a sum and a
count; no ``DISTINCT`` but in ``MIN``/``MAX``; no ``FILTER``): a pre-aggregation per chunk into
partial columns, a shuffle by the group keys, the partials merged (and compacted as they
arrive), then ``HAVING`` and the projections over the merged groups. Otherwise the filtered rows
are shuffled by the group keys and the query runs as written on each subtask's share. Over an
unbounded table grouped by a ``TUMBLE`` window, the partial rows go through pydispatch's keyed
event-time window instead of a shuffle (``_windows``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._engine import run
from ._relations import INPUT, Relation, output, shuffle, then
from ._rewrite import aggregates as _aggregates
from ._rewrite import decomposable as _decomposable
from ._rewrite import renamed as _renamed
from ._rewrite import sql as _sql
from ._rewrite import where as _where
from ._sql import DIALECT, duckdb_types, unsupported

if TYPE_CHECKING:
    from sqlglot import exp

__all__ = ["aggregate"]


def aggregate(
    parallelism: int,
    cur: Relation,
    sel: exp.Select,
    projections: list[exp.Expr],
    hidden: list[exp.Expr],
    rest: list[exp.Expr],
    window: tuple[float, int, bool] | None = None,
) -> Relation:
    """The aggregate ``sel`` over ``cur`` (see the module docstring). ``window``: the TUMBLE
    window of an unbounded table: its size, its ``window_start``'s place among the group keys,
    and whether it is a TIMESTAMP (then sized in microseconds, and its epoch is one more
    group key, the event time the window operator reads)."""
    group = sel.args.get("group")
    groups = list(group.expressions) if group is not None else []
    having = sel.args.get("having")
    outputs = [p.unalias() for p in projections] + hidden
    found = [a for e in [*outputs, *([having.this] if having else [])] for a in _aggregates(e)]
    q = parallelism if groups else 1
    gcols = tuple(f"__g{i}" for i in range(len(groups)))
    gsel = [f"{_sql(_renamed(g))} AS __g{i}" for i, g in enumerate(groups)]
    if window is not None and not all(_decomposable(a) for a in found):
        raise unsupported(
            "over an unbounded table, aggregates other than COUNT, SUM, "
            "MIN, MAX and AVG (without DISTINCT)"
        )
    if not all(_decomposable(a) for a in found):
        # Rows to the owner of their group; the query as written there.
        pre = then(cur, f"SELECT *{''.join(', ' + g for g in gsel)} FROM {INPUT}{_where(rest)}")
        cols = [
            *[f"{_sql(_renamed(e))} AS __c{i}" for i, e in enumerate(outputs[: len(projections)])],
            *[f"{_sql(_renamed(e))} AS __o{i}" for i, e in enumerate(hidden)],
        ]
        by = f" GROUP BY {', '.join(_sql(_renamed(g)) for g in groups)}" if groups else ""
        having_sql = f" HAVING {_sql(_renamed(having.this))}" if having is not None else ""
        finish = f"SELECT {', '.join(cols)} FROM side0{by}{having_sql}"
        seed = None if groups else pre.schema.empty_table()
        return shuffle(
            [(pre, gcols)], finish, parallelism=q, drop_keys=True, name="aggregate", seed=seed
        )
    partials: dict[str, tuple[str, list[tuple[str, str, str]]]] = {}
    for agg in found:
        text = _sql(_renamed(agg))
        if text in partials:
            continue
        j = len(partials)
        partials[text] = _partial(agg, j)
    psel = [f"{expr} AS {col}" for _, cols in partials.values() for col, expr, _ in cols]
    position = window[1] if window is not None else 0
    if window is not None and window[2]:
        start = _sql(_renamed(groups[window[1]]))
        position = len(gsel)
        gsel = [*gsel, f"epoch_us({start}) AS __g{position}"]
        gcols = (*gcols, f"__g{position}")
    by = f" GROUP BY {', '.join(str(i + 1) for i in range(len(gsel)))}" if gsel else ""
    if window is not None:  # partial rows leave in event-time order: watermarks ascend
        by += f" ORDER BY __g{position}"
    pre = then(cur, f"SELECT {', '.join(gsel + psel)} FROM {INPUT}{_where(rest)}{by}")
    types = duckdb_types(pre.schema)
    merged = [
        f"CAST({merge}({col}) AS {types[col]}) AS {col}"
        for _, cols in partials.values()
        for col, _, merge in cols
    ]
    gby = f" GROUP BY {', '.join(gcols)}" if groups else ""
    compact = f"SELECT {', '.join([*gcols, *merged])} FROM side0{gby}"
    final = {text: expr for text, (expr, _) in partials.items()}
    cols = [
        f"{_over_partials(e, groups, final)} AS __c{i}"
        for i, e in enumerate(outputs[: len(projections)])
    ]
    cols += [f"{_over_partials(e, groups, final)} AS __o{i}" for i, e in enumerate(hidden)]
    having_sql = (
        f" WHERE {_over_partials(having.this, groups, final)}" if having is not None else ""
    )
    finish = f"SELECT {', '.join(cols)} FROM ({compact}) AS __m{having_sql}"
    if window is not None:
        merges = tuple(m for _, c in partials.values() for _, _, m in c)
        size = window[0]
        return _fire_on_watermarks(parallelism, pre, len(gcols), (size, position), merges, finish)
    # A global aggregate has one row even over no rows at all: its partial over none.
    seed = None
    if not groups:
        source = pre.pending_input if pre.pending_input is not None else pre.schema
        assert pre.pending is not None
        seed = run(pre.pending.replace(INPUT, "input"), {"input": source.empty_table()})
    return shuffle(
        [(pre, gcols)],
        finish,
        parallelism=q,
        drop_keys=False,
        compact_sql=compact,
        name="aggregate",
        seed=seed,
    )


def _fire_on_watermarks(
    parallelism: int,
    pre: Relation,
    width: int,
    window: tuple[float, int],
    merges: tuple[str, ...],
    finish: str,
) -> Relation:
    """Partial rows through pydispatch's keyed event-time window, merged per group and
    window, finished when the watermark passes the window's end (see ``_windows``)."""
    from ._engine import run
    from ._steps import SchemaBytes, ToRows
    from ._windows import FinishRows, GroupKey, MergeRows

    size, position = window
    fired = (
        output(pre)
        .flat_map(ToRows())
        .name("SQL: partial rows")
        .set_parallelism(pre.parallelism)
        .key_by(GroupKey(width))
        .time_window(size if size != int(size) else int(size), timestamp=position)
        .reduce(MergeRows(width, merges))
        .name("SQL: tumbling window")
        .set_parallelism(parallelism)
    )
    stream = fired.map_batches(
        FinishRows(SchemaBytes.of(pre.schema), finish), name="SQL: window results"
    ).set_parallelism(parallelism)
    schema = run(finish, {"side0": pre.schema.empty_table()}).schema
    return Relation(stream, schema, parallelism, bounded=False)


def _partial(agg: exp.Expr, j: int) -> tuple[str, list[tuple[str, str, str]]]:
    """The final expression of aggregate ``j`` over its merged partial columns, and each
    partial: ``(column, expression per chunk, merge function)``."""
    from sqlglot import exp

    arg = "*" if isinstance(agg.this, exp.Star) else _sql(_renamed(agg.this))
    col = f"__p{j}"
    if isinstance(agg, exp.Count):
        return col, [(col, f"count({arg})", "sum")]
    if isinstance(agg, exp.Sum):
        return col, [(col, f"sum({arg})", "sum")]
    if isinstance(agg, exp.Min):
        return col, [(col, f"min({arg})", "min")]
    if isinstance(agg, exp.Max):
        return col, [(col, f"max({arg})", "max")]
    assert isinstance(agg, exp.Avg)
    total, count = f"{col}s", f"{col}c"
    return (
        f"(CAST({total} AS DOUBLE) / {count})",
        [(total, f"sum({arg})", "sum"), (count, f"count({arg})", "sum")],
    )


def _over_partials(e: exp.Expr, groups: list[exp.Expr], final: dict[str, str]) -> str:
    """``e`` (a projection, HAVING, an ORDER BY key) over the merged groups: aggregates
    as their final expressions, group keys as their columns."""
    import sqlglot
    from sqlglot import exp

    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.AggFunc):
            return sqlglot.parse_one(final[_sql(_renamed(node))], read=DIALECT)
        for i, g in enumerate(groups):
            if node == g:
                return exp.column(f"__g{i}")
        return node

    return _sql(_renamed(e.copy().transform(swap)))


# -- DISTINCT, ORDER BY, LIMIT, UNION -------------------------------------------------------
