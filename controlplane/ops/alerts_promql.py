"""The subset of PromQL our alert rules use, parsed and evaluated over scraped samples.

This is no Prometheus: it is what ``trailpay report --metric alerts`` and the rule tests
need to say which rule would fire on a set of scrapes. Supported, and nothing else (the
parser refuses anything outside it with :class:`PromQLError`):

- instant selectors ``name{label="v", label!="v", label=~"re", label!~"re"}`` (regexes are
  fully anchored, as in PromQL); the value is the series' sample in the *latest* scrape
  (Prometheus would look back up to 5 minutes; a series absent from the latest scrape is
  absent here);
- ``rate(selector[d])`` and ``increase(selector[d])`` over the scrapes inside the range
  ``(now - d, now]``: ``increase`` is the last sample minus the first, counter resets
  added back, **without** Prometheus' extrapolation to the range edges; ``rate`` is that
  increase divided by ``d`` in seconds. A counter's ``<name>_created`` series (which
  prometheus_client exports) inside the range counts as a zero sample at that time, so a
  series born between two scrapes, or in the range of a single scrape, counts from zero
  (as Prometheus does with created-timestamp zero ingestion). A series with fewer than two
  samples in the range has no result;
- ``sum``, ``max``, ``min``, ``count`` with ``by (labels)`` (before or after the argument)
  or without grouping;
- ``+ - * /`` and ``> >= < <= == !=`` between a vector and a number (comparisons filter,
  keeping the vector's value), or between two vectors matched one-to-one on their whole
  label set (no ``on``/``ignoring``/``group_left``);
- ``and`` (keep the left elements whose label set the right side has), ``or``;
- numbers, parentheses, durations ``s m h d``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]
Vector = dict[Labels, float]
Value = Vector | float


class PromQLError(ValueError):
    """An expression outside the supported subset, or malformed."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Labels
    value: float


@dataclass(frozen=True)
class Scrape:
    """Every sample of one scrape of every target, at ``at`` (``time.time()`` seconds)."""

    at: float
    samples: tuple[Sample, ...]

    @classmethod
    def of(cls, at: float, samples: Iterable[tuple[str, dict[str, str], float]]) -> Scrape:
        return cls(at, tuple(Sample(n, labels_of(ls), float(v)) for n, ls, v in samples))


def labels_of(mapping: dict[str, str]) -> Labels:
    return tuple(sorted(mapping.items()))


# ----------------------------------------------------------------------------- lexer
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<duration>\d+(?:s|m|h|d)\b)
  | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/<>=(){}\[\],])
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
""", re.VERBOSE)

AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "sum": lambda vs: math.fsum(vs), "max": max, "min": min, "count": lambda vs: float(len(vs)),
}
RANGE_FUNCTIONS = ("rate", "increase")
ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul,
    "/": lambda a, b: a / b if b else (math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)),
}
COMPARISON: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``30s``, ``5m``, ``1h``, ``2d`` -> seconds (one unit only, as our rules write them)."""
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise PromQLError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise PromQLError(f"unexpected {text[pos:pos + 20]!r} at {pos}")
        pos = match.end()
        if match.lastgroup != "ws":
            out.append((str(match.lastgroup), match.group()))
    return out


# ----------------------------------------------------------------------------- syntax tree
@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op in ("=", "!="):
            return (actual == self.value) == (self.op == "=")
        return (re.fullmatch(self.value, actual) is not None) == (self.op == "=~")


@dataclass(frozen=True)
class Selector:
    name: str
    matchers: tuple[Matcher, ...] = ()
    range_s: float | None = None


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class RangeFunction:
    name: str
    selector: Selector


@dataclass(frozen=True)
class Aggregation:
    op: str
    by: tuple[str, ...] | None
    arg: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


Node = Selector | Number | RangeFunction | Aggregation | Binary


