//! Several identity providers at once: the `[[providers]]` tables.
//!
//! Each table has an `id` and the settings one provider has in the flat
//! form (`provider`, `oidc_issuer_url`, `client_id`, ...). The flat settings,
//! when given, are the provider `default` and come first; with no
//! `[[providers]]` the configuration is exactly the single-provider one.
//! Providers are numbered in that order once, at start: sessions, login
//! states and routes name a provider by id, and the request path works with
//! its index ([`ProviderSet`]).

use serde::Deserialize;

use super::secret::Secret;
use super::{Problems, ProviderConfig, RawConfig, build_provider, read_optional_secret, strength};

/// The id of the provider the flat settings make.
pub const DEFAULT_ID: &str = "default";

/// Most providers one configuration may have (a [`ProviderSet`] is a bit set).
pub const MAX_PROVIDERS: usize = 64;

/// Longest provider id: it travels in cookies and URLs.
const MAX_ID_LEN: usize = 32;

/// One `[[providers]]` table as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// `id`: letters, digits, `-` and `_`.
    pub id: Option<String>,
    /// `name`: what the sign-in chooser shows [default: the id].
    pub name: Option<String>,
    /// The preset, as the flat `provider`.
    pub provider: Option<String>,
    /// As the flat key.
    pub oidc_issuer_url: Option<String>,
    /// As the flat key.
    pub client_id: Option<String>,
    /// As the flat key.
    pub client_secret: Option<Secret>,
    /// As the flat key.
    pub client_secret_file: Option<String>,
    /// As the flat key.
    pub scope: Option<String>,
    /// As the flat key.
    pub oidc_email_claim: Option<String>,
    /// As the flat key.
    pub oidc_groups_claim: Option<String>,
    /// As the flat key.
    pub user_id_claim: Option<String>,
    /// As the flat key.
    #[serde(default)]
    pub oidc_extra_audience: Vec<String>,
    /// As the flat key.
    pub token_endpoint_auth_method: Option<String>,
    /// As the flat key.
    pub token_request_encoding: Option<String>,
    /// As the flat key.
    pub identity_source: Option<String>,
    /// As the flat key.
    pub skip_oidc_discovery: Option<bool>,
    /// As the flat key.
    pub oidc_authorize_url: Option<String>,
    /// As the flat key.
    pub oidc_token_url: Option<String>,
    /// As the flat key.
    pub oidc_jwks_url: Option<String>,
    /// As the flat key.
    pub oidc_userinfo_url: Option<String>,
    /// As the flat key.
    pub oidc_end_session_url: Option<String>,
    /// As the flat key.
    pub insecure_oidc_allow_http: Option<bool>,
    /// As the flat key.
    pub audience: Option<String>,
}

/// One provider with its client, resolved.
#[derive(Debug, Clone)]
pub struct ProviderEntry {
    /// `default` for the flat settings, else the table's `id`.
    pub id: String,
    /// What the sign-in chooser shows.
    pub label: String,
    /// Where its settings are, as problems name them: empty for the flat
    /// settings, `providers[i].` for a table.
    pub key_prefix: String,
    /// The provider's settings.
    pub provider: ProviderConfig,
    /// OAuth client id at this provider.
    pub client_id: String,
    /// OAuth client secret; `None` for a public client.
    pub client_secret: Option<Secret>,
}

/// A set of providers by index (at most [`MAX_PROVIDERS`]): what a route
/// allows. Checking a session against it is one bit test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderSet(u64);

impl ProviderSet {
    /// Every provider of a configuration with `n` of them.
    pub fn all(n: usize) -> Self {
        if n >= MAX_PROVIDERS {
            Self(u64::MAX)
        } else {
            Self((1u64 << n) - 1)
        }
    }

    /// Only the provider at `index`.
    pub fn only(index: usize) -> Self {
        Self(
            1u64.checked_shl(u32::try_from(index).unwrap_or(u32::MAX))
                .unwrap_or(0),
        )
    }

    /// This set and the provider at `index`.
    #[must_use]
    pub fn with(self, index: usize) -> Self {
        Self(self.0 | Self::only(index).0)
    }

