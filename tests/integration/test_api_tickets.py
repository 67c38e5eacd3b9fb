"""The ticket routes over HTTP against the real API (Postgres, RabbitMQ, its workers): submit,
read and list; every allowed transition for every role that may take it; every refusal (state,
role, four-eyes, stale staging, no hosts) leaving the log untouched. Races: test_api_ticket_races.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from api_client import Api
from stand_in_agents import Ferry, stand_ins

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture
async def ferry(api: Api) -> AsyncIterator[Ferry]:
    async with stand_ins(api) as stack:
        yield stack


async def ticket_events(ferry: Ferry, ticket_id: str) -> list[str]:
    return await ferry.stream(f"ticket-{ticket_id}")


# --- submit, read, list ----------------------------------------------------------------------


async def test_a_deploy_ticket_asks_the_staging_agent_to_stage_its_ref(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    response = await ferry.post(
        "dev", "/tickets", {"app": "shop", "reason": "new cart", "ref": "release/2.1"}
    )
    assert response.status_code == 201, response.text
    ticket = response.json()
    assert (ticket["state"], ticket["author"], ticket["ref"]) == (
        "staging_pending",
        "dev",
        "release/2.1",
    )
    assert ticket["allowed_actions"] == []
    assert ticket["staging_url"] == "https://staging.example.com/shop/"

    command = await ferry.staging.command(ticket["id"])
    assert command.model_dump() == {
        "ticket_id": ticket["id"],
        "app": "shop",
        "source": {"type": "git", "url": "https://git.example.com/shop.git"},
        "ref": "release/2.1",
        "attempt": 1,
    }
    assert await ticket_events(ferry, ticket["id"]) == [
        "ticket.submitted",
        "ticket.staging_requested",
    ]
    timeline = (await ferry.get("dev", f"/tickets/{ticket['id']}/events")).json()["events"]
    assert [(e["type"], e["actor"]) for e in timeline] == [
        ("ticket.submitted", "dev"),
        ("ticket.staging_requested", "dev"),
    ]
    assert timeline[0]["data"]["reason"] == "new cart"


async def test_bad_submissions_are_refused_and_write_nothing(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    before = await ferry.runtime.store.last_position()
    refused = [
        (422, {"app": "shop", "reason": "r", "ref": "--upload-pack=evil"}),
        (422, {"app": "shop", "reason": "r", "ref": "a/../b"}),
        (422, {"app": "shop", "reason": "r", "ref": "main; rm -rf /"}),
        (422, {"app": "shop", "reason": "", "ref": "main"}),
        (422, {"app": "shop", "reason": "r", "ref": "main", "kind": "upgrade"}),
        (422, {"app": "shop", "reason": "r", "ref": "main", "extra": 1}),
        (422, {"app": "Shop!", "reason": "r", "ref": "main"}),
        (422, {"app": "shop", "reason": "r"}),  # a deploy needs a ref
        (422, {"app": "shop", "reason": "r", "kind": "rollback", "ref": "main", "version": 1}),
        (422, {"app": "shop", "reason": "r", "kind": "rollback", "version": 0}),
        (404, {"app": "nowhere", "reason": "r", "ref": "main"}),
        (409, {"app": "shop", "reason": "r", "kind": "rollback", "version": 3}),  # unreleased
    ]
    for status, body in refused:
        response = await ferry.post("dev", "/tickets", body)
        assert response.status_code == status, (body, response.text)
        assert set(response.json()) == {"error", "message"}
    unauthenticated = await ferry.http.post(
        "/api/v1/tickets", json={"app": "shop", "reason": "r", "ref": "main"}
    )
    assert unauthenticated.status_code == 401
    assert await ferry.runtime.store.last_position() == before


async def test_tickets_list_newest_first_and_filters(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    await ferry.add_app("blog")
    first = await ferry.submit("dev", "shop")
    second = await ferry.submit("dev2", "blog")
    third = await ferry.submit("dev", "blog")
    await ferry.stage(first, fail=True)
    await ferry.act("dev", first, "cancel", reason="wrong ref")

    async def ids(**params: object) -> list[str]:
        response = await ferry.get("lead", "/tickets", **params)
        assert response.status_code == 200, response.text
        return [ticket["id"] for ticket in response.json()["tickets"]]

    assert await ids() == [third, second, first]
    assert await ids(app="blog") == [third, second]
    assert await ids(author="dev") == [third, first]
    assert await ids(state="cancelled") == [first]
    assert await ids(app="blog", author="dev") == [third]
    assert await ids(limit=1, offset=1) == [second]
    listed = (await ferry.get("lead", "/tickets", app="blog")).json()
    assert listed["total"] == 2
    assert listed["tickets"][0]["state"] == "staging_pending"
    assert (await ferry.get("lead", "/tickets", state="lost")).status_code == 422


# --- every allowed transition ----------------------------------------------------------------

# (state, action, who may take it there, the state it leads to); "dev" is the author.
ALLOWED = [
    ("testing", "return", ["dev", "lead", "admin"], "returned"),
    ("awaiting_approval", "return", ["dev"], "returned"),
    ("staging_failed", "resubmit", ["dev", "lead", "admin"], "staging_pending"),
    ("returned", "resubmit", ["dev", "lead", "admin"], "staging_pending"),
    ("testing", "pass-tests", ["dev", "lead", "admin"], "awaiting_approval"),
    ("awaiting_approval", "approve", ["lead2", "admin"], "approved"),
    ("awaiting_approval", "reject", ["lead2", "admin"], "returned"),
    ("approved", "publish", ["dev", "lead2", "admin"], "publishing"),
    ("publish_failed", "retry", ["dev", "lead2", "admin"], "publishing"),
    ("staging_failed", "cancel", ["dev"], "cancelled"),
    ("testing", "cancel", ["dev", "lead", "admin"], "cancelled"),
    ("returned", "cancel", ["dev"], "cancelled"),
    ("awaiting_approval", "cancel", ["dev"], "cancelled"),
    ("approved", "cancel", ["dev", "lead2", "admin"], "cancelled"),
]
BODIES = {
    "reject": {"reason": "needs a changelog"},
    "resubmit": {"ref": "fix/1", "reason": "fixed"},
}


@pytest.mark.parametrize(
    "action",
    ["return", "resubmit", "pass-tests", "approve", "reject", "publish", "retry", "cancel"],
)
async def test_every_allowed_transition_for_every_allowed_role(ferry: Ferry, action: str) -> None:
    cases = [(s, who, after) for s, a, people, after in ALLOWED if a == action for who in people]

    async def check(index: int, state: str, who: str, after: str) -> None:
        app = f"app{index}"
        await ferry.add_app(app)
        ticket_id = await ferry.to_state(state, app)
        shown = await ferry.ticket(ticket_id, who)
        assert action in shown["allowed_actions"], (state, who, shown["allowed_actions"])
        result = await ferry.act(who, ticket_id, action, **BODIES.get(action, {}))
        assert result["state"] == after, (state, who)
        assert action not in result["allowed_actions"]

    await asyncio.gather(*(check(i, *case) for i, case in enumerate(cases)))


# --- refusals --------------------------------------------------------------------------------


async def refused(
    ferry: Ferry, user: str, ticket_id: str, action: str, status: int, **body: object
) -> str:
    """Take an action that must be refused with `status`; the ticket's stream must not move."""
    before = await ticket_events(ferry, ticket_id)
    response = await ferry.post(user, f"/tickets/{ticket_id}/{action}", body or None)
    assert response.status_code == status, (user, action, response.text)
    assert await ticket_events(ferry, ticket_id) == before
    message: str = response.json()["message"]
    return message


