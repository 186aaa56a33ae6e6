//! Authentication: who is asking, and may they pass.
//!
//! Owns: the [`Gate`], which decides from the request head alone (never the
//! body) whether a request is allowed, and the `/oauth2/*` endpoints that sign
//! users in and out. A decision needs the provider only when `cookie_refresh`
//! is set and the session's tokens are due for a refresh.
//! Must not: talk to the upstream or build upstream URLs. It reaches the
//! provider only through the client held in the app state.
//!
//! Not being signed in is a [`Decision`], not an error: the router renders a
//! challenge as a redirect to the provider or as a 401, depending on who asked.

pub mod backchannel;
pub mod bearer;
pub mod endpoints;
pub mod forward_auth;
pub mod identity;
pub mod oidc;
pub mod once;
pub mod policy;
pub mod providers;
pub mod refresh;
pub mod return_to;
pub mod session;
pub mod step_up;
pub mod tunnel;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use crate::auth::identity::Identity;
use crate::auth::oidc::{Providers, RefreshError};
use crate::auth::policy::DenyReason;
use crate::auth::refresh::SharedRefresh;
use crate::auth::session::store::{SessionStore as _, Store, StoreError};
use crate::auth::session::{CookieCodec, Session, clear_session, now_secs, session_cookies};
use crate::config::Config;
use crate::routes::Route;

/// Most refreshes remembered at once (see [`Gate`]).
const REFRESH_CACHE_CAPACITY: u64 = 10_000;
/// How long a refresh's outcome is reused for the same old cookie.
const REFRESH_REUSE: Duration = Duration::from_secs(30);
/// An access token this close to expiry is refreshed when forwarded.
const ACCESS_TOKEN_MARGIN_SECS: u64 = 30;

/// Who was allowed (or, in an access note, refused): shared, not copied.
/// A signed-in request used to copy the whole session, tokens and all, out
/// of its store's cache.
#[derive(Debug, Clone)]
pub enum Allowed {
    /// A session: the one its store's cache holds, or one just refreshed.
    Session(Arc<Session>),
    /// A bearer token's identity, as the token cache holds it.
    Token(Arc<bearer::Verified>),
    /// An identity on its own (a refused or step-up request's, noted for
    /// the access log).
    Owned(Arc<Identity>),
}

impl std::ops::Deref for Allowed {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        match self {
            Self::Session(s) => &s.identity,
            Self::Token(t) => &t.identity,
            Self::Owned(i) => i,
        }
    }
}

impl From<Identity> for Allowed {
    fn from(identity: Identity) -> Self {
        Self::Owned(Arc::new(identity))
    }
}

/// What the gate decided about one request.
#[derive(Debug)]
pub enum Decision {
    /// Signed in and allowed.
    Allow(Allowed),
    /// Not signed in (no cookie, or one that did not decode, has expired,
    /// was revoked, or whose refresh the provider refused).
    Challenge,
    /// Signed in but refused by policy; who was refused.
    Deny(DenyReason, Box<Identity>),
    /// A bearer token where tokens are accepted, and it did not verify:
    /// 401 with `WWW-Authenticate`, never a redirect, never a session.
    InvalidToken,
    /// Signed in and allowed, but the route asks for a stronger or more
    /// recent sign-in than the session's (see [`step_up`]): a new login at
    /// the provider with the route's [`step_up::StepUp`]; who it is, and the
    /// index of the provider the session is from (the login goes there).
    StepUp(Box<Identity>, usize),
    /// No answer can be given (never an allow): the session is due for a
    /// refresh and the provider could not be reached, or the session store
    /// cannot vouch for the session.
    Unavailable(Unavailable),
}

/// What a [`Decision::Unavailable`] is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The identity provider (a refresh was due).
    Provider,
    /// The session store (Redis).
    Store,
}

impl Unavailable {
    /// The error to answer with.
    pub fn error(self) -> crate::error::Error {
        match self {
            Self::Provider => crate::error::Error::IdpNotReady,
            Self::Store => crate::error::Error::StoreUnavailable,
        }
    }
}

/// A decision plus the `Set-Cookie` values the response must carry (a
/// refreshed session, or the clearing of a dead one).
#[derive(Debug)]
pub struct Decided {
    /// The decision.
    pub decision: Decision,
    /// Cookies to set on whatever response answers the request.
    pub set_cookies: Vec<HeaderValue>,
}

