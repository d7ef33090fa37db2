"""Prometheus metrics shared by every process of the service through Redis.

The API and any number of workers, on any number of machines, record into the same Redis keys,
and the API's ``GET /metrics`` renders them all in the Prometheus text format (0.0.4). A
per-process registry (prometheus_client's default) would only show what the scraped process did.

Layout: one Redis hash per metric family, under ``vidcap:metrics:``. A field names one label set
as compact JSON (``{"kind":"caption","state":"finished"}``):

* counters: ``vidcap:metrics:<name>`` maps the label set to its count (HINCRBY).
* histograms: ``vidcap:metrics:<name>`` maps ``"<le> <labels>"`` to the number of observations
  that fell in that one bucket (not cumulative, so an observation is one HINCRBY) and
  ``"sum <labels>"`` to the sum (HINCRBYFLOAT). :meth:`Metrics.render` accumulates the buckets
  and derives ``_count`` from them, so ``_count`` always equals the ``+Inf`` bucket.

Each record call is one MULTI/EXEC pipeline (one round trip, applied atomically), and
:meth:`Metrics.render` reads every family in one MULTI/EXEC too, so a scrape never sees half an
observation. Recording is best effort: it never raises into the caller's job, it logs. How long
a record call can block while Redis is down is the retry policy of the client passed in.

Example:
    >>> metrics = Metrics(redis.Redis.from_url(url))  # doctest: +SKIP
    >>> metrics.job_finished("caption", "finished", 12.5)  # doctest: +SKIP
    >>> depth = Gauge("Jobs waiting.", {(("queue", "captions"),): 3})
    >>> text = metrics.render({"vidcap_queue_depth": depth})  # doctest: +SKIP
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.client import Pipeline

log = logging.getLogger(__name__)

KEY_PREFIX = "vidcap:metrics:"

JOB_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
"""Upper bounds (seconds) of the job duration histogram: from a cached answer to a long video."""

STAGE_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
"""Upper bounds (seconds) of the stage duration histogram: stages are parts of a job."""

_INF = "+Inf"
_SUM = "sum"
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelSet = tuple[tuple[str, str], ...]
"""Label (name, value) pairs, e.g. ``(("queue", "captions"),)``; ``()`` for no labels."""


@dataclass(frozen=True)
class Gauge:
    """A gauge family the caller computes at scrape time (queue depth, running jobs...).

    Attributes:
        help: The ``# HELP`` text.
        values: The value of each label set, e.g. ``{(("queue", "captions"),): 3.0}``; use
            ``{(): 3.0}`` for a gauge without labels. An empty mapping renders the family with
            no samples.
    """

    help: str
    values: Mapping[LabelSet, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Family:
    name: str
    type: str  # "counter" or "histogram"
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name


_ENQUEUED = _Family("vidcap_jobs_enqueued_total", "counter", "Jobs enqueued.", ("kind",))
_FINISHED = _Family(
    "vidcap_jobs_finished_total", "counter", "Jobs ended, by final state.", ("kind", "state")
)
_FAILURES = _Family(
    "vidcap_job_failures_total", "counter", "Failed jobs, by error code.", ("kind", "code")
)
_REJECTED = _Family(
    "vidcap_requests_rejected_total",
    "counter",
    "Requests refused before any work (rate limit, queue full, too large...), by error code.",
    ("code",),
)
_JOB_DURATION = _Family(
    "vidcap_job_duration_seconds",
    "histogram",
    "Time a job ran, from start to end, in seconds.",
    ("kind",),
    JOB_BUCKETS,
)
_STAGE_DURATION = _Family(
    "vidcap_stage_duration_seconds",
    "histogram",
    "Time one stage of a job (decode, features, generation...) took, in seconds.",
    ("stage",),
    STAGE_BUCKETS,
)
_FAMILIES = (_ENQUEUED, _FINISHED, _FAILURES, _REJECTED, _JOB_DURATION, _STAGE_DURATION)


def _format_float(value: float) -> str:
    """A float as the Prometheus text format spells it (``+Inf``, ``NaN``, ``1.0``, ``3``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _le(bound: float) -> str:
    # Always "1.0", never "1": the le value is part of the series' identity, and this is how the
    # official clients spell it, so a dashboard built on them matches these series too.
    return repr(float(bound))


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(pairs: LabelSet) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape_label_value(v)}"' for name, v in pairs) + "}"


