//! Smart lockout over real HTTPS: wrong passwords on the device-login page and
//! wrong client secrets at the token endpoint lock the account or application
//! with `AADSTS50053` (the right one is refused too while it lasts), one source
//! guessing over many accounts is locked on its own, each refusal is an audit
//! record, and the lockout ends by itself.

mod common;

use std::time::Duration;

use common::{aadsts, device_code, device_login};
use entraflow_audit::{EventType, Record};
use entraflow_authority::{AUDIT_LOG_ID, LockoutPolicy};
use entraflow_core::DEVICE_CODE_GRANT;
use entraflow_testkit::{Authority, STORAGE_SCOPE};

const PASSWORD: &str = "correct horse battery";
const LOCKOUT: Duration = Duration::from_secs(2);

async fn start(threshold: u32, source_threshold: u32) -> Authority {
    Authority::start_with(|c| {
        c.lockout = LockoutPolicy {
            threshold,
            source_threshold,
            first_lockout: LOCKOUT,
        }
    })
    .await
}

fn refusals(records: &[Record], code: &str) -> usize {
    records
        .iter()
        .filter(|r| r.event.event_type == EventType::TokenRefused)
        .filter(|r| {
            r.event
                .detail
                .as_deref()
                .is_some_and(|d| d.starts_with(code))
        })
        .count()
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_until_the_lockout_ends() {
    let s = start(3, 100).await;
    let app = s.public_app("notebook");
    let upn = "dana@entraflow.local";
    s.store().create_user(upn, "Dana", Some(PASSWORD)).unwrap();
    let (device, user_code) = device_code(&s, &app.app_id, STORAGE_SCOPE).await;

    let (status, page) = device_login(&s, &user_code, upn, "guess one").await;
    assert_eq!(status, 400);
    assert!(page.contains("invalid username or password"), "{page}");
    // Retyping the same wrong password is one mistake, not two.
    device_login(&s, &user_code, upn, "guess one").await;
    device_login(&s, &user_code, "DANA@entraflow.local", "guess two").await;
    let (_, page) = device_login(&s, &user_code, upn, "guess three").await;
    assert!(page.contains("is locked"), "{page}");
    let (status, page) = device_login(&s, &user_code, upn, PASSWORD).await;
    assert_eq!(status, 400);
    assert!(
        page.contains("is locked") && page.contains("Try again in"),
        "the right password is refused while locked: {page}"
    );
    assert!(!page.contains(PASSWORD), "the page never echoes a password");

    let records = s.audit_chain(AUDIT_LOG_ID).await;
    assert_eq!(refusals(&records, "AADSTS50126"), 3, "each wrong password");
    assert_eq!(
        refusals(&records, "AADSTS50053"),
        2,
        "the lock and the refused right one"
    );
    let locked = records
        .iter()
        .rev()
        .find(|r| r.event.event_type == EventType::TokenRefused)
        .unwrap();
    assert_eq!(
        locked.event.principal.as_ref().unwrap().name.as_deref(),
        Some(upn)
    );

    tokio::time::sleep(LOCKOUT + Duration::from_millis(200)).await;
    let (status, page) = device_login(&s, &user_code, upn, PASSWORD).await;
    assert_eq!(status, 200, "{page}");
    let (status, body) = s
        .token_v2(&[
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", &app.app_id),
            ("device_code", &device),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn wrong_client_secrets_lock_the_application() {
    let s = start(3, 100).await;
    let app = s.app("trainer");
    let other = s.app("other");
    let token = |client_id: String, secret: String| {
        let s = &s;
        async move {
            s.token_v2(&[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", &secret),
                ("scope", STORAGE_SCOPE),
            ])
            .await
        }
    };
    for guess in ["a", "b"] {
        let (status, body) = token(app.app_id.clone(), guess.repeat(40)).await;
        assert_eq!((status, aadsts(&body)), (401, 7000215), "{body}");
    }
    let (status, body) = token(app.app_id.clone(), "c".repeat(40)).await;
    assert_eq!((status, aadsts(&body)), (400, 50053), "{body}");
    assert_eq!(body["error"], "invalid_grant");
    let (status, body) = token(app.app_id.clone(), app.secret.clone()).await;
    assert_eq!(
        aadsts(&body),
        50053,
        "the right secret is refused while locked"
    );
    assert_eq!(status, 400);
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains(&app.app_id), "{description}");
    assert!(!description.contains(&app.secret), "{description}");
    // Another application is not affected.
    let (status, _) = token(other.app_id.clone(), other.secret.clone()).await;
    assert_eq!(status, 200);

    tokio::time::sleep(LOCKOUT + Duration::from_millis(200)).await;
    let (status, body) = token(app.app_id.clone(), app.secret.clone()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn one_source_guessing_over_many_accounts_is_locked() {
    let s = start(10, 4).await;
    let app = s.public_app("notebook");
    for i in 0..5 {
        s.store()
            .create_user(&format!("user{i}@entraflow.local"), "User", Some(PASSWORD))
            .unwrap();
    }
    let (_, user_code) = device_code(&s, &app.app_id, STORAGE_SCOPE).await;
    // The same password sprayed over accounts: one try each.
    for i in 0..3 {
        let upn = format!("user{i}@entraflow.local");
        let (_, page) = device_login(&s, &user_code, &upn, "Winter2026!").await;
        assert!(page.contains("invalid username or password"), "{page}");
    }
    let (_, page) = device_login(&s, &user_code, "user3@entraflow.local", "Winter2026!").await;
    assert!(page.contains("came from IP address 127.0.0.1"), "{page}");
    let (_, page) = device_login(&s, &user_code, "user4@entraflow.local", PASSWORD).await;
    assert!(
        page.contains("came from IP address"),
        "a locked source is refused even with the right password: {page}"
    );
}
