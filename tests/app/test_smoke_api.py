import secrets

from tests.support.jobs import drain


async def test_task_roundtrip_through_the_api(client, factory, runtime):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    r = await client.post(
        "/api/v1/tasks",
        json={"title": "Add a README", "description": "please", "repo": f"t-{secrets.token_hex(4)}"},
        headers=agent,
    )
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    assert (await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent)).json()[
        "status"
    ] == "IN_PROGRESS"
    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts", json={"content": {"README.md": "# hi\n"}}, headers=agent
    )
    assert r.status_code == 201, r.text
    assert r.json()["artifact"]["version"] == 1
    r = await client.post(f"/api/v1/tasks/{task_id}/approve", headers=agent)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await client.post(f"/api/v1/tasks/{task_id}/approve", headers=reviewer)
    assert r.status_code == 409 and r.json()["code"] == "not_published"  # nothing shown to approve yet
    await drain(runtime)
    r = await client.post(f"/api/v1/tasks/{task_id}/approve", headers=reviewer)
    assert r.status_code == 200 and r.json()["status"] == "DONE"
