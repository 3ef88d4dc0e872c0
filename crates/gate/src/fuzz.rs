//! Property-based fuzzing of every parser the gate runs on outside input: random
//! and structured inputs must give an answer (a value or an Azure error), never a
//! panic, and structured valid inputs must parse back to what was written.
//!
//! CI runs proptest's default 256 cases per property. A long run:
//! `PROPTEST_CASES=200000 cargo test -p entraflow-gate --lib fuzz::`. A failure
//! is saved under `proptest-regressions/` and replayed first on every later run:
//! commit that file with the fix.

use axum::http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use crate::store::CommittedBlock;
use crate::xml::{self, BlockRef};

/// Bytes that look like XML often enough to reach the deep paths.
fn xmlish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just("<BlockList>".to_owned()),
        Just("</BlockList>".to_owned()),
        Just("<Latest>".to_owned()),
        Just("</Latest>".to_owned()),
        Just("<Committed>QUFB</Committed>".to_owned()),
        Just("<Tags><TagSet><Tag><Key>".to_owned()),
        Just("</Key><Value>".to_owned()),
        Just("</Value></Tag></TagSet></Tags>".to_owned()),
        Just("<!DOCTYPE x [<!ENTITY e \"x\">]>".to_owned()),
        Just("&e;&amp;&#0;".to_owned()),
        Just("<?xml version=\"1.0\"?>".to_owned()),
        "[a-zA-Z0-9+/=<>/ ]{0,12}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat().into_bytes())
}

proptest! {
    #[test]
    fn block_lists_never_panic(body in prop_oneof![xmlish(), prop::collection::vec(any::<u8>(), 0..512)]) {
        let _ = xml::parse_block_list(&body);
    }

    #[test]
    fn tag_bodies_never_panic(body in prop_oneof![xmlish(), prop::collection::vec(any::<u8>(), 0..512)]) {
        let _ = xml::parse_tags(&body);
    }

    #[test]
    fn written_block_lists_parse_back(ids in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 0..20)) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let body: String = ids
            .iter()
            .enumerate()
            .map(|(i, id)| match i % 3 {
                0 => format!("<Latest>{}</Latest>", b64.encode(id)),
                1 => format!("<Committed>{}</Committed>", b64.encode(id)),
                _ => format!("<Uncommitted>{}</Uncommitted>", b64.encode(id)),
            })
            .collect();
        let parsed = xml::parse_block_list(format!("<BlockList>{body}</BlockList>").as_bytes()).unwrap();
        let back: Vec<Vec<u8>> = parsed.iter().map(|r| r.id().to_vec()).collect();
        prop_assert_eq!(back, ids.clone());
        prop_assert!(parsed.iter().enumerate().all(|(i, r)| matches!(
            (i % 3, r),
            (0, BlockRef::Latest(_)) | (1, BlockRef::Committed(_)) | (_, BlockRef::Uncommitted(_))
        )));
        // What Get Block List writes is well formed too.
        let blocks: Vec<CommittedBlock> = ids.iter().map(|id| CommittedBlock { id: id.clone(), size: 1 }).collect();
        let written = xml::block_list(Some(&blocks), None);
        let text = written.trim_start_matches('\u{feff}');
        prop_assert!(quick_xml::de::from_str::<serde::de::IgnoredAny>(text).is_ok(), "{}", text);
    }

    #[test]
    fn written_tags_parse_back(tags in prop::collection::vec(("[a-zA-Z0-9 +./:=_-]{1,20}", "[a-zA-Z0-9 +./:=_-]{0,20}"), 0..10)) {
        let written = xml::tags_document(&tags);
        prop_assert_eq!(xml::parse_tags(written.as_bytes()).unwrap(), tags);
    }

    #[test]
    fn batch_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..1024), boundary in "[a-z_]{1,10}") {
        let _ = crate::blob::multipart::parse(&body, &boundary);
    }

    #[test]
    fn batch_shaped_bodies_never_panic(
        lines in prop::collection::vec(prop_oneof![
            Just("--b\r\n".to_owned()), Just("--b--\r\n".to_owned()), Just("\r\n".to_owned()),
            Just("Content-Type: application/http\r\n".to_owned()),
            Just("DELETE /acct/c/x HTTP/1.1\r\n".to_owned()), Just("Content-Length: 99999999999\r\n".to_owned()),
            "[ -~]{0,40}\r\n",
        ], 0..30)
    ) {
        let _ = crate::blob::multipart::parse(lines.concat().as_bytes(), "b");
    }

    #[test]
    fn paths_never_panic(path in "(/[a-zA-Z0-9%._~!$&'()*+,;=:@-]{0,20}){0,6}") {
        if let Ok(target) = crate::names::parse_target(&path, "devstoreaccount1") {
            // A parsed container name is always a valid Azure container name.
            if let Some(c) = target.container() {
                prop_assert!(crate::names::validate_container(c).is_ok(), "{c}");
            }
        }
    }

    #[test]
    fn queries_and_filters_never_panic(q in "[ -~]{0,80}") {
        let _ = crate::operation::Query::parse(Some(&q));
        let _ = crate::tags::Filter::parse(&q);
        let _ = crate::tags::from_header(&q);
        let _ = crate::admin::shape::AssignmentFilter::parse(Some(&q));
        let _ = crate::admin::shape::DefinitionFilter::parse(Some(&q));
    }

    #[test]
    fn headers_never_panic(range in "[ -~]{0,40}", md5 in "[ -~]{0,40}", date in "[ -~]{0,40}") {
        let mut h = HeaderMap::new();
        for (name, value) in [("x-ms-range", &range), ("if-modified-since", &date), ("if-match", &md5)] {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        }
        let _ = crate::blob::object::parse_range(&h);
        let _ = crate::integrity::parse_md5("content-md5", &md5);
        let _ = crate::conditions::Conditions::from_headers(&h, crate::conditions::Subject::Resource);
        let _ = crate::conditions::Conditions::from_headers(&h, crate::conditions::Subject::CopySource);
    }

    #[test]
    fn tokens_never_panic(
        header in prop_oneof![
            Just(r#"{"alg":"RS256","kid":"k"}"#.to_owned()), Just(r#"{"alg":"none"}"#.to_owned()),
            Just(r#"{"alg":"RS256"}"#.to_owned()), "[ -~]{0,40}",
        ],
        claims in prop_oneof![
            Just(r#"{"tid":"t1","iss":"x","aud":"y","exp":1,"nbf":0,"ver":"2.0"}"#.to_owned()),
            Just(r#"{"tid":[],"exp":"x"}"#.to_owned()), "[ -~]{0,60}",
        ],
        signature in "[A-Za-z0-9_-]{0,40}",
        raw in "[ -~]{0,120}",
    ) {
        use base64::Engine as _;
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let verifier = fuzz_verifier();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for token in [format!("{}.{}.{signature}", enc(&header), enc(&claims)), raw.clone()] {
            let err = runtime.block_on(verifier.verify(&token));
            prop_assert!(err.is_err(), "nothing unsigned by a trusted key verifies: {token}");
            let _ = runtime.block_on(verifier.verify_header(Some(&format!("Bearer {raw}"))));
        }
    }
}

fn fuzz_verifier() -> crate::TokenVerifier {
    entraflow_tls::install_crypto_provider();
    // Port 1 on loopback: nothing listens, so every key fetch fails at once.
    let config = crate::VerifierConfig::new("https://127.0.0.1:1", vec!["t1".into()], None);
    crate::TokenVerifier::new(config, entraflow_tls::https_client(None).unwrap())
}
