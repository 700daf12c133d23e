//! Which member a rotation moves the primary to.

/// The member after `primary` in `order`, wrapping around; the first member that is not the
/// primary when `order` does not list it. Never `primary` itself: `None` when no other member is
/// listed.
pub fn next_in_order<'a>(order: &[&'a str], primary: &str) -> Option<&'a str> {
    let start = order
        .iter()
        .position(|member| *member == primary)
        .map_or(0, |at| at + 1);
    (0..order.len())
        .map(|step| order[(start + step) % order.len()])
        .find(|member| *member != primary)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn follows_the_order_and_wraps_around() {
        let ring = ["a", "b", "c"];
        let cases = [
            ("a", Some("b")),
            ("b", Some("c")),
            ("c", Some("a")),
            ("x", Some("a")), // primary not listed: the first entry
        ];
        for (primary, expected) in cases {
            assert_eq!(next_in_order(&ring, primary), expected, "after {primary}");
        }
        assert_eq!(next_in_order(&["a"], "a"), None);
        assert_eq!(next_in_order(&[], "a"), None);
    }

    proptest! {
        /// Rotating repeatedly visits every member once per lap, in order, and never "rotates"
        /// to the member that is already primary.
        #[test]
        fn a_lap_visits_every_member_in_order(n in 2usize..8, first in 0usize..8) {
            let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
            let order: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut primary = order[first % n];
            let mut visited = Vec::new();
            for _ in 0..n {
                let next = next_in_order(&order, primary).unwrap();
                prop_assert_ne!(next, primary);
                visited.push(next);
                primary = next;
            }
            let mut sorted = visited.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), n);
            prop_assert_eq!(primary, order[first % n]);
        }
    }
}
