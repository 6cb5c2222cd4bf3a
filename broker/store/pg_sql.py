"""The store's SQL as PostgreSQL reads it: one translation per statement text, cached.

The store's statements are written once, in SQLite's dialect (broker/store/dialect.py builds
the parts SQLite says its own way), and mostly PostgreSQL reads them unchanged. The rest is
rewritten here, on the tokens, so nothing inside a string literal is touched:

    ?                        -> %s (psycopg's placeholder); a literal % -> %% (psycopg reads % everywhere)
    col IS ?                 -> col IS NOT DISTINCT FROM %s (null-safe equality)
    min(a, b), max(a, b)     -> least(a, b), greatest(a, b) (one argument: the aggregate, unchanged)
    t INDEXED BY i           -> t (PostgreSQL's planner takes no hints)
    ON CONFLICT ... DO UPDATE SET c = c + excluded.c
                             -> ... SET c = table.c + excluded.c (PostgreSQL finds a bare c ambiguous)
    FROM (SELECT ...)        -> FROM (SELECT ...) AS _s1 (PostgreSQL 15 wants a subquery named)
    IN ()                    -> IN (SELECT NULL WHERE false) (an empty list: PostgreSQL has no such syntax)
    json_each(?) AS k ... t.seq = k.value ->> 2
                             -> json_array_elements(%s::json) AS k(value) ... t.seq = (k.value ->> 2)::bigint
                                (dialect.rows_by_keys; the integer key columns are listed in INTEGER_KEYS)

A statement outside these forms that PostgreSQL reads differently is a bug the store's tests
find: they run on both databases.
"""
from __future__ import annotations

import functools
import re

__all__ = ["INTEGER_KEYS", "translate"]

# Key columns that rows_by_keys compares with a JSON array element, which ->> gives as text.
INTEGER_KEYS = frozenset({"seq"})

