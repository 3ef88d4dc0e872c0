//! The SQL gate with `tokio-postgres` against the real PostgreSQL that
//! `scripts/test.sh` starts: sign-in with a token as the password, every refusal's
//! SQLSTATE and message (and that a refused client never reaches the backend),
//! PostgreSQL's own GRANTs, statement audit with literals redacted, cancel, COPY
//! out, and sessions that outlive their token.

use std::time::Duration;

use entraflow_gate::sql::PrincipalType;
use entraflow_testkit::{STORAGE_SCOPE, SqlStack};

/// The SQLSTATE and message of a failed sign-in or statement.
fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e:?}"));
    let mut message = db.message().to_owned();
    if let Some(hint) = db.hint() {
        message.push_str(" HINT: ");
        message.push_str(hint);
    }
    (db.code().code().to_owned(), message)
}

/// Sessions the backend has for `role` right now.
async fn backend_sessions(stack: &SqlStack, role: &str) -> i64 {
    stack
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn tokio_postgres_signs_in_with_a_token_and_reads_what_its_grants_allow() {
    let Some(stack) = SqlStack::start().await else {
        return;
    };
    let role = stack.unique("labels-reader");
    let app = stack.app(&role);
    stack.map(&role, &app.oid, PrincipalType::Service).await;
    stack.allow_connect(&app.oid, "postgres").await;
    let table = format!("labels_{}", role.replace('-', "_"));
    let admin = stack.admin().await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int, label text); INSERT INTO {table} SELECT g, 'digit-' || (g % 10) FROM generate_series(1, 100) g; GRANT SELECT ON {table} TO \"{role}\""
        ))
        .await
        .unwrap();

    let token = stack.token(&app).await;
    let client = stack.connect(&role, &token, "postgres").await.unwrap();
    // Extended protocol with a parameter, and the session user is the mapped role.
    let rows = client
        .query(
            &format!("SELECT id, label FROM {table} WHERE id <= $1 ORDER BY id"),
            &[&3i32],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].get::<_, String>(1), "digit-3");
    let who: String = client
        .query_one("SELECT session_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, role);
    // RESET ROLE cannot climb: the session user is the role itself.
    client.batch_execute("RESET ROLE").await.unwrap();
    let current: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, role);
    // Simple protocol, several statements at once.
    let messages = client
        .simple_query(&format!("SELECT count(*) FROM {table}; SELECT 1"))
        .await
        .unwrap();
    let first_row = messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
        _ => None,
    });
    assert_eq!(first_row, Some(Some("100".to_owned())));
    // COPY out streams through.
    use futures::TryStreamExt;
    let copied: Vec<bytes::Bytes> = client
        .copy_out(&format!(
            "COPY (SELECT id FROM {table} ORDER BY id) TO STDOUT"
        ))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let text: String = copied.iter().map(|b| String::from_utf8_lossy(b)).collect();
    assert_eq!(text.lines().count(), 100);
    assert_eq!(stack.backend_connections(), 1);
    assert_eq!(backend_sessions(&stack, &role).await, 1);
    drop(client);
}

