"""Prometheus metrics, defined once."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("osiris_http_requests_total", "HTTP requests", ["method", "route", "status"])
REQUEST_SECONDS = Histogram("osiris_http_request_seconds", "HTTP request latency", ["method", "route"])
TRANSITIONS = Counter("osiris_task_transitions_total", "Task state transitions", ["action", "to"])
JOB_OUTCOMES = Counter("osiris_job_outcomes_total", "Job outcomes", ["entrypoint", "outcome"])
QUEUE_DEPTH = Gauge("osiris_job_queue_depth", "Queued jobs", ["entrypoint"])
