"""kyklos rollout / kyklos traffic: the parts that need no cluster."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

from aiohttp import web

from kyklos.rolloutctl import action_value, describe, field_manager, loopback_or_service, send


def test_action_values_are_new_per_request_and_name_the_action() -> None:
    a = action_value("promote", datetime(2026, 12, 4, 18, 0, 0, 1, tzinfo=UTC))
    b = action_value("promote", datetime(2026, 12, 4, 18, 0, 0, 2, tzinfo=UTC))
    assert a.startswith("promote/2026-12-04T18:00:00.") and a != b
    assert field_manager().startswith("kyklos-rollout/")


def test_traffic_goes_only_to_loopback_or_a_service() -> None:
    assert loopback_or_service("http://127.0.0.1:8080") is None
    assert loopback_or_service("http://127.9.0.1:8080") is None
    assert loopback_or_service("http://localhost:1") is None
    assert loopback_or_service("http://[::1]:1") is None
    assert loopback_or_service("http://churn.ml.svc:8080") is None
    assert "only sends to loopback" in (loopback_or_service("http://example.com") or "")
    assert loopback_or_service("http://10.0.0.1:80") is not None


def test_status_shows_phase_analyses_and_manual_actions() -> None:
    body = {
        "metadata": {"name": "churn", "namespace": "ml"},
        "status": {
            "phase": "Paused",
            "paused": True,
            "canaryModel": "m2",
            "step": 0,
            "canaryWeight": 25,
            "conditions": [{"type": "Ready", "message": "paused after analysis"}],
            "analysis": [
                {
                    "step": 0,
                    "verdict": "Inconclusive",
                    "samples": {"canary": 0, "stable": 3},
                    "checks": [{"name": "errorRate", "limit": 0.05, "verdict": "Inconclusive"}],
                }
            ],
            "history": [
                {
                    "model": "m2",
                    "outcome": "InProgress",
                    "actions": [{"action": "pause", "time": "t", "user": "kyklos-rollout/a"}],
                }
            ],
        },
    }
    text = describe(body)
    assert "Phase:     Paused  (paused)" in text
    assert "step 0 at 25%" in text
    assert "Inconclusive" in text and "canary 0 / stable 3" in text
    assert "pause by kyklos-rollout/a" in text


def test_traffic_is_bounded_by_rate_and_duration() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seen: list[object] = []

    async def predict(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({"predictions": [0]}, headers={"X-Kyklos-Revision": "r1"})

    async def main() -> dict[str, object]:
        app = web.Application()
        app.router.add_post("/predict", predict)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            return await send(f"http://127.0.0.1:{port}/predict", [{"a": 1}, {"a": 2}], 50, 0.4, 2)
        finally:
            await runner.cleanup()

    summary = asyncio.run(main())
    assert summary["requests"] == 20 == len(seen)
    assert summary["codes"] == {"200": 20} and summary["revisions"] == {"r1": 20}
    assert seen[0] == {"rows": [{"a": 1}, {"a": 2}]}
