//! Access tokens: who the principal is, which claims it gets for a resource, how
//! long the token lives, and the response body in the endpoint's version.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entraflow_core::AccessTokenClaims;
use entraflow_core::claims::{v1_issuer, v2_issuer};
use serde_json::{Value, json};

use crate::error::AuthorityError;
use crate::keys::SigningKey;
use crate::resource::Resource;
use crate::store::{Store, Tenant};

/// Who a token is for.
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    /// An application's or managed identity's service principal (app-only token).
    App {
        /// Service principal object id.
        oid: String,
        /// Client id.
        app_id: String,
        /// `1` secret, `2` certificate/assertion/managed identity.
        acr: &'static str,
        /// Managed identity resource id.
        mirid: Option<String>,
    },
    /// A user signed in through a client app (delegated token).
    User {
        /// User object id.
        oid: String,
        /// UPN.
        upn: String,
        /// Display name.
        name: String,
        /// The client app.
        app_id: String,
        /// `0` public client.
        acr: &'static str,
        /// Delegated scopes.
        scp: String,
    },
}

impl Principal {
    pub(crate) fn oid(&self) -> &str {
        match self {
            Principal::App { oid, .. } | Principal::User { oid, .. } => oid,
        }
    }

    pub(crate) fn client_id(&self) -> &str {
        match self {
            Principal::App { app_id, .. } | Principal::User { app_id, .. } => app_id,
        }
    }
}

/// Which endpoint version answers (decides the response shape, not the token's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointVersion {
    /// `/oauth2/token`: `resource=`, numbers as strings.
    V1,
    /// `/oauth2/v2.0/token`: `scope=`, numbers as numbers.
    V2,
}

/// A signed access token and what the response needs to say about it.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) claims: AccessTokenClaims,
}

/// A random lifetime in `[min, max]` seconds, like Entra's 60–90 minutes.
pub(crate) fn lifetime(tenant: &Tenant) -> i64 {
    let span = (tenant.lifetime_max - tenant.lifetime_min).max(0) as u64;
    if span == 0 {
        return tenant.lifetime_min;
    }
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    tenant.lifetime_min + (u64::from_le_bytes(b) % (span + 1)) as i64
}

fn new_uti() -> String {
    let mut b = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Builds and signs an access token for `principal` on `resource`.
pub(crate) fn access_token(
    store: &Store,
    key: &SigningKey,
    host: &str,
    tenant: &Tenant,
    resource: &Resource,
    principal: &Principal,
) -> Result<Issued, AuthorityError> {
    let now = crate::store::now();
    let life = lifetime(tenant);
    let roles = if resource.registered {
        store.assigned_roles(principal.oid(), &resource.app_id)?
    } else {
        Vec::new()
    };
    let groups = if resource.group_claims {
        Some(store.groups_of(principal.oid())?)
    } else {
        None
    };
    let v2 = resource.version == 2;
    let mut c = AccessTokenClaims {
        aud: resource.audience().to_owned(),
        iss: if v2 {
            v2_issuer(host, &tenant.id)
        } else {
            v1_issuer(&tenant.id)
        },
        iat: now,
        nbf: now,
        exp: now + life,
        tid: tenant.id.clone(),
        oid: principal.oid().to_owned(),
        sub: principal.oid().to_owned(),
        ver: if v2 { "2.0" } else { "1.0" }.to_owned(),
        uti: new_uti(),
        roles: (!roles.is_empty()).then_some(roles),
        groups,
        ..Default::default()
    };
    let (client, acr) = match principal {
        Principal::App {
            app_id, acr, mirid, ..
        } => {
            c.idtyp = Some("app".into());
            c.xms_mirid = mirid.clone();
            (app_id.clone(), *acr)
        }
        Principal::User {
            app_id,
            acr,
            upn,
            name,
            scp,
            oid,
            ..
        } => {
            c.idtyp = Some("user".into());
            c.scp = Some(scp.clone());
            c.name = Some(name.clone());
            // Delegated tokens use a pairwise subject per client app, as Entra does.
            c.sub = pairwise_sub(oid, app_id);
            if v2 {
                c.preferred_username = Some(upn.clone());
            } else {
                c.upn = Some(upn.clone());
            }
            (app_id.clone(), *acr)
        }
    };
    if v2 {
        c.azp = Some(client);
        c.azpacr = Some(acr.into());
    } else {
        c.appid = Some(client);
        c.appidacr = Some(acr.into());
    }
    // Entra puts `x5t` only in v1 headers; both carry `kid`.
    let access_token = if v2 {
        key.sign_jwt(&c)?
    } else {
        key.sign_jwt_with_x5t(&c)?
    };
    Ok(Issued {
        access_token,
        claims: c,
    })
}

fn pairwise_sub(oid: &str, app_id: &str) -> String {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{oid}:{app_id}").as_bytes(),
    );
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..24])
}