#[tokio::test]
async fn every_refusal_has_its_sqlstate_and_message_and_none_reaches_the_backend() {
    let Some(stack) = SqlStack::start_with(|c| c.leeway = Duration::ZERO).await else {
        return;
    };
    let mapped = stack.unique("mapped-svc");
    let app = stack.app(&mapped);
    stack.map(&mapped, &app.oid, PrincipalType::Service).await;
    let other = stack.unique("other-svc");
    let other_app = stack.app(&other);
    stack
        .map(&other, &other_app.oid, PrincipalType::Service)
        .await;
    let unmapped_name = stack.unique("nobody");
    let token = stack.token(&app).await;

    // Mapped, but no role assignment grants the connect action yet.
    let e = stack
        .connect(&mapped, &token, "postgres")
        .await
        .unwrap_err();
    let (code, message) = db_error(&e);
    assert_eq!(code, "42501", "{message}");
    assert!(
        message.contains("permission denied to connect") && message.contains("connect/action"),
        "{message}"
    );

    stack.allow_connect(&app.oid, "postgres").await;
    stack.allow_connect(&other_app.oid, "postgres").await;
    // Another database than the one assigned.
    let e = stack
        .connect(&mapped, &token, "template1")
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).0, "42501");

    // The user name of another principal.
    let e = stack.connect(&other, &token, "postgres").await.unwrap_err();
    let (code, message) = db_error(&e);
    assert_eq!(code, "28000", "{message}");
    assert!(
        message.contains(&app.oid) && message.contains(&other),
        "{message}"
    );

    // A name no role is mapped to: the message says how to map it.
    let e = stack
        .connect(&unmapped_name, &token, "postgres")
        .await
        .unwrap_err();
    let (code, message) = db_error(&e);
    assert_eq!(code, "28000", "{message}");
    assert!(
        message.contains("entraflow sql principal create") && message.contains(&app.oid),
        "{message}"
    );

    // A token for Storage, not for PostgreSQL.
    let storage = stack.authority.token(&app, STORAGE_SCOPE).await;
    let e = stack
        .connect(&mapped, &storage, "postgres")
        .await
        .unwrap_err();
    let (code, message) = db_error(&e);
    assert_eq!(code, "28P01", "{message}");
    assert!(
        message.contains("audience") && message.contains("https://storage.azure.com"),
        "{message}"
    );
    assert!(!message.contains(&storage), "the token is never echoed");

    // A forged token: the real one with its signature replaced.
    let (head, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", "A".repeat(342));
    let e = stack
        .connect(&mapped, &forged, "postgres")
        .await
        .unwrap_err();
    let (code, message) = db_error(&e);
    assert_eq!(code, "28P01", "{message}");
    assert!(message.contains("Signature validation failed"), "{message}");

    // Not a token at all.
    let e = stack
        .connect(&mapped, "hunter2", "postgres")
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).0, "28P01");

    // An expired token (a 1-second lifetime, no skew tolerated).
    stack.authority.set_token_lifetime(1);
    let short = stack.token(&app).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let e = stack
        .connect(&mapped, &short, "postgres")
        .await
        .unwrap_err();
    let (code, message) = db_error(&e);
    assert_eq!(code, "28P01", "{message}");
    assert!(
        message.contains("expired") && message.contains(&format!("user \"{mapped}\"")),
        "{message}"
    );

    // Without TLS the password is never asked for.
    let mut plain = tokio_postgres::Config::new();
    plain
        .host("127.0.0.1")
        .port(stack.addr.port())
        .user(&mapped)
        .password(&token)
        .dbname("postgres")
        .ssl_mode(tokio_postgres::config::SslMode::Disable);
    let Err(e) = plain.connect(tokio_postgres::NoTls).await else {
        panic!("a plaintext connection was accepted")
    };
    let (code, message) = db_error(&e);
    assert_eq!(code, "28000", "{message}");
    assert!(message.contains("sslmode=require"), "{message}");

    assert_eq!(
        stack.backend_connections(),
        0,
        "a refused client reached the backend"
    );
    for role in [&mapped, &other, &unmapped_name] {
        assert_eq!(backend_sessions(&stack, role).await, 0);
    }
    let records = stack.audit_records().await;
    let denials = records
        .iter()
        .filter(|r| {
            matches!(
                r["event_type"].as_str(),
                Some("authn.failed" | "authz.denied")
            )
        })
        .count();
    assert_eq!(denials, 9, "one record per refusal");
}

