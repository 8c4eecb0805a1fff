//! The request an `http` channel sends (contract §5.2): Herald's own envelope by
//! default, or any provider's shape when the channel gives `method`, `headers`,
//! `basic_auth` and a `body` template.
//!
//! A `body` is either a string (a minijinja template whose output is sent as it is)
//! or a mapping whose string leaves are templates: with `content_type: json` the
//! mapping becomes a JSON object (keys in alphabetical order, values as rendered
//! strings; numbers and booleans written in YAML stay as they are), with `form` it
//! becomes `application/x-www-form-urlencoded` pairs. The mapping form always gives
//! valid JSON or a valid form, whatever the notification's text holds, so it is the
//! one the shipped examples use.
//!
//! Templates see the notification: `notification_id`, `notification_type`,
//! `severity`, `channel`, `to`, `subject`, `text`, `user` (`user_id`, `email`,
//! `phone`), `event` (`event_id`, `event_type`, `event_timestamp`) and `data` (the
//! event's properties). A missing variable renders empty. The `tojson` and
//! `urlencode` filters are available for string bodies.
//!
//! Everything is compiled when the config loads, so a syntax error stops the process
//! with the channel and field named instead of failing each delivery.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// The body encodings a channel may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    Json,
    Form,
}

impl ContentType {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(ContentType::Json),
            "form" => Ok(ContentType::Form),
            other => Err(format!(
                "unknown content_type {other:?}; expected json or form"
            )),
        }
    }

    /// The `Content-Type` header value.
    pub fn header(self) -> &'static str {
        match self {
            ContentType::Json => "application/json",
            ContentType::Form => "application/x-www-form-urlencoded",
        }
    }
}

/// A compiled body: a tree whose string leaves are template names in `env`.
#[derive(Clone)]
pub struct BodyTemplate {
    env: Arc<Environment<'static>>,
    root: Node,
    content_type: ContentType,
}

#[derive(Debug, Clone)]
enum Node {
    /// A template: its name in the environment.
    Template(String),
    /// A literal kept as it is (number, boolean, null).
    Literal(Value),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
}

impl fmt::Debug for BodyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyTemplate")
            .field("root", &self.root)
            .field("content_type", &self.content_type)
            .finish()
    }
}

impl BodyTemplate {
    /// Compiles `body` (a string or a mapping from the channel's YAML). The error
    /// names the template path (`body.text`) and minijinja's message.
    pub fn compile(body: &Value, content_type: ContentType) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        let mut counter = 0;
        let root = compile_node(&mut env, body, "body", &mut counter)?;
        if content_type == ContentType::Form && !is_flat_object(&root) {
            return Err("a form body must be a mapping of field names to texts".into());
        }
        Ok(BodyTemplate {
            env: Arc::new(env),
            root,
            content_type,
        })
    }

    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// Renders the body over `ctx` (see the module documentation for its keys).
    pub fn render(&self, ctx: &Value) -> Result<Vec<u8>, String> {
        match (&self.root, self.content_type) {
            (Node::Template(name), _) => Ok(self.render_text(name, ctx)?.into_bytes()),
            (Node::Object(fields), ContentType::Form) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                let mut fields: Vec<&(String, Node)> = fields.iter().collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                for (key, node) in fields {
                    let value = match self.render_value(node, ctx)? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    form.append_pair(key, &value);
                }
                Ok(form.finish().into_bytes())
            }
            (root, _) => {
                let value = self.render_value(root, ctx)?;
                serde_json::to_vec(&value).map_err(|e| e.to_string())
            }
        }
    }

    fn render_text(&self, name: &str, ctx: &Value) -> Result<String, String> {
        let template = self.env.get_template(name).map_err(|e| e.to_string())?;
        template
            .render(ctx)
            .map_err(|e| format!("{name} failed to render: {e}"))
    }

    fn render_value(&self, node: &Node, ctx: &Value) -> Result<Value, String> {
        Ok(match node {
            Node::Template(name) => Value::String(self.render_text(name, ctx)?),
            Node::Literal(v) => v.clone(),
            Node::Object(fields) => {
                let mut map = Map::new();
                for (key, node) in fields {
                    map.insert(key.clone(), self.render_value(node, ctx)?);
                }
                Value::Object(map)
            }
            Node::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|n| self.render_value(n, ctx))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

fn is_flat_object(node: &Node) -> bool {
    match node {
        Node::Object(fields) => fields
            .iter()
            .all(|(_, n)| matches!(n, Node::Template(_) | Node::Literal(_))),
        _ => false,
    }
}

fn compile_node(
    env: &mut Environment<'static>,
    value: &Value,
    path: &str,
    counter: &mut usize,
) -> Result<Node, String> {
    Ok(match value {
        Value::String(source) => {
            *counter += 1;
            let name = format!("{path}#{counter}");
            env.add_template_owned(name.clone(), source.clone())
                .map_err(|e| format!("{path}: does not compile: {e}"))?;
            Node::Template(name)
        }
        Value::Object(map) => Node::Object(
            map.iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        compile_node(env, v, &format!("{path}.{k}"), counter)?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        ),
        Value::Array(items) => Node::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| compile_node(env, v, &format!("{path}[{i}]"), counter))
                .collect::<Result<_, _>>()?,
        ),
        literal => Node::Literal(literal.clone()),
    })
}

