//! Equality and prefix tests for the short strings flows are made of (names, label keys, values).
//!
//! `==` and `starts_with` on slices call libc `memcmp`; for strings of a few bytes the call costs
//! more than the comparison (it was ~80% of a pod + status filter's time), so these compare in
//! place, eight bytes at a time.

#[inline]
pub fn eq(a: &str, b: &str) -> bool {
    bytes_eq(a.as_bytes(), b.as_bytes())
}

#[inline]
pub fn starts_with(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && bytes_eq(&s.as_bytes()[..prefix.len()], prefix.as_bytes())
}

#[inline]
pub fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let x = u64::from_ne_bytes(x.try_into().expect("chunk of 8"));
        let y = u64::from_ne_bytes(y.try_into().expect("chunk of 8"));
        if x != y {
            return false;
        }
    }
    ca.remainder()
        .iter()
        .zip(cb.remainder())
        .all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_std_on_every_split() {
        let words = [
            "",
            "a",
            "shop",
            "shop/",
            "kube-system",
            "k8s:app=web",
            "k8s:app.kubernetes.io/name=web",
        ];
        for a in words {
            for b in words {
                assert_eq!(eq(a, b), a == b, "{a:?} == {b:?}");
                assert_eq!(
                    starts_with(a, b),
                    a.starts_with(b),
                    "{a:?} starts with {b:?}"
                );
            }
            for i in 0..=a.len() {
                assert!(starts_with(a, &a[..i]));
                assert!(eq(&a[..i], &a[..i]));
            }
        }
        assert!(!eq("abcdefgh1", "abcdefgh2"));
        assert!(!eq("abcdefgX1", "abcdefgh1"));
    }
}
