//! Tenants: the unit of isolation. Each tenant has its own key, its own
//! full-text index, its own blob prefix and is pinned to one region. Every
//! engine call names exactly one tenant through a validated [`TenantId`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::TenantError;

/// A validated tenant id: 1–63 characters of `a-z`, `0-9` and `-`, starting
/// and ending with a letter or digit (safe in paths, URLs and DNS labels).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<Self, TenantError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 63
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !id.starts_with('-')
            && !id.ends_with('-');
        if ok {
            Ok(TenantId(id))
        } else {
            Err(TenantError::InvalidId(id))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = TenantError;
    fn try_from(s: String) -> Result<Self, TenantError> {
        TenantId::new(s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl FromStr for TenantId {
    type Err = TenantError;
    fn from_str(s: &str) -> Result<Self, TenantError> {
        TenantId::new(s)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a tenant's data lives. Regions never exchange data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Region {
    /// European Union.
    Eu,
    /// United States.
    Us,
    /// Any other region name (`a-z`, `0-9`, `-`).
    Custom(String),
}

impl FromStr for Region {
    type Err = TenantError;
    fn from_str(s: &str) -> Result<Self, TenantError> {
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "eu" => Ok(Region::Eu),
            "us" => Ok(Region::Us),
            _ if !lower.is_empty()
                && lower.len() <= 32
                && lower
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
            {
                Ok(Region::Custom(lower))
            }
            _ => Err(TenantError::InvalidRegion(s.to_string())),
        }
    }
}

impl TryFrom<String> for Region {
    type Error = TenantError;
    fn try_from(s: String) -> Result<Self, TenantError> {
        s.parse()
    }
}

impl From<Region> for String {
    fn from(r: Region) -> String {
        r.to_string()
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Region::Eu => f.write_str("eu"),
            Region::Us => f.write_str("us"),
            Region::Custom(s) => f.write_str(s),
        }
    }
}

/// A retention period: how long mail is kept by default (`10y`, `6m`, `90d`).
/// The retention issue builds rules on top; this is the tenant's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Retention {
    /// How many units.
    pub count: u32,
    /// Which unit.
    pub unit: RetentionUnit,
}

/// Unit of a [`Retention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetentionUnit {
    /// Days.
    Days,
    /// Calendar months.
    Months,
    /// Calendar years.
    Years,
}

impl Default for Retention {
    /// Ten years: the longest GoBD period, so nothing is destroyed early by default.
    fn default() -> Self {
        Retention {
            count: 10,
            unit: RetentionUnit::Years,
        }
    }
}

impl FromStr for Retention {
    type Err = TenantError;
    fn from_str(s: &str) -> Result<Self, TenantError> {
        let bad =
            || TenantError::InvalidSetting(format!("retention {s:?}: use e.g. 10y, 6m or 90d"));
        let s2 = s.trim();
        let mut chars = s2.chars();
        let unit = match chars.next_back() {
            Some('d' | 'D') => RetentionUnit::Days,
            Some('m' | 'M') => RetentionUnit::Months,
            Some('y' | 'Y') => RetentionUnit::Years,
            _ => return Err(bad()),
        };
        let num = chars.as_str();
        let count: u32 = num.parse().map_err(|_| bad())?;
        if count == 0 || count > 1000 {
            return Err(bad());
        }
        Ok(Retention { count, unit })
    }
}

impl TryFrom<String> for Retention {
    type Error = TenantError;
    fn try_from(s: String) -> Result<Self, TenantError> {
        s.parse()
    }
}

impl From<Retention> for String {
    fn from(r: Retention) -> String {
        r.to_string()
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = match self.unit {
            RetentionUnit::Days => 'd',
            RetentionUnit::Months => 'm',
            RetentionUnit::Years => 'y',
        };
        write!(f, "{}{}", self.count, u)
    }
}

/// What a caller gives to create a tenant.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    /// The id.
    pub id: TenantId,
    /// Human-readable name (defaults to the id).
    pub name: Option<String>,
    /// Region the tenant is pinned to.
    pub region: Region,
    /// Mail domains the tenant receives mail for (SMTP routes by these).
    pub domains: Vec<String>,
    /// Default retention.
    pub retention: Retention,
}

impl TenantSpec {
    /// A spec with defaults: region `eu`, no domains, ten years' retention.
    pub fn new(id: TenantId) -> Self {
        TenantSpec {
            id,
            name: None,
            region: Region::Eu,
            domains: Vec::new(),
            retention: Retention::default(),
        }
    }
}

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// The id.
    pub id: TenantId,
    /// Human-readable name.
    pub name: String,
    /// Region.
    pub region: Region,
    /// Mail domains, lower-case.
    pub domains: Vec<String>,
    /// Default retention.
    pub retention: Retention,
    /// When it was created (Unix seconds).
    pub created_at: i64,
}

/// Normalises and validates a mail domain (lower-case, labels of letters,
/// digits and hyphens).
pub fn normalize_domain(d: &str) -> Result<String, TenantError> {
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(d)
    } else {
        Err(TenantError::InvalidDomain(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        for ok in ["acme", "a", "acme-corp", "t1", "0"] {
            TenantId::new(ok).unwrap();
        }
        for bad in [
            "",
            "Acme",
            "-a",
            "a-",
            "a_b",
            "a/b",
            "..",
            &"a".repeat(64),
            "ä",
        ] {
            assert!(TenantId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions_and_retention() {
        assert_eq!("EU".parse::<Region>().unwrap(), Region::Eu);
        assert_eq!(
            "ch-zurich".parse::<Region>().unwrap(),
            Region::Custom("ch-zurich".into())
        );
        assert!("bad region".parse::<Region>().is_err());
        assert_eq!("10y".parse::<Retention>().unwrap(), Retention::default());
        assert_eq!("6m".parse::<Retention>().unwrap().to_string(), "6m");
        for bad in ["", "y", "0y", "10", "10w", "-1d", "é"] {
            assert!(bad.parse::<Retention>().is_err(), "{bad}");
        }
        assert_eq!(normalize_domain("Example.COM.").unwrap(), "example.com");
        assert!(normalize_domain("exa mple.com").is_err());
    }
}
