//! The HTML the server writes: the terminal page (which gives a browser its identity), the token
//! login form and its small pages, and the embedded assets.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::provenance::{self, identify_checked};
use super::{assets, AppState};
use crate::identity::{self, Mode};

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The terminal page. In cookie mode it gives the browser its anonymous identity when it has no
/// valid one; in token mode it asks for a token first.
pub(super) async fn page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let elsewhere = provenance::started_elsewhere(&req);
    let base = state.options.base_path.as_str();
    let back = landing(&within_base(req.path(), base));
    if let Mode::Token(_) = &state.identifier.mode {
        let query = web::Query::<TokenQuery>::from_query(req.query_string());
        if let Some(token) = query.ok().and_then(|q| q.0.token) {
            // Another site's link must not log this browser in as whoever that site chose.
            if elsewhere {
                return confirm_login(&token, base, back);
            }
            // The token leaves the URL (and the history) at once: a cookie carries the user.
            return login_with(&req, &state, &token, back);
        }
    }
    let identified = match identify_checked(&req, &state.identifier) {
        Ok(_) => true,
        Err(e) if e.is_ambiguous() => {
            let text = escape_html(&e.to_string());
            let body =
                format!("<!doctype html><meta charset=utf-8><title>termpool</title><p>{text}");
            return little_page(StatusCode::BAD_REQUEST, body);
        }
        Err(_) => false,
    };
    match &state.identifier.mode {
        // The browser may well hold an identity that this navigation left behind: ask again from
        // this site rather than give it a new identity over its old one.
        Mode::Cookie | Mode::Token(_) if !identified && elsewhere => reload_from_here(),
        Mode::Token(_) if !identified => login_form(StatusCode::OK, "", base, back),
        Mode::Cookie if !identified => {
            let (_, value) = state.identifier.signer.issue();
            serve_page(Some(cookie_header(&req, &value)), base)
        }
        _ => serve_page(None, base),
    }
}

/// A page that loads its own URL again, now as a navigation of this site.
fn reload_from_here() -> HttpResponse {
    little_page(
        StatusCode::OK,
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=0>\
         <title>termpool</title>"
            .to_owned(),
    )
}

/// Token mode, a token in another site's link: the user confirms with a same-origin POST.
fn confirm_login(token: &str, base: &str, back: &'static str) -> HttpResponse {
    little_page(
        StatusCode::OK,
        format!(
            "<!doctype html><meta charset=utf-8><title>termpool: log in</title>\
             <form method=post action={base}login><p>A link from another site asks to open the \
             terminal with an access token.</p><input type=hidden name=token value=\"{}\">\
             {}<button>Open terminal</button></form>",
            escape_html(token),
            next_field(back)
        ),
    )
}

/// A request path as seen from the base path (`/` and below); the base path has no characters
/// that need escaping (config checks it), so it is also safe in markup.
fn within_base(path: &str, base: &str) -> String {
    let rest = path
        .strip_prefix(base.trim_end_matches('/'))
        .unwrap_or(path);
    format!("/{}", rest.trim_start_matches('/'))
}

/// The page a login returns to: one of this server's own pages, named by a fixed list. Never a
/// URL taken from the request, or a login link could send the browser to another site.
fn landing(path: &str) -> &'static str {
    match path {
        "/container-terminal" | "/container-terminal/" => "/container-terminal",
        _ => "/",
    }
}

/// The login form's field that says where to return (a value of `landing`: no escaping needed).
fn next_field(back: &'static str) -> String {
    format!("<input type=hidden name=next value=\"{back}\">")
}

fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn serve_page(set_cookie: Option<String>, base: &str) -> HttpResponse {
    let Some(index) = assets::get("index.html") else {
        return HttpResponse::InternalServerError().body("the page was not built into this binary");
    };
    // The page names its assets from the root; below a base path they live under it.
    let body = match base {
        "/" => index.bytes.to_vec(),
        _ => String::from_utf8_lossy(index.bytes)
            .replace("\"/assets/", &format!("\"{base}assets/"))
            .into_bytes(),
    };
    let mut response = HttpResponse::Ok();
    response
        .content_type(index.content_type)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if let Some(v) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.insert_header((header::SET_COOKIE, v));
    }
    response.body(body)
}

fn cookie_header(req: &HttpRequest, value: &str) -> String {
    identity::set_cookie_header(value, provenance::is_https(req))
}

#[derive(serde::Deserialize)]
pub(super) struct LoginForm {
    token: String,
    /// The page the form was shown on.
    #[serde(default)]
    next: String,
}

/// `POST /login` (token mode): the login form's token for a cookie.
pub(super) async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    // A form on another site must not log this browser in as whoever that site chose.
    if !provenance::origin_allowed(&req, &state.options) {
        log::info!("login refused: cross-origin form");
        refused_login(&req, &state, 403, "login_origin");
        return HttpResponse::Forbidden()
            .content_type("text/plain; charset=utf-8")
            .body("cross-origin login refused");
    }
    login_with(&req, &state, &form.token, landing(&form.next))
}

fn login_with(
    req: &HttpRequest,
    state: &AppState,
    token: &str,
    back: &'static str,
) -> HttpResponse {
    let base = state.options.base_path.as_str();
    let Some(value) = state.identifier.login(token) else {
        log::info!("login refused: unknown token");
        refused_login(req, state, 401, "login_token");
        return login_form(
            StatusCode::UNAUTHORIZED,
            "That token is not valid.",
            base,
            back,
        );
    };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("{base}{}", &back[1..])))
        .insert_header((header::SET_COOKIE, cookie_header(req, &value)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish()
}

/// Counts a refused login and writes its audit line (never the token).
fn refused_login(req: &HttpRequest, state: &AppState, status: u16, reason: &str) {
    state.metrics.count_refusal_reason(reason);
    crate::audit::Line::new("refused")
        .field("status", status)
        .field("reason", reason)
        .client(provenance::client_address(req))
        .emit();
}

/// A plain form, no script: the token goes in a POST body, never in a URL.
fn login_form(
    status: StatusCode,
    notice: &'static str,
    base: &str,
    back: &'static str,
) -> HttpResponse {
    little_page(
        status,
        format!(
            "<!doctype html><meta charset=utf-8><title>termpool: log in</title>\
             <form method=post action={base}login><p>{notice}</p>{}\
             <label>Access token <input name=token type=password \
             autocomplete=current-password required autofocus></label> \
             <button>Open terminal</button></form>",
            next_field(back)
        ),
    )
}

/// A page of our own markup, without script, never cached, never framed.
fn little_page(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
        ))
        .body(body)
}

pub(super) async fn asset(path: web::Path<String>) -> HttpResponse {
    match assets::get(&format!("assets/{path}")) {
        Some(a) => HttpResponse::Ok()
            .content_type(a.content_type)
            .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(a.bytes),
        None => HttpResponse::NotFound().body("no such asset"),
    }
}