/// What an id token says about the interactive sign-in it comes from (the
/// authorization code flow); empty for device code and refresh tokens.
#[derive(Debug, Clone, Default)]
pub(crate) struct SignIn {
    /// The authorization request's `nonce`, echoed for the client to check.
    pub(crate) nonce: Option<String>,
    /// When the user entered their password (Unix time).
    pub(crate) auth_time: Option<i64>,
}

/// An OIDC id token for a signed-in user (v2 shape, `aud` = client id).
#[allow(clippy::too_many_arguments)] // one flat claim set; a struct would only rename them
pub(crate) fn id_token(
    key: &SigningKey,
    host: &str,
    tenant: &Tenant,
    user_oid: &str,
    upn: &str,
    name: &str,
    client_id: &str,
    sign_in: &SignIn,
) -> Result<String, AuthorityError> {
    let now = crate::store::now();
    let mut claims = json!({
        "aud": client_id,
        "iss": v2_issuer(host, &tenant.id),
        "iat": now, "nbf": now, "exp": now + 3600,
        "name": name,
        "oid": user_oid,
        "preferred_username": upn,
        "sub": pairwise_sub(user_oid, client_id),
        "tid": tenant.id,
        // Entra's id tokens carry `uti` too: a relying party (the console) keys
        // its verification cache and its audit record by it.
        "uti": new_uti(),
        "ver": "2.0",
    });
    if let Some(nonce) = &sign_in.nonce {
        claims["nonce"] = json!(nonce);
    }
    if let Some(t) = sign_in.auth_time {
        claims["auth_time"] = json!(t);
    }
    key.sign_jwt(&claims)
}

/// `client_info` (base64url JSON of `uid`, `utid`), which MSAL uses to key its cache.
pub(crate) fn client_info(user_oid: &str, tenant_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({"uid": user_oid, "utid": tenant_id}).to_string())
}

