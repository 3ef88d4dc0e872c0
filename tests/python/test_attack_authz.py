"""The authorization-boundary attack suite: principals with narrow roles (one
container, a path prefix, a tag, a write prefix) try to reach past them through path
encodings, prefix and case confusion, account and Host confusion, conditions on
every attribute, copy, batch, leases and tags. Requests go out byte for byte as
written (http.client, no URL normalisation). Every case is named with the answer
Azure Storage gives; allowed cases are in the table too, so the suite cannot pass
by refusing everything. Results go to SECURITY.md."""

from __future__ import annotations

import http.client
import ssl
import time
import uuid
from urllib.parse import urlparse

import pytest
from azure.identity import ClientSecretCredential

from helpers import STORAGE_SCOPE, Report

VERSION = "2025-01-05"
READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"
DELETE = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"
PATH = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path]"
NAME = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name]"
TAG = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags:project<$key_case_sensitive$>]"


class Raw:
    """One HTTPS connection per request, the path sent exactly as given."""

    def __init__(self, endpoint: str, ca: str):
        u = urlparse(endpoint)
        self.host, self.port, self.account = u.hostname, u.port, u.path.strip("/")
        self.context = ssl.create_default_context(cafile=ca)

    def send(self, method: str, path: str, token: str | None, headers: dict | None = None,
             body: bytes = b"") -> tuple[int, str, bytes, dict]:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=30)
        h = {"x-ms-version": VERSION, "Content-Length": str(len(body))}
        if token:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        conn.putrequest(method, path, skip_host="Host" in h, skip_accept_encoding=True)
        for k, v in h.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        out = (resp.status, resp.getheader("x-ms-error-code") or "", data, dict(resp.getheaders()))
        conn.close()
        return out


@pytest.fixture(scope="module")
def world(authority, gate):
    raw = Raw(gate.endpoint, authority.ca)
    u = uuid.uuid4().hex[:8]
    names = {"data": f"d{u}", "datax": f"d{u}x", "other": f"o{u}"}
    kwargs = dict(authority=authority.host, disable_instance_discovery=True)

    def principal(name: str, role: str | None = None, scope: str | None = None, condition: str | None = None):
        app = authority.new_app(f"authz-{name}-{u}")
        secret = authority.new_secret(app["appId"])
        if role:
            extra = ["--condition", condition, "--condition-version", "2.0"] if condition else []
            gate.assign(app["spObjectId"], role, scope or gate.scope, *extra)
        cred = ClientSecretCredential(authority.tenant, app["appId"], secret, **kwargs)
        return cred.get_token(STORAGE_SCOPE).token

    data_scope = gate.container_scope(names["data"])
    tokens = {
        "owner": principal("owner", "Storage Blob Data Owner"),
        "reader": principal("reader", "Storage Blob Data Reader", data_scope),
        "prefix": principal("prefix", "Storage Blob Data Reader", data_scope,
                            f"((!(ActionMatches{{'{READ}'}} AND NOT SubOperationMatches{{'Blob.List'}})) "
                            f"OR ({PATH} StringStartsWith 'public/'))"),
        "tagged": principal("tagged", "Storage Blob Data Reader", data_scope,
                            f"((!(ActionMatches{{'{READ}'}} AND NOT SubOperationMatches{{'Blob.List'}})) "
                            f"OR ({TAG} StringEquals 'alpha'))"),
        "writer": principal("writer", "Storage Blob Data Contributor", data_scope,
                            f"((!(ActionMatches{{'{WRITE}'}}) AND !(ActionMatches{{'{DELETE}'}})) "
                            f"OR ({PATH} StringStartsWith 'train/'))"),
        "named": principal("named", "Storage Blob Data Reader", gate.scope,
                           f"((!(ActionMatches{{'{READ}'}})) OR ({NAME} StringEquals '{names['data']}'))"),
        "nobody": principal("nobody"),
    }
    a = raw.account
    # The owner's role applies within 500 ms: wait for it, then seed the containers.
    deadline = time.monotonic() + 10
    while raw.send("PUT", f"/{a}/{names['data']}?restype=container", tokens["owner"])[0] == 403:
        assert time.monotonic() < deadline, "the owner's role never applied"
        time.sleep(0.05)
    for c in ("datax", "other"):
        assert raw.send("PUT", f"/{a}/{names[c]}?restype=container", tokens["owner"])[0] == 201
    blobs = {
        ("data", "train/a.bin"): {}, ("data", "secret/b.bin"): {}, ("data", "public/c.bin"): {},
        ("data", "publicx/d.bin"): {}, ("data", "tagged/alpha.bin"): {"x-ms-tags": "project=alpha"},
        ("data", "tagged/beta.bin"): {"x-ms-tags": "project=beta"},
        ("data", "tagged/upper.bin"): {"x-ms-tags": "Project=alpha"},
        ("data", "tagged/none.bin"): {}, ("data", "train/leased.bin"): {},
        ("datax", "y.bin"): {}, ("other", "z.bin"): {},
    }
    for (c, blob), extra in blobs.items():
        status = raw.send("PUT", f"/{a}/{names[c]}/{blob}", tokens["owner"],
                          {"x-ms-blob-type": "BlockBlob", **extra}, f"{c}/{blob}".encode())[0]
        assert status == 201, (c, blob, status)
    # Every narrow role must have applied before the cases run.
    for who, path in [("reader", "train/a.bin"), ("prefix", "public/c.bin"), ("tagged", "tagged/alpha.bin"),
                      ("writer", "train/a.bin"), ("named", "train/a.bin")]:
        while raw.send("GET", f"/{a}/{names['data']}/{path}", tokens[who])[0] == 403:
            assert time.monotonic() < deadline + 10, f"{who}'s role never applied"
            time.sleep(0.05)
    return raw, names, tokens


