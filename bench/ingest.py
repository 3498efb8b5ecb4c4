"""Signed Twilio webhooks accepted per second (task created and committed) vs a bare FastAPI endpoint
that only parses the same form, both served by uvicorn on this machine in one run. Loopback only.

    .venv/bin/python bench/ingest.py [--requests 600] [--concurrency 20]
Goal: ratio ≥ 0.3.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _server import arguments, free_port, running_server, serving, write_summary
from twilio.request_validator import RequestValidator

PATH = "/api/v1/webhooks/twilio"
PUBLIC_URL = "https://osiris.bench.invalid"
TOKEN = secrets.token_hex(16)

BARE_APP = """
from fastapi import FastAPI, Request
from fastapi.responses import Response
app = FastAPI()
@app.post("/api/v1/webhooks/twilio")
async def twilio(request: Request) -> Response:
    form = await request.form()
    return Response(f"<Response><Message>{form.get('Body', '')}</Message></Response>", media_type="application/xml")
"""


def signed_requests(n: int) -> list[tuple[dict[str, str], str]]:
    validator = RequestValidator(TOKEN)
    out = []
    for i in range(n):
        sid = "SM" + secrets.token_hex(16)
        form = {
            "From": f"whatsapp:+1555{i:07d}",
            "Body": f"bench request {i}",
            "MessageSid": sid,
            "NumMedia": "0",
        }
        out.append((form, validator.compute_signature(PUBLIC_URL + PATH, form)))
    return out


async def fire(url: str, requests: list[tuple[dict[str, str], str]], concurrency: int) -> None:
    queue: asyncio.Queue = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            form, signature = queue.get_nowait()
            r = await client.post(PATH, data=form, headers={"X-Twilio-Signature": signature})
            if r.status_code != 200 or "<Message>" not in r.text:
                raise RuntimeError(f"unexpected answer {r.status_code}: {r.text[:200]}")

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))


async def measure(url: str, n: int, concurrency: int) -> float:
    await fire(url, signed_requests(min(50, n)), concurrency)  # warm up connections and caches
    work = signed_requests(n)
    start = time.perf_counter()
    await fire(url, work, concurrency)
    return n / (time.perf_counter() - start)


def bare_rate(n: int, concurrency: int) -> float:
    """The same requests against the bare endpoint, served by uvicorn in a process of its own."""
    port = free_port()
    serve = f"\nimport uvicorn\nuvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning')"
    url = f"http://127.0.0.1:{port}"
    with serving([sys.executable, "-c", BARE_APP + serve], url, ready="/docs"):
        return asyncio.run(measure(url, n, concurrency))


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    env = {
        "OSIRIS_TWILIO_AUTH_TOKEN": TOKEN,
        "OSIRIS_PUBLIC_URL": PUBLIC_URL,
        "OSIRIS_CHANNEL_RATE_PER_MINUTE": "1000000",
        "OSIRIS_RUN_WORKER": "false",
    }
    with running_server(Path(tempfile.mkdtemp(prefix="osiris-bench-")), env=env) as (url, _, _):
        osiris_rate = asyncio.run(measure(url, args.requests, args.concurrency))
    bare = bare_rate(args.requests, args.concurrency)
    print(f"signed Twilio webhooks, task created and committed: {osiris_rate:8.1f} req/s")
    print(f"bare FastAPI endpoint parsing the same form       : {bare:8.1f} req/s")
    print(f"ratio: {osiris_rate / bare:.2f} (goal >= 0.3)")
    write_summary(
        args.json,
        name="signed Twilio webhooks accepted/s",
        baseline_label="bare FastAPI form endpoint",
        baseline=round(bare, 1),
        osiris_label="task created and committed",
        osiris=round(osiris_rate, 1),
        ratio=round(osiris_rate / bare, 2),
        unit="req/s",
        goal="ratio >= 0.3",
        notes=f"{args.requests} requests, concurrency {args.concurrency}",
    )


if __name__ == "__main__":
    main()