/// How an `http` channel's request looks.
#[derive(Debug, Clone)]
pub struct RequestShape {
    /// `POST` unless the channel says otherwise.
    pub method: String,
    /// Extra headers, in the order given (values already had `${VAR}` substituted).
    pub headers: Vec<(String, String)>,
    /// `None`: Herald's envelope (contract §5.2), as JSON.
    pub body: Option<BodyTemplate>,
}

impl Default for RequestShape {
    fn default() -> Self {
        RequestShape {
            method: "POST".into(),
            headers: Vec::new(),
            body: None,
        }
    }
}

/// The methods a channel may use.
pub const METHODS: [&str; 3] = ["POST", "PUT", "PATCH"];

impl RequestShape {
    /// Validates a channel's request keys; errors name the field.
    pub fn from_parts(
        method: Option<&str>,
        headers: &[(String, String)],
        basic_auth: Option<&str>,
        body: Option<&Value>,
        content_type: Option<&str>,
    ) -> Result<Self, (&'static str, String)> {
        let method = method.unwrap_or("POST").to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err((
                "method",
                format!("{method:?} is not one of POST, PUT, PATCH"),
            ));
        }
        let mut all = Vec::new();
        for (name, value) in headers {
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !valid_name {
                return Err(("headers", format!("{name:?} is not a header name")));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(("headers", format!("the value of {name} holds a line break")));
            }
            all.push((name.clone(), value.clone()));
        }
        if let Some(credentials) = basic_auth {
            if !credentials.contains(':') {
                return Err(("basic_auth", "must be user:password".into()));
            }
            let encoded = STANDARD.encode(credentials);
            all.push(("authorization".into(), format!("Basic {encoded}")));
        }
        let content_type = content_type
            .map(ContentType::parse)
            .transpose()
            .map_err(|e| ("content_type", e))?
            .unwrap_or(ContentType::Json);
        let body = body
            .map(|b| BodyTemplate::compile(b, content_type))
            .transpose()
            .map_err(|e| ("body", e))?;
        Ok(RequestShape {
            method,
            headers: all,
            body,
        })
    }

    /// The `Content-Type` the request carries.
    pub fn content_type(&self) -> &'static str {
        self.body
            .as_ref()
            .map_or(ContentType::Json, BodyTemplate::content_type)
            .header()
    }
}

/// What a body template sees, built from the stored notification.
#[derive(Debug, Clone)]
pub struct TemplateInput<'a> {
    pub notification_id: uuid::Uuid,
    pub notification_type: &'a str,
    pub severity: &'a str,
    pub channel: &'a str,
    pub to: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub text: &'a str,
    pub user_id: Option<&'a str>,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub event_id: uuid::Uuid,
    pub event_type: &'a str,
    pub event_timestamp: chrono::DateTime<chrono::Utc>,
    pub data: &'a Value,
}

