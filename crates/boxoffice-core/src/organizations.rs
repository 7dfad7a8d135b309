//! Organizations: the tenants of a boxoffice installation.

use crate::clock::Timestamp;
use crate::ids::OrganizationId;

/// The longest name we accept for anything a person names (organizations, events, ticket types).
pub const MAX_NAME_LEN: usize = 200;

/// A display name: trimmed, non-empty, at most [`MAX_NAME_LEN`] characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Name(String);

/// The name is empty, too long or contains control characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a name must be 1 to {MAX_NAME_LEN} characters without control characters")]
pub struct InvalidName;

impl Name {
    /// Parses a name received from outside.
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.chars().count() > MAX_NAME_LEN || trimmed.chars().any(char::is_control) {
            return Err(InvalidName);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Rebuilds a name read back from our own database.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// Its id.
    pub id: OrganizationId,
    /// Its display name.
    pub name: Name,
    /// When it was created.
    pub created_at: Timestamp,
}
