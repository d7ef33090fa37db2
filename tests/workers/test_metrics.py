"""Metrics shared through Redis: sums across processes, histograms, exposition, Redis outages."""

import logging
import math

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.retry import Retry

from workers.metrics import JOB_BUCKETS, KEY_PREFIX, Gauge, Metrics
from workers.redis_server import RedisServer


def _samples(text: str) -> dict[str, list[Sample]]:
    """Samples by family name, as the official Prometheus parser reads them."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    (match,) = [s.value for s in samples if s.name == name and s.labels == labels]
    return match


def test_counters_add_up_across_processes(redis_server: RedisServer) -> None:
    # two clients and two instances: what an API process and a worker process each hold
    api = redis.Redis.from_url(redis_server.url)
    worker = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        a, b = Metrics(api), Metrics(worker)
        a.job_enqueued("caption")
        a.job_enqueued("caption")
        b.job_enqueued("caption")
        b.job_enqueued("question")
        a.job_finished("caption", "finished", 3.0)
        b.job_finished("caption", "failed", 1.0, error_code="model_error")
        b.job_finished("caption", "canceled", None)
        a.request_rejected("rate_limited")
        b.request_rejected("rate_limited")
        b.request_rejected("file_too_large")

        for text in (a.render(), b.render()):  # both processes render the same totals
            families = _samples(text)
            enqueued = families["vidcap_jobs_enqueued"]
            assert _value(enqueued, "vidcap_jobs_enqueued_total", kind="caption") == 3
            assert _value(enqueued, "vidcap_jobs_enqueued_total", kind="question") == 1
            finished = families["vidcap_jobs_finished"]
            assert {(s.labels["state"], s.value) for s in finished} == {
                ("finished", 1),
                ("failed", 1),
                ("canceled", 1),
            }
            assert [(s.labels, s.value) for s in families["vidcap_job_failures"]] == [
                ({"kind": "caption", "code": "model_error"}, 1)
            ]
            rejected = families["vidcap_requests_rejected"]
            assert _value(rejected, "vidcap_requests_rejected_total", code="rate_limited") == 2
            assert _value(rejected, "vidcap_requests_rejected_total", code="file_too_large") == 1
            durations = families["vidcap_job_duration_seconds"]
            # the canceled job had no duration: 2 observations, not 3
            assert _value(durations, "vidcap_job_duration_seconds_count", kind="caption") == 2
            assert _value(durations, "vidcap_job_duration_seconds_sum", kind="caption") == 4.0
    finally:
        api.close()
        worker.close()


def test_histogram_buckets_are_cumulative(redis_client: redis.Redis) -> None:
    metrics = Metrics(redis_client)
    observations = [0.05, 0.1, 0.3, 2.5, 2.6, 700.0, 5000.0, -1.0]  # -1: clock skew, counts as 0
    for seconds in observations:
        metrics.job_finished("caption", "finished", seconds)
    metrics.stage_done("decode", 0.02)
    metrics.stage_done("decode", 0.5)

    families = _samples(metrics.render())
    jobs = families["vidcap_job_duration_seconds"]
    buckets = {
        s.labels["le"]: s.value for s in jobs if s.name == "vidcap_job_duration_seconds_bucket"
    }
    assert list(buckets) == [repr(float(b)) for b in JOB_BUCKETS] + ["+Inf"]
    clamped = [max(0.0, x) for x in observations]
    for le, count in buckets.items():
        assert count == sum(1 for x in clamped if x <= float(le)), le
    assert buckets["0.1"] == 3  # 0.1 itself is in the le="0.1" bucket: buckets are <=
    assert buckets["+Inf"] == len(observations)
    assert _value(jobs, "vidcap_job_duration_seconds_count", kind="caption") == len(observations)
    assert _value(jobs, "vidcap_job_duration_seconds_sum", kind="caption") == pytest.approx(
        sum(clamped)
    )

    stages = families["vidcap_stage_duration_seconds"]
    stage_buckets = {
        s.labels["le"]: s.value for s in stages if s.name == "vidcap_stage_duration_seconds_bucket"
    }
    assert stage_buckets["0.01"] == 0
    assert stage_buckets["0.025"] == 1
    assert stage_buckets["0.5"] == 2
    assert stage_buckets["+Inf"] == 2
    assert _value(stages, "vidcap_stage_duration_seconds_sum", stage="decode") == pytest.approx(
        0.52
    )


def test_exposition_text(redis_client: redis.Redis) -> None:
    metrics = Metrics(redis_client)
    metrics.request_rejected("queue_full")
    text = metrics.render()
    assert text.endswith("\n")
    assert "# HELP vidcap_requests_rejected_total " in text
    assert "# TYPE vidcap_requests_rejected_total counter\n" in text
    assert 'vidcap_requests_rejected_total{code="queue_full"} 1\n' in text
    # families with nothing recorded yet are still described, with no samples
    assert "# TYPE vidcap_stage_duration_seconds histogram\n" in text
    assert "vidcap_stage_duration_seconds_count" not in text
    keys = [k.decode() if isinstance(k, bytes) else k for k in redis_client.keys("*")]
    assert keys and all(key.startswith(KEY_PREFIX) for key in keys)


def test_label_values_are_escaped(redis_client: redis.Redis) -> None:
    metrics = Metrics(redis_client)
    odd = 'back\\slash "quoted"\nnewline'
    metrics.request_rejected(odd)
    metrics.stage_done(odd, 1.0)
    text = metrics.render()
    assert 'code="back\\\\slash \\"quoted\\"\\nnewline"' in text
    families = _samples(text)
    assert [s.labels for s in families["vidcap_requests_rejected"]] == [{"code": odd}]
    assert {s.labels["stage"] for s in families["vidcap_stage_duration_seconds"]} == {odd}


def test_gauges(redis_client: redis.Redis) -> None:
    gauges = {
        "vidcap_queue_depth": Gauge(
            "Jobs waiting, by queue.", {(("queue", "captions"),): 3, (("queue", "questions"),): 0}
        ),
        "vidcap_running_jobs": Gauge("Jobs running now.", {(): 2.5}),
        "vidcap_workers": Gauge("Live workers.\nA second help line."),
        "vidcap_free_ratio": Gauge("Odd values.", {(("x", "nan"),): math.nan}),
    }
    text = Metrics(redis_client).render(gauges)
    assert "# HELP vidcap_workers Live workers.\\nA second help line.\n" in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    depth = families["vidcap_queue_depth"]
    assert depth.type == "gauge"
    assert depth.documentation == "Jobs waiting, by queue."
    assert [(s.labels, s.value) for s in depth.samples] == [
        ({"queue": "captions"}, 3),
        ({"queue": "questions"}, 0),
    ]
    assert [(s.labels, s.value) for s in families["vidcap_running_jobs"].samples] == [({}, 2.5)]
    assert families["vidcap_workers"].samples == []
    assert math.isnan(families["vidcap_free_ratio"].samples[0].value)


@pytest.mark.parametrize(
    "gauges",
    [
        {"bad-name": Gauge("x", {(): 1})},
        {"vidcap_ok": Gauge("x", {(("bad label", "v"),): 1})},
        {"vidcap_job_duration_seconds": Gauge("clashes with a recorded family", {(): 1})},
    ],
)
def test_bad_gauges_are_refused(redis_client: redis.Redis, gauges: dict[str, Gauge]) -> None:
    with pytest.raises(ValueError):
        Metrics(redis_client).render(gauges)


def test_one_round_trip_per_record_call(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    executed: list[int] = []
    real_execute = Pipeline.execute

    def counting_execute(self: Pipeline, raise_on_error: bool = True) -> list[object]:
        executed.append(len(self.command_stack))
        return real_execute(self, raise_on_error)

    def no_direct_commands(*args: object, **kwargs: object) -> object:
        raise AssertionError(f"a command outside a pipeline: {args}")

    monkeypatch.setattr(Pipeline, "execute", counting_execute)
    monkeypatch.setattr(redis_client, "execute_command", no_direct_commands)
    metrics = Metrics(redis_client)
    metrics.job_enqueued("caption")
    metrics.job_finished("caption", "failed", 2.0, error_code="job_timeout")
    metrics.stage_done("generate", 1.0)
    metrics.request_rejected("rate_limited")
    assert executed == [1, 4, 2, 1]  # commands per call, each call one pipeline


def test_recording_survives_a_stopped_redis(
    redis_server: RedisServer, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(redis_client)
    metrics.job_enqueued("caption")
    redis_server.stop()
    # Fail fast: the client's default policy retries for a few seconds before giving up.
    redis_client.set_retry(Retry(NoBackoff(), 1))
    with caplog.at_level(logging.WARNING, logger="workers.metrics"):
        metrics.job_enqueued("caption")  # returns, does not raise
        metrics.job_finished("caption", "failed", 1.0, error_code="worker_lost")
        metrics.stage_done("decode", 0.5)
        metrics.request_rejected("redis_unavailable")
    messages = [r.getMessage() for r in caplog.records if r.name == "workers.metrics"]
    assert len(messages) == 4
    assert all("not recorded" in m for m in messages)
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "workers.metrics")
    # rendering is the caller's to handle: it says Redis is down
    with pytest.raises(redis.ConnectionError):
        metrics.render()

    redis_server.start()  # the count made before the outage is still there
    families = _samples(metrics.render())
    assert (
        _value(families["vidcap_jobs_enqueued"], "vidcap_jobs_enqueued_total", kind="caption") == 1
    )


def test_bad_input_is_logged_not_raised(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(redis_client)
    with caplog.at_level(logging.WARNING, logger="workers.metrics"):
        metrics.stage_done("decode", math.nan)
        metrics.job_enqueued(7)  # type: ignore[arg-type]
    assert len([r for r in caplog.records if r.name == "workers.metrics"]) == 2
    # nothing half-written: the pipeline was never executed
    assert redis_client.keys("*") == []
