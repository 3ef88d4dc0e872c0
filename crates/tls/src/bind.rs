//! Binding a listening port, with errors that say what happened: a port in use is
//! a port in use, never a problem with a directory or with TLS.

use std::net::{SocketAddr, TcpListener};

/// A port that could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Someone else listens there.
    #[error(
        "{what} {addr} is already in use (another entraflow server or another program listens there); choose another port, or 0 for any free one"
    )]
    InUse {
        /// Which port this is, e.g. "the gate's HTTPS port".
        what: &'static str,
        /// The address.
        addr: SocketAddr,
    },
    /// The OS refused (a port below 1024 without privileges, or an address not
    /// on this machine).
    #[error("{what} {addr} cannot be bound: {source}")]
    Refused {
        /// Which port this is.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// Binds `addr` for `what` (named in the error).
pub fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).map_err(|source| match source.kind() {
        std::io::ErrorKind::AddrInUse => BindError::InUse { what, addr },
        _ => BindError::Refused { what, addr, source },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_is_named_as_such() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind("the gate's HTTPS port", addr).unwrap_err();
        assert!(matches!(err, BindError::InUse { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(&addr.to_string()) && text.contains("already in use"),
            "{text}"
        );
        assert!(bind("a free port", "127.0.0.1:0".parse().unwrap()).is_ok());
    }
}