/// The outcome of one refresh, shared by every request that carried the
/// same old session.
type RefreshOutcome = Result<(Session, Vec<HeaderValue>), Arc<RefreshError>>;

/// Decides requests. Built once at start.
pub struct Gate {
    codec: Arc<CookieCodec>,
    store: Arc<Store>,
    /// Refreshes in flight or just done, keyed by a hash of the old refresh
    /// token: concurrent requests with the same stale cookie make one
    /// refresh, not one each (a rotating provider would refuse the second).
    refreshes: moka::future::Cache<[u8; 32], Arc<RefreshOutcome>>,
    /// With Redis: the same rule across replicas.
    shared_refresh: Option<SharedRefresh>,
    /// The live state's store, shared by every gate a reload builds from
    /// this one: a tunnel's watch re-checks against it, never against the
    /// store (codec, revocations) of the state it opened under.
    live_store: Arc<arc_swap::ArcSwap<Store>>,
}

impl Gate {
    /// Builds the gate around the cookie codec and the session store.
    pub fn new(
        codec: Arc<CookieCodec>,
        store: Store,
        shared_refresh: Option<SharedRefresh>,
        cookie_refresh: Option<Duration>,
    ) -> Self {
        // an outcome is reused as long as a refresh interval: a browser that
        // did not get the new cookie (a front proxy dropped it) keeps
        // presenting the old one, which must not redeem a rotated token again
        let reuse = cookie_refresh.map_or(REFRESH_REUSE, |r| r.max(REFRESH_REUSE));
        let refreshes = moka::future::Cache::builder()
            .max_capacity(REFRESH_CACHE_CAPACITY)
            .time_to_live(reuse)
            .build();
        let store = Arc::new(store);
        Self {
            codec,
            live_store: Arc::new(arc_swap::ArcSwap::new(Arc::clone(&store))),
            store,
            refreshes,
            shared_refresh,
        }
    }

    /// This gate, built for a reload of `old`'s state, shares its live
    /// store: tunnels watched by either re-check against the store made
    /// live last (see [`Gate::go_live`]).
    #[must_use]
    pub fn reloading(mut self, old: &Self) -> Self {
        self.live_store = Arc::clone(&old.live_store);
        self
    }

    /// Makes this gate's store the one every tunnel re-checks against: the
    /// server calls it once the state holding the gate is live.
    pub fn go_live(&self) {
        self.live_store.store(Arc::clone(&self.store));
    }

    /// The cookie codec (shared with the endpoints).
    pub fn codec(&self) -> &CookieCodec {
        &self.codec
    }

