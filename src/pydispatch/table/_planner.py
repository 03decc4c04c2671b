"""A checked query as pydispatch operators (private): the distributed plan of a SELECT.

The query (qualified by ``_sql``) is decomposed the way a distributed engine does it, each piece
a DuckDB query over chunks (``_relations`` strings them onto operators):

1. Scans: each table of ``FROM`` read by its source's parallel subtasks, only the columns the
   query uses, renamed ``"alias.column"``, the ``WHERE`` conjuncts on that table alone applied
   there (not below the null-supplying side of a LEFT JOIN): chained into the source.
2. Joins, left-deep: both sides shuffled by the hash of the equality's key expressions to the
   join's subtasks, each joining its share (inner or LEFT) with the whole ``ON`` condition.
3. Aggregates: when every aggregate is decomposable (``COUNT``, ``SUM``, ``MIN``, ``MAX``,
   ``AVG``, no ``DISTINCT`` inside but ``MIN/MAX``), a local pre-aggregation per chunk (group
   keys and partial states: a sum and a count for an average), a shuffle by the group keys, the
   partials merged (and compacted as they arrive), then ``HAVING`` and the projections over the
   merged groups. Other aggregates (``COUNT(DISTINCT ...)``, any other DuckDB aggregate, a
   ``FILTER``) shuffle the filtered rows by the group keys and aggregate them there. No
   ``GROUP BY``: one subtask merges.
4. ``DISTINCT``: distinct per chunk, a shuffle by every output column, distinct again.
5. ``ORDER BY``/``LIMIT``/``OFFSET``: the top rows per chunk when limited, then one subtask
   sorts (bounded tables only).
6. ``UNION ALL`` (``UNION``: then 4): both sides cast to the common types, one stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._aggregates import aggregate
from ._relations import INPUT, Relation, output, shuffle, then
from ._rewrite import aggregates as _aggregates
from ._rewrite import conjuncts as _conjuncts
from ._rewrite import quoted as _q
from ._rewrite import renamed as _renamed
from ._rewrite import sql as _sql
from ._rewrite import stripped as _stripped
from ._rewrite import tables as _tables
from ._rewrite import where as _where
from ._sql import unsupported

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp

    from ..stream import DataStream, StreamEnvironment

__all__ = ["Node", "Planner", "QueryNode", "SourceNode"]


@dataclass(eq=False)
class SourceNode:
    """A table read from data: ``build(env, parallelism, columns)`` makes its relation (the
    columns the query uses, in the schema's order)."""

    name: str
    schema: pa.Schema
    build: Callable[[StreamEnvironment, int, tuple[str, ...]], Relation]
    bounded: bool = True


@dataclass(eq=False)
class QueryNode:
    """A checked query: ``tree`` (qualified) over the tables ``refs`` names; ``schema`` its
    result's columns as DuckDB names and types them."""

    tree: exp.Expr
    refs: dict[str, Node]
    schema: pa.Schema
    bounded: bool = True


Node = SourceNode | QueryNode


class _Scope:
    """The names a query sees: the catalog's tables and its own ``WITH`` queries."""

    def __init__(self, refs: dict[str, Node], ctes: dict[str, exp.Expr]) -> None:
        self.refs = refs
        self.ctes = ctes


class Planner:
    """Builds the operators of queries into ``env``'s job graph at ``parallelism``."""

    def __init__(self, env: StreamEnvironment, parallelism: int) -> None:
        self.env = env
        self.p = parallelism
        self._views: dict[int, Relation] = {}

    # -- entry points -------------------------------------------------------------------

    def stream(self, node: Node) -> tuple[DataStream, pa.Schema]:
        """``node``'s chunks as a stream, ready for a sink, and their schema."""
        rel = self.relation(node, tuple(node.schema.names))
        return output(rel), rel.schema

    def relation(self, node: Node, columns: tuple[str, ...]) -> Relation:
        if isinstance(node, SourceNode):
            return node.build(self.env, self.p, columns)
        cached = self._views.get(id(node))
        if cached is None:
            rel = self.query(node.tree, _Scope(node.refs, {}))
            names = node.schema.names
            cols = ", ".join(
                f"{_q(have)} AS {_q(want)}"
                for have, want in zip(rel.schema.names, names, strict=True)
            )
            cached = self._views[id(node)] = then(rel, f"SELECT {cols} FROM {INPUT}")
        return cached

    def query(self, tree: exp.Expr, scope: _Scope) -> Relation:
        """A relation whose columns are named as ``tree``'s projections."""
        from sqlglot import exp

        if isinstance(tree, exp.Subquery):
            return self.query(tree.this, scope)
        with_ = tree.args.get("with_") or tree.args.get("with")
        if with_ is not None:
            ctes = dict(scope.ctes)
            for cte in with_.expressions:
                ctes[cte.alias] = cte.this
            scope = _Scope(scope.refs, ctes)
        if isinstance(tree, exp.Union):
            return self._union(tree, scope)
        if isinstance(tree, exp.Select):
            return self._select(tree, scope)
        if isinstance(tree, exp.Intersect | exp.Except):
            raise unsupported(f"{type(tree).__name__.upper()}; use joins or NOT EXISTS-free forms")
        raise unsupported(f"a {type(tree).__name__} statement where a query was expected")

    # -- SELECT ---------------------------------------------------------------------------

    def _item(self, item: exp.Expr, scope: _Scope, needed: set[str]) -> Relation:
        from sqlglot import exp

        if isinstance(item, exp.Subquery):
            return self.query(item.this, scope)
        if isinstance(item, exp.Table) and not item.args.get("db"):
            name = item.name
            if name in scope.ctes:
                return self.query(scope.ctes[name], _Scope(scope.refs, scope.ctes))
            node = scope.refs.get(name)
            if node is not None:
                wanted = tuple(c for c in node.schema.names if c in needed)
                return self.relation(node, wanted)
        raise unsupported(f"{_sql(item)} in FROM (tables, views and subqueries only)")

    @staticmethod
    def _check(sel: exp.Select) -> None:
        from sqlglot import exp

        for kind, what in (
            (exp.Window, "window functions (OVER)"),
            (exp.Lateral, "LATERAL"),
            (exp.Pivot, "PIVOT"),
            (exp.Rollup, "ROLLUP"),
            (exp.Cube, "CUBE"),
            (exp.GroupingSets, "GROUPING SETS"),
        ):
            if sel.find(kind):
                raise unsupported(what)
        for node in sel.find_all(exp.Subquery, exp.Exists):
            parent = node.parent
            if isinstance(node, exp.Exists) or not isinstance(parent, exp.From | exp.Join):
                raise unsupported("subqueries inside expressions (IN, EXISTS, scalar); use a join")
        if sel.args.get("distinct") is not None and sel.args["distinct"].args.get("on"):
            raise unsupported("DISTINCT ON")
        if sel.args.get("qualify") is not None:
            raise unsupported("QUALIFY")

    def _select(self, sel: exp.Select, scope: _Scope) -> Relation:
        from sqlglot import exp

        self._check(sel)
        joins: list[exp.Join] = list(sel.args.get("joins") or [])
        from_ = sel.args.get("from_") or sel.args.get("from")
        if from_ is None:
            raise unsupported("SELECT without FROM")
        items = [from_.this, *(j.this for j in joins)]
        aliases = [item.alias_or_name for item in items]
        kinds = ["inner", *(self._join_kind(j) for j in joins)]
        needed: dict[str, set[str]] = {a: set() for a in aliases}
        for column in sel.find_all(exp.Column):
            if column.table in needed and not any(
                isinstance(item, exp.Subquery) and column.find_ancestor(exp.Subquery) is item
                for item in items
            ):
                needed[column.table].add(column.name)
        nullable = {a for a, k in zip(aliases, kinds, strict=True) if k == "left"}
        pushed: dict[str, list[exp.Expr]] = {a: [] for a in aliases}
        rest: list[exp.Expr] = []
        where = sel.args.get("where")
        for cond in _conjuncts(where.this if where is not None else None):
            tables = _tables(cond)
            if len(tables) == 1 and not (tables & nullable) and not _aggregates(cond):
                pushed[next(iter(tables))].append(cond)
            else:
                rest.append(cond)
        rels: dict[str, Relation] = {}
        for item, alias in zip(items, aliases, strict=True):
            rel = self._item(item, scope, needed[alias])
            rels[alias] = self._scan(rel, alias, needed[alias], pushed[alias])
        cur = rels[aliases[0]]
        joined = {aliases[0]}
        for join, alias, kind in zip(joins, aliases[1:], kinds[1:], strict=True):
            cur = self._join(cur, rels[alias], join, alias, kind, joined, rest)
            joined.add(alias)
        projections = list(sel.expressions)
        names = [p.alias_or_name for p in projections]
        group = sel.args.get("group")
        having = sel.args.get("having")
        aggregated = bool(group) or having is not None or any(_aggregates(p) for p in projections)
        distinct = sel.args.get("distinct") is not None
        order = sel.args.get("order")
        limited = sel.args.get("limit") is not None or sel.args.get("offset") is not None
        window = self._tumbling(items[0], sel) if not cur.bounded and aggregated else None
        if not cur.bounded and (
            distinct or order or limited or joins or (aggregated and not window)
        ):
            raise unsupported(
                "aggregates, joins, DISTINCT, ORDER BY and LIMIT over an unbounded table "
                "(only projections, filters, and aggregates GROUP BY a TUMBLE window's "
                "window_start)"
            )
        keys, hidden = self._order_keys(order, projections, names)
        if distinct and hidden:
            raise unsupported("ORDER BY expressions that are not in the SELECT DISTINCT list")
        if window is not None:
            body = aggregate(self.p, cur, sel, projections, hidden, rest, window=window)
        elif aggregated:
            body = aggregate(self.p, cur, sel, projections, hidden, rest)
        else:
            cols = [f"{_sql(_renamed(p.unalias()))} AS __c{i}" for i, p in enumerate(projections)]
            cols += [f"{_sql(_renamed(h))} AS __o{i}" for i, h in enumerate(hidden)]
            body = then(
                cur,
                f"SELECT {'DISTINCT ' if distinct else ''}{', '.join(cols)} FROM {INPUT}"
                f"{_where(rest)}",
            )
        if distinct:
            body = self._distinct(body)
        body = self._sorted(body, keys, sel, len(projections))
        renamed = ", ".join(f"__c{i} AS {_q(n)}" for i, n in enumerate(names))
        return then(body, f"SELECT {renamed} FROM {INPUT}")

    @staticmethod
    def _tumbling(item: exp.Expr, sel: exp.Select) -> tuple[float, int, bool] | None:
        """For a GROUP BY over a TUMBLE window of an unbounded table: the window's size, the
        position of its ``window_start`` among the group keys, and whether its time is a
        TIMESTAMP (its size then in microseconds)."""
        from sqlglot import exp

        size = item.meta.get("tumble") if isinstance(item, exp.Subquery) else None
        group = sel.args.get("group")
        if size is None or group is None:
            return None
        for i, g in enumerate(group.expressions):
            is_start = isinstance(g, exp.Column) and g.name == "window_start"
            if is_start and g.table == item.alias_or_name:
                return size, i, bool(item.meta.get("epoch"))
        return None

    @staticmethod
    def _join_kind(join: exp.Join) -> str:
        side = (join.side or "").upper()
        kind = (join.kind or "").upper()
        if (
            join.args.get("method")
            or kind in ("CROSS", "SEMI", "ANTI")
            or side
            in (
                "RIGHT",
                "FULL",
            )
        ):
            what = " ".join(x for x in (join.args.get("method"), side, kind) if x)
            raise unsupported(f"{what.upper()} JOIN (inner and LEFT equi-joins only)")
        if join.args.get("using"):
            raise unsupported("JOIN ... USING; write the equality in ON")
        return "left" if side == "LEFT" else "inner"

    def _scan(
        self, rel: Relation, alias: str, needed: set[str], pushed: list[exp.Expr]
    ) -> Relation:
        cols = [c for c in rel.schema.names if c in needed]
        proj = ", ".join(f"{_q(c)} AS {_q(f'{alias}.{c}')}" for c in cols)
        if not proj:  # COUNT(*) alone: the rows, no column
            proj = f"TRUE AS {_q(f'{alias}.__row')}"
        where = " AND ".join(_sql(_stripped(c)) for c in pushed)
        return then(rel, f"SELECT {proj} FROM {INPUT}" + (f" WHERE {where}" if where else ""))

    def _join(
        self,
        cur: Relation,
        right: Relation,
        join: exp.Join,
        alias: str,
        kind: str,
        joined: set[str],
        rest: list[exp.Expr],
    ) -> Relation:
        from sqlglot import exp

        on = join.args.get("on")
        conds = _conjuncts(on)
        if on is None and kind == "inner":  # FROM a, b WHERE a.x = b.y
            for cond in list(rest):
                tables = _tables(cond)
                if alias in tables and tables - {alias} and tables <= joined | {alias}:
                    conds.append(cond)
                    rest.remove(cond)
        pairs: list[tuple[exp.Expr, exp.Expr]] = []
        for cond in conds:
            if isinstance(cond, exp.EQ):
                left, rightside = _tables(cond.this), _tables(cond.expression)
                if left and left <= joined and rightside == {alias}:
                    pairs.append((cond.this, cond.expression))
                elif rightside and rightside <= joined and left == {alias}:
                    pairs.append((cond.expression, cond.this))
        if not pairs:
            raise unsupported(
                f"a join with {alias!r} without an equality between the two sides "
                "(cross and non-equi joins); write ON a.x = b.y"
            )
        keys = tuple(f"__k{i}" for i in range(len(pairs)))

        def keyed(rel: Relation, exprs: list[exp.Expr]) -> Relation:
            cols = ", ".join(f"{_sql(_renamed(e))} AS __k{i}" for i, e in enumerate(exprs))
            return then(rel, f"SELECT *, {cols} FROM {INPUT}")

        verb = "LEFT JOIN" if kind == "left" else "JOIN"
        condition = " AND ".join(_sql(_renamed(c)) for c in conds)
        return shuffle(
            [
                (keyed(cur, [a for a, _ in pairs]), keys),
                (keyed(right, [b for _, b in pairs]), keys),
            ],
            f"SELECT * FROM side0 {verb} side1 ON {condition}",
            parallelism=self.p,
            drop_keys=True,
            name=f"{verb.lower()} {alias}",
        )

    # -- aggregates -------------------------------------------------------------------------

    def _distinct(self, body: Relation) -> Relation:
        cols = tuple(body.schema.names)
        return shuffle(
            [(body, cols)],
            "SELECT DISTINCT * FROM side0",
            parallelism=self.p,
            drop_keys=False,
            compact_sql="SELECT DISTINCT * FROM side0",
            name="distinct",
        )

    @staticmethod
    def _order_keys(
        order: exp.Order | None, projections: list[exp.Expr], names: list[str]
    ) -> tuple[list[tuple[str, exp.Ordered]], list[exp.Expr]]:
        """Each ORDER BY key as an output column (``__c``) or a hidden one (``__o``)."""
        from sqlglot import exp

        keys: list[tuple[str, exp.Ordered]] = []
        hidden: list[exp.Expr] = []
        for ordered in order.expressions if order is not None else []:
            key = ordered.this
            target = None
            if isinstance(key, exp.Column) and not key.table and key.name in names:
                target = f"__c{names.index(key.name)}"
            else:
                for i, p in enumerate(projections):
                    if p.unalias() == key:
                        target = f"__c{i}"
                        break
            if target is None:
                target = f"__o{len(hidden)}"
                hidden.append(key)
            keys.append((target, ordered))
        return keys, hidden

    def _sorted(
        self, body: Relation, keys: list[tuple[str, exp.Ordered]], tree: exp.Expr, width: int
    ) -> Relation:
        from sqlglot import exp

        limit, offset = tree.args.get("limit"), tree.args.get("offset")
        if not keys and limit is None and offset is None:
            return body
        if not body.bounded:
            raise unsupported("ORDER BY/LIMIT over an unbounded table")

        def number(node: exp.Expr | None) -> int | None:
            if node is None:
                return None
            value = node.expression if node.expression is not None else node.this
            if not isinstance(value, exp.Literal) or value.is_string:
                raise unsupported(f"LIMIT/OFFSET by an expression ({_sql(node)}); use a number")
            return int(value.this)

        n, skip = number(limit), number(offset) or 0
        by = ""
        if keys:
            parts = []
            for target, ordered in keys:
                key = ordered.copy()
                key.set("this", exp.column(target))
                parts.append(_sql(key))
            by = f" ORDER BY {', '.join(parts)}"
        if n is not None:  # the top rows of each chunk suffice
            body = then(body, f"SELECT * FROM {INPUT}{by} LIMIT {n + skip}")
        top = f" LIMIT {n + skip}" if n is not None else ""
        cols = ", ".join(f"__c{i}" for i in range(width))
        tail = (f" LIMIT {n}" if n is not None else "") + (f" OFFSET {skip}" if skip else "")
        return shuffle(
            [(body, ())],
            f"SELECT {cols} FROM side0{by}{tail}",
            parallelism=1,
            drop_keys=False,
            compact_sql=f"SELECT * FROM side0{by}{top}" if n is not None else None,
            name="order by" if keys else "limit",
        )

    def _union(self, tree: exp.Union, scope: _Scope) -> Relation:
        from ._engine import describe

        left = self.query(tree.this, scope)
        right = self.query(tree.expression, scope)
        if len(left.schema) != len(right.schema):
            raise unsupported(
                f"UNION of {len(left.schema)} and {len(right.schema)} columns"
            )  # DuckDB's check comes first; kept for the planner's own invariant
        common = describe(
            "SELECT * FROM l UNION ALL SELECT * FROM r", {"l": left.schema, "r": right.schema}
        )
        names = left.schema.names

        def cast(rel: Relation) -> Relation:
            cols = ", ".join(
                f"CAST({_q(have)} AS {kind}) AS __c{i}"
                for i, (have, (_, kind)) in enumerate(zip(rel.schema.names, common, strict=True))
            )
            return then(rel, f"SELECT {cols} FROM {INPUT}")

        a, b = cast(left), cast(right)
        stream = output(a).union(output(b))
        body = Relation(stream, a.schema, self.p, a.bounded and b.bounded)
        if tree.args.get("distinct"):
            body = self._distinct(body)
        keys, hidden = self._order_keys(
            tree.args.get("order"), [], [f"__c{i}" for i in range(len(names))]
        )
        out_names = list(names)
        fixed = []
        for target, ordered in keys:
            key = ordered.this
            if target.startswith("__o") and key.name in out_names:
                target = f"__c{out_names.index(key.name)}"
            elif target.startswith("__o"):
                raise unsupported(f"ORDER BY {_sql(key)} over a UNION: name an output column")
            fixed.append((target, ordered))
        del hidden
        body = self._sorted(body, fixed, tree, len(names))
        cols = ", ".join(f"__c{i} AS {_q(n)}" for i, n in enumerate(names))
        return then(body, f"SELECT {cols} FROM {INPUT}")
