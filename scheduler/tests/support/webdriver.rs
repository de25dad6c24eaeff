//! The few W3C `WebDriver` commands the dashboard's browser test needs, sent to `chromedriver` on
//! 127.0.0.1 over plain HTTP/1.1: new session, navigate, find, click, read text and attributes, type,
//! run a script, resize, screenshot, read the console, end the session.

use axum::body::Bytes;
use axum::http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// The key under which `WebDriver` returns an element's id.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A `WebDriver` error: the command, and what the driver answered.
#[derive(Debug)]
pub(crate) struct WebDriverError(String);

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, WebDriverError>;

/// One browser session.
pub(crate) struct Session {
    http: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

/// An element of the page, by its `WebDriver` id.
pub(crate) struct Element<'s> {
    session: &'s Session,
    id: String,
}

async fn send(
    http: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value> {
    let what = format!("{method} {url}");
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .map_err(|e| WebDriverError(format!("{what}: {e}")))?;
    let response = http
        .request(request)
        .await
        .map_err(|e| WebDriverError(format!("{what}: {e}")))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| WebDriverError(format!("{what}: {e}")))?
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes)
        .map_err(|e| WebDriverError(format!("{what}: {status}, not JSON ({e}): {bytes:?}")))?;
    let value = answer.get("value").cloned().unwrap_or(Value::Null);
    if !status.is_success() || value.get("error").is_some() {
        return Err(WebDriverError(format!("{what}: {status}: {value}")));
    }
    Ok(value)
}

impl Session {
    /// A new session with these capabilities (`alwaysMatch`), on the driver at `driver`
    /// (`http://127.0.0.1:PORT`).
    pub(crate) async fn new(driver: &str, capabilities: Value) -> Result<Session> {
        let http = Client::builder(TokioExecutor::new()).build_http();
        let created = send(
            &http,
            Method::POST,
            &format!("{driver}/session"),
            Some(json!({ "capabilities": { "alwaysMatch": capabilities } })),
        )
        .await?;
        let id = created["sessionId"]
            .as_str()
            .ok_or_else(|| WebDriverError(format!("no session id in {created}")))?;
        Ok(Session {
            http,
            base: format!("{driver}/session/{id}"),
        })
    }

    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        send(&self.http, method, &format!("{}{path}", self.base), body).await
    }

    pub(crate) async fn goto(&self, url: &str) -> Result<()> {
        self.command(Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    pub(crate) async fn find(&self, css: &str) -> Result<Element<'_>> {
        let found = self
            .command(
                Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        self.element(&found)
    }

    pub(crate) async fn find_all(&self, css: &str) -> Result<Vec<Element<'_>>> {
        let found = self
            .command(
                Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        let all = found
            .as_array()
            .ok_or_else(|| WebDriverError(format!("not a list of elements: {found}")))?;
        all.iter().map(|e| self.element(e)).collect()
    }

    fn element(&self, found: &Value) -> Result<Element<'_>> {
        let id = found[ELEMENT]
            .as_str()
            .ok_or_else(|| WebDriverError(format!("not an element: {found}")))?;
        Ok(Element {
            session: self,
            id: id.to_owned(),
        })
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub(crate) async fn execute(&self, script: &str) -> Result<Value> {
        self.command(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    pub(crate) async fn set_window_size(&self, width: u32, height: u32) -> Result<()> {
        self.command(
            Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await
        .map(drop)
    }

    /// The visible part of the page, as PNG bytes.
    pub(crate) async fn screenshot(&self) -> Result<Vec<u8>> {
        let encoded = self.command(Method::GET, "/screenshot", None).await?;
        let text = encoded
            .as_str()
            .ok_or_else(|| WebDriverError(format!("not a screenshot: {encoded}")))?;
        decode_base64(text).ok_or_else(|| WebDriverError("the screenshot is not base64".into()))
    }

    /// The browser console's messages since the last call (chromedriver's log endpoint; the
    /// session must ask for them with `goog:loggingPrefs`).
    pub(crate) async fn console_log(&self) -> Result<Vec<String>> {
        let entries = self
            .command(Method::POST, "/se/log", Some(json!({ "type": "browser" })))
            .await?;
        Ok(entries
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|e| {
                        format!(
                            "{} {}",
                            e["level"].as_str().unwrap_or(""),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Ends the session, which closes the browser.
    pub(crate) async fn close(self) -> Result<()> {
        self.command(Method::DELETE, "", None).await.map(drop)
    }
}

impl Element<'_> {
    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let path = format!("/element/{}{path}", self.id);
        self.session.command(method, &path, body).await
    }

    pub(crate) async fn click(&self) -> Result<()> {
        self.command(Method::POST, "/click", Some(json!({})))
            .await
            .map(drop)
    }

    /// The rendered text, as a person sees it (empty when hidden).
    pub(crate) async fn text(&self) -> Result<String> {
        let text = self.command(Method::GET, "/text", None).await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    pub(crate) async fn attr(&self, name: &str) -> Result<Option<String>> {
        let value = self
            .command(Method::GET, &format!("/attribute/{name}"), None)
            .await?;
        Ok(value.as_str().map(str::to_owned))
    }

    /// The first descendant matching `css`.
    pub(crate) async fn find_child(&self, css: &str) -> Result<Element<'_>> {
        let found = self
            .command(
                Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        self.session.element(&found)
    }

    pub(crate) async fn enabled(&self) -> Result<bool> {
        let enabled = self.command(Method::GET, "/enabled", None).await?;
        Ok(enabled.as_bool().unwrap_or(false))
    }

    pub(crate) async fn is_displayed(&self) -> Result<bool> {
        let shown = self.command(Method::GET, "/displayed", None).await?;
        Ok(shown.as_bool().unwrap_or(false))
    }

    pub(crate) async fn send_keys(&self, text: &str) -> Result<()> {
        self.command(Method::POST, "/value", Some(json!({ "text": text })))
            .await
            .map(drop)
    }
}

/// Standard base64 (with or without padding); `None` for anything else.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[test]
fn base64_decodes() {
    assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(decode_base64("aGVsbG8h").unwrap(), b"hello!");
    assert_eq!(decode_base64("iVBO\nRw==").unwrap(), b"\x89PNG");
    assert!(decode_base64("a*b").is_none());
}