_TOKEN = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\s+|->>|.""", re.S)
_KEYWORDS = frozenset("""and or not is null case when then else end in as distinct from true false excluded
    select where like between exists coalesce""".split())


def _tokens(sql: str) -> list[str]:
    return _TOKEN.findall(sql)


def _lower(token: str) -> str:
    return token.lower()


def _next_word(tokens: list[str], i: int) -> int:
    """Index of the first non-space token at or after i (len(tokens) if none)."""
    while i < len(tokens) and tokens[i].isspace():
        i += 1
    return i


def _prev_word(tokens: list[str], i: int) -> int:
    """Index of the last non-space token before i (-1 if none)."""
    i -= 1
    while i >= 0 and tokens[i].isspace():
        i -= 1
    return i


def _closing(tokens: list[str], i: int) -> int:
    """Index of the ")" matching the "(" at i."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j] == "(":
            depth += 1
        elif tokens[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced parentheses")


def _top_level_commas(tokens: list[str], start: int, end: int) -> int:
    depth, n = 0, 0
    for j in range(start, end):
        depth += tokens[j] == "("
        depth -= tokens[j] == ")"
        n += tokens[j] == "," and depth == 0
    return n


def _least_greatest(tokens: list[str]) -> None:
    for i, token in enumerate(tokens):
        name = _lower(token)
        if name in ("min", "max"):
            j = _next_word(tokens, i + 1)
            if j < len(tokens) and tokens[j] == "(" and _top_level_commas(tokens, j + 1, _closing(tokens, j)):
                tokens[i] = "least" if name == "min" else "greatest"


def _drop_index_hints(tokens: list[str]) -> None:
    for i, token in enumerate(tokens):
        if _lower(token) == "indexed":
            by = _next_word(tokens, i + 1)
            name = _next_word(tokens, by + 1)
            for j in range(i, name + 1):
                tokens[j] = ""
            if i > 0 and tokens[i - 1].isspace():
                tokens[i - 1] = ""


def _upsert_table(tokens: list[str]) -> str | None:
    words = [t for t in tokens if t and not t.isspace()]
    if len(words) > 2 and _lower(words[0]) == "insert" and _lower(words[1]) == "into":
        return words[2]
    return None


def _qualify_updates(tokens: list[str]) -> None:
    """In `DO UPDATE SET`, name the target table's columns on the right of each assignment."""
    table = _upsert_table(tokens)
    lowered = [_lower(t) for t in tokens]
    starts = [i for i in range(len(tokens)) if lowered[i] == "do"
              and lowered[min(_next_word(tokens, i + 1), len(tokens) - 1)] == "update"]
    if table is None or not starts:
        return
    i = _next_word(tokens, _next_word(tokens, starts[0] + 1) + 1)  # the SET
    depth, lhs = 0, True
    for j in range(i + 1, len(tokens)):
        token, low = tokens[j], lowered[j]
        if low in ("returning", "where") and depth == 0:
            return
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif token == "," and depth == 0:
            lhs = True
        elif token == "=" and lhs and depth == 0:
            lhs = False
        elif not lhs and re.fullmatch(r"[A-Za-z_]\w*", token) and low not in _KEYWORDS:
            before, after = _prev_word(tokens, j), _next_word(tokens, j + 1)
            if (before < 0 or tokens[before] != ".") and (after >= len(tokens) or tokens[after] not in "(."):
                tokens[j] = f"{table}.{token}"


def _name_subqueries(tokens: list[str]) -> None:
    n = 0
    for i, token in enumerate(tokens):
        if _lower(token) != "from":
            continue
        j = _next_word(tokens, i + 1)
        if j >= len(tokens) or tokens[j] != "(" or _lower(tokens[_next_word(tokens, j + 1)]) != "select":
            continue
        end = _closing(tokens, j)
        after = _next_word(tokens, end + 1)
        if after >= len(tokens) or _lower(tokens[after]) in ("where", "group", "order", "limit", "union", ")"):
            n += 1
            tokens[end] = f") AS _s{n}"


def _keys_from_json(tokens: list[str]) -> None:
    for i, token in enumerate(tokens):
        if _lower(token) == "json_each":
            tokens[i] = "json_array_elements"
            arg = _next_word(tokens, _next_word(tokens, i + 1) + 1)  # the ? inside json_each(
            tokens[arg] = "?::json"
            alias = _next_word(tokens, _next_word(tokens, _closing(tokens, _next_word(tokens, i + 1)) + 1) + 1)
            tokens[alias] += "(value)"
        elif token == "->>":
            value = _prev_word(tokens, i)  # k . value ->> n, after "t.column ="
            start = _prev_word(tokens, _prev_word(tokens, value))
            column = _prev_word(tokens, _prev_word(tokens, start))
            if tokens[column] in INTEGER_KEYS:
                tokens[start] = "(" + tokens[start]
                tokens[_next_word(tokens, i + 1)] += ")::bigint"


def _empty_lists(tokens: list[str]) -> None:
    for i, token in enumerate(tokens):
        if _lower(token) == "in":
            j = _next_word(tokens, i + 1)
            if j < len(tokens) and tokens[j] == "(" and tokens[_next_word(tokens, j + 1)] == ")":
                tokens[j] = "(SELECT NULL WHERE false"


def _placeholders(tokens: list[str]) -> None:
    for i, token in enumerate(tokens):
        if token.startswith("'"):
            tokens[i] = token.replace("%", "%%")
        elif token == "%":
            tokens[i] = "%%"
        elif token == "?":
            before = _prev_word(tokens, i)
            tokens[i] = "NOT DISTINCT FROM %s" if before >= 0 and _lower(tokens[before]) == "is" else "%s"
        elif token == "?::json":
            tokens[i] = "%s::json"


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """`sql` (the store's, in SQLite's dialect) as PostgreSQL and psycopg read it."""
    tokens = _tokens(sql)
    _least_greatest(tokens)
    _drop_index_hints(tokens)
    _qualify_updates(tokens)
    _name_subqueries(tokens)
    _keys_from_json(tokens)
    _empty_lists(tokens)
    _placeholders(tokens)
    return "".join(tokens)
