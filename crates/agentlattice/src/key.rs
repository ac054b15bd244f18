//! Service keys and agent keys: two types, so that one can never be used where the other belongs.
//!
//! Both are validated by their scheme when they are built, both redact themselves in `Debug` and
//! `Display`, both zero their memory when dropped, and the secret is reachable only through
//! [`ServiceKey::expose_secret`] / [`AgentKey::expose_secret`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// Scheme of a service key (never printed: error messages name the kind of key, not the scheme).
const SERVICE_SCHEME: &str = "al_svc_";
/// Scheme of an agent key.
const AGENT_SCHEME: &str = "al_agent_";
/// Length of a key's public prefix (contract §1.1).
const PUBLIC_PREFIX_LEN: usize = 8;

/// Why a string is not a valid key. The message never contains the key, nor the scheme strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The string does not carry the service-key scheme.
    #[error("not a service key (wrong scheme)")]
    NotServiceKey,
    /// The string does not carry the agent-key scheme.
    #[error("not an agent key (wrong scheme)")]
    NotAgentKey,
    /// The scheme is there but nothing follows it.
    #[error("the key has no body after its scheme")]
    EmptyBody,
    /// The key holds characters that cannot travel in an HTTP header (whitespace inside, control
    /// characters, non-ASCII).
    #[error("the key contains characters that are not allowed in a key")]
    InvalidCharacters,
}

/// The secret bytes of a key, zeroed on drop.
#[derive(Clone)]
struct Secret(Zeroizing<String>);

impl Secret {
    /// Validates `input` (surrounding whitespace, such as the newline of a mounted Secret file,
    /// is ignored) and keeps it. `input` itself is zeroed whatever the outcome.
    fn parse(input: String, scheme: &str, wrong_scheme: KeyError) -> Result<Self, KeyError> {
        let input = Zeroizing::new(input);
        let trimmed = input.trim();
        let Some(body) = trimmed.strip_prefix(scheme) else {
            return Err(wrong_scheme);
        };
        if body.is_empty() {
            return Err(KeyError::EmptyBody);
        }
        if !body.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyError::InvalidCharacters);
        }
        Ok(Self(Zeroizing::new(trimmed.to_owned())))
    }

    fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Constant-time comparison (the length is not hidden).
    fn ct_eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident, $scheme:expr, $wrong:expr, $expecting:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Secret);

        impl $name {
            /// Parses a key, checking its scheme. Surrounding whitespace (for instance the trailing
            /// newline of a file) is ignored. The error never contains the input.
            pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
                Secret::parse(key.into(), $scheme, $wrong).map(Self)
            }

            /// The key itself, for the one place that must see it (an `Authorization` header,
            /// a Kubernetes Secret). Never log it.
            pub fn expose_secret(&self) -> &str {
                self.0.expose()
            }

            /// The key's public prefix: the first 8 characters after the scheme (contract §1.1).
            /// Safe to show in logs and status; never enough to use the key.
            pub fn public_prefix(&self) -> &str {
                let body = &self.0.expose()[$scheme.len()..];
                // The body is ASCII (checked at construction), so any index is a char boundary.
                &body[..body.len().min(PUBLIC_PREFIX_LEN)]
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0)
            }
        }

        impl Eq for $name {}

        impl FromStr for $name {
            type Err = KeyError;

            fn from_str(s: &str) -> Result<Self, KeyError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = KeyError;

            fn try_from(s: String) -> Result<Self, KeyError> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }

                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::new(v).map_err(E::custom)
                    }

                    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<$name, E> {
                        $name::new(v).map_err(E::custom)
                    }
                }
                deserializer.deserialize_string(V)
            }
        }
    };
}

key_type!(
    /// A service key: the provisioner's credential. It can register and manage agents, never act
    /// as one. Build a [`crate::ProvisionerClient`] from it.
    ///
    /// ```
    /// # use agentlattice::ServiceKey;
    /// let key: ServiceKey = "al_svc_0123456789abcdefghijABCDEFGHIJ0123456789".parse()?;
    /// assert_eq!(format!("{key:?}"), "ServiceKey(<redacted>)");
    /// assert_eq!(key.public_prefix(), "01234567");
    /// # Ok::<(), agentlattice::KeyError>(())
    /// ```
    ServiceKey,
    SERVICE_SCHEME,
    KeyError::NotServiceKey,
    "a service key"
);