/// The success body: v2 numbers as numbers; v1 numbers as strings, plus
/// `expires_on`, `not_before` and `resource`.
pub(crate) fn response(version: EndpointVersion, issued: &Issued, resource: &Resource) -> Value {
    let c = &issued.claims;
    let expires_in = c.exp - c.iat;
    match version {
        EndpointVersion::V2 => json!({
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": issued.access_token,
        }),
        EndpointVersion::V1 => json!({
            "token_type": "Bearer",
            "expires_in": expires_in.to_string(),
            "ext_expires_in": expires_in.to_string(),
            "expires_on": c.exp.to_string(),
            "not_before": c.nbf.to_string(),
            "resource": resource.identifier,
            "access_token": issued.access_token,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::NewApplication;

    fn setup() -> (tempfile::TempDir, Store, Tenant, std::sync::Arc<SigningKey>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tenant = store.default_tenant().unwrap();
        let key = store.load_key_ring().unwrap().active;
        (dir, store, tenant, key)
    }

    #[test]
    fn lifetime_stays_in_the_tenant_range() {
        let mut t = Tenant {
            id: "t".into(),
            display_name: "d".into(),
            domain: "x".into(),
            lifetime_min: 3600,
            lifetime_max: 5400,
        };
        let seen: Vec<i64> = (0..200).map(|_| lifetime(&t)).collect();
        assert!(seen.iter().all(|l| (3600..=5400).contains(l)));
        assert!(seen.iter().any(|l| *l != seen[0]), "randomised");
        t.lifetime_min = 5;
        t.lifetime_max = 5;
        assert_eq!(lifetime(&t), 5);
    }

    #[test]
    fn app_token_shapes_follow_the_resource_version() {
        let (_d, store, tenant, key) = setup();
        let storage = store
            .resolve_resource(&tenant.id, "https://storage.azure.com")
            .unwrap()
            .unwrap();
        let p = Principal::App {
            oid: "sp".into(),
            app_id: "client".into(),
            acr: "1",
            mirid: None,
        };
        let v1 = access_token(&store, &key, "https://h:1", &tenant, &storage, &p)
            .unwrap()
            .claims;
        assert_eq!(
            (v1.ver.as_str(), v1.iss.clone()),
            ("1.0", v1_issuer(&tenant.id))
        );
        assert_eq!(
            (
                v1.appid.as_deref(),
                v1.appidacr.as_deref(),
                v1.azp.as_deref()
            ),
            (Some("client"), Some("1"), None)
        );
        assert_eq!(
            (v1.idtyp.as_deref(), v1.roles.as_ref(), v1.groups.as_ref()),
            (Some("app"), None, None)
        );
        assert_eq!(v1.exp - v1.iat, v1.exp - v1.nbf);

        let api = store
            .create_application(&NewApplication {
                display_name: "api".into(),
                token_version: Some(2),
                ..Default::default()
            })
            .unwrap();
        let res = store
            .resolve_resource(&tenant.id, &api.app_id)
            .unwrap()
            .unwrap();
        let v2 = access_token(&store, &key, "https://h:1", &tenant, &res, &p)
            .unwrap()
            .claims;
        assert_eq!(
            (v2.ver.as_str(), v2.iss.as_str(), v2.aud.as_str()),
            (
                "2.0",
                format!("https://h:1/{}/v2.0", tenant.id).as_str(),
                api.app_id.as_str()
            )
        );
        assert_eq!(
            (v2.azp.as_deref(), v2.azpacr.as_deref(), v2.appid.as_deref()),
            (Some("client"), Some("1"), None)
        );
        assert_ne!(v1.uti, v2.uti);

        let header = |res: &Resource| {
            let t = access_token(&store, &key, "https://h:1", &tenant, res, &p).unwrap();
            jsonwebtoken::decode_header(&t.access_token).unwrap()
        };
        let (h1, h2) = (header(&storage), header(&res));
        assert_eq!(h1.x5t.as_deref(), Some(key.kid.as_str()), "v1 keeps x5t");
        assert_eq!(h2.x5t, None, "Entra emits x5t only in v1");
        assert_eq!(h2.kid.as_deref(), Some(key.kid.as_str()));
    }

    #[test]
    fn user_tokens_carry_scp_and_the_version_specific_name_claim() {
        let (_d, store, tenant, key) = setup();
        let storage = store
            .resolve_resource(&tenant.id, "https://storage.azure.com")
            .unwrap()
            .unwrap();
        let p = Principal::User {
            oid: "u1".into(),
            upn: "a@b".into(),
            name: "A".into(),
            app_id: "cli".into(),
            acr: "0",
            scp: "user_impersonation".into(),
        };
        let c = access_token(&store, &key, "https://h:1", &tenant, &storage, &p)
            .unwrap()
            .claims;
        assert_eq!(
            (c.idtyp.as_deref(), c.upn.as_deref(), c.scp.as_deref()),
            (Some("user"), Some("a@b"), Some("user_impersonation"))
        );
        assert_eq!(c.oid, "u1");
        assert_ne!(c.sub, "u1", "delegated subjects are pairwise");
        assert!(c.preferred_username.is_none());
    }
}
