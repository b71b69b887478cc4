//! Impact, urgency and the priority matrix.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! level {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A ticket's ", $what, ": 1 (highest) to 4 (lowest).")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[cfg_attr(feature = "openapi", schema(value_type = i64, minimum = 1, maximum = 4))]
        #[serde(try_from = "i64", into = "i64")]
        pub struct $name(u8);

        impl $name {
            pub fn new(v: i64) -> Result<Self, OutOfRange> {
                if (1..=4).contains(&v) { Ok(Self(v as u8)) } else { Err(OutOfRange { what: $what, value: v }) }
            }
            pub fn get(self) -> u8 {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = OutOfRange;
            fn try_from(v: i64) -> Result<Self, Self::Error> {
                Self::new(v)
            }
        }

        impl From<$name> for i64 {
            fn from(v: $name) -> i64 {
                i64::from(v.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

level!(Impact, "impact");
level!(Urgency, "urgency");
level!(Priority, "priority");

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{what} must be between 1 and 4, not {value}")]
pub struct OutOfRange {
    pub what: &'static str,
    pub value: i64,
}

/// The impact × urgency matrix (rows: impact 1..4, columns: urgency 1..4).
///
/// The usual ITIL shape: the diagonal sum decides, with the extremes clamped, so a
/// high-impact, high-urgency ticket is P1 and a low/low one P4.
const MATRIX: [[u8; 4]; 4] = [[1, 1, 2, 3], [1, 2, 3, 3], [2, 3, 3, 4], [3, 3, 4, 4]];

impl Impact {
    /// Level 3: what a catalog request opens with.
    pub const MEDIUM: Impact = Impact(3);
}

impl Urgency {
    /// Level 3: what a catalog request opens with.
    pub const MEDIUM: Urgency = Urgency(3);
}

impl Priority {
    pub const P1: Priority = Priority(1);
    pub const P4: Priority = Priority(4);

    /// The priority the matrix derives from impact and urgency.
    pub fn derive(impact: Impact, urgency: Urgency) -> Priority {
        Priority(MATRIX[usize::from(impact.0 - 1)][usize::from(urgency.0 - 1)])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn matrix_corners_and_symmetry() {
        let p = |i, u| Priority::derive(Impact::new(i).unwrap(), Urgency::new(u).unwrap()).get();
        assert_eq!(p(1, 1), 1);
        assert_eq!(p(4, 4), 4);
        for i in 1..=4 {
            for u in 1..=4 {
                assert_eq!(p(i, u), p(u, i), "matrix is symmetric");
                if i < 4 {
                    assert!(p(i, u) <= p(i + 1, u), "lower impact never raises priority");
                }
            }
        }
    }

    #[test]
    fn range_is_checked() {
        assert!(Impact::new(0).is_err());
        assert!(Impact::new(5).is_err());
        assert_eq!(serde_json::from_str::<Urgency>("3").unwrap().get(), 3);
        assert!(serde_json::from_str::<Urgency>("7").is_err());
    }
}
