//! A stand-in for a Kubernetes service-account issuer: an RSA key and a JWKS in the
//! data directory, and projected service-account tokens written where a kubelet
//! would write them. The authority trusts it through `issuer add --jwks-file`,
//! exactly as Entra trusts an AKS cluster's OIDC issuer URL.

use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entraflow_core::{FEDERATION_AUDIENCE, fsutil};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::error::{LocalError, io};

/// Directory (inside the data directory) holding the issuer's key and JWKS.
pub const CLUSTER_ISSUER_DIR: &str = "cluster-issuer";
/// The issuer URL its tokens carry (no trailing slash: Entra matches it exactly).
const ISSUER: &str = "https://cluster.entraflow.local/oidc";

/// The local cluster's OIDC issuer.
pub struct ClusterIssuer {
    dir: PathBuf,
    kid: String,
    key: EncodingKey,
}

impl std::fmt::Debug for ClusterIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterIssuer")
            .field("issuer", &ISSUER)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn issuer_error(e: impl std::fmt::Display) -> LocalError {
    LocalError::Issuer(e.to_string())
}

impl ClusterIssuer {
    /// Loads the issuer from `<data_dir>/cluster-issuer`, creating its key (0600) and
    /// JWKS on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, LocalError> {
        let dir = data_dir.join(CLUSTER_ISSUER_DIR);
        fsutil::create_private_dir(&dir).map_err(io(&dir))?;
        let key_path = dir.join("sa-signing-key.pk8");
        let pkcs8 = match std::fs::read(&key_path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = KeyPair::generate(KeySize::Rsa2048).map_err(issuer_error)?;
                let der = key.as_der().map_err(issuer_error)?.as_ref().to_vec();
                fsutil::write_private_file(&key_path, &der).map_err(io(&key_path))?;
                der
            }
            Err(e) => return Err(io(&key_path)(e)),
        };
        let key = KeyPair::from_pkcs8(&pkcs8).map_err(issuer_error)?;
        let public = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
        let n = URL_SAFE_NO_PAD.encode(&public.n);
        let e = URL_SAFE_NO_PAD.encode(&public.e);
        // The key id is derived from the key, so a restart keeps it.
        let kid = entraflow_core::secret::sha256_hex(public.n.as_slice())[..16].to_owned();
        let jwks = serde_json::json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e,
        }]});
        let jwks_path = dir.join("jwks.json");
        fsutil::write_public_file(&jwks_path, jwks.to_string().as_bytes())
            .map_err(io(&jwks_path))?;
        let pem = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &pkcs8.as_slice().into(),
            &rcgen::PKCS_RSA_SHA256,
        )
        .map_err(issuer_error)?
        .serialize_pem();
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(issuer_error)?;
        Ok(Self { dir, kid, key })
    }

    /// The issuer URL, as the federated identity credentials name it.
    pub fn issuer(&self) -> &'static str {
        ISSUER
    }

    /// The JWKS file the authority is told to trust.
    pub fn jwks_path(&self) -> PathBuf {
        self.dir.join("jwks.json")
    }

    /// A service-account token for `system:serviceaccount:<namespace>:<account>`,
    /// audience `api://AzureADTokenExchange`, valid `lifetime_secs`.
    pub fn service_account_token(
        &self,
        namespace: &str,
        account: &str,
        lifetime_secs: i64,
    ) -> Result<String, LocalError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject(namespace, account),
            "aud": [FEDERATION_AUDIENCE],
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_secs,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": account}},
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(issuer_error)
    }

    /// Writes a fresh token where a kubelet projects it for a pod (0600), and
    /// returns the path (`AZURE_FEDERATED_TOKEN_FILE`).
    pub fn project_token(
        &self,
        pod_dir: &Path,
        namespace: &str,
        account: &str,
    ) -> Result<PathBuf, LocalError> {
        let path = pod_dir.join("azure-identity-token");
        let token = self.service_account_token(namespace, account, 3600)?;
        fsutil::create_private_dir(pod_dir).map_err(io(pod_dir))?;
        fsutil::write_private_file(&path, token.as_bytes()).map_err(io(&path))?;
        Ok(path)
    }
}

/// The `sub` of a Kubernetes service-account token.
pub(crate) fn subject(namespace: &str, account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{account}")
}