impl TemplateInput<'_> {
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "notification_id": self.notification_id,
            "notification_type": self.notification_type,
            "severity": self.severity,
            "channel": self.channel,
            "to": self.to,
            "subject": self.subject,
            "text": self.text,
            "user": {"user_id": self.user_id, "email": self.email, "phone": self.phone},
            "event": {
                "event_id": self.event_id,
                "event_type": self.event_type,
                "event_timestamp": self.event_timestamp
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            },
            "data": self.data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({"to": "+4930123", "subject": "Hi", "text": "Say \"hello\" & go",
               "user": {"user_id": "u_1"}, "data": {"amount": 3}})
    }

    fn render(body: Value, ct: ContentType) -> String {
        let t = BodyTemplate::compile(&body, ct).unwrap();
        String::from_utf8(t.render(&ctx()).unwrap()).unwrap()
    }

    #[test]
    fn bodies_render_as_their_content_type_says() {
        let cases = [
            (
                json!({"text": "{{ text }}"}),
                ContentType::Json,
                r#"{"text":"Say \"hello\" & go"}"#,
            ),
            (
                json!({"To": "{{ to }}", "Body": "{{ text }}", "From": "+100"}),
                ContentType::Form,
                "Body=Say+%22hello%22+%26+go&From=%2B100&To=%2B4930123",
            ),
            (
                json!({"message": {"token": "{{ user.user_id }}", "n": 1, "ok": true,
                                   "tags": ["{{ subject }}"]}}),
                ContentType::Json,
                r#"{"message":{"n":1,"ok":true,"tags":["Hi"],"token":"u_1"}}"#,
            ),
            (
                json!("{\"t\": {{ text | tojson }}}"),
                ContentType::Json,
                r#"{"t": "Say \"hello\" \u0026 go"}"#,
            ),
            (
                json!("missing: [{{ nothing.deeper }}]"),
                ContentType::Json,
                "missing: []",
            ),
            (
                json!({"amount": "{{ data.amount }}"}),
                ContentType::Json,
                r#"{"amount":"3"}"#,
            ),
        ];
        for (body, ct, want) in cases {
            assert_eq!(render(body.clone(), ct), want, "{body}");
        }
    }

    #[test]
    fn bad_bodies_are_refused_with_the_path() {
        let err =
            BodyTemplate::compile(&json!({"a": {"b": "{{ x"}}), ContentType::Json).unwrap_err();
        assert!(err.starts_with("body.a.b: does not compile"), "{err}");
        let err = BodyTemplate::compile(&json!({"a": {"b": "x"}}), ContentType::Form).unwrap_err();
        assert!(err.contains("form body"), "{err}");
    }

    /// Method, headers, basic auth, content type, and the field refused.
    type ShapeCase<'a> = (
        Option<&'a str>,
        Vec<(String, String)>,
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
    );

    #[test]
    fn the_request_keys_are_validated_by_field() {
        let h = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
        let cases: [ShapeCase<'_>; 5] = [
            (Some("GET"), vec![], None, None, "method"),
            (None, h("bad name", "x"), None, None, "headers"),
            (None, h("x-key", "a\r\nb"), None, None, "headers"),
            (None, vec![], Some("no-colon"), None, "basic_auth"),
            (None, vec![], None, Some("xml"), "content_type"),
        ];
        for (method, headers, auth, ct, field) in cases {
            let got = RequestShape::from_parts(method, &headers, auth, None, ct).unwrap_err();
            assert_eq!(got.0, field, "{}", got.1);
        }
    }

    #[test]
    fn basic_auth_becomes_an_authorization_header() {
        let shape = RequestShape::from_parts(Some("put"), &[], Some("AC1:tok"), None, Some("form"))
            .unwrap();
        assert_eq!(shape.method, "PUT");
        assert_eq!(
            shape.headers,
            vec![(
                "authorization".to_string(),
                "Basic QUMxOnRvaw==".to_string()
            )]
        );
        // No body: the envelope, as JSON, whatever content_type says.
        assert_eq!(shape.content_type(), "application/json");
    }
}