    /// The session store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The request's session: `Ok(None)` when there is none that is valid.
    pub async fn session(
        &self,
        config: &Config,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<Session>>, StoreError> {
        match session::session_cookie_unchecked(headers, &config.cookie.name) {
            Some(value) => self.store.load_unchecked(&value).await,
            None => Ok(None),
        }
    }

    /// Decides from the request's headers on `route` (the site-wide rules,
    /// then the route's allow lists), refreshing the session first when it
    /// is due. A public route never gets here: it needs no decision.
    pub async fn decide(
        &self,
        config: &Config,
        provider: &Providers,
        headers: &HeaderMap,
        route: &Route,
    ) -> Decided {
        let mut session = match self.session(config, headers).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                if session::request_cookies(headers)
                    .any(|(n, _)| session::is_session_cookie(n, &config.cookie.name))
                {
                    tracing::debug!("session cookie present but not valid: challenging");
                }
                return Decided {
                    decision: Decision::Challenge,
                    set_cookies: Vec::new(),
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, "session not checked");
                return Decided {
                    decision: Decision::Unavailable(Unavailable::Store),
                    set_cookies: Vec::new(),
                };
            }
        };
        let Some(index) = config.provider_index(session.provider.as_deref()) else {
            tracing::debug!("session of a provider no longer configured: challenging");
            return Decided {
                decision: Decision::Challenge,
                set_cookies: Vec::new(),
            };
        };
        // a session from a provider this route does not take is a reason
        // to sign in at one it does, not a refusal
        if route
            .providers
            .is_some_and(|allowed| !allowed.contains(index))
        {
            return Decided {
                decision: Decision::Challenge,
                set_cookies: Vec::new(),
            };
        }
        let mut set_cookies = Vec::new();
        if due_for_refresh(config, &session.identity, now_secs()) {
            // boxed: a refresh is rare, and its future (the provider call,
            // the refresh cache) would otherwise size every request's
            match Box::pin(self.refresh(config, provider, index, &session, headers)).await {
                Ok((fresh, cookies)) => {
                    session = Arc::new(fresh);
                    set_cookies = cookies;
                }
                Err(e) => {
                    let user = &session.identity.subject;
                    return match &*e {
                        RefreshError::Rejected(why) => {
                            tracing::info!(user = %user, reason = %why, "session refresh refused: signing out");
                            Decided {
                                decision: Decision::Challenge,
                                set_cookies: clear_session(&config.cookie, headers),
                            }
                        }
                        RefreshError::Unavailable(why) => {
                            tracing::warn!(user = %user, reason = %why, "session refresh failed");
                            Decided {
                                decision: Decision::Unavailable(Unavailable::Provider),
                                set_cookies,
                            }
                        }
                    };
                }
            }
        }
        let identity = &session.identity;
        // the route's lists only narrow what the site-wide rules allow
        let decision = match policy::check(config, identity).and_then(|()| route.admits(identity)) {
            // allowed, but the route asks for a stronger or newer sign-in
            Ok(()) if step_up::step_up_needed(identity, route.step_up.as_ref(), now_secs()) => {
                Decision::StepUp(Box::new(identity.clone()), index)
            }
            Ok(()) => Decision::Allow(Allowed::Session(session)),
            Err(reason) => Decision::Deny(reason, Box::new(identity.clone())),
        };
        Decided {
            decision,
            set_cookies,
        }
    }

    async fn refresh(
        &self,
        config: &Config,
        provider: &Providers,
        index: usize,
        session: &Session,
        headers: &HeaderMap,
    ) -> RefreshOutcome {
        let Some(token) = session.identity.tokens.refresh_token.as_ref() else {
            return Err(Arc::new(RefreshError::Rejected(
                "no refresh token".to_owned(),
            )));
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, token.expose().as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        // successes and refusals are remembered; an unreachable provider is
        // not (try_get_with caches no error), so the next request tries again
        let outcome = self
            .refreshes
            .try_get_with(key, async {
                let fresh = match &self.shared_refresh {
                    Some(shared) => {
                        shared
                            .refresh(session, || redeem(config, provider, index, session))
                            .await
                    }
                    None => redeem(config, provider, index, session).await,
                };
                let result = match fresh {
                    Ok(fresh) => self.store_refreshed(config, fresh, headers).await,
                    Err(e @ RefreshError::Unavailable(_)) => return Err(e),
                    Err(e) => Err(Arc::new(e)),
                };
                match result {
                    Err(e) if matches!(*e, RefreshError::Unavailable(_)) => Err(Arc::try_unwrap(e)
                        .unwrap_or_else(|e| RefreshError::Unavailable(e.to_string()))),
                    other => Ok(Arc::new(other)),
                }
            })
            .await;
        match outcome {
            Ok(shared) => (*shared).clone(),
            Err(unavailable) => Err(unavailable),
        }
    }

    /// Saves a refreshed session and makes its cookies.
    async fn store_refreshed(
        &self,
        config: &Config,
        fresh: Session,
        headers: &HeaderMap,
    ) -> RefreshOutcome {
        let value = self.store.save(&fresh).await.map_err(|e| {
            Arc::new(match e {
                StoreError::Unavailable(why) => RefreshError::Unavailable(why),
                StoreError::Unstorable(why) => RefreshError::Rejected(why.to_owned()),
            })
        })?;
        let cookies = session_cookies(&config.cookie, &value, fresh.identity.expires_at, headers)
            .ok_or_else(|| {
            Arc::new(RefreshError::Rejected(
                "refreshed session too large".to_owned(),
            ))
        })?;
        tracing::info!(user = %fresh.identity.subject, "session refreshed");
        Ok((fresh, cookies))
    }
}