#[tokio::test]
async fn a_missing_grant_is_postgres_own_42501_naming_the_relation() {
    let Some(stack) = SqlStack::start().await else {
        return;
    };
    let role = stack.unique("no-grant");
    let app = stack.app(&role);
    stack.map(&role, &app.oid, PrincipalType::Service).await;
    stack.allow_connect(&app.oid, "postgres").await;
    let table = format!("secret_{}", role.replace('-', "_"));
    stack
        .admin()
        .await
        .batch_execute(&format!("CREATE TABLE {table} (x int)"))
        .await
        .unwrap();
    let client = stack
        .connect(&role, &stack.token(&app).await, "postgres")
        .await
        .unwrap();
    let e = client
        .query(&format!("SELECT * FROM {table}"), &[])
        .await
        .unwrap_err();
    let (code, message) = db_error(&e);
    assert_eq!(code, "42501");
    assert!(
        message.contains(&format!("permission denied for table {table}")),
        "{message}"
    );
    // The session goes on after the error.
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

/// Long enough that no hash or id in the records holds it by chance (a short
/// number such as 4242 turns up in hex digests about once in forty runs).
const NUMBER_LITERAL: &str = "918273645546372819";

#[tokio::test]
async fn sessions_and_statements_are_audited_with_literals_redacted_and_the_chain_verifies() {
    let Some(stack) = SqlStack::start().await else {
        return;
    };
    let role = stack.unique("audited");
    let app = stack.app(&role);
    stack.map(&role, &app.oid, PrincipalType::Service).await;
    stack.allow_connect(&app.oid, "postgres").await;
    let token = stack.token(&app).await;
    let client = stack.connect(&role, &token, "postgres").await.unwrap();
    let secret = format!("hunter2-{}", &role[role.len() - 8..]);
    let rows = client
        .simple_query(&format!("SELECT '{secret}' AS s, {NUMBER_LITERAL} AS n"))
        .await
        .unwrap();
    let returned = rows
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(returned, 1);
    let e = client
        .simple_query(&format!("SELECT 1/0 WHERE '{secret}' <> ''"))
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).0, "22012");
    client.query("SELECT $1::text", &[&secret]).await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE scratch (note text); INSERT INTO scratch VALUES ('{secret}')"
        ))
        .await
        .unwrap();
    // A result larger than the gate holds back streams after its record.
    let big: String = client
        .query_one("SELECT repeat('x', 200000)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 200_000);
    drop(client);
    // The end of the session is recorded once the gate sees the client go; the
    // two completion records (the write's, the streamed read's) are written off
    // the response path, so they may land after it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records = stack.audit_records().await;
        let count = |t: &str| records.iter().filter(|r| r["event_type"] == t).count();
        if count("sql.session.end") > 0 && count("sql.statement.completed") >= 2 {
            break records;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no session end record, or completion records missing: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let all = serde_json::to_string(&records).unwrap();
    assert!(
        !all.contains(&secret),
        "a redacted literal reached the audit log"
    );
    assert!(
        !all.contains(NUMBER_LITERAL),
        "a redacted number reached the audit log"
    );
    assert!(!all.contains(&token[..40]), "no token in the audit log");
    let of = |t: &str| {
        records
            .iter()
            .filter(|r| r["event_type"] == t)
            .collect::<Vec<_>>()
    };
    let start = of("sql.session.start");
    assert_eq!(start.len(), 1);
    assert_eq!(start[0]["principal"]["oid"], app.oid.as_str());
    assert_eq!(start[0]["run_id"], "run-sqltest");
    assert_eq!(start[0]["role_name"], entraflow_testkit::SQL_CONNECT_ROLE);
    assert!(
        start[0]["resource"]
            .as_str()
            .unwrap()
            .ends_with("/flexibleServers/entraflowlocal/databases/postgres")
    );
    let statements: Vec<&str> = of("sql.statement")
        .iter()
        .map(|r| r["statement"].as_str().unwrap())
        .collect();
    assert!(
        statements.contains(&"SELECT ? AS s, ? AS n"),
        "{statements:?}"
    );
    assert!(
        statements.contains(&"SELECT ?/? WHERE ? <> ?"),
        "{statements:?}"
    );
    assert!(statements.contains(&"SELECT $1::text"), "{statements:?}");
    // A read has one record, with its outcome; a write has its record before it
    // runs and its outcome in a completion record.
    let by_text = |text: &str| {
        of("sql.statement")
            .into_iter()
            .find(|r| r["statement"] == text)
            .unwrap_or_else(|| panic!("no record of {text}"))
    };
    assert_eq!(by_text("SELECT ? AS s, ? AS n")["rows"], 1);
    assert_eq!(by_text("SELECT ?/? WHERE ? <> ?")["sqlstate"], "22012");
    let write = by_text("CREATE TEMP TABLE scratch (note text); INSERT INTO scratch VALUES (?)");
    assert!(write.get("rows").is_none(), "{write}");
    let streamed = by_text("SELECT repeat(?, ?)");
    assert!(streamed.get("rows").is_none(), "{streamed}");
    let completed = of("sql.statement.completed");
    assert_eq!(completed.len(), 2, "{completed:?}");
    for statement in [write, streamed] {
        let done = completed
            .iter()
            .find(|c| c["request_id"] == statement["request_id"])
            .unwrap_or_else(|| panic!("no completion of {statement}"));
        assert_eq!(done["rows"], 1, "{done}");
    }
    assert_eq!(of("sql.session.end").len(), 1);

    let verifier = entraflow_audit::CheckpointSigner::load_or_create(
        stack.authority.data_dir(),
        "entraflow/sql-gate",
    )
    .unwrap()
    .verifier();
    let store = entraflow_audit::AnyStore::open(&entraflow_audit::StoreUrl::default_for(
        stack.authority.data_dir(),
    ))
    .await
    .unwrap();
    let report = entraflow_audit::verify_store(
        &store,
        &entraflow_audit::VerifyOptions {
            verifiers: vec![verifier],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(
        report
            .chains
            .iter()
            .any(|c| c.log_id == "entraflow/sql-gate" && c.size >= 7)
    );
}

#[tokio::test]
async fn a_cancel_request_reaches_the_backend_statement() {
    let Some(stack) = SqlStack::start().await else {
        return;
    };
    let role = stack.unique("canceller");
    let app = stack.app(&role);
    stack.map(&role, &app.oid, PrincipalType::Service).await;
    stack.allow_connect(&app.oid, "postgres").await;
    let client = stack
        .connect(&role, &stack.token(&app).await, "postgres")
        .await
        .unwrap();
    let cancel = client.cancel_token();
    let tls = stack.tls();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel_query(tls).await.unwrap();
    });
    let started = std::time::Instant::now();
    let e = client
        .simple_query("SELECT pg_sleep(30)")
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).0, "57014", "query_canceled");
    assert!(started.elapsed() < Duration::from_secs(20));
    canceller.await.unwrap();
}

