"""Drives the emulator with Alter's public Python SDK (alter-sdk==0.29.0): every managed-agents
call and the typed errors the SDK raises.

Run by tests/python_sdk.rs. Everything comes from the environment (never argv, so no key shows up
in a process list):
  ALTER_BASE_URL              the emulator (the SDK reads this variable itself)
  ALTER_TEST_APP_KEY          an app key holding every scope
  ALTER_TEST_READ_KEY         an app key holding dashboard_agents:read only
  ALTER_TEST_ADMIN_TOKEN      the emulator's admin token (to switch faults on)
Prints one JSON object with what it saw (never a key) and exits non-zero on any mismatch.
"""

import asyncio
import json
import os
import sys
import warnings

import httpx

from alter_sdk import Agent, App
from alter_sdk.agents import _raise_for_status
from alter_sdk.exceptions import (
    AgentCannotMintSubagentsError,
    AgentConcurrentUpdateError,
    AgentInactiveError,
    AgentKeyLimitError,
    AgentNameExistsError,
    AgentNotFoundError,
    BackendError,
    IdempotencyKeyAgentInactiveError,
    IdempotencyKeyAgentRevokedError,
    IdempotencyKeyBodyMismatchError,
    InsufficientScopeError,
    InvalidKeyError,
    KeyAlreadyRevokedError,
    KeyNotFoundError,
    KeyRevokedError,
    LastActiveKeyError,
    MeRequiresAgentKeyError,
    RateLimitError,
)

NIL = "00000000-0000-4000-8000-000000000000"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def expect(coro, exc_type, what):
    """Awaits `coro`, which must raise exactly `exc_type` (not a subclass of it, not a parent)."""
    try:
        await coro
    except Exception as e:  # noqa: BLE001 - any other type is the failure being reported
        check(type(e) is exc_type, f"{what}: expected {exc_type.__name__}, got {type(e).__name__}: {e}")
        return e
    raise AssertionError(f"{what}: expected {exc_type.__name__}, got success")


async def admin_faults(base, token, faults):
    async with httpx.AsyncClient(base_url=base) as c:
        r = await c.put("/_admin/faults", json=faults, headers={"authorization": f"Bearer {token}"})
        check(r.status_code == 200, f"admin faults: {r.status_code}")