async def test_actions_the_state_does_not_allow_are_409_for_everyone(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    testing = await ferry.to_state("testing", "shop")
    for user in ("dev", "lead", "admin"):
        for action in ("approve", "reject", "publish", "retry", "resubmit"):
            await refused(ferry, user, testing, action, 409, reason="x")
    pending = await ferry.submit("dev", "shop")
    for action in ("pass-tests", "cancel", "return", "approve"):
        await refused(ferry, "dev", pending, action, 409)
    await ferry.act("dev", testing, "cancel")
    for action in ("return", "resubmit", "pass-tests", "approve", "reject", "publish", "cancel"):
        await refused(ferry, "admin", testing, action, 409, reason="x")
    assert (await ferry.ticket(testing))["allowed_actions"] == []


async def test_actions_of_the_wrong_role_are_403(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    await ferry.add_app("blog")
    testing = await ferry.to_state("testing", "shop")
    for action in ("pass-tests", "return", "cancel"):
        await refused(ferry, "dev2", testing, action, 403)  # a developer, not the author
    waiting = await ferry.to_state("awaiting_approval", "blog")
    assert "only the ticket's author" in await refused(ferry, "lead", waiting, "cancel", 403)
    await refused(ferry, "lead", waiting, "return", 403)
    await refused(ferry, "dev2", waiting, "approve", 403)
    await refused(ferry, "dev2", waiting, "reject", 403, reason="no")
    assert (await ferry.ticket(waiting, "dev2"))["allowed_actions"] == []
    assert set((await ferry.ticket(waiting, "lead"))["allowed_actions"]) == {"approve", "reject"}


async def test_nobody_approves_their_own_ticket(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    await ferry.add_app("blog")
    own = await ferry.to_state("awaiting_approval", "shop", author="lead")
    message = await refused(ferry, "lead", own, "approve", 403)
    assert "four-eyes" in message
    await refused(ferry, "lead", own, "reject", 403, reason="hmm")
    assert (await ferry.act("lead2", own, "approve"))["state"] == "approved"

    # Whoever resubmits becomes an author: the lead who took the ticket over may not approve it.
    taken_over = await ferry.to_state("returned", "blog")
    await ferry.act("lead", taken_over, "resubmit", ref="fix/2", reason="lead fixed it")
    await ferry.stage(taken_over, attempt=2)
    await ferry.act("lead", taken_over, "pass-tests")
    assert "four-eyes" in await refused(ferry, "lead", taken_over, "approve", 403)
    await refused(ferry, "dev", taken_over, "approve", 403)
    assert (await ferry.act("admin", taken_over, "approve"))["approved_by"] == "admin"


async def test_pass_tests_needs_the_staging_workspace_to_still_hold_the_tree(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    first = await ferry.to_state("testing", "shop")
    second = await ferry.to_state("testing", "shop", author="dev2")
    message = await refused(ferry, "dev", first, "pass-tests", 409)
    assert second in message
    # Staging the first one again gives the workspace back to it.
    await ferry.act("dev", first, "return", comment="restage")
    await ferry.act("dev", first, "resubmit")
    await ferry.stage(first, attempt=2)
    assert (await ferry.act("dev", first, "pass-tests"))["state"] == "awaiting_approval"
    assert first in await refused(ferry, "dev2", second, "pass-tests", 409)


async def test_unknown_tickets_actions_and_bad_bodies(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    testing = await ferry.to_state("testing", "shop")
    for path in ("/tickets/nope", "/tickets/nope/events"):
        assert (await ferry.get("dev", path)).status_code == 404
    assert (await ferry.post("dev", "/tickets/nope/approve")).status_code == 404
    await refused(ferry, "dev", testing, "deploy", 404)
    await refused(ferry, "dev", testing, "return", 422, mood="sad")
    await ferry.act("dev", testing, "return")
    await refused(ferry, "dev", testing, "resubmit", 422, ref="-oProxyCommand=x")
    assert (await ferry.http.get(f"/api/v1/tickets/{testing}")).status_code == 401


async def test_reject_needs_a_reason(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    waiting = await ferry.to_state("awaiting_approval", "shop")
    await refused(ferry, "lead", waiting, "reject", 422)
    result = await ferry.act("lead", waiting, "reject", reason="no changelog")
    assert result["state"] == "returned"
    assert result["comments"] == [{"by": "lead", "action": "reject", "text": "no changelog"}]


async def test_publish_needs_hosts(ferry: Ferry) -> None:
    await ferry.add_app("shop", hosts=())
    approved = await ferry.to_state("approved", "shop")
    assert "no hosts" in await refused(ferry, "dev", approved, "publish", 409)
