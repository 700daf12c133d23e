//! A scripted Kubernetes API server for unit tests: a `kube::Client` whose every request is
//! answered by a closure (status code and JSON body), without a network or a cluster.

use std::convert::Infallible;

use serde_json::{Value, json};

/// One request the client sent.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    /// The query string (`dryRun=All&fieldManager=…`), empty when none.
    pub query: String,
    /// The request body as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

/// A client whose requests are all answered by `answer`.
pub fn client(answer: impl Fn(Call) -> (u16, Value) + Send + Sync + 'static) -> kube::Client {
    let answer = std::sync::Arc::new(answer);
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let answer = answer.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let call = Call {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (code, answer) = answer(call);
            let response = http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(
                    serde_json::to_vec(&answer).expect("JSON"),
                ))
                .expect("a response");
            Ok::<_, Infallible>(response)
        }
    });
    kube::Client::new(service, "default")
}

/// The API server's refusal: a `Status` with `code`, `reason` and `message`.
pub fn refusal(code: u16, reason: &str, message: &str) -> (u16, Value) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (code, status)
}

/// 409: the object was modified since it was read (a resourceVersion precondition failed).
pub fn conflict() -> (u16, Value) {
    refusal(409, "Conflict", "the object has been modified")
}
