//! Who did something to an order, a charge or a refund. Stored as text
//! (`order_history.by_whom`, `orders.created_by`, `charges.created_by`,
//! `refunds.created_by`) and shown in an order's history as `kind:id`.

use std::fmt;

/// One actor; [`Display`](fmt::Display) gives the stored text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A counter terminal, `terminal:S001-T01` (a terminal key without a
    /// terminal id is named by its key id, `terminal:{key id}`).
    Terminal(String),
    /// An admin key, `admin:{key id}`.
    Admin(String),
    /// The brand app's key, `app:{key id}`.
    App(String),
    /// A delivery platform acting on its own order, `platform:meituan`.
    Platform(String),
}

impl Actor {
    /// The part before the colon.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Terminal(_) => "terminal",
            Actor::Admin(_) => "admin",
            Actor::App(_) => "app",
            Actor::Platform(_) => "platform",
        }
    }

    /// The part after the colon.
    pub fn id(&self) -> &str {
        match self {
            Actor::Terminal(id) | Actor::Admin(id) | Actor::App(id) | Actor::Platform(id) => id,
        }
    }

    /// Reads stored text back; `None` for a kind this gateway does not know.
    pub fn parse(s: &str) -> Option<Actor> {
        let (kind, id) = s.split_once(':')?;
        let id = id.to_owned();
        match kind {
            "terminal" => Some(Actor::Terminal(id)),
            "admin" => Some(Actor::Admin(id)),
            "app" => Some(Actor::App(id)),
            "platform" => Some(Actor::Platform(id)),
            _ => None,
        }
    }

    /// A change the platform itself made (not to be echoed back to it).
    pub fn is_platform(&self) -> bool {
        matches!(self, Actor::Platform(_))
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.id())
    }
}

impl serde::Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_stored_as_kind_colon_id_and_read_back() {
        for (a, s) in [
            (Actor::Terminal("S001-T01".into()), "terminal:S001-T01"),
            (Actor::Admin("a1b2c3".into()), "admin:a1b2c3"),
            (Actor::App("d4e5f6".into()), "app:d4e5f6"),
            (Actor::Platform("meituan".into()), "platform:meituan"),
        ] {
            assert_eq!(a.to_string(), s);
            assert_eq!(Actor::parse(s), Some(a.clone()));
            assert_eq!(serde_json::to_value(&a).unwrap(), serde_json::json!(s));
        }
        assert!(Actor::Platform("meituan".into()).is_platform());
        assert!(!Actor::Terminal("platform".into()).is_platform());
        assert_eq!(Actor::parse("robot:1"), None);
        assert_eq!(Actor::parse("admin"), None);
    }
}
