"""entraflow's credentials inside azure-identity's own chains, with its keywords and
defaults: the drop-in promise, checked against azure-identity itself."""

from __future__ import annotations

import inspect
import re
import uuid

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ChainedTokenCredential, DefaultAzureCredential
from azure.identity import ClientSecretCredential as AzureClientSecretCredential
from azure.identity import CredentialUnavailableError as AzureCredentialUnavailableError

from entraflow.identity import (
    AZURE_CLI_CLIENT_ID,
    ClientSecretCredential,
    CredentialError,
    DefaultCredential,
    DeviceCodeCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)
from helpers import STORAGE, STORAGE_SCOPE, v1_issuer, verify_token

CHAIN_VARIABLES = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE",
                   "AZURE_CLIENT_CERTIFICATE_PATH", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_TOKEN_CREDENTIALS")


@pytest.fixture
def no_identity_environment(monkeypatch):
    """Nothing in the environment names an identity; IMDS is a closed port."""
    for name in CHAIN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")


@pytest.fixture
def service_principal(authority):
    app = authority.new_app(f"compose-{uuid.uuid4().hex[:6]}")
    return app, authority.new_secret(app["appId"])


class Spy:
    """A credential that records being asked and answers with a fixed token."""

    def __init__(self):
        self.calls = 0

    def get_token(self, *scopes, **kwargs):
        self.calls += 1
        return AccessToken("spy-token", 2**31)


def test_an_unavailable_entraflow_credential_lets_azure_identitys_chain_move_on(
        authority, service_principal, no_identity_environment, monkeypatch):
    app, secret = service_principal
    # This host's IMDS answers, but the identity asked for is not assigned to it: the
    # credential does not apply. (Other tests assign identities to this host.)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", authority.imds)
    no_imds = ManagedIdentityCredential(client_id=str(uuid.uuid4()))
    with pytest.raises(AzureCredentialUnavailableError):
        no_imds.get_token(STORAGE_SCOPE)
    chain = ChainedTokenCredential(
        no_imds,
        AzureClientSecretCredential(authority.tenant, app["appId"], secret, authority=authority.host,
                                    disable_instance_discovery=True),
    )
    token = chain.get_token(STORAGE_SCOPE)
    assert verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))["appid"] == app["appId"]


def test_a_rejected_entraflow_credential_stops_azure_identitys_chain(authority, service_principal):
    app, _ = service_principal
    spy = Spy()
    chain = ChainedTokenCredential(
        ClientSecretCredential(authority.tenant, app["appId"], "not-the-secret", authority=authority.host), spy)
    with pytest.raises(ClientAuthenticationError) as err:
        chain.get_token(STORAGE_SCOPE)
    assert "AADSTS7000215" in str(err.value)
    assert spy.calls == 0, "a hard failure must not fall through to another identity"


def test_default_credential_behaves_as_azure_identitys_default(
        authority, service_principal, monkeypatch, no_identity_environment, tmp_path):
    # Nothing applies: both fail with ClientAuthenticationError, not "unavailable", so
    # both end an outer chain (azure-identity's rule for a failed chain).
    for default in (DefaultAzureCredential(exclude_interactive_browser_credential=True, exclude_cli_credential=True,
                                           exclude_developer_cli_credential=True, exclude_powershell_credential=True,
                                           exclude_visual_studio_code_credential=True,
                                           exclude_shared_token_cache_credential=True),
                    DefaultCredential(data_dir=str(tmp_path))):
        with pytest.raises(ClientAuthenticationError) as err:
            default.get_token(STORAGE_SCOPE)
        assert not isinstance(err.value, AzureCredentialUnavailableError), type(default)
        spy = Spy()
        with pytest.raises(ClientAuthenticationError):
            ChainedTokenCredential(default, spy).get_token(STORAGE_SCOPE)
        assert spy.calls == 0
    # A service principal in the environment: both pick it.
    app, secret = service_principal
    for name, value in (("AZURE_TENANT_ID", authority.tenant), ("AZURE_CLIENT_ID", app["appId"]),
                        ("AZURE_CLIENT_SECRET", secret), ("AZURE_AUTHORITY_HOST", authority.host)):
        monkeypatch.setenv(name, value)
    theirs = DefaultAzureCredential(disable_instance_discovery=True).get_token(STORAGE_SCOPE)
    ours = DefaultCredential(data_dir=str(tmp_path)).get_token(STORAGE_SCOPE)
    for token in (theirs, ours):
        assert verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))["appid"] == app["appId"]


def test_default_credential_takes_every_exclude_keyword_azure_identitys_takes(no_identity_environment, tmp_path):
    azure_keywords = set(re.findall(r"exclude_\w+_credential", inspect.getsource(DefaultAzureCredential.__init__)))
    assert len(azure_keywords) >= 10, azure_keywords
    DefaultCredential(data_dir=str(tmp_path), **{name: False for name in azure_keywords})
    with pytest.raises(ValueError, match="at least one credential"):
        DefaultCredential(data_dir=str(tmp_path), **{name: True for name in azure_keywords},
                          exclude_developer_login_credential=True)


