//! The admin listener for operations: liveness and readiness.

use std::sync::Arc;

use http::{Method, StatusCode};
use hyper::Request;
use hyper::body::Incoming;

use crate::gateway::Gateway;
use crate::server::{HttpResponse, respond};

/// Serves `/healthz` (the process serves) and `/readyz` (AF answers its health check).
pub async fn serve_admin(gw: Arc<Gateway>, req: Request<Incoming>) -> HttpResponse {
    if req.method() != Method::GET {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use GET\n");
    }
    match req.uri().path() {
        "/healthz" => respond(StatusCode::OK, "application/json", r#"{"status":"ok"}"#),
        "/readyz" => {
            let af = gw.af.health().await.0 == crate::model::TjanstStatus::Ok;
            let body = serde_json::json!({
                "status": if af { "ready" } else { "not ready" },
                "checks": { "af": if af { "ok" } else { "unreachable" } },
            });
            let status = if af {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            respond(status, "application/json", body.to_string())
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}
