"""Recomputes, with alter-sdk==0.29.0's own signing code, the signature of every request the Rust
client sent (tests/sdk_signature.rs records them), and compares.

argv[1]: a JSON file: {"api_key": ..., "requests": [{method, target, timestamp, nonce,
content_sha256, signature, constraints, body_hex}]}. Prints {"checked": n}; exits non-zero on the
first mismatch (saying which request, never a key).
"""

import json
import secrets
import sys
import time

from alter_sdk import App


def main():
    with open(sys.argv[1]) as f:
        data = json.load(f)
    app = App(api_key=data["api_key"])
    vault = app._client  # noqa: SLF001
    # The SDK guards its name-mangled methods against `vault._VaultClient__…`; it documents
    # object.__getattribute__ as a known way round, which is what a test may use.
    compute = object.__getattribute__(vault, "_VaultClient__compute_hmac_headers")
    checked = 0
    for r in data["requests"]:
        time.time = lambda ts=r["timestamp"]: float(ts)
        secrets.token_hex = lambda n=16, nonce=r["nonce"]: nonce
        body = bytes.fromhex(r["body_hex"])
        headers = compute(r["method"], r["target"], body, scope_constraints=r["constraints"] or None)
        got = (headers["X-Alter-Timestamp"], headers["X-Alter-Nonce"], headers["X-Alter-Content-SHA256"], headers["X-Alter-Signature"])
        want = (str(r["timestamp"]), r["nonce"], r["content_sha256"], r["signature"])
        if got != want:
            print(f"mismatch for {r['method']} {r['target']}", file=sys.stderr)
            sys.exit(1)
        checked += 1
    print(json.dumps({"checked": checked}))


if __name__ == "__main__":
    main()
