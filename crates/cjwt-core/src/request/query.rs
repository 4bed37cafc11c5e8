//! Query parameters read the way upstream form decoders read them (SEC-12.1).
//!
//! cjwt must see a parameter exactly as the service behind Envoy will: Go's
//! `url.ParseQuery`, Python's `parse_qs`, Java's servlet API and Node's
//! `URLSearchParams` all percent-decode names and values, turn `+` into a space,
//! and keep a name without `=` as an (empty) occurrence; some (old Python, Rack)
//! also split on `;`. So a name is compared after decoding, every occurrence
//! counts (with or without a value, after `&` or after `;`), and a second
//! occurrence makes the parameter ambiguous: the caller refuses it, because
//! decoders disagree on which value wins (most take the first, some the last).

/// What a query says about one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// The parameter does not occur.
    Absent,
    /// It occurs once; the decoded value (empty when written without `=`).
    One(Vec<u8>),
    /// It occurs more than once, in any spelling, or its value holds a `;`
    /// (which `;`-splitting decoders would cut short).
    Ambiguous,
}

/// Looks `name` up in `query` (the part of `:path` after `?`, without fragment).
pub fn param(query: &str, name: &str) -> Param {
    let mut found: Option<&str> = None;
    for piece in query.split('&') {
        // Pieces after a `;` are parameters to `;`-splitting decoders.
        let mut subpieces = piece.split(';');
        let head = subpieces.next().unwrap_or("");
        let (raw_name, _) = head.split_once('=').unwrap_or((head, ""));
        if names_equal(raw_name, name) {
            if found.is_some() {
                return Param::Ambiguous;
            }
            found = Some(piece);
        }
        for sub in subpieces {
            let (raw, _) = sub.split_once('=').unwrap_or((sub, ""));
            if names_equal(raw, name) {
                return Param::Ambiguous;
            }
        }
    }
    let Some(piece) = found else {
        return Param::Absent;
    };
    let value = piece.split_once('=').map_or("", |(_, v)| v);
    if value.contains(';') {
        return Param::Ambiguous;
    }
    Param::One(decode(value))
}

/// `raw` decoded equals `name`. Allocation-free on the common path (no `%`, no `+`).
fn names_equal(raw: &str, name: &str) -> bool {
    if !raw.contains(['%', '+']) {
        return raw == name;
    }
    decode(raw) == name.as_bytes()
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte;
/// a `%` not followed by two hex digits stays as written (as Python and Java's
/// lenient decoders keep it; Go drops such a pair, which never makes two names equal).
pub fn decode(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1).and_then(|h| hex_val(*h)).zip(bytes.get(i + 2).and_then(|l| hex_val(*l)));
                if let Some((h, l)) = hex {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The query without any piece that names `name` (in any spelling). Used to
/// strip a query-parameter credential; `None` pieces are dropped whole.
pub fn without<'q>(query: &'q str, name: &str) -> Vec<&'q str> {
    query
        .split('&')
        .filter(|piece| {
            let head = piece.split(';').next().unwrap_or("");
            let (raw, _) = head.split_once('=').unwrap_or((head, ""));
            !names_equal(raw, name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> Param {
        Param::One(v.as_bytes().to_vec())
    }

    #[test]
    fn every_spelling_of_a_name_is_an_occurrence() {
        let table: &[(&str, Param)] = &[
            ("tenant=acme", one("acme")),
            ("a=1&tenant=acme&b=2", one("acme")),
            ("tenant=%61cme", one("acme")),
            ("tenant=a+b", one("a b")),
            ("tenant", one("")),
            ("tenant=", one("")),
            ("x=1", Param::Absent),
            ("", Param::Absent),
            ("tenantx=evil", Param::Absent),
            ("t%65nant=evil&tenant=acme", Param::Ambiguous),
            ("T%65nant=evil&tenant=acme", Param::One(b"acme".to_vec())),
            ("tenant&tenant=acme", Param::Ambiguous),
            ("tenant=acme&tenant", Param::Ambiguous),
            ("tenant=acme&tenant=acme", Param::Ambiguous),
            ("ten%61nt=acme", one("acme")),
            ("x=1;tenant=evil&tenant=acme", Param::Ambiguous),
            ("tenant=acme;x=1", Param::Ambiguous),
            ("tenant=%zz", one("%zz")),
            ("tenant=%4", one("%4")),
        ];
        for (query, want) in table {
            assert_eq!(&param(query, "tenant"), want, "{query}");
        }
        assert_eq!(param("access%5Ftoken=x", "access_token"), one("x"));
        assert_eq!(param("my+name=x", "my name"), one("x"));
    }

    #[test]
    fn stripping_drops_every_spelling() {
        assert_eq!(without("a=1&access%5ftoken=x&b", "access_token"), vec!["a=1", "b"]);
        assert_eq!(without("access_token", "access_token"), Vec::<&str>::new());
    }
}