@dataclass
class _Parser:
    tokens: list[tuple[str, str]]
    pos: int = 0
    _levels: tuple[tuple[str, ...], ...] = field(default=(
        ("or",), ("and",), tuple(COMPARISON), ("+", "-"), ("*", "/")))

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None, kind: str | None = None) -> str:
        if self.pos >= len(self.tokens):
            raise PromQLError(f"expression ends early; expected {expected or kind}")
        got_kind, text = self.tokens[self.pos]
        if (expected is not None and text != expected) or (kind is not None and got_kind != kind):
            raise PromQLError(f"expected {expected or kind}, got {text!r}")
        self.pos += 1
        return text

    def expression(self, level: int = 0) -> Node:
        if level == len(self._levels):
            return self.unary()
        node = self.expression(level + 1)
        while self.peek() in self._levels[level]:
            op = self.take()
            if op in COMPARISON and self.peek() == "bool":
                raise PromQLError("the bool modifier is not supported")
            node = Binary(op, node, self.expression(level + 1))
        return node

    def unary(self) -> Node:
        kind, text = self.tokens[self.pos] if self.pos < len(self.tokens) else ("", "")
        if kind == "number":
            self.pos += 1
            return Number(float(text))
        if text == "(":
            self.take("(")
            node = self.expression()
            self.take(")")
            return node
        if kind != "ident":
            raise PromQLError(f"expected a selector, function or number, got {text!r}")
        if text in AGGREGATIONS:
            return self.aggregation()
        if text in RANGE_FUNCTIONS:
            self.take()
            self.take("(")
            selector = self.selector()
            self.take(")")
            if selector.range_s is None:
                raise PromQLError(f"{text}() needs a range selector, e.g. {selector.name}[5m]")
            return RangeFunction(text, selector)
        if self.pos + 1 < len(self.tokens) and self.tokens[self.pos + 1][1] == "(":
            raise PromQLError(f"function {text}() is not in the supported subset")
        return self.selector()

    def aggregation(self) -> Aggregation:
        op = self.take()
        by = self.grouping()
        self.take("(")
        arg = self.expression()
        self.take(")")
        after = self.grouping()
        if by is not None and after is not None:
            raise PromQLError(f"{op}: one by clause only")
        return Aggregation(op, by if by is not None else after, arg)

    def grouping(self) -> tuple[str, ...] | None:
        if self.peek() == "without":
            raise PromQLError("without (...) is not supported; use by (...)")
        if self.peek() != "by":
            return None
        self.take("by")
        self.take("(")
        labels: list[str] = []
        while self.peek() != ")":
            labels.append(self.take(kind="ident"))
            if self.peek() == ",":
                self.take(",")
        self.take(")")
        return tuple(labels)

    def selector(self) -> Selector:
        name = self.take(kind="ident")
        matchers: list[Matcher] = []
        if self.peek() == "{":
            self.take("{")
            while self.peek() != "}":
                label = self.take(kind="ident")
                op = self.take()
                if op not in ("=", "!=", "=~", "!~"):
                    raise PromQLError(f"bad label matcher {op!r}")
                raw = self.take(kind="string")
                matchers.append(Matcher(label, op, raw[1:-1].encode().decode("unicode_escape")))
                if self.peek() == ",":
                    self.take(",")
            self.take("}")
        range_s = None
        if self.peek() == "[":
            self.take("[")
            range_s = parse_duration(self.take(kind="duration"))
            self.take("]")
        return Selector(name, tuple(matchers), range_s)


def parse(text: str) -> Node:
    parser = _Parser(_tokens(text))
    node = parser.expression()
    if parser.pos != len(parser.tokens):
        raise PromQLError(f"unexpected {parser.tokens[parser.pos][1]!r} after the expression")
    if isinstance(node, Selector) and node.range_s is not None:
        raise PromQLError("a range selector alone is no instant value; wrap it in rate() or increase()")
    return node


