//! The pages gatehouse shows a person (sign-in chooser, error, 403,
//! signed out), rendered from templates compiled once, at start.
//!
//! Owns: the built-in templates, reading the overrides of
//! `custom_templates_dir` (a file there replaces the built-in one of the
//! same name), `banner` and `footer`, and which [`Pages`] the current
//! request renders with ([`scope`]).
//! Must not: compile a template per request, or turn off HTML escaping:
//! every value a template gets is auto-escaped, overrides included, so
//! nothing a request carries (a provider's error text, a user's name) can
//! add markup, and neither can the banner or the footer.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use minijinja::{AutoEscape, Environment, Value, context};

use crate::http::response::Page;

/// Which page a [`Page`] is shown as: each has a template of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// The chooser at `/oauth2/sign_in` (more than one provider).
    SignIn,
    /// Something went wrong (any error status).
    Error,
    /// Signed in, but not allowed (403).
    Forbidden,
    /// `/oauth2/signed_out`.
    SignedOut,
}

impl PageKind {
    /// The template's file name (also its name in `custom_templates_dir`).
    pub const fn file(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in.html",
            Self::Error => "error.html",
            Self::Forbidden => "forbidden.html",
            Self::SignedOut => "signed_out.html",
        }
    }
}

/// The layout every built-in page extends (overridable too).
pub const LAYOUT: &str = "layout.html";

/// Every template name, with its built-in source.
const BUILT_IN: [(&str, &str); 5] = [
    (LAYOUT, include_str!("pages/layout.html")),
    ("sign_in.html", include_str!("pages/sign_in.html")),
    ("error.html", include_str!("pages/error.html")),
    ("forbidden.html", include_str!("pages/forbidden.html")),
    ("signed_out.html", include_str!("pages/signed_out.html")),
];

/// The compiled templates and the text every page shows; cloned per
/// request, so one `Arc`.
#[derive(Clone)]
pub struct Pages(Arc<Inner>);

struct Inner {
    env: Environment<'static>,
    banner: Option<String>,
    footer: Option<String>,
    /// Whether any template came from `custom_templates_dir`.
    custom: bool,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("banner", &self.0.banner)
            .field("footer", &self.0.footer)
            .field("custom", &self.0.custom)
            .finish_non_exhaustive()
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // escaped whatever the file is called: an override named `.htm` or
    // `.txt` must not turn it off
    env.set_auto_escape_callback(|_name| AutoEscape::Html);
    // gatehouse's own escaping (`&<>"'`), as for every other page text; a
    // value marked `|safe` in an override is the operator's choice; none
    // and undefined print nothing
    env.set_formatter(|out, _state, value| {
        if value.is_undefined() || value.is_none() {
            return Ok(());
        }
        let text = value.to_string();
        if value.is_safe() {
            out.write_str(&text)?;
        } else {
            out.write_str(&crate::http::response::escape_html(&text))?;
        }
        Ok(())
    });
    env
}

/// `name, line N: what` for a template that does not compile.
fn describe(e: &minijinja::Error, file: &str) -> String {
    let line = e.line().map(|l| format!(", line {l}")).unwrap_or_default();
    let what = e.detail().unwrap_or("syntax error");
    format!("{file}{line}: {} ({what})", e.kind())
}

impl Pages {
    /// The templates: the built-in ones, each replaced by the file of the
    /// same name in `dir` when there is one. An error names the file and
    /// the line (or why the directory cannot be read).
    ///
    /// Pages with nothing of the operator's are the process's built-in
    /// ones, shared: a request's scope leaves plain pages out and renders
    /// with [`Pages::built_in`], which must then be compiled already (at
    /// start, not on the first error page) and not a second time.
    pub fn load(
        dir: Option<&Path>,
        banner: Option<String>,
        footer: Option<String>,
    ) -> Result<Self, String> {
        let pages = Self::compile(dir, banner, footer)?;
        Ok(if pages.is_plain() {
            Self::built_in().clone()
        } else {
            pages
        })
    }

