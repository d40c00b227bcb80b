//! Schemathesis (a property-based API tester, from PyPI) against a live
//! server: it reads `/v1/openapi.json`, generates valid and invalid
//! requests for every operation, and checks that no answer is a 5xx and
//! that every answer matches the document (status code, media type, JSON
//! schema). `scripts/test` installs it into `.venv-http`; without it the
//! test says SKIPPED.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use ama_core::{IdentityOptions, Principal, Role, TenantId, UserSpec};
use ama_http::{HttpConfig, Rate};

fn schemathesis() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AMA_SCHEMATHESIS") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-http/bin/schemathesis");
    p.exists().then_some(p)
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let Some(tool) = schemathesis() else {
        eprintln!(
            "SKIPPED: schemathesis is not installed (scripts/test puts it in .venv-http; \
             or set AMA_SCHEMATHESIS)"
        );
        return;
    };
    let config = HttpConfig {
        rate: Rate::new(100_000.0, 100_000.0),
        login_rate: Rate::new(100_000.0, 100_000.0),
        ..Default::default()
    };
    let s = common::start_with(IdentityOptions::default(), config).await;
    // A user who may call every operation: admin and auditor.
    let a = s.archive.clone();
    tokio::task::spawn_blocking(move || {
        let acme = TenantId::new("acme").unwrap();
        a.add_user(
            &Principal::operator(acme),
            UserSpec {
                id: "root".into(),
                display_name: None,
                addresses: vec![],
                roles: vec![Role::Admin, Role::Auditor],
                password: Some(common::PW.into()),
            },
        )
        .unwrap();
    })
    .await
    .unwrap();
    let token = s.login("acme", "root").await;
    let ca = s.dir.path().join("ca.pem");
    std::fs::write(&ca, &s.cert_pem).unwrap();
    let report = s.dir.path().join("schemathesis-report");
    // Point most requests at the tenant and a message that exist, so the
    // run reaches the engine instead of stopping at 404.
    let config = s.dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[parameters]\n\"path.tenant\" = \"acme\"\n\"path.id\" = \"{}\"\n\n\
             # An invalid body that is also over the JSON limit is refused with 413.\n\
             [checks.negative_data_rejection]\n\
             expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]\n",
            s.seeded.quarterly
        ),
    )
    .unwrap();
    let args: Vec<String> = vec![
        "--config-file".into(),
        config.display().to_string(),
        "run".into(),
        s.url("/v1/openapi.json"),
        "--url".into(),
        s.base.clone(),
        "--header".into(),
        format!("Authorization: Bearer {token}"),
        "--tls-verify".into(),
        ca.display().to_string(),
        "--checks".into(),
        "not_a_server_error,status_code_conformance,content_type_conformance,\
         response_schema_conformance,response_headers_conformance,negative_data_rejection"
            .into(),
        // Logging out would end the session the run authenticates with.
        "--exclude-path".into(),
        "/v1/logout".into(),
        "--max-examples".into(),
        "40".into(),
        "--phases".into(),
        "examples,coverage,fuzzing".into(),
        "--workers".into(),
        "2".into(),
        "--seed".into(),
        "7".into(),
        "--generation-database".into(),
        "none".into(),
        "--request-timeout".into(),
        "20".into(),
        "--report-dir".into(),
        report.display().to_string(),
        "--no-color".into(),
    ];
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&tool)
            .args(&args)
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(170), run)
        .await
        .expect("schemathesis took too long")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "schemathesis found problems (see its output above)"
    );
    // It really exercised the API: searches reached the engine.
    let metrics = s.client.get(s.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("route=\"/v1/tenants/{tenant}/search\",method=\"GET\",status=\"200\""),
        "no successful search during the run"
    );
}
