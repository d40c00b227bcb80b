//! The search page in a real browser: headless Chromium (Debian's
//! `chromium`) driven by Playwright (`playwright-core` from npm), both
//! installed by `scripts/test`, against a live TLS server. The script
//! (`tests/browser/search.cjs`) logs in with the keyboard, searches a known
//! subject, opens the message, downloads the raw message (its SHA-256 must
//! match), opens a message full of XSS payloads (nothing may run, nothing
//! may become markup), and logs out. Then the auditor panel under a
//! four-eyes policy: a second auditor approves the first one's deletion
//! requests (the requester himself is refused, with the API's reason on the
//! page), the deleted message leaves search, the held one is kept back, the
//! hold is listed and released with a reason; an end user sees no panel.
//! Screenshots are kept under
//! `target/ama-http-browser/screenshots/` as artefacts. Without Chromium,
//! Node or playwright-core the test says SKIPPED.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ama_core::{Envelope, Principal, Role, Source, TenantId, UserSpec};

const XSS_SUBJECT: &str = "<script>window.__ama_xss=true;alert('subject')</script>";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tools() -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("AMA_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!("no Chromium at {}", chromium.display()));
    }
    let node = ["/usr/bin/node", "/usr/local/bin/node", "/usr/bin/nodejs"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or("no node")?;
    let modules = std::env::var_os("AMA_PLAYWRIGHT_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/ama-http-browser/node_modules"));
    if !modules.join("playwright-core").exists() {
        return Err(format!("no playwright-core in {}", modules.display()));
    }
    Ok((chromium, node, modules))
}

#[tokio::test(flavor = "multi_thread")]
async fn search_page_in_headless_chromium() {
    let (chromium, node, modules) = match tools() {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED: {why} (scripts/test installs chromium and playwright-core)");
            return;
        }
    };
    let s = common::start().await;
    let hostile = format!(
        concat!(
            "From: \"<img src=x onerror=\\\"window.__ama_xss=true;alert(1)\\\">\" <mallory@acme.test>\r\n",
            "To: aud@acme.test\r\n",
            "Subject: {}\r\n",
            "Date: Thu, 5 Apr 2001 10:00:00 +0000\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n",
            "--b\r\nContent-Type: text/html\r\n\r\n<script>window.__ama_xss=true</script>",
            "<img src=x onerror=\"window.__ama_xss=true\"><b>bold</b>\r\n",
            "--b\r\nContent-Type: text/html\r\n",
            "Content-Disposition: attachment; filename=\"<svg onload=alert(3)>.html\"\r\n\r\n",
            "<script>alert('attachment')</script>\r\n",
            "--b--\r\n"
        ),
        XSS_SUBJECT
    );
    let a = s.archive.clone();
    tokio::task::spawn_blocking(move || {
        let acme = TenantId::new("acme").unwrap();
        a.ingest(&acme, hostile.as_bytes(), &Envelope::new(Source::Import))
            .unwrap();
        // A second auditor, and four-eyes: deletions wait for his approval.
        let op = Principal::operator(acme);
        a.add_user(
            &op,
            UserSpec {
                id: "aud2".into(),
                display_name: None,
                addresses: vec![],
                roles: vec![Role::Auditor],
                password: Some(common::PW.into()),
            },
        )
        .unwrap();
        let mut policy = a.retention_policy(&op).unwrap();
        policy.four_eyes = true;
        a.set_retention_policy(&op, policy).unwrap();
    })
    .await
    .unwrap();
    let sha = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(&s.seeded.quarterly_raw);
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let shots = workspace().join("target/ama-http-browser/screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/search.cjs");
    let mut cmd = std::process::Command::new(node);
    cmd.arg(script)
        .env("NODE_PATH", &modules)
        .env("BASE_URL", &s.base)
        .env("TENANT", "acme")
        .env("USER", "aud")
        .env("USER2", "aud2")
        .env("END_USER", "eve")
        .env("DELETE_SUBJECT", "Private matter")
        .env("PASSWORD", common::PW)
        .env("SUBJECT", "Quarterly numbers")
        .env("RAW_SHA256", sha)
        .env("XSS_SUBJECT", XSS_SUBJECT)
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", chromium);
    let run = tokio::task::spawn_blocking(move || cmd.output().unwrap());
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser test took too long")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success() && stdout.contains("BROWSER OK"),
        "the browser test failed (screenshots in {})",
        shots.display()
    );
    for f in [
        "01-login.png",
        "02-results.png",
        "03-message.png",
        "05-logged-out.png",
        "06-four-eyes-refused.png",
        "07-auditor-panel.png",
        "10-end-user.png",
    ] {
        assert!(shots.join(f).exists(), "{f}");
    }
    // What the page showed is what the archive holds: the approved request
    // deleted the private message, kept the held one, and none is pending.
    let tok = s.login("acme", "aud").await;
    let gone = s
        .get(
            &tok,
            &format!("/v1/tenants/acme/messages/{}", s.seeded.private),
        )
        .await;
    assert_eq!(gone.status(), 404);
    let kept = s
        .get(
            &tok,
            &format!("/v1/tenants/acme/messages/{}", s.seeded.quarterly),
        )
        .await;
    assert_eq!(kept.status(), 200);
    let pending: serde_json::Value = s
        .get(&tok, "/v1/tenants/acme/deletion-requests")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending, serde_json::json!([]));
}
