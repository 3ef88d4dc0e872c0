"""Notebook sign-in: `entraflow.identity.login()` and `DeviceCodeCredential` show the
device-code prompt as rich output under IPython (captured from a real
InteractiveShell's display publisher, as Jupyter would receive it) and as plain text
elsewhere. Each sign-in is approved through the authority, as a person would."""

from __future__ import annotations

import html
import io
import re
import uuid

import pytest
from IPython.core.displaypub import CapturingDisplayPublisher
from IPython.core.interactiveshell import InteractiveShell

from entraflow.identity import DefaultCredential, DeviceCodeCredential, DeviceCodePrompt, login
from helpers import STORAGE, STORAGE_SCOPE, v1_issuer, verify_token

CODE = re.compile(r"user_code='([^']+)'|enter the code (\S+) ")


@pytest.fixture
def person(authority):
    return authority.json("ad", "user", "create", "--upn", f"nb-{uuid.uuid4().hex[:6]}@entraflow.local",
                          "--display-name", "Notebook User")


class ApprovingPublisher(CapturingDisplayPublisher):
    """What Jupyter receives; approves the sign-in the moment the prompt is shown."""

    def __init__(self, approve, **kwargs):
        super().__init__(**kwargs)
        self.approve = approve

    def publish(self, data, metadata=None, **kwargs):
        super().publish(data, metadata, **kwargs)
        self.approve(CODE.search(data["text/plain"]).group(1))


@pytest.fixture
def notebook():
    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


def test_login_in_a_notebook_displays_a_rich_prompt_and_signs_in(authority, person, notebook, tmp_path,
                                                                 monkeypatch):
    def approve(code):
        authority.cli("authority", "approve", code, "--user", person["userPrincipalName"])

    notebook.display_pub = ApprovingPublisher(approve, shell=notebook)
    credential = login(tenant_id=authority.tenant, authority=authority.host, data_dir=str(tmp_path))
    [output] = notebook.display_pub.outputs
    rich = output["data"]
    assert set(rich) >= {"text/html", "text/markdown", "text/plain"}
    code = CODE.search(rich["text/plain"]).group(1)
    assert f"<b>{html.escape(code)}</b>" in rich["text/html"] and f'href="{authority.host}' in rich["text/html"]
    claims = verify_token(authority, credential.get_token(STORAGE_SCOPE).token, STORAGE, v1_issuer(authority.tenant))
    assert claims["oid"] == person["id"]
    # The sign-in is kept where DefaultCredential's last link looks, as after `entraflow login`.
    for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", authority.host)
    monkeypatch.setenv("AZURE_TENANT_ID", authority.tenant)
    default = DefaultCredential(data_dir=str(tmp_path), exclude_managed_identity_credential=True)
    token = default.get_token(STORAGE_SCOPE)
    assert verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))["oid"] == person["id"]


def test_outside_a_notebook_the_prompt_is_plain_text(authority, person, monkeypatch):
    assert InteractiveShell.initialized() is False

    class Terminal(io.StringIO):
        def write(self, text):
            found = CODE.search(text)
            if found:
                authority.cli("authority", "approve", found.group(2), "--user", person["userPrincipalName"])
            return super().write(text)

    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    credential = DeviceCodeCredential(tenant_id=authority.tenant, authority=authority.host)
    token = credential.get_token(STORAGE_SCOPE)
    printed = terminal.getvalue()
    assert "<" not in printed and authority.host in printed, printed
    assert verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))["oid"] == person["id"]


def test_the_prompt_object_escapes_what_it_renders():
    prompt = DeviceCodePrompt("https://login.example/device?a=1&b=<2>", "AB<C", "")
    assert "&lt;2&gt;" in prompt._repr_html_() and "AB&lt;C" in prompt._repr_html_()
    assert str(prompt) == "To sign in, open https://login.example/device?a=1&b=<2> and enter the code AB<C to authenticate."