def test_excluded_links_are_not_tried(authority, service_principal, monkeypatch, no_identity_environment, tmp_path):
    app, secret = service_principal
    monkeypatch.setenv("AZURE_TENANT_ID", authority.tenant)
    monkeypatch.setenv("AZURE_CLIENT_ID", app["appId"])
    monkeypatch.setenv("AZURE_CLIENT_SECRET", secret)
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", authority.host)
    token = DefaultCredential(data_dir=str(tmp_path)).get_token(STORAGE_SCOPE)
    assert verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))["appid"] == app["appId"]

    excluded = DefaultCredential(data_dir=str(tmp_path), exclude_environment_credential=True,
                                 exclude_managed_identity_credential=True)
    with pytest.raises(CredentialError) as err:
        excluded.get_token(STORAGE_SCOPE)
    assert "EnvironmentCredential" not in str(err.value) and "DeveloperLoginCredential" in str(err.value)

    # AZURE_TOKEN_CREDENTIALS selects links as in azure-identity; a keyword still wins.
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "dev")
    with pytest.raises(CredentialError) as err:
        DefaultCredential(data_dir=str(tmp_path)).get_token(STORAGE_SCOPE)
    assert "EnvironmentCredential" not in str(err.value)
    token = DefaultCredential(data_dir=str(tmp_path), exclude_environment_credential=False).get_token(STORAGE_SCOPE)
    assert token.token
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "environmentcredentail")
    with pytest.raises(ValueError, match="Invalid value for AZURE_TOKEN_CREDENTIALS"):
        DefaultCredential(data_dir=str(tmp_path))


@pytest.mark.parametrize("build, keyword, suggestion", [
    (lambda **kw: ClientSecretCredential("t", "c", "s", **kw), "authorty", "authority"),
    (lambda **kw: DefaultCredential(**kw), "exclude_managed_identity_credentail", "exclude_managed_identity_credential"),
    (lambda **kw: ManagedIdentityCredential(**kw), "clientid", "client_id"),
    (lambda **kw: WorkloadIdentityCredential(**kw), "token_file", "token_file_path"),
    (lambda **kw: DeviceCodeCredential(**kw), "tenant", "tenant_id"),
])
def test_unknown_keywords_are_refused_naming_the_closest(build, keyword, suggestion):
    with pytest.raises(TypeError) as err:
        build(**{keyword: "x"})
    assert f"unexpected keyword argument {keyword!r}" in str(err.value)
    assert f"did you mean {suggestion!r}" in str(err.value)


def test_azure_identity_keywords_entraflow_cannot_honour_are_refused_with_the_reason():
    with pytest.raises(TypeError, match="does not support the keyword argument 'connection_verify': .*SSL_CERT_FILE"):
        ClientSecretCredential("t", "c", "s", connection_verify=False)


def test_device_code_defaults_to_azure_identitys_public_client(authority, monkeypatch):
    from azure.identity import DeviceCodeCredential as AzureDeviceCodeCredential

    default = inspect.signature(AzureDeviceCodeCredential.__init__).parameters["client_id"].default
    assert AZURE_CLI_CLIENT_ID == default == "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
    user = authority.json("ad", "user", "create", "--upn", f"dc-{uuid.uuid4().hex[:6]}@entraflow.local",
                          "--display-name", "Dee")
    prompts = []

    def approve(verification_uri, user_code, expires_on):
        prompts.append(expires_on)
        authority.cli("authority", "approve", user_code, "--user", user["userPrincipalName"])

    token = DeviceCodeCredential(tenant_id=authority.tenant, authority=authority.host,
                                 prompt_callback=approve).get_token(STORAGE_SCOPE)
    claims = verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))
    assert claims["appid"] == AZURE_CLI_CLIENT_ID and claims["oid"] == user["id"]
    assert prompts and prompts[0].tzinfo is not None, "expires_on is an aware datetime, as azure-identity passes"


def test_another_tenant_needs_additionally_allowed_tenants(authority, service_principal):
    app, secret = service_principal
    other = str(uuid.uuid4())
    strict = ClientSecretCredential(authority.tenant, app["appId"], secret, authority=authority.host)
    with pytest.raises(ClientAuthenticationError, match="additionally_allowed_tenants"):
        strict.get_token(STORAGE_SCOPE, tenant_id=other)
    with pytest.raises(ClientAuthenticationError, match="additionally_allowed_tenants"):
        strict.get_token_info(STORAGE_SCOPE, options={"tenant_id": other})
    open_to_all = ClientSecretCredential(authority.tenant, app["appId"], secret, authority=authority.host,
                                         additionally_allowed_tenants=["*"])
    # Allowed, so the request really goes to the other tenant, which this authority does not know.
    with pytest.raises(CredentialError) as err:
        open_to_all.get_token(STORAGE_SCOPE, tenant_id=other)
    assert err.value.kind == "authentication_rejected" and err.value.aadsts is not None
    assert open_to_all.get_token(STORAGE_SCOPE, tenant_id=authority.tenant).token


def test_enable_cae_and_claims_are_separate_cache_entries(authority, service_principal):
    app, secret = service_principal
    cred = ClientSecretCredential(authority.tenant, app["appId"], secret, authority=authority.host)
    plain = cred.get_token_info(STORAGE_SCOPE)
    cae = cred.get_token_info(STORAGE_SCOPE, options={"enable_cae": True})
    assert cae.token != plain.token, "a CAE token is requested with the CP1 capability, cached apart"
    assert cred.get_token(STORAGE_SCOPE, enable_cae=True).token == cae.token
    assert cred.get_token(STORAGE_SCOPE).token == plain.token
    for token in (plain.token, cae.token):
        assert verify_token(authority, token, STORAGE, v1_issuer(authority.tenant))["appid"] == app["appId"]