def test_authorization_boundaries_hold(world):
    raw, n, t = world
    a = raw.account
    d, dx, o = n["data"], n["datax"], n["other"]
    lease_id = str(uuid.uuid4())
    put = {"x-ms-blob-type": "BlockBlob"}

    def batch(token: str, parts: list[str]) -> tuple[list[int], int]:
        body = ""
        for i, path in enumerate(parts):
            body += (f"--b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
                     f"Content-ID: {i}\r\n\r\nDELETE {path} HTTP/1.1\r\nx-ms-version: {VERSION}\r\n"
                     f"Authorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n\r\n")
        body += "--b--\r\n"
        status, _, data, _ = raw.send("POST", f"/{a}/{d}?restype=container&comp=batch", token,
                                      {"Content-Type": "multipart/mixed; boundary=b"}, body.encode())
        codes = [int(line.split()[1]) for line in data.decode(errors="replace").splitlines()
                 if line.startswith("HTTP/1.1 ")]
        return codes, status

    # (name, principal, method, path, headers, body, expected statuses, expected error code or "")
    cases = [
        # Path encodings and traversal: the reader may read container d only.
        ("sanity: reader reads its container", "reader", "GET", f"/{a}/{d}/train/a.bin", {}, b"", {200}, ""),
        ("reader reads another container", "reader", "GET", f"/{a}/{o}/z.bin", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("dot-dot segment into another container", "reader", "GET", f"/{a}/{d}/../{o}/z.bin", {}, b"", {400, 403, 404}, ""),
        ("encoded dot-dot (%2e%2e)", "reader", "GET", f"/{a}/{d}/%2e%2e/{o}/z.bin", {}, b"", {400, 403, 404}, ""),
        ("encoded slash in the container segment", "reader", "GET", f"/{a}/{d}%2F..%2F{o}/z.bin", {}, b"", {400, 403, 404}, ""),
        ("double slash before the container", "reader", "GET", f"/{a}//{o}/z.bin", {}, b"", {400, 403, 404}, ""),
        ("dot segment before the container", "reader", "GET", f"/{a}/./{o}/z.bin", {}, b"", {400, 403, 404}, ""),
        ("backslash traversal", "reader", "GET", f"/{a}/{d}\\..\\{o}\\z.bin", {}, b"", {400, 403, 404}, ""),
        ("overlong UTF-8 dot-dot (%c0%ae)", "reader", "GET", f"/{a}/{d}/%c0%ae%c0%ae/{o}/z.bin", {}, b"", {400, 403, 404}, ""),
        ("NUL byte in the blob name", "reader", "GET", f"/{a}/{o}/z.bin%00", {}, b"", {400, 403, 404}, ""),
        ("upper-case container name", "reader", "GET", f"/{a}/{d.upper()}/train/a.bin", {}, b"", {400}, "InvalidResourceName"),
        ("container whose name extends the granted one", "reader", "GET", f"/{a}/{dx}/y.bin", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("another account in the path", "reader", "GET", f"/otheraccount/{d}/train/a.bin", {}, b"", {400, 403, 404}, ""),
        ("account name in another case", "reader", "GET", f"/{a.upper()}/{o}/z.bin", {}, b"", {400, 403, 404}, ""),
        ("Host header naming another account", "reader", "GET", f"/{a}/{o}/z.bin",
         {"Host": f"{o}.blob.core.windows.net"}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("container operation smuggled in the query", "reader", "GET", f"/{a}/{o}?restype=container", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("list another container", "reader", "GET", f"/{a}/{o}?restype=container&comp=list", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("list containers with a container-scoped role", "reader", "GET", f"/{a}?comp=list", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("create a container", "reader", "PUT", f"/{a}/r{uuid.uuid4().hex[:8]}?restype=container", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("delete its container", "reader", "DELETE", f"/{a}/{d}?restype=container", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("set its container's metadata", "reader", "PUT", f"/{a}/{d}?restype=container&comp=metadata",
         {"x-ms-meta-owner": "me"}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("write with a read role", "reader", "PUT", f"/{a}/{d}/train/new.bin", put, b"x", {403}, "AuthorizationPermissionMismatch"),
        ("delete with a read role", "reader", "DELETE", f"/{a}/{d}/train/a.bin", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("method override header", "reader", "GET", f"/{a}/{d}/train/a.bin", {"X-HTTP-Method-Override": "DELETE"}, b"", {200}, ""),
        ("the blob is still there after the override", "reader", "HEAD", f"/{a}/{d}/train/a.bin", {}, b"", {200}, ""),
        ("injected principal header", "nobody", "GET", f"/{a}/{d}/train/a.bin",
         {"x-ms-client-principal-id": "owner", "x-ms-client-principal-name": "owner"}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("no role at all", "nobody", "GET", f"/{a}/{d}/train/a.bin", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("no role: account information", "nobody", "GET", f"/{a}/?restype=account&comp=properties", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("no role: find blobs by tags", "nobody", "GET", f"/{a}?comp=blobs&where=%22project%22%3D%27alpha%27", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("tags read without the tags action", "reader", "GET", f"/{a}/{d}/tagged/alpha.bin?comp=tags", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        # A path-prefix condition: reads only under public/.
        ("prefix: reads under public/", "prefix", "GET", f"/{a}/{d}/public/c.bin", {}, b"", {200}, ""),
        ("prefix: reads outside public/", "prefix", "GET", f"/{a}/{d}/secret/b.bin", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("prefix: a name that only starts like it (publicx/)", "prefix", "GET", f"/{a}/{d}/publicx/d.bin", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("prefix: dot-dot out of public/", "prefix", "GET", f"/{a}/{d}/public/../secret/b.bin", {}, b"", {400, 403, 404}, ""),
        ("prefix: encoded dot-dot out of public/", "prefix", "GET", f"/{a}/{d}/public/%2e%2e/secret/b.bin", {}, b"", {400, 403, 404}, ""),
        ("prefix: encoded slashes out of public/", "prefix", "GET", f"/{a}/{d}/public%2F..%2Fsecret%2Fb.bin", {}, b"", {400, 403, 404}, ""),
        ("prefix: the prefix in another case", "prefix", "GET", f"/{a}/{d}/PUBLIC/c.bin", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("prefix: properties outside public/", "prefix", "HEAD", f"/{a}/{d}/secret/b.bin", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("prefix: a range outside public/", "prefix", "GET", f"/{a}/{d}/secret/b.bin", {"x-ms-range": "bytes=0-3"}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("prefix: block list outside public/", "prefix", "GET", f"/{a}/{d}/secret/b.bin?comp=blocklist", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        # A container-name condition at account scope.
        ("name: reads the named container", "named", "GET", f"/{a}/{d}/train/a.bin", {}, b"", {200}, ""),
        ("name: reads a container whose name extends it", "named", "GET", f"/{a}/{dx}/y.bin", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("name: reads another container", "named", "GET", f"/{a}/{o}/z.bin", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        # A blob index tag condition.
        ("tag: reads a blob tagged project=alpha", "tagged", "GET", f"/{a}/{d}/tagged/alpha.bin", {}, b"", {200}, ""),
        ("tag: reads a blob tagged project=beta", "tagged", "GET", f"/{a}/{d}/tagged/beta.bin", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("tag: reads an untagged blob", "tagged", "GET", f"/{a}/{d}/tagged/none.bin", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("tag: the key in another case (Project)", "tagged", "GET", f"/{a}/{d}/tagged/upper.bin", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        # A write-prefix condition: writes and deletes only under train/.
        ("writer: writes under train/", "writer", "PUT", f"/{a}/{d}/train/new.bin", put, b"new", {201}, ""),
        ("writer: writes outside train/", "writer", "PUT", f"/{a}/{d}/secret/new.bin", put, b"x", {403}, "AuthorizationPermissionMismatch"),
        ("writer: a name that only starts like it (trainx/)", "writer", "PUT", f"/{a}/{d}/trainx/new.bin", put, b"x", {403}, "AuthorizationPermissionMismatch"),
        ("writer: dot-dot out of train/", "writer", "PUT", f"/{a}/{d}/train/../secret/new.bin", put, b"x", {400, 403}, ""),
        ("writer: a block outside train/", "writer", "PUT", f"/{a}/{d}/secret/new.bin?comp=block&blockid=QUFBQQ%3D%3D", {}, b"x", {403}, "AuthorizationPermissionMismatch"),
        ("writer: a block list outside train/", "writer", "PUT", f"/{a}/{d}/secret/new.bin?comp=blocklist", {},
         b"<BlockList><Latest>QUFBQQ==</Latest></BlockList>", {403}, "AuthorizationPermissionMismatch"),
        ("writer: metadata outside train/", "writer", "PUT", f"/{a}/{d}/secret/b.bin?comp=metadata", {"x-ms-meta-a": "b"}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("writer: properties outside train/", "writer", "PUT", f"/{a}/{d}/secret/b.bin?comp=properties",
         {"x-ms-blob-content-type": "text/evil"}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("writer: deletes outside train/", "writer", "DELETE", f"/{a}/{d}/secret/b.bin", {}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("writer: tags without the tags action", "writer", "PUT", f"/{a}/{d}/train/a.bin?comp=tags", {},
         b"<Tags><TagSet><Tag><Key>project</Key><Value>alpha</Value></Tag></TagSet></Tags>", {403}, "AuthorizationPermissionMismatch"),
        # Azure authorizes x-ms-tags on upload as a write (sub-operation Blob.Write.WithTagHeaders).
        ("writer: tags set on upload are part of the write", "writer", "PUT", f"/{a}/{d}/train/tagged.bin",
         {**put, "x-ms-tags": "project=alpha"}, b"x", {201}, ""),
        ("writer: tags set on upload outside train/", "writer", "PUT", f"/{a}/{d}/secret/tagged.bin",
         {**put, "x-ms-tags": "project=alpha"}, b"x", {403}, "AuthorizationPermissionMismatch"),
        ("writer: copy from a container it cannot read", "writer", "PUT", f"/{a}/{d}/train/copy.bin",
         {"x-ms-copy-source": f"https://{raw.host}:{raw.port}/{a}/{o}/z.bin"}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("writer: copy into a path it cannot write", "writer", "PUT", f"/{a}/{d}/secret/copy.bin",
         {"x-ms-copy-source": f"https://{raw.host}:{raw.port}/{a}/{d}/train/a.bin"}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("writer: copy into another container", "writer", "PUT", f"/{a}/{o}/copy.bin",
         {"x-ms-copy-source": f"https://{raw.host}:{raw.port}/{a}/{d}/train/a.bin"}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("writer: copy within its prefix", "writer", "PUT", f"/{a}/{d}/train/copy.bin",
         {"x-ms-copy-source": f"https://{raw.host}:{raw.port}/{a}/{d}/train/a.bin"}, b"", {202}, ""),
        # Leases: the owner holds one; nobody else writes past it.
        ("owner: acquires a lease", "owner", "PUT", f"/{a}/{d}/train/leased.bin?comp=lease",
         {"x-ms-lease-action": "acquire", "x-ms-lease-duration": "-1", "x-ms-proposed-lease-id": lease_id}, b"", {201}, ""),
        ("writer: writes a leased blob without the lease id", "writer", "PUT", f"/{a}/{d}/train/leased.bin", put, b"x", {412}, "LeaseIdMissing"),
        ("writer: writes a leased blob with a wrong lease id", "writer", "PUT", f"/{a}/{d}/train/leased.bin",
         {**put, "x-ms-lease-id": str(uuid.uuid4())}, b"x", {412}, "LeaseIdMismatchWithBlobOperation"),
        ("writer: deletes a leased blob without the lease id", "writer", "DELETE", f"/{a}/{d}/train/leased.bin", {}, b"", {412}, "LeaseIdMissing"),
        ("reader: breaks the lease", "reader", "PUT", f"/{a}/{d}/train/leased.bin?comp=lease", {"x-ms-lease-action": "break"}, b"", {403}, "AuthorizationPermissionMismatch"),
        ("nobody: acquires a lease", "nobody", "PUT", f"/{a}/{d}/train/a.bin?comp=lease",
         {"x-ms-lease-action": "acquire", "x-ms-lease-duration": "15"}, b"", {403}, "AuthorizationPermissionMismatch"),
    ]

    report = Report("security", "Authorization boundaries (gate)")
    for name, who, method, path, headers, body, statuses, code in cases:
        status, error_code, _, _ = raw.send(method, path, t[who], headers, body)
        want = "/".join(str(s) for s in sorted(statuses)) + (f" {code}" if code else "")
        report.check(name, want, f"{status} {error_code}".strip(), status in statuses and (not code or error_code == code))

    # The secret's bytes never left the gate, whatever the path trick.
    status, _, data, _ = raw.send("GET", f"/{a}/{d}/secret/b.bin", t["owner"])
    report.check("owner: the secret blob is unchanged", "200 with its original bytes", f"{status} {data[:20]!r}",
                 status == 200 and data == b"data/secret/b.bin")

    # Batch: each part is authorized on its own; parts must stay in the container.
    codes, status = batch(t["writer"], [f"/{a}/{d}/train/new.bin", f"/{a}/{d}/secret/b.bin"])
    report.check("batch: one allowed and one denied delete", "202 with parts 202 and 403", f"{status} {codes}",
                 status == 202 and codes == [202, 403])
    codes, status = batch(t["writer"], [f"/{a}/{o}/z.bin"])
    report.check("batch: a part in another container", "the part refused (400 or 403)", f"{status} {codes}",
                 status in (202, 400) and all(c in (400, 403) for c in codes))
    report.finish()
    assert len(report.cases) >= 60
