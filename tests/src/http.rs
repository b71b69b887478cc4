//! HTTP verbs for tests.

use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::TestApp;

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

/// A response with its body read.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json response with `status`; returns the problem.
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "expected {status}, got {}: {}", self.status, self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "not problem+json: {}", self.body);
        for field in ["type", "title", "status", "detail"] {
            assert!(self.json.get(field).is_some(), "problem lacks `{field}`: {}", self.body);
        }
        assert_eq!(self.json["status"], status);
        &self.json
    }

    /// The pointers of a problem's `errors[]`.
    pub fn pointers(&self) -> Vec<String> {
        self.json["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["pointer"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

impl TestApp {
    pub async fn send(
        &self,
        method: Method,
        token: Option<&str>,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.expect("request");
        read(r).await
    }

    pub async fn get(&self, token: Option<&str>, path: &str) -> Resp {
        self.send(Method::GET, token, path, None, &[]).await
    }

    pub async fn post(&self, token: Option<&str>, path: &str, body: &Value) -> Resp {
        self.send(Method::POST, token, path, Some(body), &[]).await
    }

    pub async fn patch(&self, token: Option<&str>, path: &str, body: &Value) -> Resp {
        self.send(Method::PATCH, token, path, Some(body), &[]).await
    }

    pub async fn delete(&self, token: Option<&str>, path: &str) -> Resp {
        self.send(Method::DELETE, token, path, None, &[]).await
    }

    /// Sends raw bytes with a content type.
    pub async fn raw(
        &self,
        method: Method,
        token: Option<&str>,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        let mut req =
            self.http.request(method, format!("{}{path}", self.base)).header("content-type", content_type).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.expect("request")).await
    }

    /// Creates a ticket and asserts 201.
    pub async fn create_ticket(&self, user: &TestUser, body: Value) -> Value {
        let r = self.post(Some(&user.token), "/api/v1/tickets", &body).await;
        assert_eq!(r.status, 201, "create ticket: {}", r.body);
        r.json
    }

    /// Creates a plain incident.
    pub async fn incident(&self, user: &TestUser, title: &str) -> Value {
        self.create_ticket(user, serde_json::json!({"kind": "incident", "title": title, "impact": 3, "urgency": 3}))
            .await
    }

    /// Changes a ticket's status and asserts 200.
    pub async fn set_status(&self, user: &TestUser, number: &str, status: &str) -> Value {
        let r = self
            .patch(Some(&user.token), &format!("/api/v1/tickets/{number}"), &serde_json::json!({"status": status}))
            .await;
        assert_eq!(r.status, 200, "set {number} to {status}: {}", r.body);
        r.json
    }
}

pub async fn read(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap_or_default();
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    Resp { status, headers, body, json }
}