async def main():
    base = os.environ["ALTER_BASE_URL"]
    app_key = os.environ["ALTER_TEST_APP_KEY"]
    read_key = os.environ["ALTER_TEST_READ_KEY"]
    admin_token = os.environ["ALTER_TEST_ADMIN_TOKEN"]
    seen = {}

    app = App(api_key=app_key)
    check(app.base_url == base, "ALTER_BASE_URL is used")

    # ----- create, idempotency, name uniqueness -----------------------------------------------
    created = await app.agents.create(
        name="sdk-bot",
        scopes={"slack": ["channels:read"]},
        display_name="SDK Bot",
        type="service",
        metadata={"team": "sdk"},
        idempotency_key="sdk-idem-1",
    )
    check(created.api_key is not None and created.api_key.startswith("alter_key_"), "create: key")
    check((created.type, created.status, created.version) == ("service", "active", 1), "create: shape")
    check(created.scopes == {"slack": ["channels:read"]}, "create: scopes")
    agent_id = str(created.id)
    seen["agent_id"] = agent_id
    replay = await app.agents.create(
        name="sdk-bot",
        scopes={"slack": ["channels:read"]},
        display_name="SDK Bot",
        type="service",
        metadata={"team": "sdk"},
        idempotency_key="sdk-idem-1",
    )
    check(replay.api_key is None, "replay: no plaintext")
    check((replay.id, replay.key_id) == (created.id, created.key_id), "replay: same agent and key")
    await expect(
        app.agents.create(name="sdk-bot", scopes={"slack": ["chat:write"]}, idempotency_key="sdk-idem-1"),
        IdempotencyKeyBodyMismatchError,
        "replay with another body",
    )
    await expect(app.agents.create(name="sdk-bot", scopes={}), AgentNameExistsError, "duplicate name")

    # ----- list, get, get_by_name --------------------------------------------------------------
    other = await app.agents.create(name="sdk-other", scopes={})
    page = await app.agents.list(limit=1)
    check((len(page.agents), page.total, page.has_more) == (1, 2, True), "list: first page")
    page2 = await app.agents.list(limit=1, offset=1)
    check((page2.agents[0].id, page2.has_more) == (other.id, False), "list: second page")
    check((await app.agents.get(agent_id)).name == "sdk-bot", "get")
    check((await app.agents.get_by_name("sdk-other")).id == other.id, "get_by_name")
    check(await app.agents.get_by_name("nobody") is None, "get_by_name: none")
    await expect(app.agents.get(NIL), AgentNotFoundError, "get unknown")

    # ----- update: cosmetic fields, scopes with expected_version, staged narrowing ---------------
    up = await app.agents.update(agent_id, display_name="SDK Bot v2", metadata={"team": "sdk", "tier": "1"})
    check((up.display_name, up.version, up.metadata["tier"]) == ("SDK Bot v2", 2, "1"), "update")
    up = await app.agents.update(
        agent_id, scopes={"slack": ["channels:read"], "github": ["repo"]}, expected_version=2
    )
    check(up.scopes.get("github") == ["repo"] and up.version == 3, "update: broaden at once")
    await expect(
        app.agents.update(agent_id, scopes={}, expected_version=2),
        AgentConcurrentUpdateError,
        "stale expected_version",
    )
    narrowed = await app.agents.update(agent_id, scopes={"github": ["repo"]}, expected_version=3, grace_seconds=3600)
    check(narrowed.scopes_pending == {"github": ["repo"]}, "narrowing staged")
    check(narrowed.scopes_applies_at is not None and "slack" in narrowed.scopes, "narrowing waits")

    # ----- keys: mint, use, deprecate (the advisory header), undeprecate ---------------------------
    minted = await app.agents.mint_key(agent_id)
    check(minted.api_key is not None and minted.name == "sdk-bot-2", "mint")
    check(minted.api_key.startswith(minted.key_prefix), "mint: prefix")
    keys = await app.agents.list_keys(agent_id)
    check([k.status for k in keys.items] == ["active", "active"], "list_keys")
    agent = Agent(api_key=minted.api_key)
    me = await agent.me()
    check(me.id == created.id and me.name == "sdk-bot", "me")
    keys = await app.agents.list_keys(agent_id)
    check(keys.items[0].last_used_at is None and keys.items[1].last_used_at is not None, "last used")
    dep = await app.agents.deprecate_key(agent_id, str(minted.key_id))
    check(dep.status == "deprecated" and dep.deprecated_at is not None, "deprecate")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh_client = Agent(api_key=minted.api_key)
        await fresh_client.me()
    check(any("deprecated" in str(w.message) for w in caught), "the SDK warns about the deprecated key")
    seen["deprecation_warned"] = True
    dep2 = await app.agents.deprecate_key(agent_id, str(minted.key_id))
    check(dep2.deprecated_at == dep.deprecated_at, "deprecate is idempotent")
    und = await app.agents.undeprecate_key(agent_id, str(minted.key_id))
    check(und.status == "active", "undeprecate")

    # ----- revoke: the last-active-key guard, force, terminal state -----------------------------------
    revoked = await app.agents.revoke_key(agent_id, str(created.key_id))
    check(revoked.status == "revoked", "revoke one of two")
    again = await app.agents.revoke_key(agent_id, str(created.key_id))
    check(again.revoked_at == revoked.revoked_at, "revoke is idempotent")
    await expect(app.agents.revoke_key(agent_id, str(minted.key_id)), LastActiveKeyError, "last active key")
    await expect(app.agents.deprecate_key(agent_id, str(created.key_id)), KeyAlreadyRevokedError, "deprecate revoked")
    first_agent = Agent(api_key=created.api_key)
    await expect(first_agent.me(), KeyRevokedError, "revoked key")
    await expect(app.agents.revoke_key(agent_id, NIL), KeyNotFoundError, "unknown key")

    # ----- the key limit (the emulator runs with 3) ---------------------------------------------------
    extra = [await app.agents.mint_key(agent_id) for _ in range(2)]
    await expect(app.agents.mint_key(agent_id), AgentKeyLimitError, "key limit")
    forced = await app.agents.revoke_key(agent_id, str(extra[0].key_id), force=True)
    check(forced.status == "revoked", "revoke with force")

    # ----- suspend / resume ----------------------------------------------------------------------------
    sus = await app.agents.suspend(agent_id)
    check(sus.status == "inactive", "suspend")
    check((await agent.me()).status == "inactive", "me answers a suspended agent")
    await expect(agent.resolve_identity(), AgentInactiveError, "a suspended agent's other calls")
    await expect(
        app.agents.create(name="sdk-bot", scopes={"slack": ["channels:read"]}, display_name="SDK Bot",
                          type="service", metadata={"team": "sdk"}, idempotency_key="sdk-idem-1"),
        IdempotencyKeyAgentInactiveError,
        "replay of a suspended agent",
    )
    res = await app.agents.resume(agent_id)
    check(res.status == "active", "resume")
    ident = await agent.resolve_identity()
    check(ident.agent_id == agent_id, "identity of an agent key")
    seen["app_id"] = ident.app_id

    # ----- permission scopes, constraints, principal kinds ---------------------------------------------
    ro = App(api_key=read_key)
    check((await ro.agents.list()).total == 2, "read key lists")
    e = await expect(ro.agents.mint_key(agent_id), InsufficientScopeError, "read key mints")
    check(e.missing == ["dashboard_agents:write"] and e.required == ["dashboard_agents:write"], "missing scopes")
    # (The SDK's namespaces hold their client weakly: keep every client in a variable.)
    constrained = app.with_constraints(scopes=["dashboard_agents:read"])
    e = await expect(constrained.agents.delete(agent_id), InsufficientScopeError, "constrained client deletes")
    check(e.missing == ["dashboard_agents:admin"], "constrained: missing admin")
    as_app = App(api_key=minted.api_key)
    await expect(as_app.agents.list(), AgentCannotMintSubagentsError, "agent key manages")
    as_agent = Agent(api_key=app_key)
    await expect(as_agent.me(), MeRequiresAgentKeyError, "app key asks me")
    stranger = App(api_key="alter_rk_abcdefghijklmnopqrstuv_iwpykn")
    await expect(stranger.agents.list(), InvalidKeyError, "unknown key")

    # ----- signatures: a replayed or altered request is refused as a plain 401 ------------------------
    # Record what the SDK really sends (its own signing), then send it again byte for byte.
    recorded = []
    original_send = httpx.AsyncClient.send

    async def recording_send(self, request, **kwargs):
        recorded.append((request.method, str(request.url), dict(request.headers), request.content))
        return await original_send(self, request, **kwargs)

    httpx.AsyncClient.send = recording_send
    try:
        check((await app.agents.list()).total == 2, "a recorded call")
    finally:
        httpx.AsyncClient.send = original_send
    method, url, headers, content = recorded[-1]
    check(all(h in headers for h in ("x-alter-signature", "x-alter-nonce", "x-alter-timestamp")), "signed")
    async with httpx.AsyncClient() as c:
        replayed = await c.request(method, url, headers=headers, content=content)
        e = None
        try:
            _raise_for_status(replayed)
        except Exception as err:  # noqa: BLE001
            e = err
        check(type(e) is BackendError and e.status_code == 401, f"replay: {type(e).__name__}")
        check(e.details.get("error") == "nonce_reused", "replay code")
        altered = {**headers, "x-alter-nonce": "f" * 32}
        bad = await c.request(method, url, headers=altered, content=content)
        try:
            _raise_for_status(bad)
        except Exception as err:  # noqa: BLE001
            e = err
        check(type(e) is BackendError and e.details.get("error") == "invalid_signature", "altered nonce")

    # ----- rate limiting -------------------------------------------------------------------------------
    await admin_faults(base, admin_token, {"routes": {"list_agents": {"throttle_next": {"count": 1, "retry_after": 7}}}})
    e = await expect(app.agents.list(), RateLimitError, "throttled")
    check((e.retry_after, e.scope, e.window_seconds) == (7, "api_key", 60), f"rate limit fields: {e.retry_after}")
    check((await app.agents.list()).total == 2, "after the throttle")

    # ----- delete: cascade, idempotent; replays of a revoked agent ------------------------------------
    gone = await app.agents.delete(agent_id)
    check(gone.status == "revoked", "delete")
    gone2 = await app.agents.delete(agent_id)
    check(gone2.version == gone.version, "delete is idempotent")
    await expect(agent.me(), KeyRevokedError, "cascade revoke")
    await expect(app.agents.get(agent_id), AgentNotFoundError, "get a revoked agent")
    await expect(app.agents.mint_key(agent_id), AgentNotFoundError, "mint on a revoked agent")
    await expect(
        app.agents.create(name="sdk-bot", scopes={"slack": ["channels:read"]}, display_name="SDK Bot",
                          type="service", metadata={"team": "sdk"}, idempotency_key="sdk-idem-1"),
        IdempotencyKeyAgentRevokedError,
        "replay of a revoked agent",
    )
    check((await app.agents.list(include_revoked=True)).total == 2, "include_revoked")
    again = await app.agents.create(name="sdk-bot", scopes={})
    check(again.id != created.id, "the name is free again")
    seen["recreated_id"] = str(again.id)

    print(json.dumps(seen))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except AssertionError as e:
        print(f"sdk_agents: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
