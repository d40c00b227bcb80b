//! Export jobs over a real TLS server: start, poll, download byte-identical
//! to the direct export; the parked file holds no plaintext; only the
//! job's creator sees it; it ends after the download or its TTL. Also the
//! export of a legal hold and deletion by query.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use ama_core::IdentityOptions;
use ama_http::HttpConfig;
use common::{problem, start, start_with};
use serde_json::{Value, json};

/// Polls a job until it is no longer running.
async fn wait_done(s: &common::Server, tok: &str, location: &str) -> Value {
    for _ in 0..200 {
        let r = s.get(tok, location).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        if v["status"] != "running" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the export job did not finish");
}

async fn start_job(s: &common::Server, tok: &str, query: &str) -> (String, Value) {
    let r = s
        .client
        .post(s.url(&format!("/v1/tenants/acme/exports{query}")))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/tenants/acme/exports/{}", v["id"].as_str().unwrap())
    );
    (location, v)
}

/// Every file below `dir`, with its contents.
fn files_below(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_below(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_downloads_what_the_direct_export_gives_and_parks_no_plaintext() {
    let s = start().await;
    let aud = s.login("acme", "aud").await;
    let jobdir = s.dir.path().join("tmp/http-exports");
    for format in ["mbox", "zip"] {
        let direct = s
            .get(&aud, &format!("/v1/tenants/acme/export?format={format}"))
            .await;
        assert_eq!(direct.status(), 200);
        let direct = direct.bytes().await.unwrap().to_vec();

        let (location, v) = start_job(&s, &aud, &format!("?format={format}")).await;
        assert_eq!(v["format"], format);
        let v = wait_done(&s, &aud, &location).await;
        assert_eq!(v["status"], "done", "{v}");
        assert_eq!(v["exported"], 2);
        assert_eq!(v["size"].as_u64().unwrap(), direct.len() as u64);
        let download = v["download"].as_str().unwrap().to_string();
        assert_eq!(download, format!("{location}/download"));

        // While the file waits: it exists, and holds none of the mail in clear.
        let parked = files_below(&s.dir.path().join("tmp"));
        assert_eq!(parked.len(), 1, "one job file");
        assert!(parked[0].0.starts_with(&jobdir));
        for (path, data) in &parked {
            for canary in [
                &b"Quarterly numbers"[..],
                b"Private matter",
                b"alice@acme.test",
                &s.seeded.quarterly_raw[..40],
            ] {
                assert!(
                    !contains(data, canary),
                    "{} holds plaintext {:?}",
                    path.display(),
                    String::from_utf8_lossy(canary)
                );
            }
        }

        let r = s.get(&aud, &download).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-disposition"],
            format!("attachment; filename=\"acme-export.{format}\"").as_str()
        );
        let got = r.bytes().await.unwrap().to_vec();
        assert!(
            got == direct,
            "{format}: the job's download differs from the direct export"
        );
        // Downloaded: the job and its file are gone.
        problem(s.get(&aud, &location).await, 404, "not-found").await;
        assert!(files_below(&s.dir.path().join("tmp")).is_empty());
    }
    // Each job was audited once, like a direct export.
    let v: Value = s
        .get(&aud, "/v1/tenants/acme/audit?action=export")
        .await
        .json()
        .await
        .unwrap();
    let text = v.to_string();
    assert_eq!(text.matches("HTTP export job").count(), 2, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_jobs_creator_sees_it() {
    let s = start().await;
    let aud = s.login("acme", "aud").await;
    let eve = s.login("acme", "eve").await;
    let gus = s.login("globex", "gus").await;
    let (location, v) = start_job(&s, &aud, "").await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_done(&s, &aud, &location).await;
    // Another tenant, through its own path or acme's: 404.
    problem(s.get(&gus, &location).await, 404, "not-found").await;
    problem(
        s.get(&gus, &format!("{location}/download")).await,
        404,
        "not-found",
    )
    .await;
    problem(
        s.get(&gus, &format!("/v1/tenants/globex/exports/{id}"))
            .await,
        404,
        "not-found",
    )
    .await;
    // Another user of the same tenant: 404 as well.
    problem(s.get(&eve, &location).await, 404, "not-found").await;
    problem(
        s.get(&eve, &format!("{location}/download")).await,
        404,
        "not-found",
    )
    .await;
    problem(
        s.client
            .post(s.url("/v1/tenants/globex/exports"))
            .bearer_auth(&aud)
            .send()
            .await
            .unwrap(),
        404,
        "not-found",
    )
    .await;
    // Unknown jobs and no token.
    problem(
        s.get(&aud, "/v1/tenants/acme/exports/0123456789abcdef")
            .await,
        404,
        "not-found",
    )
    .await;
    let r = s.client.get(s.url(&location)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The creator still has it.
    assert_eq!(
        s.get(&aud, &format!("{location}/download")).await.status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_job_says_why_and_has_nothing_to_download() {
    let s = start().await;
    let eve = s.login("acme", "eve").await;
    let aud = s.login("acme", "aud").await;
    // An end user may not export a legal hold; an unknown hold is not found.
    let (location, _) = start_job(&s, &eve, "?hold=case-1").await;
    let v = wait_done(&s, &eve, &location).await;
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"]["type"], "https://ama.invalid/problems/forbidden");
    problem(
        s.get(&eve, &format!("{location}/download")).await,
        409,
        "conflict",
    )
    .await;
    let (location, _) = start_job(&s, &aud, "?hold=no-such-hold").await;
    let v = wait_done(&s, &aud, &location).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert!(files_below(&s.dir.path().join("tmp")).is_empty());
    // Parameters are checked before a job starts.
    for bad in ["?q=a&hold=b", "?ids=nonsense", "?hold=%20", "?q=x&ids=y"] {
        problem(
            s.client
                .post(s.url(&format!("/v1/tenants/acme/exports{bad}")))
                .bearer_auth(&aud)
                .send()
                .await
                .unwrap(),
            400,
            "bad-request",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_nobody_downloads_expires_with_its_file() {
    let config = HttpConfig {
        export_ttl: Duration::from_millis(800),
        ..HttpConfig::default()
    };
    let s = start_with(IdentityOptions::default(), config).await;
    let aud = s.login("acme", "aud").await;
    let (location, _) = start_job(&s, &aud, "").await;
    wait_done(&s, &aud, &location).await;
    assert_eq!(files_below(&s.dir.path().join("tmp")).len(), 1);
    // Expired after 0.8 s, swept within another 0.4 s.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    // The sweeper removed the file without anyone asking.
    let left: Vec<_> = files_below(&s.dir.path().join("tmp"))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(left.is_empty(), "{left:?}");
    problem(s.get(&aud, &location).await, 404, "not-found").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exports_of_a_hold_and_deletion_by_query() {
    let s = start().await;
    let aud = s.login("acme", "aud").await;
    let eve = s.login("acme", "eve").await;
    let q = s.seeded.quarterly.to_string();
    let p = s.seeded.private.to_string();
    let post = |tok: &str, path: &str, body: Value| {
        s.client
            .post(s.url(path))
            .bearer_auth(tok)
            .json(&body)
            .send()
    };
    let r = post(
        &aud,
        "/v1/tenants/acme/holds",
        json!({"name": "case-7", "reason": "litigation", "ids": [q]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);

    // The hold's export holds exactly the held message.
    let r = s
        .get(&aud, "/v1/tenants/acme/export?hold=case-7&format=mbox")
        .await;
    assert_eq!(r.status(), 200);
    let mbox = r.bytes().await.unwrap();
    assert!(contains(&mbox, b"Quarterly numbers"));
    assert!(!contains(&mbox, b"Private matter"));
    problem(
        s.get(&eve, "/v1/tenants/acme/export?hold=case-7").await,
        403,
        "forbidden",
    )
    .await;
    problem(
        s.get(&aud, "/v1/tenants/acme/export?hold=case-7&q=x").await,
        400,
        "bad-request",
    )
    .await;
    let (location, _) = start_job(&s, &aud, "?hold=case-7").await;
    let v = wait_done(&s, &aud, &location).await;
    assert_eq!(v["exported"], 1);
    let got = s
        .get(&aud, &format!("{location}/download"))
        .await
        .bytes()
        .await
        .unwrap();
    assert!(got == mbox);

    // Deletion by query: exactly one of ids and query, a non-empty query.
    for body in [
        json!({"reason": "r"}),
        json!({"ids": [p], "query": "subject:private", "reason": "r"}),
        json!({"query": "  ", "reason": "r"}),
        json!({"query": "subject:private", "reason": " "}),
    ] {
        problem(
            post(&aud, "/v1/tenants/acme/deletions", body)
                .await
                .unwrap(),
            400,
            "bad-request",
        )
        .await;
    }
    problem(
        post(
            &eve,
            "/v1/tenants/acme/deletions",
            json!({"query": "subject:private", "reason": "r"}),
        )
        .await
        .unwrap(),
        403,
        "forbidden",
    )
    .await;
    // The query also finds the held message: it is kept back.
    let r = post(
        &aud,
        "/v1/tenants/acme/deletions",
        json!({"query": "from:acme.test", "reason": "clean-up"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "done");
    assert_eq!(v["deleted"], json!([p]));
    assert_eq!(v["kept"][0]["id"], q);
    problem(
        s.get(&aud, &format!("/v1/tenants/acme/messages/{p}")).await,
        404,
        "not-found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_per_user_are_bounded() {
    let s = start().await;
    let aud = s.login("acme", "aud").await;
    let eve = s.login("acme", "eve").await;
    let mut first = None;
    for _ in 0..8 {
        let (location, _) = start_job(&s, &aud, "").await;
        first.get_or_insert(location);
    }
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/exports"))
        .bearer_auth(&aud)
        .send()
        .await
        .unwrap();
    problem(r, 409, "conflict").await;
    // Another user is not affected; a download makes room.
    start_job(&s, &eve, "").await;
    let first = first.unwrap();
    let v = wait_done(&s, &aud, &first).await;
    let r = s.get(&aud, v["download"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    // The job ends once the download's last byte is handed over.
    for _ in 0..100 {
        if s.get(&aud, &first).await.status() == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start_job(&s, &aud, "").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_place_for_job_files_is_503_not_a_crash() {
    let s = start().await;
    let aud = s.login("acme", "aud").await;
    // The job directory cannot be created: a file is in its way.
    let tmp = s.dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("http-exports"), b"in the way").unwrap();
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/exports"))
        .bearer_auth(&aud)
        .send()
        .await
        .unwrap();
    problem(r, 503, "unavailable").await;
    // The direct export still works.
    assert_eq!(s.get(&aud, "/v1/tenants/acme/export").await.status(), 200);
}
