"""OAuth flows against the gateway with authlib, unmodified, as a
third-party app would run them. Run by tests/tests/oauth.rs; exits non-zero
with the reason when any step misbehaves.

Environment: BASE_URL, APPROVER_KEY (a workspace API key that approves),
CONFIDENTIAL_ID, CONFIDENTIAL_SECRET, PUBLIC_ID, REDIRECT_URI.
"""

import os
import sys

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt

BASE = os.environ["BASE_URL"]
APPROVER = {"Authorization": f"Bearer {os.environ['APPROVER_KEY']}"}
REDIRECT = os.environ["REDIRECT_URI"]
SCOPE = "read:conversations write:conversations"


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}")
        sys.exit(1)


def metadata():
    meta = requests.get(f"{BASE}/.well-known/oauth-authorization-server", timeout=10).json()
    check(meta["issuer"] == BASE, f"issuer {meta['issuer']} is not {BASE}")
    check("S256" in meta["code_challenge_methods_supported"], "S256 advertised")
    return meta


def approve(url):
    """The workspace principal approves the request the app built."""
    reply = requests.post(url, data={"decision": "approve"}, headers=APPROVER, allow_redirects=False, timeout=10)
    check(reply.status_code == 302, f"approval answered {reply.status_code}: {reply.text}")
    return reply.headers["Location"]


def code_flow(meta, session):
    verifier = generate_token(64)
    url, state = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier)
    location = approve(url)
    check(location.startswith(REDIRECT) and f"state={state}" in location, f"redirect {location}")
    return session.fetch_token(meta["token_endpoint"], authorization_response=location, code_verifier=verifier)


def use(token):
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    created = requests.post(f"{BASE}/api/v1/conversations", json={"user_id": "oauth-app", "channel": "api"},
                            headers=headers, timeout=10)
    check(created.status_code == 200, f"creating with the access token: {created.status_code} {created.text}")
    forbidden = requests.get(f"{BASE}/api/v1/bots", headers=headers, timeout=10)
    check(forbidden.status_code == 403, f"a scope not granted must be 403, got {forbidden.status_code}")


def verify_signature(meta, token):
    keys = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    claims = jwt.decode(token["access_token"], keys)
    claims.validate()
    check(claims["iss"] == BASE and claims["scope"] == SCOPE, f"claims {dict(claims)}")


def refresh_rotation(meta, session, token):
    rotated = session.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    check(rotated["refresh_token"] != token["refresh_token"], "the refresh token rotates")
    reuse = requests.post(meta["token_endpoint"], data={"grant_type": "refresh_token",
                                                        "refresh_token": token["refresh_token"]},
                          auth=(os.environ["CONFIDENTIAL_ID"], os.environ["CONFIDENTIAL_SECRET"]), timeout=10)
    check(reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant", f"reuse answered {reuse.text}")
    family_gone = requests.post(meta["token_endpoint"], data={"grant_type": "refresh_token",
                                                              "refresh_token": rotated["refresh_token"]},
                                auth=(os.environ["CONFIDENTIAL_ID"], os.environ["CONFIDENTIAL_SECRET"]), timeout=10)
    check(family_gone.status_code == 400, "reuse revoked the whole family, the newest token included")


def revocation(meta, session, token):
    session.revoke_token(meta["revocation_endpoint"], token=token["refresh_token"],
                         token_type_hint="refresh_token")
    again = requests.post(meta["token_endpoint"], data={"grant_type": "refresh_token",
                                                        "refresh_token": token["refresh_token"],
                                                        "client_id": os.environ["PUBLIC_ID"]}, timeout=10)
    check(again.status_code == 400 and again.json()["error"] == "invalid_grant", f"after revoke: {again.text}")


def main():
    meta = metadata()
    confidential = OAuth2Session(os.environ["CONFIDENTIAL_ID"], os.environ["CONFIDENTIAL_SECRET"], scope=SCOPE,
                                 redirect_uri=REDIRECT, code_challenge_method="S256",
                                 token_endpoint_auth_method="client_secret_basic")
    token = code_flow(meta, confidential)
    use(token)
    verify_signature(meta, token)
    refresh_rotation(meta, confidential, token)

    public = OAuth2Session(os.environ["PUBLIC_ID"], scope=SCOPE, redirect_uri=REDIRECT,
                           code_challenge_method="S256", token_endpoint_auth_method="none")
    public_token = code_flow(meta, public)
    use(public_token)
    revocation(meta, public, public_token)

    machine = OAuth2Session(os.environ["CONFIDENTIAL_ID"], os.environ["CONFIDENTIAL_SECRET"],
                            token_endpoint_auth_method="client_secret_post", scope=SCOPE)
    use(machine.fetch_token(meta["token_endpoint"], grant_type="client_credentials"))
    print("OK")


if __name__ == "__main__":
    main()
