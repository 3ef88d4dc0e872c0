//! The gate's ARM-shaped admin API against a real authority: role assignments
//! created over HTTPS take effect on Blob requests at once, only holders of
//! `Microsoft.Authorization/roleAssignments/write` may make them, tokens must be
//! for Azure Resource Manager, and every request is audited.

use entraflow_rbac::builtin;
use entraflow_testkit::{STORAGE_SCOPE, Stack};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ARM_SCOPE: &str = "https://management.azure.com/.default";
const API: &str = "api-version=2022-04-01";
const TRAIN_ONLY: &str = "((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'} AND NOT SubOperationMatches{'Blob.List'})) OR (@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike 'train/*'))";

struct Admin<'a> {
    env: &'a Stack,
    base: String,
}

impl<'a> Admin<'a> {
    fn new(env: &'a Stack) -> Self {
        // The gate publishes the admin API's base URL beside the Blob endpoint.
        let published =
            entraflow_gate::read_env_file(&env.data_dir().join(entraflow_gate::GATE_ENV_FILE));
        let base = published["ENTRAFLOW_ADMIN_ENDPOINT"].clone();
        assert_eq!(
            format!("{base}/{}", entraflow_gate::DEFAULT_ACCOUNT),
            env.endpoint
        );
        Self { env, base }
    }

    /// `<scope>/providers/Microsoft.Authorization/<rest>?api-version=...`
    fn url(&self, scope: &str, rest: &str) -> String {
        let sep = if rest.contains('?') { '&' } else { '?' };
        format!(
            "{}{}/providers/Microsoft.Authorization/{rest}{sep}{API}",
            self.base,
            scope.trim_end_matches('/')
        )
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.env.authority.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        assert!(resp.headers().contains_key("x-ms-request-id"));
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        };
        (status, value)
    }
}

fn assignment_body(role_id: &str, principal: &str, condition: Option<&str>) -> Value {
    let mut props = json!({
        "roleDefinitionId": role_id,
        "principalId": principal,
        "principalType": "ServicePrincipal",
        "description": "training job reads its container",
    });
    if let Some(c) = condition {
        props["condition"] = c.into();
        props["conditionVersion"] = "2.0".into();
    }
    json!({ "properties": props })
}