    fn compile(
        dir: Option<&Path>,
        banner: Option<String>,
        footer: Option<String>,
    ) -> Result<Self, String> {
        let mut env = environment();
        let mut custom = false;
        if let Some(dir) = dir {
            let meta = std::fs::metadata(dir)
                .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            if !meta.is_dir() {
                return Err(format!("{} is not a directory", dir.display()));
            }
        }
        for (name, source) in BUILT_IN {
            let own = match dir.map(|d| d.join(name)) {
                Some(path) if path.exists() => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    custom = true;
                    Some((path, text))
                }
                _ => None,
            };
            match own {
                Some((path, text)) => env
                    .add_template_owned(name, text)
                    .map_err(|e| describe(&e, &path.display().to_string()))?,
                None => env
                    .add_template(name, source)
                    .map_err(|e| describe(&e, name))?,
            }
        }
        let nonempty = |s: Option<String>| s.filter(|t| !t.trim().is_empty());
        Ok(Self(Arc::new(Inner {
            env,
            banner: nonempty(banner),
            footer: nonempty(footer),
            custom,
        })))
    }

    /// The built-in templates, no banner or footer (compiled once per
    /// process, on first use).
    pub fn built_in() -> &'static Self {
        static BUILT: LazyLock<Pages> = LazyLock::new(|| {
            Pages::compile(None, None, None).unwrap_or_else(|_e| {
                // unreachable: the built-in templates compile (tested)
                Pages(Arc::new(Inner {
                    env: environment(),
                    banner: None,
                    footer: None,
                    custom: false,
                }))
            })
        });
        &BUILT
    }

    /// Whether these render as the built-in pages do: no template, banner
    /// or footer of the operator's.
    fn is_plain(&self) -> bool {
        !self.0.custom && self.0.banner.is_none() && self.0.footer.is_none()
    }

    /// Whether any template came from `custom_templates_dir`.
    pub fn is_custom(&self) -> bool {
        self.0.custom
    }

    /// `page` as HTML through the `kind` template. A custom template that
    /// fails while rendering (a filter it misuses, say) is logged and the
    /// built-in one used instead: the person still gets the page.
    pub fn render(&self, kind: PageKind, page: &Page<'_>) -> String {
        let ctx = self.context(page);
        let attempt = self
            .0
            .env
            .get_template(kind.file())
            .and_then(|t| t.render(&ctx));
        match attempt {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(
                    template = kind.file(),
                    error = %crate::telemetry::escape_log(&e.to_string()),
                    "page template failed; showing the built-in page"
                );
                let fallback = Self::built_in();
                fallback
                    .0
                    .env
                    .get_template(kind.file())
                    .and_then(|t| t.render(&ctx))
                    .unwrap_or_else(|_e| {
                        crate::http::response::escape_html(page.title)
                            + " "
                            + &crate::http::response::escape_html(page.what)
                    })
            }
        }
    }

    /// What every template gets (documented in the README, "Branding the
    /// pages").
    fn context(&self, page: &Page<'_>) -> Value {
        let links: Vec<Value> = page
            .links
            .iter()
            .map(|(href, text)| context! { href => *href, text => *text })
            .collect();
        context! {
            status => page.status.as_u16(),
            title => page.title,
            what => page.what,
            next => (!page.next.is_empty()).then_some(page.next),
            signed_in_as => page.signed_in_as,
            links => links,
            reference => page.reference,
            banner => self.0.banner.as_deref(),
            footer => self.0.footer.as_deref(),
        }
    }
}

tokio::task_local! {
    /// The pages of the configuration the current request is answered by;
    /// `None`: the built-in ones.
    static CURRENT: Option<Pages>;
}

/// Runs `f` (one request's handling) rendering with `pages`.
///
/// Plain pages are not cloned into the scope: a clone is an increment and
/// a decrement of one reference count that every worker thread shares,
/// on every request, for pages most requests never render.
pub fn scope<F: std::future::Future>(
    pages: &Pages,
    f: F,
) -> impl std::future::Future<Output = F::Output> {
    CURRENT.scope((!pages.is_plain()).then(|| pages.clone()), f)
}

/// Renders `page` with the current request's [`Pages`] (the built-in ones
/// outside [`scope`]).
pub fn render_current(kind: PageKind, page: &Page<'_>) -> String {
    CURRENT
        .try_with(|p| p.as_ref().map(|p| p.render(kind, page)))
        .ok()
        .flatten()
        .unwrap_or_else(|| Pages::built_in().render(kind, page))
}

#[cfg(test)]
mod tests;