    /// Whether the provider at `index` is in the set.
    pub fn contains(self, index: usize) -> bool {
        self.0 & Self::only(index).0 != 0
    }

    /// The indexes in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_PROVIDERS).filter(move |i| self.contains(*i))
    }

    /// The one provider when the set has exactly one.
    pub fn single(self) -> Option<usize> {
        (self.0.count_ones() == 1).then(|| self.0.trailing_zeros() as usize)
    }
}

/// The flat keys that are settings of one provider (others, like
/// `redirect_url` or `allowed_group`, are shared by every provider).
fn flat_provider_keys(raw: &RawConfig) -> Vec<&'static str> {
    let set = [
        ("provider", raw.provider.is_some()),
        ("oidc_issuer_url", raw.oidc_issuer_url.is_some()),
        ("client_id", raw.client_id.is_some()),
        ("client_secret", raw.client_secret.is_some()),
        ("client_secret_file", raw.client_secret_file.is_some()),
        ("scope", raw.scope.is_some()),
        ("oidc_email_claim", raw.oidc_email_claim.is_some()),
        ("oidc_groups_claim", raw.oidc_groups_claim.is_some()),
        ("user_id_claim", raw.user_id_claim.is_some()),
        ("oidc_extra_audience", !raw.oidc_extra_audience.is_empty()),
        (
            "token_endpoint_auth_method",
            raw.token_endpoint_auth_method.is_some(),
        ),
        (
            "token_request_encoding",
            raw.token_request_encoding.is_some(),
        ),
        ("identity_source", raw.identity_source.is_some()),
        ("skip_oidc_discovery", raw.skip_oidc_discovery.is_some()),
        ("oidc_authorize_url", raw.oidc_authorize_url.is_some()),
        ("oidc_token_url", raw.oidc_token_url.is_some()),
        ("oidc_jwks_url", raw.oidc_jwks_url.is_some()),
        ("oidc_userinfo_url", raw.oidc_userinfo_url.is_some()),
        ("oidc_end_session_url", raw.oidc_end_session_url.is_some()),
        (
            "insecure_oidc_allow_http",
            raw.insecure_oidc_allow_http.is_some(),
        ),
        ("audience", raw.audience.is_some()),
    ];
    set.into_iter()
        .filter_map(|(k, given)| given.then_some(k))
        .collect()
}

/// Whether the flat settings make the provider `default`: always without
/// `[[providers]]`; with them, when `client_id` is given. Flat provider
/// settings without a flat `client_id` next to `[[providers]]` belong to no
/// provider: each is a problem naming its key.
pub(super) fn flat_is_used(p: &mut Problems, raw: &RawConfig) -> bool {
    if raw.providers.is_empty() || raw.client_id.is_some() {
        return true;
    }
    for key in flat_provider_keys(raw) {
        p.add(
            key,
            "a provider setting outside [[providers]] with no client_id next to it: it belongs \
             to no provider; move it into a [[providers]] table, or give client_id to make the \
             flat settings the provider `default`",
        );
    }
    false
}

