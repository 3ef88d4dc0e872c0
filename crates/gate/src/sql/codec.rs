//! PostgreSQL protocol v3 framing, as the gate needs it: the untyped startup
//! packets, a client's typed messages read with a size limit, and the few backend
//! messages the gate writes itself. Everything else is relayed without decoding.

use tokio::io::{AsyncRead, AsyncReadExt};

/// `SSLRequest`'s code.
pub(crate) const SSL_REQUEST: u32 = 80_877_103;
/// `GSSENCRequest`'s code.
pub(crate) const GSSENC_REQUEST: u32 = 80_877_104;
/// `CancelRequest`'s code.
pub(crate) const CANCEL_REQUEST: u32 = 80_877_102;
/// Protocol 3.0, what the gate speaks.
pub(crate) const PROTOCOL_3_0: u32 = 196_608;
/// PostgreSQL's own limit on a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
const MAX_STARTUP_LEN: usize = 10_000;

/// The first packet of a connection.
#[derive(Debug)]
pub(crate) enum Startup {
    /// The client asks for TLS.
    Ssl,
    /// The client asks for GSSAPI encryption.
    GssEnc,
    /// A cancel request for another session.
    Cancel { pid: u32, key: u32 },
    /// A startup message: protocol version and parameters.
    Start {
        version: u32,
        params: Vec<(String, String)>,
    },
}

/// Why a client's bytes are not the protocol.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    #[error("{what} of {len} bytes exceeds the gate's limit of {max} bytes")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
}

fn invalid(what: &'static str, why: impl Into<String>) -> CodecError {
    CodecError::Invalid {
        what,
        why: why.into(),
    }
}

/// Reads the untyped first packet (length, code, body).
pub(crate) async fn read_startup<R: AsyncRead + Unpin>(r: &mut R) -> Result<Startup, CodecError> {
    let len = r.read_u32().await? as usize;
    if len < 8 {
        return Err(invalid("startup packet", format!("length {len}")));
    }
    if len > MAX_STARTUP_LEN {
        return Err(CodecError::TooLong {
            what: "startup packet",
            len,
            max: MAX_STARTUP_LEN,
        });
    }
    let mut body = vec![0; len - 4];
    r.read_exact(&mut body).await?;
    let code = u32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
    let rest = &body[4..];
    match code {
        SSL_REQUEST => Ok(Startup::Ssl),
        GSSENC_REQUEST => Ok(Startup::GssEnc),
        CANCEL_REQUEST if rest.len() == 8 => Ok(Startup::Cancel {
            pid: u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")),
            key: u32::from_be_bytes(rest[4..].try_into().expect("4 bytes")),
        }),
        CANCEL_REQUEST => Err(invalid("cancel request", "wrong length")),
        version if version >> 16 == 3 => Ok(Startup::Start {
            version,
            params: parse_params(rest)?,
        }),
        other => Err(invalid(
            "startup packet",
            format!(
                "unsupported protocol {}.{}; the gate speaks 3.0",
                other >> 16,
                other & 0xffff
            ),
        )),
    }
}

/// `name\0value\0 ... \0`.
fn parse_params(mut body: &[u8]) -> Result<Vec<(String, String)>, CodecError> {
    let mut params = Vec::new();
    loop {
        let (name, rest) = cstr(body, "startup parameter")?;
        if name.is_empty() {
            return Ok(params);
        }
        let (value, rest) = cstr(rest, "startup parameter")?;
        params.push((name.to_owned(), value.to_owned()));
        body = rest;
    }
}

/// A NUL-terminated UTF-8 string at the start of `body`, and what follows it.
pub(crate) fn cstr<'a>(
    body: &'a [u8],
    what: &'static str,
) -> Result<(&'a str, &'a [u8]), CodecError> {
    let end = body
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| invalid(what, "missing NUL terminator"))?;
    let s = std::str::from_utf8(&body[..end]).map_err(|_| invalid(what, "not UTF-8"))?;
    Ok((s, &body[end + 1..]))
}

/// One typed message: tag and body (without the length).
pub(crate) struct Message {
    pub(crate) tag: u8,
    pub(crate) body: Vec<u8>,
}

/// Reads one typed message of at most `max` body bytes; `None` at a clean end of
/// stream between messages.
pub(crate) async fn read_message<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Message>, CodecError> {
    let mut tag = [0u8; 1];
    if r.read(&mut tag).await? == 0 {
        return Ok(None);
    }
    let len = r.read_u32().await? as usize;
    if len < 4 {
        return Err(invalid("message", format!("length {len}")));
    }
    let len = len - 4;
    if len > max {
        return Err(CodecError::TooLong {
            what: "message",
            len,
            max,
        });
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    Ok(Some(Message { tag: tag[0], body }))
}

/// A typed message as bytes.
pub(crate) fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// `AuthenticationCleartextPassword`.
pub(crate) fn auth_cleartext() -> Vec<u8> {
    message(b'R', &3u32.to_be_bytes())
}

/// `AuthenticationOk`.
pub(crate) fn auth_ok() -> Vec<u8> {
    message(b'R', &0u32.to_be_bytes())
}

/// `BackendKeyData`.
pub(crate) fn backend_key_data(pid: u32, key: u32) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    body.extend_from_slice(&key.to_be_bytes());
    message(b'K', &body)
}