/// Redeems the session's refresh token at the provider: the same session
/// (id, provider session, secret) with fresh tokens.
async fn redeem(
    config: &Config,
    provider: &Providers,
    index: usize,
    session: &Session,
) -> Result<Session, RefreshError> {
    let Some(p) = provider.at(index) else {
        return Err(RefreshError::Unavailable(
            "provider not discovered".to_owned(),
        ));
    };
    let identity = p
        .refresh(&session.identity, config.pass_access_token)
        .await?;
    Ok(Session {
        identity,
        ..session.clone()
    })
}

/// A session is refreshed when `cookie_refresh` has passed since its tokens
/// were obtained, or when its forwarded access token is (about to be) stale.
fn due_for_refresh(config: &Config, id: &Identity, now: u64) -> bool {
    let Some(every) = config.cookie.refresh else {
        return false;
    };
    if id.tokens.refresh_token.is_none() {
        return false;
    }
    let periodic = now >= id.refreshed_at.saturating_add(every.as_secs());
    let stale_token = config.pass_access_token
        && id
            .tokens
            .access_token_expires_at
            .is_some_and(|exp| exp <= now + ACCESS_TOKEN_MARGIN_SECS);
    periodic || stale_token
}

/// Removes gatehouse's own cookies from the `Cookie` headers, keeping the
/// application's pairs byte for byte, joined into one header. A malformed or
/// non-ASCII pair is dropped alone (never the whole header). Drops the header
/// when nothing is left.
pub fn strip_own_cookies(headers: &mut HeaderMap, base: &str) {
    if !headers.contains_key(http::header::COOKIE) {
        return;
    }
    // our own pairs are dropped by name, their values unread (the session
    // is kilobytes); only the application's pairs are parsed
    let kept = headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| session::split_cookie_header(v.as_bytes()))
        .filter(|raw| !session::names_own_cookie(raw, base))
        .filter_map(session::parse_cookie_pair)
        .map(|p| p.pair)
        .collect::<Vec<&str>>()
        .join("; ");
    headers.remove(http::header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = http::HeaderValue::from_str(&kept)
    {
        headers.insert(http::header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cookies_are_stripped_and_others_kept() {
        let mut h = HeaderMap::new();
        h.append(
            "cookie",
            "a=1; _gatehouse=xyz; _gatehouse_0=c0".parse().unwrap(),
        );
        h.append(
            "cookie",
            "_gatehouse_csrf_abc=1; b=2; _gatehousex=keep"
                .parse()
                .unwrap(),
        );
        strip_own_cookies(&mut h, "_gatehouse");
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2; _gatehousex=keep");
        let mut only = HeaderMap::new();
        only.insert("cookie", "_gatehouse=1".parse().unwrap());
        strip_own_cookies(&mut only, "_gatehouse");
        assert!(!only.contains_key("cookie"));
    }

    #[test]
    fn a_malformed_or_non_ascii_pair_is_dropped_alone_before_the_upstream() {
        // (Cookie header, what the upstream gets; None: no Cookie header)
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"a=1; x=\xff\xfe; b=2", Some("a=1; b=2")),
            (
                "a=1; caf\u{e9}=cr\u{e8}me; b=2".as_bytes(),
                Some("a=1; b=2"),
            ),
            (b"a=1; novalue; =x; c d=3; b=2", Some("a=1; b=2")),
            (b"a=1; _gatehouse=S; x=\x80; b=2", Some("a=1; b=2")),
            (b"  a = 1 ;;b=\"q w\";", Some("a = 1; b=\"q w\"")),
            (b"_gatehouse =S; _gatehouse_0=c; \xff", None),
            (b"\xff\xfe", None),
        ];
        for (raw, want) in cases {
            let mut h = HeaderMap::new();
            h.append("cookie", http::HeaderValue::from_bytes(raw).unwrap());
            strip_own_cookies(&mut h, "_gatehouse");
            let got: Vec<&[u8]> = h.get_all("cookie").iter().map(|v| v.as_bytes()).collect();
            let want: Vec<&[u8]> = want.iter().map(|w| w.as_bytes()).collect();
            assert_eq!(got, want, "{}", String::from_utf8_lossy(raw));
        }
    }
}

#[cfg(test)]
mod gate_tests;
