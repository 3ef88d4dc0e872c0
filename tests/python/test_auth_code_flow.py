"""msal's authorization code flow with PKCE — what `acquire_token_interactive` and
`az login` run — against the local authority on a loopback redirect.

The tests play the browser: they open msal's `auth_uri`, sign in on the
authority's page, and capture the redirect instead of following it (or, for
`acquire_token_interactive` itself, post the authority's auto-submitted form to
msal's own loopback listener), so no browser is needed.
"""

from __future__ import annotations

import threading
import uuid
import webbrowser
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urljoin, urlsplit

import jwt
import msal
import pytest
import requests

from helpers import STORAGE, STORAGE_SCOPE, v1_issuer, verify_token

PASSWORD = "a long local password"
REDIRECT_URI = "http://localhost:53124"
# These tests ask for the default response_mode=query on purpose, to read the code
# from the redirect's Location; the acquire_token_interactive test runs form_post.
QUERY_MODE = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")


class FormParser(HTMLParser):
    """The first form of a page: its action and its inputs' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._inside = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = attrs.get("action") or ""
            self._inside = True
        elif tag == "input" and self._inside and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self._inside = False


def parse_form(html: str) -> FormParser:
    form = FormParser()
    form.feed(html)
    return form


def submit_sign_in(authority, auth_uri: str, upn: str, password: str = PASSWORD) -> requests.Response:
    """Does what the user does in the browser: opens the page, fills the form in, submits it."""
    page = requests.get(auth_uri, verify=authority.ca, timeout=30)
    assert page.status_code == 200, page.text
    form = parse_form(page.text)
    assert form.action and "password" in form.fields, page.text
    fields = {**form.fields, "username": upn, "password": password}
    return requests.post(urljoin(auth_uri, form.action), data=fields, verify=authority.ca,
                         allow_redirects=False, timeout=30)


def sign_in(authority, auth_uri: str, upn: str) -> dict:
    """Signs in; returns the redirect's query parameters, the auth response msal wants."""
    answer = submit_sign_in(authority, auth_uri, upn)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(f"{REDIRECT_URI}/?"), location
    return dict(parse_qsl(urlsplit(location).query))


@pytest.fixture
def notebook(authority):
    """A desktop app registered with a loopback redirect, a user with a password, and msal."""
    suffix = uuid.uuid4().hex[:6]
    app = authority.new_app(f"notebook-{suffix}", "--public-client-redirect-uris", "http://localhost")
    assert app["publicClient"]["redirectUris"] == ["http://localhost"]
    user = authority.json("ad", "user", "create", "--upn", f"alice-{suffix}@entraflow.local",
                          "--display-name", "Alice", "--password-stdin", input=PASSWORD + "\n")
    pca = msal.PublicClientApplication(app["appId"], authority=f"{authority.host}/{authority.tenant}",
                                       instance_discovery=False, verify=authority.ca)
    return app, user, pca


@QUERY_MODE
def test_msal_auth_code_flow_with_pkce_on_a_loopback_redirect(authority, notebook):
    app, user, pca = notebook
    flow = pca.initiate_auth_code_flow([STORAGE_SCOPE], redirect_uri=REDIRECT_URI)
    assert flow["auth_uri"].startswith(f"{authority.host}/{authority.tenant}/oauth2/v2.0/authorize?")
    assert "code_challenge_method=S256" in flow["auth_uri"]

    auth_response = sign_in(authority, flow["auth_uri"], user["userPrincipalName"])
    assert auth_response["state"] == flow["state"]
    result = pca.acquire_token_by_auth_code_flow(flow, auth_response)
    assert "access_token" in result, result

    claims = verify_token(authority, result["access_token"], STORAGE, v1_issuer(authority.tenant))
    assert claims["oid"] == user["id"]
    assert claims["idtyp"] == "user"
    assert claims["upn"] == user["userPrincipalName"]
    assert claims["appid"] == app["appId"]
    assert claims["scp"] == "user_impersonation"
    assert jwt.get_unverified_header(result["access_token"])["x5t"], "v1 access tokens carry x5t"
    # msal itself compared the id token's nonce with the one it sent.
    assert result["id_token_claims"]["oid"] == user["id"]
    assert result["id_token_claims"]["nonce"]

    # The code was spent: msal reports Entra's AADSTS54005 on a second redemption.
    again = pca.acquire_token_by_auth_code_flow(flow, auth_response)
    assert 54005 in again.get("error_codes", []), again

    # The refresh token msal cached works: a silent, forced refresh goes to the authority.
    accounts = pca.get_accounts()
    assert [a["username"] for a in accounts] == [user["userPrincipalName"]]
    refreshed = pca.acquire_token_silent([STORAGE_SCOPE], account=accounts[0], force_refresh=True)
    assert refreshed and "access_token" in refreshed, refreshed
    assert refreshed["token_source"] == "identity_provider"
    assert refreshed["access_token"] != result["access_token"]
    again_claims = verify_token(authority, refreshed["access_token"], STORAGE, v1_issuer(authority.tenant))
    assert again_claims["oid"] == user["id"]


@QUERY_MODE
def test_a_tampered_state_is_refused(authority, notebook):
    _, user, pca = notebook
    flow = pca.initiate_auth_code_flow([STORAGE_SCOPE], redirect_uri=REDIRECT_URI)
    auth_response = sign_in(authority, flow["auth_uri"], user["userPrincipalName"])
    auth_response["state"] = "tampered-" + auth_response["state"]
    with pytest.raises(ValueError, match="state mismatch"):
        pca.acquire_token_by_auth_code_flow(flow, auth_response)
    assert pca.get_accounts() == [], "nothing was redeemed"


class SigningInBrowser:
    """A `webbrowser` controller that signs in instead of showing the page, then
    posts the authority's auto-submitted answer to msal's loopback listener."""

    def __init__(self, authority, upn: str):
        self.authority, self.upn = authority, upn
        self.failures: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def open(self, url, new=0, autoraise=True):
        # msal serves its listener only after the browser call returns.
        thread = threading.Thread(target=self._sign_in, args=(url,), daemon=True)
        thread.start()
        self.threads.append(thread)
        return True

    def _sign_in(self, auth_uri: str) -> None:
        try:
            answer = submit_sign_in(self.authority, auth_uri, self.upn)
            assert answer.status_code == 200, answer.text
            form = parse_form(answer.text)
            assert form.action.startswith("http://localhost:") and "code" in form.fields, answer.text
            requests.post(form.action, data=form.fields, timeout=30)
        except BaseException as e:  # reported by the test, not lost in the thread
            self.failures.append(e)


def test_acquire_token_interactive_with_msal_s_own_loopback_listener(authority, notebook):
    _, user, pca = notebook
    browser = SigningInBrowser(authority, user["userPrincipalName"])
    name = f"entraflow-signing-in-{uuid.uuid4().hex[:6]}"
    webbrowser.register(name, None, browser, preferred=True)
    try:
        result = pca.acquire_token_interactive([STORAGE_SCOPE], timeout=60)
    finally:
        # `register` has no inverse: take the controller out of the search order.
        webbrowser._tryorder.remove(name)
    for thread in browser.threads:
        thread.join(timeout=30)
    assert not browser.failures, browser.failures
    assert "access_token" in result, result
    claims = verify_token(authority, result["access_token"], STORAGE, v1_issuer(authority.tenant))
    assert claims["oid"] == user["id"]
    assert [a["username"] for a in pca.get_accounts()] == [user["userPrincipalName"]]