key_type!(
    /// An agent key: a workload's credential. It can act, never provision. Build an
    /// [`crate::AgentClient`] from it. Register and mint return new keys as `AgentKey` values.
    ///
    /// ```
    /// # use agentlattice::AgentKey;
    /// let key = AgentKey::new("al_agent_0123456789abcdefghijABCDEFGHIJ0123456789")?;
    /// assert_eq!(key.to_string(), "AgentKey(<redacted>)");
    /// # Ok::<(), agentlattice::KeyError>(())
    /// ```
    AgentKey,
    AGENT_SCHEME,
    KeyError::NotAgentKey,
    "an agent key"
);

#[cfg(test)]
mod tests {
    use super::*;

    const SVC: &str = "al_svc_AbCdEfGh0123456789abcdefghij0123456789";
    const AGT: &str = "al_agent_ZyXwVuTs0123456789abcdefghij0123456789";

    #[test]
    fn parses_by_scheme() {
        assert!(ServiceKey::new(SVC).is_ok());
        assert!(AgentKey::new(AGT).is_ok());
        assert_eq!(ServiceKey::new(AGT).err(), Some(KeyError::NotServiceKey));
        assert_eq!(AgentKey::new(SVC).err(), Some(KeyError::NotAgentKey));
        assert_eq!(AgentKey::new("").err(), Some(KeyError::NotAgentKey));
        assert_eq!(AgentKey::new("al_agent_").err(), Some(KeyError::EmptyBody));
        assert_eq!(
            AgentKey::new("al_agent_ab cd").err(),
            Some(KeyError::InvalidCharacters)
        );
        assert_eq!(
            AgentKey::new("al_agent_abé").err(),
            Some(KeyError::InvalidCharacters)
        );
        // A scheme in the wrong case is the wrong scheme.
        assert_eq!(
            ServiceKey::new("AL_SVC_abc").err(),
            Some(KeyError::NotServiceKey)
        );
    }

    #[test]
    fn trims_surrounding_whitespace() {
        let k = ServiceKey::new(format!("  {SVC}\n")).unwrap();
        assert_eq!(k.expose_secret(), SVC);
    }

    #[test]
    fn errors_never_show_the_key_or_the_scheme() {
        for e in [
            ServiceKey::new(AGT).err().unwrap(),
            AgentKey::new(SVC).err().unwrap(),
            AgentKey::new("al_agent_").err().unwrap(),
            AgentKey::new("al_agent_a b").err().unwrap(),
        ] {
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("al_svc_"), "{shown}");
            assert!(!shown.contains("al_agent_"), "{shown}");
            assert!(!shown.contains("AbCdEfGh"), "{shown}");
        }
        assert_eq!(
            ServiceKey::new(AGT).err().unwrap().to_string(),
            "not a service key (wrong scheme)"
        );
        assert_eq!(
            AgentKey::new(SVC).err().unwrap().to_string(),
            "not an agent key (wrong scheme)"
        );
    }

    #[test]
    fn redacts_in_debug_and_display() {
        let s = ServiceKey::new(SVC).unwrap();
        let a = AgentKey::new(AGT).unwrap();
        assert_eq!(format!("{s:?}"), "ServiceKey(<redacted>)");
        assert_eq!(format!("{s}"), "ServiceKey(<redacted>)");
        assert_eq!(format!("{a:?}"), "AgentKey(<redacted>)");
        assert_eq!(format!("{a:#?}"), "AgentKey(<redacted>)");
        assert_eq!(format!("{:?}", Some(&a)), "Some(AgentKey(<redacted>))");
        assert_eq!(s.expose_secret(), SVC);
        assert_eq!(a.expose_secret(), AGT);
    }

    #[test]
    fn public_prefix_is_the_body_start_without_scheme() {
        assert_eq!(ServiceKey::new(SVC).unwrap().public_prefix(), "AbCdEfGh");
        assert_eq!(AgentKey::new(AGT).unwrap().public_prefix(), "ZyXwVuTs");
        assert_eq!(
            AgentKey::new("al_agent_abc").unwrap().public_prefix(),
            "abc"
        );
    }

    #[test]
    fn equality_compares_the_secret() {
        let a = AgentKey::new(AGT).unwrap();
        assert_eq!(a, a.clone());
        assert_ne!(a, AgentKey::new("al_agent_other").unwrap());
    }

    #[test]
    fn deserializes_with_validation_and_a_secret_free_error() {
        let k: AgentKey = serde_json::from_str(&format!("\"{AGT}\"")).unwrap();
        assert_eq!(k.expose_secret(), AGT);
        let e = serde_json::from_str::<AgentKey>(&format!("\"{SVC}\"")).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("not an agent key"), "{shown}");
        assert!(!shown.contains("AbCdEfGh"), "{shown}");
        assert!(
            serde_json::from_str::<Option<AgentKey>>("null")
                .unwrap()
                .is_none()
        );
    }
}
