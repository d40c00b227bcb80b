//! The OpenAPI 3.1 document, generated from the handlers' annotations
//! (utoipa), so the published description cannot drift from the code.
//! CI runs schemathesis against a live server with it.

use std::sync::OnceLock;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::problem::ProblemBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ama archive API",
        description = "The JSON API of an ama e-mail archive. Errors are RFC 9457 problem details \
                       (application/problem+json) with a stable `type` URI. A message or tenant the \
                       caller may not see is answered with 404, exactly like one that does not exist.",
        license(name = "Apache-2.0 OR MIT"),
    ),
    paths(
        api::login, api::logout, api::session,
        api::ingest, api::search, api::message, api::raw, api::attachment,
        crate::export::export, crate::jobs::start, crate::jobs::status, crate::jobs::download,
        crate::retention::get_policy, crate::retention::put_policy,
        crate::retention::holds, crate::retention::place_hold, crate::retention::release_hold,
        crate::retention::delete, crate::retention::deletion_requests, crate::retention::approve,
        api::users, api::add_user, api::update_user,
        api::api_keys, api::add_api_key, api::revoke_api_key,
        api::audit, api::verify_audit,
    ),
    components(schemas(ProblemBody)),
    modifiers(&Security),
    tags(
        (name = "session", description = "Log in and out"),
        (name = "mail", description = "Archive, search and read mail"),
        (name = "admin", description = "Users and API keys (admins)"),
        (name = "audit", description = "The tamper-evident audit log (auditors)"),
        (name = "retention", description = "Retention policy, legal holds, deletion (auditors, admins)"),
    )
)]
struct Doc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token from POST /v1/login, or an ingest API key",
                    ))
                    .build(),
            ),
        );
        c.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "__Host-ama_session",
                "The search page's session cookie (state-changing requests also need X-CSRF-Token)",
            ))),
        );
    }
}

/// The document as JSON (built once).
pub fn document() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| Doc::openapi().to_pretty_json().unwrap_or_default())
        .clone()
}