async fn get_blob(env: &Stack, token: &str, path: &str) -> StatusCode {
    env.request(Method::GET, path, Some(token))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_grants_a_role_over_https_and_the_gate_applies_it_at_once() {
    let env = Stack::start().await;
    let api = Admin::new(&env);
    let owner = env.app("owner");
    let job = env.app("job");
    let outsider = env.app("outsider");
    // Bootstrap: the first Owner comes from the role store itself (the CLI path).
    env.assign(&owner.oid, "Owner", &env.account_scope);
    env.assign(
        &owner.oid,
        "Storage Blob Data Contributor",
        &env.account_scope,
    );
    env.wait_for_policy().await;

    let owner_storage = env.token(&owner, STORAGE_SCOPE).await;
    env.create_container(&owner_storage, "data").await;
    for name in ["train/a.txt", "secret/b.txt"] {
        let resp = env
            .put_blob(&format!("/data/{name}"), &owner_storage, "bytes")
            .await;
        assert_eq!(resp.status(), 201);
    }
    let job_storage = env.token(&job, STORAGE_SCOPE).await;
    assert_eq!(get_blob(&env, &job_storage, "/data/train/a.txt").await, 403);

    let owner_arm = env.token(&owner, ARM_SCOPE).await;
    let container = env.scope("/blobServices/default/containers/data");
    let reader_id = format!(
        "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{}",
        entraflow_gate::DEFAULT_SUBSCRIPTION,
        builtin::STORAGE_BLOB_DATA_READER
    );
    let guid = "9f0e6a52-3b4c-4d7e-8f90-1a2b3c4d5e6f";
    let url = api.url(&container, &format!("roleAssignments/{guid}"));
    let body = assignment_body(&reader_id, &job.oid, Some(TRAIN_ONLY));

    // Create: 201 with ARM's shape.
    let (status, created) = api
        .call(Method::PUT, &url, Some(&owner_arm), Some(body.clone()))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], guid);
    assert_eq!(created["type"], "Microsoft.Authorization/roleAssignments");
    assert_eq!(
        created["id"],
        format!("{container}/providers/Microsoft.Authorization/roleAssignments/{guid}")
    );
    let props = &created["properties"];
    assert_eq!(props["scope"], container.as_str());
    assert_eq!(props["principalId"], job.oid.as_str());
    assert_eq!(props["principalType"], "ServicePrincipal");
    assert_eq!(props["roleDefinitionId"], reader_id.as_str());
    assert_eq!(props["condition"], TRAIN_ONLY);
    assert_eq!(props["conditionVersion"], "2.0");
    assert!(props["createdOn"].as_str().unwrap().starts_with("20"));

    // The gate applies it to the very next Blob request, condition included.
    assert_eq!(get_blob(&env, &job_storage, "/data/train/a.txt").await, 200);
    assert_eq!(
        get_blob(&env, &job_storage, "/data/secret/b.txt").await,
        403
    );

    // PUT is idempotent; the same grant under another GUID is a conflict.
    let (status, again) = api
        .call(Method::PUT, &url, Some(&owner_arm), Some(body.clone()))
        .await;
    assert_eq!(status, 200, "{again}");
    let other = api.url(
        &container,
        "roleAssignments/0d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    );
    let (status, dup) = api
        .call(Method::PUT, &other, Some(&owner_arm), Some(body.clone()))
        .await;
    assert_eq!(status, 409, "{dup}");
    assert_eq!(dup["error"]["code"], "RoleAssignmentExists");

    // List (filtered, from the account scope: assignments below are listed) and get.
    let list_url = api.url(
        &env.account_scope,
        &format!("roleAssignments?$filter=principalId%20eq%20'{}'", job.oid),
    );
    let (status, list) = api
        .call(Method::GET, &list_url, Some(&owner_arm), None)
        .await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [guid]);
    let at_scope = api.url(&env.account_scope, "roleAssignments?$filter=atScope()");
    let (_, list) = api
        .call(Method::GET, &at_scope, Some(&owner_arm), None)
        .await;
    assert!(
        list["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["name"] != guid),
        "atScope() lists nothing below the scope: {list}"
    );
    let (status, one) = api.call(Method::GET, &url, Some(&owner_arm), None).await;
    assert_eq!((status, &one["name"]), (StatusCode::OK, &json!(guid)));

    // Someone without roleAssignments/write is refused as ARM refuses.
    let outsider_arm = env.token(&outsider, ARM_SCOPE).await;
    let grab = api.url(
        &env.account_scope,
        "roleAssignments/5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d",
    );
    let (status, denied) = api
        .call(
            Method::PUT,
            &grab,
            Some(&outsider_arm),
            Some(assignment_body(builtin::OWNER, &outsider.oid, None)),
        )
        .await;
    assert_eq!(status, 403, "{denied}");
    assert_eq!(denied["error"]["code"], "AuthorizationFailed");
    let message = denied["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "The client '{0}' with object id '{0}' does not have authorization to perform action 'Microsoft.Authorization/roleAssignments/write' over scope '{1}'",
            outsider.oid, env.account_scope
        )),
        "{message}"
    );
    assert!(message.contains("User Access Administrator"), "{message}");
    // ... and the job, who can read data, cannot read assignments either.
    let job_arm = env.token(&job, ARM_SCOPE).await;
    let (status, _) = api.call(Method::GET, &list_url, Some(&job_arm), None).await;
    assert_eq!(status, 403);

    // Delete: 200 with what was deleted, access gone at once; again: 204.
    let (status, deleted) = api.call(Method::DELETE, &url, Some(&owner_arm), None).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["name"], guid);
    assert_eq!(get_blob(&env, &job_storage, "/data/train/a.txt").await, 403);
    let (status, _) = api.call(Method::DELETE, &url, Some(&owner_arm), None).await;
    assert_eq!(status, 204);

    // The audit log has every one of them, durable before each response.
    let records = env.audit_records().await;
    let admin: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["resource"]
                .as_str()
                .is_some_and(|s| s.contains("/providers/Microsoft.Authorization/"))
        })
        .collect();
    let created_rec = admin
        .iter()
        .find(|r| r["event_type"] == "admin.change" && r["status"] == 201)
        .expect("an admin.change record for the create");
    assert_eq!(created_rec["decision"], "allow");
    assert_eq!(created_rec["principal"]["oid"], owner.oid.as_str());
    assert_eq!(
        created_rec["action"],
        "Microsoft.Authorization/roleAssignments/write"
    );
    assert_eq!(created_rec["role_name"], "Owner");
    assert_eq!(created_rec["resource"], created["id"]);
    let detail = created_rec["detail"].as_str().unwrap();
    assert!(
        detail.contains("Storage Blob Data Reader") && detail.contains(&job.oid),
        "{detail}"
    );
    let denied_rec = admin
        .iter()
        .find(|r| {
            r["event_type"] == "authz.denied" && r["principal"]["oid"] == outsider.oid.as_str()
        })
        .expect("an authz.denied record for the outsider");
    assert_eq!(denied_rec["status"], 403);
    assert!(denied_rec["assignment_id"].is_null(), "{denied_rec}");
    assert_eq!(
        denied_rec["action"],
        "Microsoft.Authorization/roleAssignments/write"
    );
    assert!(
        admin.iter().any(|r| r["event_type"] == "admin.change"
            && r["status"] == 200
            && r["detail"]
                .as_str()
                .unwrap()
                .starts_with("deleted role assignment")),
        "a record of the delete"
    );
    assert!(
        admin
            .iter()
            .any(|r| r["event_type"] == "admin.read" && r["decision"] == "allow")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_for_one_api_only_and_requests_are_checked_as_arm_checks_them() {
    let env = Stack::start().await;
    let api = Admin::new(&env);
    let owner = env.app("owner");
    env.assign(&owner.oid, "Owner", &env.account_scope);
    env.assign(&owner.oid, "Storage Blob Data Reader", &env.account_scope);
    env.wait_for_policy().await;
    let storage = env.token(&owner, STORAGE_SCOPE).await;
    let arm = env.token(&owner, ARM_SCOPE).await;
    let list = api.url(&env.account_scope, "roleAssignments");

    // A Storage token on the admin API: 401, and the ARM challenge.
    let resp = env
        .authority
        .http
        .get(&list)
        .bearer_auth(&storage)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("management.azure.com")
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationTokenAudience");
    let (status, body) = api.call(Method::GET, &list, None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("AuthenticationFailed"))
    );

    // An ARM token on a Blob path: 401 as Azure Storage words it.
    let resp = env
        .request(Method::GET, "?comp=list", Some(&arm))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["x-ms-error-code"],
        "InvalidAuthenticationInfo"
    );
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Audience validation failed")
    );
    // The same token works where it belongs.
    let (status, _) = api.call(Method::GET, &list, Some(&arm), None).await;
    assert_eq!(status, 200);

    // A condition that does not parse: 400 InvalidCondition with its position.
    let url = api.url(
        &env.scope("/blobServices/default/containers/data"),
        "roleAssignments/1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
    );
    let bad = "(@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike 'train/*'";
    let (status, body) = api
        .call(
            Method::PUT,
            &url,
            Some(&arm),
            Some(assignment_body(
                builtin::STORAGE_BLOB_DATA_READER,
                &owner.oid,
                Some(bad),
            )),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "InvalidCondition");
    assert_eq!(body["error"]["target"], "properties.condition");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("line 1, column"), "{message}");

    // Unknown role, non-GUID name, missing api-version.
    let (status, body) = api
        .call(
            Method::PUT,
            &url,
            Some(&arm),
            Some(assignment_body(
                "00000000-1111-2222-3333-444444444444",
                &owner.oid,
                None,
            )),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("RoleDefinitionDoesNotExist"))
    );
    let (status, body) = api
        .call(
            Method::PUT,
            &api.url(&env.account_scope, "roleAssignments/not-a-guid"),
            Some(&arm),
            Some(assignment_body(builtin::OWNER, &owner.oid, None)),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidRoleAssignmentId"))
    );
    let no_version = list.split('?').next().unwrap();
    let (status, body) = api.call(Method::GET, no_version, Some(&arm), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("MissingApiVersionParameter"))
    );

    // Audit: the refused token and the bad condition are on record.
    let records = env.audit_records().await;
    assert!(records.iter().any(|r| {
        r["event_type"] == "authn.failed"
            && r["resource"]
                .as_str()
                .is_some_and(|s| s.ends_with("/roleAssignments"))
            && r["status"] == 401
    }));
    assert!(records.iter().any(|r| {
        r["event_type"] == "admin.change"
            && r["status"] == 400
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("InvalidCondition"))
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_roles_are_defined_and_assigned_through_the_api() {
    let env = Stack::start().await;
    let api = Admin::new(&env);
    let owner = env.app("owner");
    let job = env.app("job");
    env.assign(&owner.oid, "Owner", &env.account_scope);
    env.assign(
        &owner.oid,
        "Storage Blob Data Contributor",
        &env.account_scope,
    );
    env.wait_for_policy().await;
    let arm = env.token(&owner, ARM_SCOPE).await;

    let (status, owners) = api
        .call(
            Method::GET,
            &api.url(
                &env.account_scope,
                "roleDefinitions?$filter=roleName%20eq%20'Owner'",
            ),
            Some(&arm),
            None,
        )
        .await;
    assert_eq!(status, 200, "{owners}");
    assert_eq!(owners["value"][0]["name"], builtin::OWNER);
    assert_eq!(owners["value"].as_array().unwrap().len(), 1);

    let role = "7c6b5a4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d";
    let definition = json!({
        "name": role,
        "properties": {
            "roleName": "Training Data Writer",
            "description": "Writes blobs, cannot delete them",
            "type": "CustomRole",
            "permissions": [{
                "actions": [],
                "notActions": [],
                "dataActions": ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"],
                "notDataActions": ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"]
            }],
            "assignableScopes": [env.account_scope]
        }
    });
    let url = api.url(&env.account_scope, &format!("roleDefinitions/{role}"));
    let (status, created) = api
        .call(Method::PUT, &url, Some(&arm), Some(definition.clone()))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["properties"]["type"], "CustomRole");
    let (status, _) = api
        .call(Method::PUT, &url, Some(&arm), Some(definition))
        .await;
    assert_eq!(status, 200, "a second PUT updates");

    let owner_storage = env.token(&owner, STORAGE_SCOPE).await;
    env.create_container(&owner_storage, "data").await;
    let (status, body) = api
        .call(
            Method::PUT,
            &api.url(&env.account_scope, "roleAssignments/2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f"),
            Some(&arm),
            Some(json!({"properties": {"roleDefinitionId": created["id"], "principalId": job.oid, "expiresOn": "1d"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["properties"]["expiresOn"].is_string(), "{body}");

    let job_storage = env.token(&job, STORAGE_SCOPE).await;
    let put = env.put_blob("/data/x.bin", &job_storage, "x").await;
    assert_eq!(put.status(), 201);
    let delete = env
        .request(Method::DELETE, "/data/x.bin", Some(&job_storage))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 403, "NotDataActions removes delete");
}

#[tokio::test]
async fn an_account_named_like_an_arm_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = entraflow_gate::GateConfig::new(dir.path());
    config.authority_host = "https://127.0.0.1:1".into();
    config.tenants = vec!["t".into()];
    config.account = "subscriptions".into();
    let err = entraflow_gate::Gate::bind(config).await.unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
}

/// Finding (hardening issue): a principal with Owner on one container rewrote a
/// custom role assigned at the account, adding blob write, and then wrote to every
/// container. Changing a role needs write at every scope it is assignable at now,
/// not only at the new ones; and an assignment whose scope leaves the role's
/// assignable scopes stops granting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_an_owner_of_one_container_cannot_widen_a_role_assigned_at_the_account() {
    let env = Stack::start().await;
    let api = Admin::new(&env);
    let platform = env.app("platform");
    let attacker = env.app("attacker");
    env.assign(&platform.oid, "Owner", &env.account_scope);
    env.assign(
        &platform.oid,
        "Storage Blob Data Contributor",
        &env.account_scope,
    );
    env.wait_for_policy().await;
    let platform_storage = env.token(&platform, STORAGE_SCOPE).await;
    for c in ["mine", "theirs"] {
        env.create_container(&platform_storage, c).await;
    }
    let put = env
        .put_blob("/theirs/data.bin", &platform_storage, "theirs")
        .await;
    assert_eq!(put.status(), 201);

    // A custom reader role, assignable at the account and assigned there to the
    // attacker, who also owns one container.
    let platform_arm = env.token(&platform, ARM_SCOPE).await;
    let role = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d";
    let definition = |data_actions: Value, scopes: Value| {
        json!({ "properties": {
            "roleName": "Project Reader",
            "type": "CustomRole",
            "permissions": [{ "dataActions": data_actions }],
            "assignableScopes": scopes
        }})
    };
    let role_url = api.url(&env.account_scope, &format!("roleDefinitions/{role}"));
    let read = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
    let (status, body) = api
        .call(
            Method::PUT,
            &role_url,
            Some(&platform_arm),
            Some(definition(json!([read]), json!([env.account_scope]))),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mine = env.scope("/blobServices/default/containers/mine");
    env.assign(&attacker.oid, "Project Reader", &env.account_scope);
    env.assign(&attacker.oid, "Owner", &mine);
    env.wait_for_policy().await;

    // The attack: at the scope of 'mine', where the attacker is Owner, rewrite the
    // role with write added and only 'mine' assignable.
    let attacker_arm = env.token(&attacker, ARM_SCOPE).await;
    let write = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write";
    let (status, body) = api
        .call(
            Method::PUT,
            &api.url(&mine, &format!("roleDefinitions/{role}")),
            Some(&attacker_arm),
            Some(definition(json!([read, write]), json!([mine]))),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "AuthorizationFailed", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&env.account_scope),
        "the refusal names the existing assignable scope: {body}"
    );
    let stored = entraflow_rbac::RbacStore::open(env.data_dir())
        .unwrap()
        .find_definition(role)
        .unwrap();
    assert_eq!(stored.permissions[0].data_actions, [read], "role unchanged");
    let attacker_storage = env.token(&attacker, STORAGE_SCOPE).await;
    let put = env
        .put_blob("/theirs/data.bin", &attacker_storage, "pwned")
        .await;
    assert_eq!(put.status(), 403);
    let denied = env.audit_records().await.into_iter().any(|r| {
        r["event_type"] == "authz.denied"
            && r["action"] == "Microsoft.Authorization/roleDefinitions/write"
    });
    assert!(denied, "the refused change is audited as a denial");

    // The platform team narrows the role to 'mine': the account-level assignment
    // now lies outside the role's assignable scopes and grants nothing.
    assert_eq!(
        get_blob(&env, &attacker_storage, "/theirs/data.bin").await,
        200
    );
    let (status, body) = api
        .call(
            Method::PUT,
            &role_url,
            Some(&platform_arm),
            Some(definition(json!([read]), json!([mine]))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get_blob(&env, &attacker_storage, "/theirs/data.bin").await,
        403
    );
    let findings = entraflow_rbac::lint(
        &entraflow_rbac::RbacStore::open(env.data_dir()).unwrap(),
        time::OffsetDateTime::now_utc(),
        entraflow_rbac::LintOptions::default(),
    )
    .unwrap();
    assert!(
        findings.iter().any(
            |f| f.rule == entraflow_rbac::LintRule::OutsideAssignableScopes
                && f.principal_id.as_deref() == Some(attacker.oid.as_str())
        ),
        "{findings:#?}"
    );
}

/// Finding (hardening issue): one admin request with a condition nested a few
/// thousand levels deep overflowed a worker's stack and took the authority and the
/// gate down together. Now it is a 400 naming the limit, and both keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_deeply_nested_condition_is_refused_and_the_servers_keep_serving() {
    let env = Stack::start().await;
    let api = Admin::new(&env);
    let owner = env.app("owner");
    let job = env.app("job");
    env.assign(&owner.oid, "Owner", &env.account_scope);
    env.wait_for_policy().await;
    let arm = env.token(&owner, ARM_SCOPE).await;
    let leaf = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike 'train/*'";
    let cases = [
        format!("{}{leaf}{}", "(".repeat(4_000), ")".repeat(4_000)),
        format!("{}{leaf}", "!".repeat(8_000)),
        format!("{}{leaf}", "NOT ".repeat(2_000)),
        format!("{}{leaf}{}", "(".repeat(100_000), ")".repeat(100_000)),
    ];
    for (i, condition) in cases.iter().enumerate() {
        let url = api.url(
            &env.account_scope,
            &format!("roleAssignments/0d1e2f3a-4b5c-4d6e-8f70-81928374650{i}"),
        );
        let (status, body) = api
            .call(
                Method::PUT,
                &url,
                Some(&arm),
                Some(assignment_body(
                    builtin::STORAGE_BLOB_DATA_READER,
                    &job.oid,
                    Some(condition),
                )),
            )
            .await;
        assert_eq!(status, 400, "case {i}: {body}");
        assert_eq!(
            body["error"]["code"], "InvalidCondition",
            "case {i}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("more than 32 levels") || message.contains("at most 8192"),
            "case {i}: {message}"
        );
    }
    // Both servers are still up: a token from the authority, a request to the gate.
    let again = env.token(&owner, ARM_SCOPE).await;
    let (status, body) = api
        .call(
            Method::GET,
            &api.url(&env.account_scope, "roleAssignments"),
            Some(&again),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["value"].as_array().unwrap().len(),
        1,
        "only the Owner assignment exists: {body}"
    );
}

/// Every way a principal with rights on one scope could widen its rights
/// elsewhere through the admin API, each a named case in SECURITY.md; allowed
/// cases within its own scope are in the table too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_escalation_attempts_are_refused() {
    use entraflow_testkit::report::{Doc, Suite};
    let env = Stack::start().await;
    let api = Admin::new(&env);
    let root = env.app("root");
    let local = env.app("container-owner");
    let data = env.app("data-only");
    let delegate = env.app("delegate");
    env.assign(&root.oid, "Owner", &env.account_scope);
    let a = env.scope("/blobServices/default/containers/alpha");
    let b = env.scope("/blobServices/default/containers/bravo");
    let ab = env.scope("/blobServices/default/containers/alphax");
    env.assign(&local.oid, "Owner", &a);
    env.assign(
        &data.oid,
        "Storage Blob Data Contributor",
        &env.account_scope,
    );
    env.wait_for_policy().await;
    let root_arm = env.token(&root, ARM_SCOPE).await;
    let local_arm = env.token(&local, ARM_SCOPE).await;
    let data_arm = env.token(&data, ARM_SCOPE).await;
    let local_storage = env.token(&local, STORAGE_SCOPE).await;

    let role_id = |id: &str| format!("/providers/Microsoft.Authorization/roleDefinitions/{id}");
    let owner = role_id(builtin::OWNER);
    let reader = role_id("2a2b9908-6ea1-4ae2-8e65-a410df84e7d1");
    let uaa = role_id(builtin::USER_ACCESS_ADMINISTRATOR);
    let read = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
    let write = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write";
    let definition = |name: &str, data_actions: Value, scopes: Value| {
        json!({ "properties": {
            "roleName": name, "type": "CustomRole",
            "permissions": [{ "dataActions": data_actions }], "assignableScopes": scopes
        }})
    };
    // A custom role the platform team assigns at the account.
    let shared = "6b5c4d3e-2f10-4b0a-9d8e-7f6a5b4c3d2e";
    let (status, body) = api
        .call(
            Method::PUT,
            &api.url(&env.account_scope, &format!("roleDefinitions/{shared}")),
            Some(&root_arm),
            Some(definition(
                "Shared Reader",
                json!([read]),
                json!([env.account_scope]),
            )),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api
        .call(
            Method::PUT,
            &api.url(&env.account_scope, &format!("roleAssignments/{}", uuid())),
            Some(&root_arm),
            Some(assignment_body(&role_id(shared), &data.oid, None)),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let root_assignment = body["name"].as_str().unwrap().to_owned();

    let mut suite = Suite::new(Doc::Security, "Admin API escalation (gate)");
    let case =
        |suite: &mut Suite, name: &str, expected: &[u16], status: StatusCode, body: &Value| {
            let code = body["error"]["code"].as_str().unwrap_or_default();
            let want = expected
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join("/");
            suite.check(
                name,
                &want,
                &format!("{} {code}", status.as_u16()),
                expected.contains(&status.as_u16()),
            );
        };
    let assign = |scope: String,
                  role: String,
                  principal: String,
                  token: String,
                  condition: Option<&'static str>| {
        let api = &api;
        async move {
            let url = api.url(&scope, &format!("roleAssignments/{}", uuid()));
            api.call(
                Method::PUT,
                &url,
                Some(&token),
                Some(assignment_body(&role, &principal, condition)),
            )
            .await
        }
    };

    let (s, v) = assign(
        a.clone(),
        reader.clone(),
        local.oid.clone(),
        local_arm.clone(),
        None,
    )
    .await;
    case(
        &mut suite,
        "owner of container a assigns Reader at a (its own scope)",
        &[201],
        s,
        &v,
    );
    let (s, v) = assign(
        b.clone(),
        reader.clone(),
        local.oid.clone(),
        local_arm.clone(),
        None,
    )
    .await;
    case(
        &mut suite,
        "owner of a assigns at container b",
        &[403],
        s,
        &v,
    );
    let (s, v) = assign(
        ab.clone(),
        owner.clone(),
        local.oid.clone(),
        local_arm.clone(),
        None,
    )
    .await;
    case(
        &mut suite,
        "owner of a assigns at container alphax (prefix confusion)",
        &[403],
        s,
        &v,
    );
    let (s, v) = assign(
        env.account_scope.clone(),
        owner.clone(),
        local.oid.clone(),
        local_arm.clone(),
        None,
    )
    .await;
    case(
        &mut suite,
        "owner of a assigns Owner at the account",
        &[403],
        s,
        &v,
    );
    let (s, v) = assign(
        env.account_scope.clone(),
        reader.clone(),
        local.oid.clone(),
        local_arm.clone(),
        Some(TRAIN_ONLY),
    )
    .await;
    case(
        &mut suite,
        "owner of a assigns at the account with a narrowing condition",
        &[403],
        s,
        &v,
    );
    let (s, v) = assign(
        format!("{a}/../b"),
        owner.clone(),
        local.oid.clone(),
        local_arm.clone(),
        None,
    )
    .await;
    case(
        &mut suite,
        "owner of a assigns at a/../b (traversal in the scope)",
        &[400, 403, 404],
        s,
        &v,
    );
    let (s, v) = assign(
        a.to_uppercase(),
        owner.clone(),
        local.oid.clone(),
        local_arm.clone(),
        None,
    )
    .await;
    // Container names are lower case (refused), or, compared as ARM compares
    // scopes, the same scope and so the same assignment: never a grant elsewhere.
    case(
        &mut suite,
        "owner of a assigns at its scope in upper case",
        &[400, 409],
        s,
        &v,
    );
    let (s, v) = assign(
        a.clone(),
        owner.clone(),
        root.oid.clone(),
        local_arm.clone(),
        None,
    )
    .await;
    case(
        &mut suite,
        "owner of a assigns Owner at a to someone else",
        &[201],
        s,
        &v,
    );
    let (s, v) = assign(
        a.clone(),
        role_id("00000000-0000-0000-0000-000000000000"),
        local.oid.clone(),
        local_arm.clone(),
        None,
    )
    .await;
    case(
        &mut suite,
        "owner of a assigns a role that does not exist",
        &[400, 404],
        s,
        &v,
    );
    let (s, v) = assign(
        a.clone(),
        reader.clone(),
        local.oid.clone(),
        data_arm.clone(),
        None,
    )
    .await;
    case(
        &mut suite,
        "a data-only principal assigns at a",
        &[403],
        s,
        &v,
    );
    let (s, v) = assign(
        a.clone(),
        reader.clone(),
        local.oid.clone(),
        local_storage.clone(),
        None,
    )
    .await;
    case(
        &mut suite,
        "a Storage token on the admin API",
        &[401],
        s,
        &v,
    );

    // Delegation: a User Access Administrator at a cannot reach past a.
    let (s, v) = assign(
        a.clone(),
        uaa.clone(),
        delegate.oid.clone(),
        local_arm.clone(),
        None,
    )
    .await;
    case(
        &mut suite,
        "owner of a delegates User Access Administrator at a",
        &[201],
        s,
        &v,
    );
    env.wait_for_policy().await;
    let delegate_arm = env.token(&delegate, ARM_SCOPE).await;
    let (s, v) = assign(
        a.clone(),
        owner.clone(),
        delegate.oid.clone(),
        delegate_arm.clone(),
        None,
    )
    .await;
    case(
        &mut suite,
        "the delegate makes itself Owner at a",
        &[201],
        s,
        &v,
    );
    let (s, v) = assign(
        env.account_scope.clone(),
        owner.clone(),
        delegate.oid.clone(),
        delegate_arm.clone(),
        None,
    )
    .await;
    case(
        &mut suite,
        "the delegate makes itself Owner at the account",
        &[403],
        s,
        &v,
    );

    // Role definitions.
    let rd = |scope: &str, id: &str| api.url(scope, &format!("roleDefinitions/{id}"));
    let (s, v) = api
        .call(
            Method::PUT,
            &rd(&a, shared),
            Some(&local_arm),
            Some(definition(
                "Shared Reader",
                json!([read, write]),
                json!([a]),
            )),
        )
        .await;
    case(
        &mut suite,
        "owner of a rewrites a role assigned at the account",
        &[403],
        s,
        &v,
    );
    let (s, v) = api
        .call(
            Method::PUT,
            &rd(&a, &uuid()),
            Some(&local_arm),
            Some(definition(
                "Mine",
                json!([read]),
                json!([env.account_scope]),
            )),
        )
        .await;
    case(
        &mut suite,
        "owner of a creates a role assignable at the account",
        &[403],
        s,
        &v,
    );
    let mine = uuid();
    let (s, v) = api
        .call(
            Method::PUT,
            &rd(&a, &mine),
            Some(&local_arm),
            Some(definition("Mine", json!([read]), json!([a]))),
        )
        .await;
    case(
        &mut suite,
        "owner of a creates a role assignable at a",
        &[201],
        s,
        &v,
    );
    let (s, v) = api
        .call(
            Method::PUT,
            &rd(&a, &mine),
            Some(&local_arm),
            Some(definition(
                "Mine",
                json!([read, write]),
                json!([a, env.account_scope]),
            )),
        )
        .await;
    case(
        &mut suite,
        "owner of a widens its role's assignable scopes to the account",
        &[403],
        s,
        &v,
    );
    let (s, v) = assign(
        env.account_scope.clone(),
        role_id(&mine),
        local.oid.clone(),
        root_arm.clone(),
        None,
    )
    .await;
    case(
        &mut suite,
        "a role assigned outside its assignable scopes (even by the account owner)",
        &[400, 403],
        s,
        &v,
    );
    let (s, v) = api
        .call(Method::DELETE, &rd(&a, shared), Some(&local_arm), None)
        .await;
    case(
        &mut suite,
        "owner of a deletes a role assigned at the account",
        &[403, 405],
        s,
        &v,
    );
    let (s, v) = api
        .call(
            Method::PUT,
            &rd(&a, shared),
            Some(&data_arm),
            Some(definition(
                "Shared Reader",
                json!([read, write]),
                json!([env.account_scope]),
            )),
        )
        .await;
    case(
        &mut suite,
        "a data-only principal rewrites a role",
        &[403],
        s,
        &v,
    );

    // Assignments of others.
    let url = api.url(
        &env.account_scope,
        &format!("roleAssignments/{root_assignment}"),
    );
    let (s, v) = api.call(Method::DELETE, &url, Some(&local_arm), None).await;
    case(
        &mut suite,
        "owner of a deletes an assignment at the account",
        &[403],
        s,
        &v,
    );
    let (s, v) = api
        .call(
            Method::PUT,
            &url,
            Some(&local_arm),
            Some(assignment_body(&owner, &local.oid, None)),
        )
        .await;
    case(
        &mut suite,
        "owner of a overwrites an assignment at the account by name",
        &[403, 409],
        s,
        &v,
    );
    let (s, v) = api
        .call(
            Method::GET,
            &api.url(&env.account_scope, "roleAssignments"),
            Some(&local_arm),
            None,
        )
        .await;
    case(
        &mut suite,
        "owner of a lists assignments at the account",
        &[403],
        s,
        &v,
    );
    let (s, v) = api
        .call(
            Method::GET,
            &api.url(&a, "roleAssignments"),
            Some(&local_arm),
            None,
        )
        .await;
    case(
        &mut suite,
        "owner of a lists assignments at a",
        &[200],
        s,
        &v,
    );

    // What the attempts changed: nothing outside a.
    env.wait_for_policy().await;
    let local_storage = env.token(&local, STORAGE_SCOPE).await;
    let status = env
        .put_blob("/bravo/x.bin", &local_storage, "x")
        .await
        .status();
    suite.check(
        "afterwards the owner of a still cannot write container b",
        "403",
        &status.as_u16().to_string(),
        status == StatusCode::FORBIDDEN,
    );
    suite.finish();
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
