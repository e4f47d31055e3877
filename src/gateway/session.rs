//! The value of the sign-in cookie: a random session id and its HMAC-SHA256 under a key this
//! gateway draws at start. The token never leaves the gateway, a cookie jar holds nothing that
//! opens another gateway (or this one after a restart), and checking needs no session table.

use ring::hmac;

use super::random_hex;

pub struct Sessions {
    key: hmac::Key,
}

impl Default for Sessions {
    fn default() -> Sessions {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, random_hex(32).as_bytes()));
        Sessions { key }
    }
}

impl Sessions {
    /// A new session: `ID.MAC`.
    pub fn issue(&self) -> String {
        let id = random_hex(16);
        let tag = hmac::sign(&self.key, id.as_bytes());
        format!("{id}.{}", hex(tag.as_ref()))
    }

    /// Whether `value` is a session this gateway issued, compared in constant time.
    pub fn valid(&self, value: &str) -> bool {
        let Some((id, tag)) = value.split_once('.') else {
            return false;
        };
        unhex(tag).is_some_and(|tag| hmac::verify(&self.key, id.as_bytes(), &tag).is_ok())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_valid_only_at_the_gateway_that_issued_it_and_only_unaltered() {
        let (sessions, other) = (Sessions::default(), Sessions::default());
        let session = sessions.issue();
        assert!(sessions.valid(&session));
        assert!(!other.valid(&session), "another key, another gateway");
        let (id, tag) = session.split_once('.').unwrap();
        let other_id = format!("{}{id}", "0");
        let last = &tag[tag.len() - 2..];
        let altered = if last == "00" { "01" } else { "00" };
        for forged in [
            "",
            "s3cret-token",
            id,
            &format!("{id}."),
            &format!("{other_id}.{tag}"),
            &format!("{id}.{}", &tag[..tag.len() - 2]),
            &format!("{id}.{}{altered}", &tag[..tag.len() - 2]),
            &format!("{id}.é{}", &tag[2..]),
        ] {
            assert!(!sessions.valid(forged), "{forged}");
        }
    }

    #[test]
    fn sessions_differ_and_hold_nothing_but_hex() {
        let sessions = Sessions::default();
        let (a, b) = (sessions.issue(), sessions.issue());
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() || c == '.'), "{a}");
    }
}
