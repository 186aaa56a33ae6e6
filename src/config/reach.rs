//! `--check-config` warnings about where browsers will reach gatehouse: the
//! provider sends the browser to `redirect_url`, so its host must be one
//! where gatehouse (or its front proxy) answers and where its cookie lives.
//!
//! Owns: the cases that are surely or very likely wrong: a loopback
//! redirect host while gatehouse listens for other machines, an IP literal
//! redirect host on gatehouse's own port but another address, and a
//! `cookie_domain` that does not cover the redirect host.
//! Must not: refuse anything (a front proxy can make odd setups right), or
//! warn about what is merely unusual.

use std::net::IpAddr;

use super::{CallbackUrl, Config, Problem};

/// The warnings for `config`, each naming `redirect_url` or `cookie_domain`.
pub(super) fn advisories(config: &Config) -> Vec<Problem> {
    let CallbackUrl::Fixed(url) = &config.redirect_url else {
        // the callback follows the request's host: nothing fixed to check
        return Vec::new();
    };
    let Some(host) = url.host() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut warn = |key: &str, reason: String| {
        out.push(Problem {
            key: key.to_owned(),
            reason,
        });
    };
    let listen = config.http_address;
    let redirect_ip = match host {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    };
    let host_str = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let loopback_name = host_str == "localhost" || host_str.ends_with(".localhost");
    let redirect_loopback = loopback_name || redirect_ip.is_some_and(|ip| ip.is_loopback());
    if redirect_loopback && !listen.ip().is_loopback() {
        warn(
            "redirect_url",
            format!(
                "its host `{host_str}` is the browser's own machine, but gatehouse listens for \
                 other machines on {listen}: signing in works only from a browser on this \
                 machine; give the name or address users reach gatehouse (or its front proxy) at"
            ),
        );
    }
    if let Some(ip) = redirect_ip
        && !ip.is_loopback()
        && !listen.ip().is_unspecified()
        && !listen.ip().is_loopback()
        && ip != listen.ip()
        && url.port_or_known_default() == Some(listen.port())
    {
        warn(
            "redirect_url",
            format!(
                "it sends browsers back to {ip}:{}, gatehouse's port, but gatehouse listens on \
                 {listen}: the callback reaches another machine; use the address gatehouse \
                 listens on, or the front proxy's",
                listen.port()
            ),
        );
    }
    if let Some(domain) = &config.cookie.domain {
        let bare = domain.trim_start_matches('.').to_ascii_lowercase();
        let covered = host_str == bare || host_str.ends_with(&format!(".{bare}"));
        if !covered {
            warn(
                "cookie_domain",
                format!(
                    "`{domain}` does not cover the redirect_url host `{host_str}`: the browser \
                     refuses a cookie for another domain at the callback, so no sign-in \
                     completes; set cookie_domain to a parent of `{host_str}` or leave it out"
                ),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    const BASE: &str = r#"
upstream = "http://127.0.0.1:9"
oidc_issuer_url = "https://idp.example.com"
client_id = "gatehouse"
client_secret = "super-secret-value"
cookie_secret = "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI="
cookie_secure = false
email_domain = "*"
"#;

    fn warnings(extra: &str) -> Vec<(String, String)> {
        let c = crate::Config::from_toml_str(&format!("{BASE}\n{extra}"))
            .unwrap_or_else(|e| panic!("{e}"));
        super::advisories(&c)
            .into_iter()
            .map(|p| (p.key, p.reason))
            .collect()
    }

    #[test]
    fn redirect_hosts_that_cannot_be_where_gatehouse_is_reached_are_warned_of() {
        let wrong = [
            // loopback callback, gatehouse listening for other machines
            (
                "http_address = \"0.0.0.0:4180\"\nredirect_url = \"http://localhost:4180/oauth2/callback\"",
                "redirect_url",
                "the browser's own machine",
            ),
            (
                "http_address = \"10.0.0.5:4180\"\nredirect_url = \"http://127.0.0.1:4180/oauth2/callback\"",
                "redirect_url",
                "the browser's own machine",
            ),
            // gatehouse's own port, another address
            (
                "http_address = \"10.0.0.5:4180\"\nredirect_url = \"http://10.0.0.6:4180/oauth2/callback\"",
                "redirect_url",
                "reaches another machine",
            ),
            // a cookie for a domain the callback host is not in
            (
                "redirect_url = \"http://auth.example.org/oauth2/callback\"\ncookie_domain = \".example.com\"",
                "cookie_domain",
                "does not cover",
            ),
        ];
        for (extra, key, says) in wrong {
            let w = warnings(extra);
            assert!(
                w.iter().any(|(k, r)| k == key && r.contains(says)),
                "{extra}: {w:?}"
            );
        }
        let fine = [
            // the demo, and gatehouse behind a front proxy on the same machine
            "redirect_url = \"http://127.0.0.1:4180/oauth2/callback\"",
            "http_address = \"127.0.0.1:4180\"\nredirect_url = \"https://app.example.com/oauth2/callback\"",
            "http_address = \"0.0.0.0:4180\"\nredirect_url = \"https://app.example.com/oauth2/callback\"",
            // a load balancer's address in front of gatehouse
            "http_address = \"10.0.0.5:4180\"\nredirect_url = \"https://10.0.0.9/oauth2/callback\"",
            "redirect_url = \"https://auth.example.com/oauth2/callback\"\ncookie_domain = \".example.com\"",
            "redirect_url = \"https://example.com/oauth2/callback\"\ncookie_domain = \"example.com\"",
            "redirect_url = \"/oauth2/callback\"\nwhitelist_domain = [\".example.com\"]\ncookie_domain = \".example.com\"",
        ];
        for extra in fine {
            assert_eq!(warnings(extra), Vec::new(), "{extra}");
        }
    }
}