def _encode_labels(family: _Family, values: tuple[str, ...]) -> str:
    # Only the type is checked: the vocabularies are small and fixed by the code that records.
    for value in values:
        if not isinstance(value, str):
            raise TypeError(f"{family.name}: label values must be str, got {value!r}")
    return json.dumps(dict(zip(family.labels, values, strict=True)), separators=(",", ":"))


def _decode_labels(encoded: str) -> LabelSet:
    labels = json.loads(encoded)
    return tuple((str(name), str(value)) for name, value in labels.items())


def _text(value: bytes | str) -> str:
    # The client may or may not have decode_responses on.
    return value.decode() if isinstance(value, bytes) else value


class Metrics:
    """Records the service's counters and histograms in Redis and renders them for Prometheus.

    Every process makes its own instance on its own client; they all share the same keys, so
    :meth:`render` in any one of them shows the whole service.

    Args:
        client: A synchronous Redis client (either ``decode_responses`` setting works).
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    # --- recording: best effort, never raises ---------------------------------------------------

    def job_enqueued(self, kind: str) -> None:
        """Counts a job put on the queue (``vidcap_jobs_enqueued_total{kind}``).

        Args:
            kind: The job kind, e.g. ``"caption"``.
        """
        self._record("job_enqueued", lambda pipe: self._count(pipe, _ENQUEUED, kind))

    def job_finished(
        self, kind: str, state: str, seconds: float | None, error_code: str | None = None
    ) -> None:
        """Counts a job that ended, with its duration and, when it failed, its error code.

        Updates ``vidcap_jobs_finished_total{kind,state}``, observes
        ``vidcap_job_duration_seconds{kind}`` when ``seconds`` is given, and counts
        ``vidcap_job_failures_total{kind,code}`` when ``error_code`` is given.

        Args:
            kind: The job kind, e.g. ``"caption"``.
            state: How it ended, e.g. ``"finished"``, ``"failed"``, ``"canceled"``.
            seconds: How long it ran; ``None`` when it never started (canceled while queued).
            error_code: The error code of a failed job (an ``app.errors.ErrorCode`` value).
        """

        def build(pipe: Pipeline) -> None:
            self._count(pipe, _FINISHED, kind, state)
            if seconds is not None:
                self._observe(pipe, _JOB_DURATION, seconds, kind)
            if error_code is not None:
                self._count(pipe, _FAILURES, kind, error_code)

        self._record("job_finished", build)

    def stage_done(self, stage: str, seconds: float) -> None:
        """Observes the duration of one stage of a job (``vidcap_stage_duration_seconds``).

        Args:
            stage: The stage name, e.g. ``"decode"``.
            seconds: How long it took.
        """
        self._record(
            "stage_done", lambda pipe: self._observe(pipe, _STAGE_DURATION, seconds, stage)
        )

    def request_rejected(self, code: str) -> None:
        """Counts a request refused before any work (``vidcap_requests_rejected_total{code}``).

        Args:
            code: The error code answered, e.g. ``"rate_limited"`` or ``"file_too_large"``.
        """
        self._record("request_rejected", lambda pipe: self._count(pipe, _REJECTED, code))

    def _record(self, what: str, build: Callable[[Pipeline], None]) -> None:
        try:
            with self._client.pipeline(transaction=True) as pipe:
                build(pipe)
                pipe.execute()
        except Exception as exc:
            # Broader than RedisError on purpose: a metric must never fail the job it measures,
            # whatever went wrong. The traceback still reaches the log.
            log.warning("metrics: %s not recorded: %s", what, exc, exc_info=True)

    @staticmethod
    def _count(pipe: Pipeline, family: _Family, *labels: str) -> None:
        pipe.hincrby(family.key, _encode_labels(family, labels), 1)

    @staticmethod
    def _observe(pipe: Pipeline, family: _Family, seconds: float, *labels: str) -> None:
        value = float(seconds)
        if not math.isfinite(value):
            raise ValueError(f"{family.name}: cannot observe {seconds!r}")
        # A negative duration is clock skew between machines (started here, ended there).
        value = max(0.0, value)
        encoded = _encode_labels(family, labels)
        # bisect_left finds the first bound >= value: Prometheus buckets are "less or equal".
        index = bisect.bisect_left(family.buckets, value)
        le = _le(family.buckets[index]) if index < len(family.buckets) else _INF
        pipe.hincrby(family.key, f"{le} {encoded}", 1)
        pipe.hincrbyfloat(family.key, f"{_SUM} {encoded}", value)

    # --- rendering --------------------------------------------------------------------------

    def render(self, gauges: Mapping[str, Gauge] | None = None) -> str:
        """Renders every metric in the Prometheus text exposition format 0.0.4.

        Args:
            gauges: Live gauges computed by the caller, by metric name, rendered after the
                recorded families, e.g.
                ``{"vidcap_queue_depth": Gauge("Jobs waiting.", {(("queue", "captions"),): 3})}``.

        Returns:
            The exposition text, ending with a newline; serve it as
            ``text/plain; version=0.0.4; charset=utf-8``.

        Raises:
            redis.RedisError: If Redis cannot be read.
            ValueError: If a gauge or label name is not a valid Prometheus name, or a gauge
                has the name of a recorded family.
        """
        with self._client.pipeline(transaction=True) as pipe:
            for family in _FAMILIES:
                pipe.hgetall(family.key)
            stored: list[dict[Any, Any]] = pipe.execute()
        lines: list[str] = []
        for family, fields in zip(_FAMILIES, stored, strict=True):
            values = {_text(k): _text(v) for k, v in fields.items()}
            lines += [
                f"# HELP {family.name} {_escape_help(family.help)}",
                f"# TYPE {family.name} {family.type}",
            ]
            if family.type == "counter":
                lines += _counter_lines(family, values)
            else:
                lines += _histogram_lines(family, values)
        for name, gauge in (gauges or {}).items():
            lines += _gauge_lines(name, gauge)
        return "\n".join(lines) + "\n"


def _counter_lines(family: _Family, fields: Mapping[str, str]) -> list[str]:
    samples = sorted((_decode_labels(k), float(v)) for k, v in fields.items())
    return [f"{family.name}{_label_text(labels)} {_format_float(v)}" for labels, v in samples]


def _histogram_lines(family: _Family, fields: Mapping[str, str]) -> list[str]:
    bounds = [*map(float, family.buckets), math.inf]
    counts: dict[str, dict[float, int]] = {}  # labels -> upper bound -> count in that bucket only
    sums: dict[str, float] = {}
    for key, value in fields.items():
        head, _, encoded = key.partition(" ")
        if head == _SUM:
            sums[encoded] = float(value)
        else:
            counts.setdefault(encoded, {})[float(head)] = int(value)
    lines = []
    for encoded in sorted(counts.keys() | sums.keys()):
        labels = _decode_labels(encoded)
        stored = counts.get(encoded, {})
        for bound in bounds:
            # Summing every stored bucket at or under the bound (rather than walking the
            # current list) keeps observations made under older bucket bounds, were the
            # bounds ever changed, in every bucket they certainly belong to.
            total = sum(n for upper, n in stored.items() if upper <= bound)
            le = _INF if math.isinf(bound) else _le(bound)
            lines.append(f"{family.name}_bucket{_label_text((*labels, ('le', le)))} {total}")
        total_sum = _format_float(sums.get(encoded, 0.0))
        lines.append(f"{family.name}_sum{_label_text(labels)} {total_sum}")
        lines.append(f"{family.name}_count{_label_text(labels)} {sum(stored.values())}")
    return lines


def _gauge_lines(name: str, gauge: Gauge) -> list[str]:
    if not _METRIC_NAME.match(name):
        raise ValueError(f"invalid metric name {name!r}")
    if any(name == family.name for family in _FAMILIES):
        raise ValueError(f"gauge {name!r} has the name of a recorded metric")
    lines = [f"# HELP {name} {_escape_help(gauge.help)}", f"# TYPE {name} gauge"]
    for labels, value in sorted(gauge.values.items()):
        for label, _ in labels:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"{name}: invalid label name {label!r}")
        lines.append(f"{name}{_label_text(labels)} {_format_float(float(value))}")
    return lines