#[tokio::test]
async fn a_session_outliving_its_token_ends_with_08006_after_the_statement_in_flight() {
    let Some(stack) = SqlStack::start_with(|c| c.leeway = Duration::ZERO).await else {
        return;
    };
    let role = stack.unique("expiring");
    let app = stack.app(&role);
    stack.map(&role, &app.oid, PrincipalType::Service).await;
    stack.allow_connect(&app.oid, "postgres").await;
    stack.authority.set_token_lifetime(3);
    let client = stack
        .connect(&role, &stack.token(&app).await, "postgres")
        .await
        .unwrap();
    // In flight across the expiry: it finishes.
    let slept = client.simple_query("SELECT pg_sleep(4)").await;
    assert!(slept.is_ok(), "{slept:?}");
    let e = client.simple_query("SELECT 1").await.unwrap_err();
    let text = format!("{e:?}");
    assert!(
        client.is_closed() || text.contains("08006") || text.contains("expired"),
        "{text}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let records = stack.audit_records().await;
        if let Some(end) = records
            .iter()
            .find(|r| r["event_type"] == "sql.session.end")
        {
            assert!(
                end["detail"]
                    .as_str()
                    .unwrap()
                    .starts_with("the token expired"),
                "{end}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no session end record"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A group's login works for a member whose token carries no `groups` claim: the
/// gate looks membership up in the directory, as it does for Blob grants.
#[tokio::test]
async fn a_member_signs_in_as_its_group_found_in_the_directory() {
    let Some(stack) = SqlStack::start().await else {
        return;
    };
    let role = stack.unique("analysts");
    let directory = stack.authority.store();
    let group = directory.create_group(&role).unwrap();
    let member = stack.app(&stack.unique("analyst"));
    let outsider = stack.app(&stack.unique("outsider"));
    directory.add_group_member(&group.id, &member.oid).unwrap();
    stack.map(&role, &group.id, PrincipalType::Group).await;
    stack.allow_connect(&group.id, "postgres").await;

    let token = stack.token(&member).await;
    let client = stack.connect(&role, &token, "postgres").await.unwrap();
    let who: String = client
        .query_one("SELECT session_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, role);

    let refused = stack
        .connect(&role, &stack.token(&outsider).await, "postgres")
        .await
        .expect_err("a non-member is refused");
    let (code, message) = db_error(&refused);
    assert_eq!(code, "28000", "{message}");
    assert!(
        message.contains("is not a member of the group"),
        "{message}"
    );
}

/// A read runs before its record is durable, but its result does not leave
/// without it; a write does not run without its record. The audit append is made
/// to fail, with the log still open, by a trigger on the audit store's table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_record_a_read_returns_no_row_and_a_write_does_not_run() {
    let Some(stack) = SqlStack::start().await else {
        return;
    };
    let role = stack.unique("unaudited");
    let app = stack.app(&role);
    stack.map(&role, &app.oid, PrincipalType::Service).await;
    stack.allow_connect(&app.oid, "postgres").await;
    let table = format!("notes_{}", role.replace('-', "_"));
    let admin = stack.admin().await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (note text); INSERT INTO {table} VALUES ('kept'); GRANT SELECT, INSERT ON {table} TO \"{role}\""
        ))
        .await
        .unwrap();
    let token = stack.token(&app).await;
    let extended = stack.connect(&role, &token, "postgres").await.unwrap();
    let simple = stack.connect(&role, &token, "postgres").await.unwrap();
    let read = format!("SELECT note FROM {table}");
    assert_eq!(extended.query(&read, &[]).await.unwrap().len(), 1);

    let audit = rusqlite::Connection::open(stack.authority.data_dir().join("audit.db")).unwrap();
    audit
        .busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    audit
        .execute_batch(
            "CREATE TRIGGER fail_appends BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END;",
        )
        .unwrap();
    let e = extended
        .query(&read, &[])
        .await
        .expect_err("a read without its record returned rows");
    assert_eq!(db_error(&e).0, "57P03", "extended protocol: {e}");
    let e = simple
        .simple_query(&read)
        .await
        .expect_err("a read without its record returned rows");
    assert_eq!(db_error(&e).0, "57P03", "simple protocol: {e}");
    let refused = stack.connect(&role, &token, "postgres").await;
    assert!(refused.is_err(), "no session starts without its record");
    audit.execute_batch("DROP TRIGGER fail_appends").unwrap();
    let writer = stack.connect(&role, &token, "postgres").await.unwrap();
    audit
        .execute_batch(
            "CREATE TRIGGER fail_appends BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END;",
        )
        .unwrap();
    let e = writer
        .simple_query(&format!("INSERT INTO {table} VALUES ('unrecorded')"))
        .await
        .expect_err("a write ran without its record");
    assert_eq!(db_error(&e).0, "57P03", "{e}");
    audit.execute_batch("DROP TRIGGER fail_appends").unwrap();
    let notes: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(notes, 1, "the unrecorded INSERT reached the table");
}