/// Every provider in order: the flat one (`default`) when `flat_used`
/// (`flat` is `None` when its settings had problems), then each
/// `[[providers]]` table. `None` when any has a problem (each reported,
/// naming `providers[i].key`).
pub(super) fn build_all(
    p: &mut Problems,
    raw: &RawConfig,
    flat_used: bool,
    flat: Option<ProviderEntry>,
) -> Option<Vec<ProviderEntry>> {
    let mut ok = !flat_used || flat.is_some();
    let mut out: Vec<ProviderEntry> = flat.into_iter().collect();
    let mut seen: Vec<String> = if flat_used {
        vec![DEFAULT_ID.to_owned()]
    } else {
        Vec::new()
    };
    if raw.providers.len() + usize::from(flat_used) > MAX_PROVIDERS {
        p.add(
            "providers",
            format!("at most {MAX_PROVIDERS} providers (the flat settings count as one)"),
        );
        return None;
    }
    for (i, entry) in raw.providers.iter().enumerate() {
        let at = |key: &str| format!("providers[{i}].{key}");
        let id = match entry.id.as_deref().map(str::trim) {
            None | Some("") => {
                p.add(&at("id"), "required: a short name routes and sessions use");
                None
            }
            Some(id) if id == DEFAULT_ID && flat_used => {
                p.add(
                    &at("id"),
                    "`default` is the provider the flat settings (client_id, oidc_issuer_url, ...) \
                     make; pick another id, or move the flat settings into this table",
                );
                None
            }
            Some(id) if seen.iter().any(|s| s == id) => {
                p.add(&at("id"), format!("`{id}` is given to two providers"));
                None
            }
            Some(id)
                if id.len() > MAX_ID_LEN
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                p.add(
                    &at("id"),
                    format!(
                        "`{id}`: at most {MAX_ID_LEN} letters, digits, `-` and `_` (it travels in cookies and URLs)"
                    ),
                );
                None
            }
            Some(id) => {
                seen.push(id.to_owned());
                Some(id.to_owned())
            }
        };
        let client_id = match entry.client_id.as_deref().map(str::trim) {
            Some(c) if !c.is_empty() => Some(c.to_owned()),
            _ => {
                p.add(&at("client_id"), "required");
                None
            }
        };
        let mut sub = Problems::default();
        let secret = sub
            .check(
                "client_secret_file",
                read_optional_secret(
                    "client_secret",
                    entry.client_secret.clone(),
                    entry.client_secret_file.as_deref(),
                ),
            )
            .flatten();
        if let Some(reason) = secret
            .as_ref()
            .and_then(strength::placeholder_client_secret)
        {
            sub.add("client_secret", reason);
        }
        let provider = build_provider(&mut sub, &entry.as_raw(raw), secret.is_some());
        for problem in sub.0 {
            p.add(&at(&problem.key), problem.reason);
        }
        match (id, client_id, provider) {
            (Some(id), Some(client_id), Some(provider)) => out.push(ProviderEntry {
                label: entry.name.clone().unwrap_or_else(|| id.clone()),
                key_prefix: format!("providers[{i}]."),
                id,
                provider,
                client_id,
                client_secret: secret,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

impl RawProvider {
    /// This table's settings in the flat form, with the shared settings a
    /// provider's resolution reads (`allowed_role`) from `shared`.
    fn as_raw(&self, shared: &RawConfig) -> RawConfig {
        RawConfig {
            provider: self.provider.clone(),
            oidc_issuer_url: self.oidc_issuer_url.clone(),
            scope: self.scope.clone(),
            oidc_email_claim: self.oidc_email_claim.clone(),
            oidc_groups_claim: self.oidc_groups_claim.clone(),
            user_id_claim: self.user_id_claim.clone(),
            oidc_extra_audience: self.oidc_extra_audience.clone(),
            token_endpoint_auth_method: self.token_endpoint_auth_method.clone(),
            token_request_encoding: self.token_request_encoding.clone(),
            identity_source: self.identity_source.clone(),
            skip_oidc_discovery: self.skip_oidc_discovery,
            oidc_authorize_url: self.oidc_authorize_url.clone(),
            oidc_token_url: self.oidc_token_url.clone(),
            oidc_jwks_url: self.oidc_jwks_url.clone(),
            oidc_userinfo_url: self.oidc_userinfo_url.clone(),
            oidc_end_session_url: self.oidc_end_session_url.clone(),
            insecure_oidc_allow_http: self.insecure_oidc_allow_http,
            audience: self.audience.clone(),
            allowed_role: shared.allowed_role.clone(),
            ..RawConfig::default()
        }
    }
}

/// The `providers` value of a TOML file: an array of tables, each key
/// read alone so a wrong one is named `providers[i].key`.
pub(super) fn parse_tables(value: toml::Value, p: &mut Problems) -> Vec<RawProvider> {
    let toml::Value::Array(items) = value else {
        p.add(
            "providers",
            "expected [[providers]] tables, each with an id and a provider's settings",
        );
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let toml::Value::Table(table) = item else {
            p.add(&format!("providers[{i}]"), "expected a table");
            continue;
        };
        let mut entry = RawProvider::default();
        for (key, value) in table {
            let mut one = toml::Table::new();
            one.insert(key.clone(), value);
            match one.try_into::<RawProvider>() {
                Ok(r) => entry.take_given(r),
                Err(e) => p.add(&format!("providers[{i}].{key}"), e.message().trim()),
            }
        }
        out.push(entry);
    }
    out
}

impl RawProvider {
    /// Takes every setting `other` has.
    fn take_given(&mut self, other: Self) {
        macro_rules! take {
            ($($f:ident),*) => { $(if other.$f.is_some() { self.$f = other.$f; })* };
        }
        take!(
            id,
            name,
            provider,
            oidc_issuer_url,
            client_id,
            client_secret,
            client_secret_file,
            scope,
            oidc_email_claim,
            oidc_groups_claim,
            user_id_claim,
            token_endpoint_auth_method,
            token_request_encoding,
            identity_source,
            skip_oidc_discovery,
            oidc_authorize_url,
            oidc_token_url,
            oidc_jwks_url,
            oidc_userinfo_url,
            oidc_end_session_url,
            insecure_oidc_allow_http,
            audience
        );
        if !other.oidc_extra_audience.is_empty() {
            self.oidc_extra_audience = other.oidc_extra_audience;
        }
    }
}

/// The provider ids as configured (also those of tables with problems,
/// so a route naming one is not a second error): `default` when the flat
/// settings make a provider, then each table's.
pub(super) fn ids(raw: &RawConfig, flat_used: bool) -> Vec<String> {
    let flat = flat_used.then(|| DEFAULT_ID.to_owned());
    flat.into_iter()
        .chain(
            raw.providers
                .iter()
                .filter_map(|e| e.id.as_deref().map(|id| id.trim().to_owned())),
        )
        .collect()
}

/// A route's `provider` or `providers`, resolved to indexes into `ids`:
/// `None` (every provider) when neither is given. An unknown id, both keys,
/// or an empty list is a problem naming `route.key`.
pub(super) fn route_providers(
    p: &mut Problems,
    route: &str,
    one: Option<&str>,
    many: Option<&[String]>,
    ids: &[String],
) -> Option<ProviderSet> {
    let list: Vec<&str> = match (one, many) {
        (None, None) => return None,
        (Some(_), Some(_)) => {
            p.add(
                &format!("{route}.providers"),
                "give provider or providers, not both",
            );
            return None;
        }
        (Some(id), None) => vec![id],
        (None, Some([])) => {
            p.add(
                &format!("{route}.providers"),
                "an empty list lets no session in; leave the key out for every provider",
            );
            return None;
        }
        (None, Some(list)) => list.iter().map(String::as_str).collect(),
    };
    let key = format!(
        "{route}.{}",
        if one.is_some() {
            "provider"
        } else {
            "providers"
        }
    );
    let mut set: Option<ProviderSet> = None;
    for id in list {
        match ids.iter().position(|known| known == id) {
            Some(i) => set = Some(set.map_or(ProviderSet::only(i), |s| s.with(i))),
            None => p.add(
                &key,
                format!(
                    "no provider has the id `{id}`; the ids are: {}",
                    ids.join(", ")
                ),
            ),
        }
    }
    set
}

impl super::Config {
    /// The index of the provider a session or login state names (`None`:
    /// the primary one); `None` when no provider has that id any more.
    pub fn provider_index(&self, id: Option<&str>) -> Option<usize> {
        match id {
            None => Some(0),
            Some(id) => self.providers.iter().position(|e| e.id == id),
        }
    }

    /// How a session or login state names the provider at `index`: nothing
    /// for the primary one, else its id.
    pub fn provider_tag(&self, index: usize) -> Option<String> {
        (index != 0)
            .then(|| self.providers.get(index).map(|e| e.id.clone()))
            .flatten()
    }

    /// Every configured provider.
    pub fn all_providers(&self) -> ProviderSet {
        ProviderSet::all(self.providers.len())
    }
}

#[cfg(test)]
mod tests;
