"""Structural checks of the rendered Kubernetes manifests (run by deploy/validate.sh).

The JSON schemas say a manifest is well formed; these say it is the deployment we
mean: probes on the gate's real health listener, every flag one that the binary
has, the authority only in dev, Entra ID in production, workload identity on the
training Job exactly as the webhook injects it, and the pod security settings.

Rendered output comes from $ENTRAFLOW_RENDERED (one <overlay>.yaml each, as
validate.sh writes them); without it the overlays are rendered here with
$KUBECTL or kubectl. Flag checks need the binary ($ENTRAFLOW_BIN).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
OVERLAYS = ["dev", "production", "azure-storage", "training"]
GATE_OVERLAYS = ["dev", "production", "azure-storage"]
ENTRA = "https://login.microsoftonline.com"
WI_MOUNT = "/var/run/secrets/azure/tokens"
WI_FILE = "azure-identity-token"
WI_ENV = ["AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST"]


def kubectl() -> str:
    found = os.environ.get("KUBECTL") or shutil.which("kubectl") or str(REPO / ".venv/bin/kubectl")
    if not Path(found).exists() and not shutil.which(found):
        pytest.fail("no kubectl to render with: set KUBECTL or run deploy/validate.sh")
    return found


def render(overlay: str) -> str:
    rendered = os.environ.get("ENTRAFLOW_RENDERED")
    if rendered:
        return (Path(rendered) / f"{overlay}.yaml").read_text()
    return subprocess.run([kubectl(), "kustomize", str(DEPLOY / "overlays" / overlay)],
                          check=True, capture_output=True, text=True).stdout


_cache: dict[str, list[dict]] = {}


def objects(overlay: str) -> list[dict]:
    if overlay not in _cache:
        _cache[overlay] = [doc for doc in yaml.safe_load_all(render(overlay)) if doc]
    return _cache[overlay]


def find(overlay: str, kind: str, name: str) -> dict:
    for obj in objects(overlay):
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"{overlay}: no {kind}/{name}")


def config_map(overlay: str, name: str) -> dict:
    """A generated ConfigMap by its name before kustomize's hash suffix."""
    matches = [o for o in objects(overlay) if o["kind"] == "ConfigMap"
               and re.fullmatch(re.escape(name) + r"-[a-z0-9]{10}", o["metadata"]["name"])]
    assert len(matches) == 1, f"{overlay}: {len(matches)} ConfigMaps named {name}-<hash>"
    return matches[0]["data"]


def container(pod_spec: dict, name: str, init: bool = False) -> dict:
    for c in pod_spec.get("initContainers" if init else "containers", []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name}")


def flags(args: list[str]) -> dict[str, str]:
    """`--name=value` args as {name: value} (the manifests always use that form)."""
    out = {}
    for arg in args:
        if arg.startswith("--"):
            name, sep, value = arg[2:].partition("=")
            assert sep, f"flag {arg} without '=value': write it as --flag=value"
            out[name] = value
    return out