# ----------------------------------------------------------------------------- evaluation
def _select(scrape: Scrape, selector: Selector) -> dict[Labels, float]:
    out: dict[Labels, float] = {}
    for sample in scrape.samples:
        if sample.name == selector.name and all(m.matches(dict(sample.labels)) for m in selector.matchers):
            out[sample.labels] = sample.value
    return out


def _created_name(name: str) -> str:
    return name.removesuffix("_total") + "_created"


def _range_function(scrapes: Sequence[Scrape], fn: RangeFunction) -> Vector:
    now = scrapes[-1].at
    window = fn.selector.range_s or 0.0
    inside = [s for s in scrapes if now - window < s.at <= now]
    points: dict[Labels, list[tuple[float, float]]] = {}
    for scrape in inside:
        for labels, value in _select(scrape, fn.selector).items():
            points.setdefault(labels, []).append((scrape.at, value))
    created = Selector(_created_name(fn.selector.name))
    born = _select(scrapes[-1], created)
    out: Vector = {}
    for labels, series in points.items():
        at = born.get(labels)
        if at is not None and now - window < at <= series[0][0]:
            series = [(at, 0.0), *series]
        if len(series) < 2:
            continue
        increase, previous = 0.0, series[0][1]
        for _, value in series[1:]:
            increase += value - previous if value >= previous else value  # a reset restarts at 0
            previous = value
        out[labels] = increase / window if fn.name == "rate" else increase
    return out


def _aggregate(agg: Aggregation, vector: Vector) -> Vector:
    groups: dict[Labels, list[float]] = {}
    for labels, value in vector.items():
        key = tuple(item for item in labels if agg.by is not None and item[0] in agg.by)
        groups.setdefault(key, []).append(value)
    return {key: AGGREGATIONS[agg.op](values) for key, values in groups.items()}


def _binary(op: str, left: Value, right: Value) -> Value:
    if op in ("and", "or"):
        if not isinstance(left, dict) or not isinstance(right, dict):
            raise PromQLError(f"{op} needs vectors on both sides")
        if op == "and":
            return {k: v for k, v in left.items() if k in right}
        return {**{k: v for k, v in right.items() if k not in left}, **left}
    if isinstance(left, float) and isinstance(right, float):
        if op in COMPARISON:
            raise PromQLError("comparing two numbers needs bool, which is not supported")
        return ARITHMETIC[op](left, right)
    pairs: dict[Labels, tuple[float, float]]
    if isinstance(left, dict) and isinstance(right, dict):
        pairs = {k: (v, right[k]) for k, v in left.items() if k in right}
    elif isinstance(left, dict) and not isinstance(right, dict):
        pairs = {k: (v, right) for k, v in left.items()}
    elif isinstance(right, dict) and not isinstance(left, dict):
        pairs = {k: (left, v) for k, v in right.items()}
    else:  # pragma: no cover - two numbers are handled above
        raise PromQLError("unreachable")
    if op in COMPARISON:
        keep_right = isinstance(left, float)
        return {k: (b if keep_right else a) for k, (a, b) in pairs.items() if COMPARISON[op](a, b)}
    return {k: ARITHMETIC[op](a, b) for k, (a, b) in pairs.items()}


def evaluate(node: Node, scrapes: Sequence[Scrape]) -> Value:
    """The value of ``node`` at the time of the last scrape (scrapes oldest first)."""
    if not scrapes:
        raise PromQLError("no scrape to evaluate over")
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Selector):
        return _select(scrapes[-1], node)
    if isinstance(node, RangeFunction):
        return _range_function(scrapes, node)
    if isinstance(node, Aggregation):
        arg = evaluate(node.arg, scrapes)
        if not isinstance(arg, dict):
            raise PromQLError(f"{node.op}() needs a vector")
        return _aggregate(node, arg)
    return _binary(node.op, evaluate(node.left, scrapes), evaluate(node.right, scrapes))
