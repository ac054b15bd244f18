"""Drives the emulator with AgentLattice's public Python SDK (agentlattice==0.4.2).

Run by tests/python_sdk.rs. Everything comes from the environment (never argv, so no key shows
up in a process list):
  AL_BASE_URL        the emulator
  AL_SERVICE_KEY     a service key
  AL_AGENT_NAME      name to register through the SDK
  AL_AGENT_KEY       key of an agent the Rust side registered with a capability
  AL_ALLOWED_ACTION  that capability
Prints one JSON object with what it saw (never a key) and exits non-zero on any mismatch.
"""

import asyncio
import json
import os
import sys

from agentlattice import ActionOptions, AgentLattice, AgentLatticeDeniedError, AgentLatticeError


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def expect_error(coro, code, what):
    try:
        await coro
    except AgentLatticeError as e:
        check(e.code == code, f"{what}: expected {code}, got {e.code}")
        return
    raise AssertionError(f"{what}: expected {code}, got success")


async def main():
    base = os.environ["AL_BASE_URL"]
    service_key = os.environ["AL_SERVICE_KEY"]
    name = os.environ["AL_AGENT_NAME"]
    capable_key = os.environ["AL_AGENT_KEY"]
    allowed = os.environ["AL_ALLOWED_ACTION"]
    seen = {}

    # register() sends {"name", "description": null}: the agent has no capabilities.
    client, config = await AgentLattice.register(service_key, name, base_url=base)
    check(config["name"] == name, "register: name")
    check(config["api_key"].startswith("al_agent_"), "register: agent key scheme")
    check(config["created_at"].endswith("Z"), "register: created_at")
    seen["registered_id"] = config["id"]

    who = await client.whoami()
    check(who.config_id == config["id"], "whoami: config_id is the agent id")
    check(who.name == name, "whoami: name")
    check(who.is_active is True, "whoami: is_active")
    check(who.cb_state == "closed", "whoami: cb_state")
    check(who.policies == [], "whoami: policies")
    check(who.delegations == {"as_parent": [], "as_child": []}, "whoami: delegations")
    seen["org_id"] = who.org_id

    denied = await client.execute("deploy.staging")
    check(denied.status == "denied", f"execute without capability: {denied.status}")
    check(denied.denial_reason == "capability_not_granted", "denial_reason")
    check(bool(denied.audit_event_id), "audit_event_id")
    try:
        await client.gate("deploy.staging")
        raise AssertionError("gate on a denied action must raise")
    except AgentLatticeDeniedError as e:
        check(e.reason == "capability_not_granted", "gate: denial reason")

    # The SDK surfaces the contract's error codes.
    await expect_error(
        AgentLattice.register(service_key, name, base_url=base), "agent_name_exists", "second register"
    )
    await expect_error(
        AgentLattice.register(capable_key, "from-agent-key", base_url=base),
        "agent_key_cannot_provision",
        "register with an agent key",
    )
    await expect_error(
        AgentLattice(api_key=service_key, base_url=base).whoami(),
        "service_key_cannot_act",
        "whoami with a service key",
    )

    # An agent registered (from Rust) with a capability: executed, and denied outside it.
    capable = AgentLattice(api_key=capable_key, base_url=base)
    ok = await capable.execute(allowed, ActionOptions(event_id="sdk-event-1", metadata={"from": "sdk"}))
    check(ok.status == "executed", f"execute with capability: {ok.status}")
    check(ok.denial_reason is None, "executed: no denial reason")
    replay = await capable.execute("not.granted", ActionOptions(event_id="sdk-event-1"))
    check(replay.audit_event_id == ok.audit_event_id, "replayed event id returns the first result")
    await capable.gate(allowed)
    other = await capable.execute("not.granted")
    check(other.status == "denied", "execute outside capabilities")
    capable_who = await capable.whoami()
    check(capable_who.org_id == who.org_id, "one workspace")
    seen["capable_id"] = capable_who.config_id
    seen["executed_audit_event_id"] = ok.audit_event_id

    print(json.dumps(seen))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except AssertionError as e:
        print(f"sdk_smoke: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