def env(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def port_number(c: dict, name: str) -> int:
    for p in c.get("ports", []):
        if p["name"] == name:
            return p["containerPort"]
    raise AssertionError(f"container {c['name']} has no port named {name}")


@pytest.mark.parametrize("overlay", GATE_OVERLAYS)
def test_probes_point_at_the_gate_health_listener(overlay):
    pod = find(overlay, "Deployment", "entraflow-gate")["spec"]["template"]["spec"]
    gate = container(pod, "gate")
    args = flags(gate["args"])
    host, _, port = args["health-bind"].rpartition(":")
    assert host == "0.0.0.0", "the kubelet probes the pod's address, not its loopback"
    assert port_number(gate, "health") == int(port)
    ready, live = gate["readinessProbe"]["httpGet"], gate["livenessProbe"]["httpGet"]
    assert (ready["path"], ready["port"]) == ("/readyz", "health")
    assert (live["path"], live["port"]) == ("/livez", "health")
    # The Blob port: the startup probe and the Service both reach the port
    # named https, which is the one --port sets.
    assert port_number(gate, "https") == int(args["port"])
    assert args["bind"] == "0.0.0.0", "the Service reaches the pod's address, not its loopback"
    assert gate["startupProbe"]["tcpSocket"]["port"] == "https"
    service = find(overlay, "Service", "entraflow-gate")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["https"]


@pytest.mark.parametrize("overlay", GATE_OVERLAYS)
def test_gate_args_come_from_the_config_map(overlay):
    deployment = find(overlay, "Deployment", "entraflow-gate")
    gate = container(deployment["spec"]["template"]["spec"], "gate")
    config = config_map(overlay, "entraflow-gate-config")
    for value in flags(gate["args"]).values():
        for var in re.findall(r"\$\(([A-Z_]+)\)", value):
            assert var in config or var in env(gate), f"$({var}) is defined nowhere"
    assert env(gate)["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert flags(gate["args"])["instance"] == "$(POD_NAME)", "one audit chain per replica"


@pytest.mark.parametrize("overlay", ["production", "azure-storage"])
def test_production_trusts_entra_id_and_takes_postgres_from_a_secret(overlay):
    config = config_map(overlay, "entraflow-gate-config")
    assert config["GATE_TRUSTED_AUTHORITY"] == ENTRA
    gate = container(find(overlay, "Deployment", "entraflow-gate")["spec"]["template"]["spec"], "gate")
    audit = env(gate)["ENTRAFLOW_AUDIT_STORE"]
    assert audit["valueFrom"]["secretKeyRef"] == {"name": "entraflow-gate-postgres", "key": "url"}
    assert "value" not in audit


def test_dev_keeps_one_replica_with_a_local_audit_log():
    hpa = find("dev", "HorizontalPodAutoscaler", "entraflow-gate")["spec"]
    assert hpa["minReplicas"] == hpa["maxReplicas"] == 1
    gate = container(find("dev", "Deployment", "entraflow-gate")["spec"]["template"]["spec"], "gate")
    assert env(gate)["ENTRAFLOW_AUDIT_STORE"] == {
        "name": "ENTRAFLOW_AUDIT_STORE", "value": "sqlite:///var/lib/entraflow/data/audit.db"}
    config = config_map("dev", "entraflow-gate-config")
    assert config["GATE_TRUSTED_AUTHORITY"].startswith("https://entraflow-authority.")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_authority_is_only_in_dev(overlay):
    authorities = [o for o in objects(overlay) if o["metadata"]["name"] == "entraflow-authority"]
    runs_authority = [
        o["metadata"]["name"] for o in objects(overlay) if o["kind"] in ("Deployment", "Job")
        for c in o["spec"]["template"]["spec"]["containers"] if c.get("args", [None])[0] == "authority"
    ]
    if overlay == "dev":
        assert {o["kind"] for o in authorities} == {"Deployment", "Service"}
        assert runs_authority == ["entraflow-authority"]
    else:
        assert authorities == [] and runs_authority == []


def test_the_hpa_owns_the_gate_replica_count_and_the_pdb_covers_its_pods():
    for overlay in GATE_OVERLAYS:
        deployment = find(overlay, "Deployment", "entraflow-gate")
        assert "replicas" not in deployment["spec"], "an HPA-managed Deployment sets no replicas"
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        hpa = find(overlay, "HorizontalPodAutoscaler", "entraflow-gate")
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": "entraflow-gate"}
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
        pdb = find(overlay, "PodDisruptionBudget", "entraflow-gate")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def pod_specs(overlay: str):
    for obj in objects(overlay):
        if obj["kind"] in ("Deployment", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_non_root_read_only_and_drops_all_capabilities(overlay):
    for name, pod in pod_specs(overlay):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod.get("automountServiceAccountToken") is False, name
        assert not any("hostPath" in v for v in pod.get("volumes", [])), name
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert "add" not in sc["capabilities"], (name, c["name"])


def assert_workload_identity(pod_template: dict, service_account: dict, c: dict, client_id: str):
    """The pod as the azure-workload-identity webhook would make it."""
    assert pod_template["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    pod = pod_template["spec"]
    assert pod["serviceAccountName"] == service_account["metadata"]["name"]
    assert service_account["metadata"]["annotations"]["azure.workload.identity/client-id"] == client_id
    [volume] = [v for v in pod["volumes"] if v["name"] == WI_FILE]
    [source] = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["audience"] == "api://AzureADTokenExchange"
    assert token["path"] == WI_FILE
    assert 3600 <= token["expirationSeconds"] <= 86400, "the webhook's allowed range"
    [mount] = [m for m in c["volumeMounts"] if m["name"] == WI_FILE]
    assert mount == {"name": WI_FILE, "mountPath": WI_MOUNT, "readOnly": True}
    variables = env(c)
    assert all(name in variables for name in WI_ENV), sorted(variables)
    assert variables["AZURE_FEDERATED_TOKEN_FILE"]["value"] == f"{WI_MOUNT}/{WI_FILE}"
    assert variables["AZURE_CLIENT_ID"]["value"] == client_id


@pytest.mark.parametrize("overlay", ["dev", "training"])
def test_training_job_has_workload_identity_as_the_webhook_injects_it(overlay):
    job = find(overlay, "Job", "tensorflow-train")
    template = job["spec"]["template"]
    train = container(template["spec"], "train")
    identity = config_map(overlay, "trainer-identity")
    assert_workload_identity(template, find(overlay, "ServiceAccount", "trainer"), train, identity["clientId"])
    variables = env(train)
    assert variables["AZURE_TENANT_ID"]["value"] == identity["tenantId"]
    assert variables["AZURE_AUTHORITY_HOST"]["value"] == identity["authorityHost"]
    assert variables["ENTRAFLOW_BLOB_ENDPOINT"]["value"] == identity["blobEndpoint"]
    assert not any("from-trainer-identity" in yaml.safe_dump(o) for o in objects(overlay)), \
        "a replacement did not reach its target"
    # No key material reaches the job: the gates' CA arrives as a ConfigMap.
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert "configMap" in volumes["gate-ca"] and not any("secret" in v for v in volumes.values())
    if overlay == "training":
        assert identity["authorityHost"] == ENTRA + "/", "the webhook's value for the public cloud"


def test_the_azure_storage_gate_has_its_own_workload_identity():
    deployment = find("azure-storage", "Deployment", "entraflow-gate")
    config = config_map("azure-storage", "entraflow-gate-config")
    gate = container(deployment["spec"]["template"]["spec"], "gate")
    # The values come through envFrom, so check them in the ConfigMap.
    gate = {**gate, "env": gate["env"] + [{"name": k, "value": v} for k, v in config.items()]}
    assert_workload_identity(deployment["spec"]["template"], find("azure-storage", "ServiceAccount",
                             "entraflow-gate"), gate, config["AZURE_CLIENT_ID"])
    assert config["GATE_BACKEND"].startswith("az://")
    # object_store appends "/{tenant}/oauth2/v2.0/token" to the host as given.
    assert not config["AZURE_AUTHORITY_HOST"].endswith("/")
    for overlay in ("dev", "production"):
        labels = find(overlay, "Deployment", "entraflow-gate")["spec"]["template"]["metadata"]["labels"]
        assert "azure.workload.identity/use" not in labels


def entraflow_bin() -> str:
    binary = os.environ.get("ENTRAFLOW_BIN", str(REPO / "target/debug/entraflow"))
    if not Path(binary).exists():
        pytest.skip(f"no entraflow binary at {binary} (set ENTRAFLOW_BIN)")
    return binary


def help_flags(*command: str) -> set[str]:
    text = subprocess.run([entraflow_bin(), *command, "--help"], check=True,
                          capture_output=True, text=True).stdout
    return set(re.findall(r"--([a-z][a-z0-9-]*)", text))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_flag_in_the_manifests_exists_in_the_binary(overlay):
    for name, pod in pod_specs(overlay):
        for c in pod["containers"]:
            args = c.get("args", [])
            if c.get("command") or not args:
                continue  # not the entraflow entrypoint
            command = [a for a in args if not a.startswith("--")][:2]
            unknown = set(flags(args)) - help_flags(*command)
            assert not unknown, f"{name}/{c['name']}: `entraflow {' '.join(command)}` has no {sorted(unknown)}"


def run_prepare(tmp_path: Path, **config: str) -> subprocess.CompletedProcess:
    """deploy/base/prepare.sh against a temporary tree shaped like the pod's mounts."""
    etc = tmp_path / "etc"
    for sub in ("ca", "audit-key", "policy"):
        (etc / sub).mkdir(parents=True, exist_ok=True)
    # The gates' CA made as docs/scale-out.md makes it (P-256, PKCS#8).
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(etc / "ca/tls.key"), "-out", str(etc / "ca/tls.crt"),
                    "-days", "3650", "-subj", "/CN=entraflow gate CA",
                    "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"], check=True, capture_output=True)
    # A real checkpoint key, made as docs/scale-out.md says: the policy load
    # opens the audit log with it.
    keys = tmp_path / "keys"
    keys.mkdir()
    subprocess.run([entraflow_bin(), "--data-dir", str(keys), "audit", "key", "--name", "entraflow-gate"],
                   check=True, capture_output=True)
    for name in ("audit-key.pk8", "audit-key.pub"):
        (etc / "audit-key" / name).write_bytes((keys / name).read_bytes())
    (etc / "policy/assignments.sh").write_text(
        "entraflow role assignment create --only-show-errors"
        " --assignee-object-id 11111111-2222-3333-4444-555555555555 --assignee-principal-type ServicePrincipal"
        " --role 'Storage Blob Data Reader' --scope"
        " /subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct1"
        "/blobServices/default/containers/train >/dev/null\n")
    binary = entraflow_bin()
    if Path(binary).name != "entraflow":
        pytest.skip("prepare.sh calls `entraflow` by name")
    values = dict(config_map("production", "entraflow-gate-config"))
    values.update(config)
    environment = {"PATH": f"{Path(binary).parent}:/usr/bin:/bin", **values,
                   "ENTRAFLOW_DATA_DIR": str(tmp_path / "data"), "ENTRAFLOW_PREPARE_ETC": str(etc)}
    return subprocess.run(["sh", str(DEPLOY / "base/prepare.sh")], env=environment,
                          capture_output=True, text=True)


def test_prepare_refuses_placeholders(tmp_path):
    result = run_prepare(tmp_path, GATE_BACKEND="az://train")
    assert result.returncode == 1
    assert "GATE_TENANT" in result.stderr and "GATE_ACCOUNT" in result.stderr
    assert not (tmp_path / "data").exists()


def test_prepare_refuses_the_scratch_backend_for_several_replicas(tmp_path):
    filled = {"GATE_TENANT": "t", "GATE_ACCOUNT": "a", "GATE_SUBSCRIPTION": "s", "GATE_RESOURCE_GROUP": "rg"}
    result = run_prepare(tmp_path, **filled)
    assert result.returncode == 1 and "scratch volume" in result.stderr


def test_prepare_lays_out_the_data_directory_and_loads_the_policy(tmp_path):
    filled = {"GATE_TENANT": "t", "GATE_ACCOUNT": "a", "GATE_SUBSCRIPTION": "s", "GATE_RESOURCE_GROUP": "rg",
              "GATE_BACKEND": "az://train"}
    result = run_prepare(tmp_path, **filled)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "data"
    modes = {p.name: p.stat().st_mode & 0o777 for p in data.iterdir() if p.is_file()}
    assert data.stat().st_mode & 0o777 == 0o700
    assert modes["ca-key.pem"] == modes["audit-key.pk8"] == 0o600
    assert modes["ca.pem"] == modes["audit-key.pub"] == 0o644
    assert (data / "ca-key.pem").read_bytes() == (tmp_path / "etc/ca/tls.key").read_bytes()
    assert "11111111-2222-3333-4444-555555555555" in result.stdout
    assert "Storage Blob Data Reader" in result.stdout


def test_the_schema_validation_is_not_vacuous(tmp_path):
    """A rendered gate Deployment with its readiness probe's port removed must fail."""
    deployment = find("production", "Deployment", "entraflow-gate")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    del container(broken["spec"]["template"]["spec"], "gate")["readinessProbe"]["httpGet"]["port"]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    validate = REPO / ".venv/bin/kubernetes-validate"
    version = os.environ.get("K8S_VERSIONS", "1.37.0").split()[0]
    result = subprocess.run([str(validate), "-k", version, "--strict", str(path)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "'port' is a required property" in result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_dev_pod_command_line_starts_a_gate_that_answers_its_probes(tmp_path):
    """The gate container's args, expanded as the kubelet expands them, run the real
    binary: the flags parse, the gate comes up on the data directory prepare.sh laid
    out, and the probe paths answer on the health port (ports moved to free ones, the
    scratch backend into the temporary tree)."""
    filled = {"GATE_TENANT": "00000000-0000-0000-0000-0000000000aa", "GATE_ACCOUNT": "acct1",
              "GATE_SUBSCRIPTION": "00000000-0000-0000-0000-000000000001", "GATE_RESOURCE_GROUP": "rg",
              "GATE_BACKEND": f"file://{tmp_path}/blobs", "GATE_ALLOW_SCRATCH_BACKEND": "true"}
    assert run_prepare(tmp_path, **filled).returncode == 0
    pod = find("dev", "Deployment", "entraflow-gate")["spec"]["template"]["spec"]
    gate = container(pod, "gate")
    variables = {**config_map("dev", "entraflow-gate-config"), **filled, "POD_NAME": "entraflow-gate-test",
                 "POD_NAMESPACE": "entraflow"}
    blob, health = free_port(), free_port()
    args = []
    for arg in gate["args"]:
        arg = re.sub(r"\$\(([A-Z_]+)\)", lambda m: variables[m.group(1)], arg)
        arg = arg.replace("--port=10443", f"--port={blob}").replace(":9090", f":{health}")
        args.append(arg)
    environment = {"PATH": "/usr/bin:/bin", "ENTRAFLOW_DATA_DIR": str(tmp_path / "data"),
                   "ENTRAFLOW_AUDIT_STORE": f"sqlite://{tmp_path}/data/audit.db"}
    log = open(tmp_path / "gate.log", "w")
    proc = subprocess.Popen([entraflow_bin(), *args], env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/livez", timeout=2) as answer:
                    assert answer.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, (tmp_path / "gate.log").read_text()
                assert time.monotonic() < deadline, "the gate did not answer /livez in 30 s"
                time.sleep(0.2)
        # Not ready: the tenant's JWKS cannot be fetched from the (absent)
        # authority, and the answer says so.
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=5)
            raise AssertionError("/readyz answered 200 with no reachable authority")
        except urllib.error.HTTPError as answer:
            assert answer.code == 503
            checks = json.loads(answer.read())["checks"]
        assert checks["jwks"]["ok"] is False and checks["policy"]["ok"] and checks["audit"]["ok"]
        # The Blob port serves a certificate issued by the CA from the Secret.
        # A client asking for the Service's name verifies it.
        context = ssl.create_default_context(cafile=str(tmp_path / "etc/ca/tls.crt"))
        with socket.create_connection(("127.0.0.1", blob), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="entraflow-gate.entraflow.svc") as tls:
                issuer = dict(pair[0] for pair in tls.getpeercert()["issuer"])
        assert issuer["commonName"] == "entraflow gate CA"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