/// `NegotiateProtocolVersion`: the newest minor version the gate speaks (0) and the
/// protocol options (`_pq_.*`) it does not recognise.
pub(crate) fn negotiate_protocol_version(unrecognised: &[&str]) -> Vec<u8> {
    let mut body = 0u32.to_be_bytes().to_vec();
    body.extend_from_slice(&(unrecognised.len() as u32).to_be_bytes());
    for name in unrecognised {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
    }
    message(b'v', &body)
}

/// The fields of an `ErrorResponse` (or `NoticeResponse`) body, by field code.
pub(crate) fn error_fields(body: &[u8]) -> Vec<(u8, &str)> {
    let mut fields = Vec::new();
    let mut rest = body;
    while let Some((&code, tail)) = rest.split_first() {
        if code == 0 {
            break;
        }
        match cstr(tail, "error field") {
            Ok((value, tail)) => {
                fields.push((code, value));
                rest = tail;
            }
            Err(_) => break,
        }
    }
    fields
}

/// The SQLSTATE (`C` field) of an `ErrorResponse` body.
pub(crate) fn sqlstate(body: &[u8]) -> Option<String> {
    error_fields(body)
        .into_iter()
        .find(|(c, _)| *c == b'C')
        .map(|(_, v)| v.to_owned())
}

/// The row count at the end of a `CommandComplete` tag (`SELECT 5`, `INSERT 0 3`,
/// `COPY 10`); `None` for tags without one (`CREATE TABLE`).
pub(crate) fn command_rows(body: &[u8]) -> Option<u64> {
    let (tag, _) = cstr(body, "command tag").ok()?;
    let mut words = tag.split(' ');
    let verb = words.next()?;
    let last = tag.rsplit(' ').next()?;
    if last == verb {
        return None;
    }
    last.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn startup_packets_parse_and_oversized_ones_are_refused() {
        let mut packet = Vec::new();
        let body = b"user\0alice@contoso.com\0database\0labels\0\0";
        packet.extend_from_slice(&((body.len() + 8) as u32).to_be_bytes());
        packet.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
        packet.extend_from_slice(body);
        match read_startup(&mut packet.as_slice()).await.unwrap() {
            Startup::Start { version, params } => {
                assert_eq!(version, PROTOCOL_3_0);
                assert_eq!(params[0], ("user".into(), "alice@contoso.com".into()));
                assert_eq!(params[1], ("database".into(), "labels".into()));
            }
            other => panic!("{other:?}"),
        }
        let mut ssl = 8u32.to_be_bytes().to_vec();
        ssl.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        assert!(matches!(
            read_startup(&mut ssl.as_slice()).await.unwrap(),
            Startup::Ssl
        ));
        let huge = 20_000u32.to_be_bytes();
        assert!(matches!(
            read_startup(&mut huge.as_slice()).await,
            Err(CodecError::TooLong { .. })
        ));
        let mut unterminated = Vec::new();
        unterminated.extend_from_slice(&13u32.to_be_bytes());
        unterminated.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
        unterminated.extend_from_slice(b"user\0");
        assert!(matches!(
            read_startup(&mut unterminated.as_slice()).await,
            Err(CodecError::Invalid { .. })
        ));
    }

    #[tokio::test]
    async fn messages_over_the_limit_are_refused_before_their_body_is_read() {
        let msg = message(b'p', b"token\0");
        let m = read_message(&mut msg.as_slice(), 64)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((m.tag, m.body.as_slice()), (b'p', &b"token\0"[..]));
        assert!(matches!(
            read_message(&mut msg.as_slice(), 3).await,
            Err(CodecError::TooLong { len: 6, .. })
        ));
        assert!(read_message(&mut &[][..], 64).await.unwrap().is_none());
    }

    #[test]
    fn command_tags_give_row_counts() {
        assert_eq!(command_rows(b"SELECT 5\0"), Some(5));
        assert_eq!(command_rows(b"INSERT 0 3\0"), Some(3));
        assert_eq!(command_rows(b"CREATE TABLE\0"), None);
        assert_eq!(command_rows(b"BEGIN\0"), None);
        assert_eq!(
            sqlstate(b"SERROR\0C42501\0Mpermission denied for table t\0\0").as_deref(),
            Some("42501")
        );
    }
}
