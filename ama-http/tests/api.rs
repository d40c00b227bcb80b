//! The JSON API end to end: a real TLS server on a loopback port, a real
//! HTTP client (reqwest over rustls), a real archive underneath.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use ama_core::IdentityOptions;
use ama_http::{HttpConfig, Rate, Transport};
use common::{PW, problem, start, start_with};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn login_search_view_raw_and_attachment() {
    let s = start().await;
    let tok = s.login("acme", "aud").await;

    let r = s.get(&tok, "/v1/session").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["user"], "aud");
    assert_eq!(v["roles"], json!(["auditor"]));
    assert!(
        v.get("csrf_token").is_none(),
        "bearer sessions have no CSRF token"
    );

    let r = s
        .get(
            &tok,
            "/v1/tenants/acme/search?q=subject:quarterly&page=1&sort=newest",
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["total"], 1);
    let hit = &v["hits"][0];
    let id = s.seeded.quarterly.to_string();
    assert_eq!(hit["id"], id.as_str());
    assert_eq!(hit["subject"], "Quarterly numbers");
    assert_eq!(hit["from"][0]["address"], "alice@acme.test");
    assert_eq!(hit["from"][0]["name"], "Alice");
    assert_eq!(hit["attachments"], 1);
    assert_eq!(hit["date"], "2001-04-03T10:00:00Z");

    // Everything, paged by one.
    let v: Value = s
        .get(
            &tok,
            "/v1/tenants/acme/search?per_page=1&page=2&sort=oldest",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["total"], 2);
    assert_eq!(v["hits"].as_array().unwrap().len(), 1);
    assert_eq!(v["page"], 2);

    let r = s
        .get(&tok, &format!("/v1/tenants/acme/messages/{id}"))
        .await;
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["subject"], "Quarterly numbers");
    assert_eq!(m["message_id"], "q1@acme.test");
    assert!(
        m["text"]
            .as_str()
            .unwrap()
            .contains("The numbers are in the sheet.")
    );
    assert_eq!(m["attachments"][0]["name"], "numbers.bin");
    assert_eq!(m["attachments"][0]["index"], 0);
    assert!(
        m["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "Subject" && h["value"] == "Quarterly numbers")
    );
    assert_eq!(m["sha256"].as_str().unwrap().len(), 64);

    let r = s
        .get(&tok, &format!("/v1/tenants/acme/messages/{id}/raw"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "message/rfc822");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(
        r.bytes().await.unwrap().to_vec(),
        s.seeded.quarterly_raw,
        "raw download is byte-identical"
    );

    let r = s
        .get(
            &tok,
            &format!("/v1/tenants/acme/messages/{id}/attachments/0"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.bytes().await.unwrap().to_vec(), vec![0u8, 1, 2, 255]);
    let r = s
        .get(
            &tok,
            &format!("/v1/tenants/acme/messages/{id}/attachments/1"),
        )
        .await;
    problem(r, 404, "not-found").await;

    // A query the language cannot parse is a 400 with the reason.
    let r = s.get(&tok, "/v1/tenants/acme/search?q=%22unclosed").await;
    problem(r, 400, "invalid-query").await;
    let r = s.get(&tok, "/v1/tenants/acme/search?page=0").await;
    problem(r, 400, "bad-request").await;
    let r = s.get(&tok, "/v1/tenants/acme/search?bogus=1").await;
    problem(r, 400, "bad-request").await;

    // Every access above is in the audit log, attributed to aud over HTTP.
    let v: Value = s
        .get(&tok, "/v1/tenants/acme/audit?action=download")
        .await
        .json()
        .await
        .unwrap();
    let entries = v.as_array().unwrap();
    assert!(entries.len() >= 2, "{v}");
    assert!(entries.iter().all(|e| e["actor"]["user"] == "aud"
        && e["actor"]["frontend"] == "http"
        && e["actor"]["source"] == "127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_decide_what_a_caller_may_do() {
    let s = start().await;
    let eve = s.login("acme", "eve").await;
    let aud = s.login("acme", "aud").await;
    let ada = s.login("acme", "ada").await;
    let q = s.seeded.quarterly.to_string();
    let p = s.seeded.private.to_string();

    // End user: only her own mail; someone else's is "not found".
    let v: Value = s
        .get(&eve, "/v1/tenants/acme/search")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["total"], 1);
    assert_eq!(v["hits"][0]["id"], q.as_str());
    assert_eq!(
        s.get(&eve, &format!("/v1/tenants/acme/messages/{q}"))
            .await
            .status(),
        200
    );
    for path in [
        format!("/v1/tenants/acme/messages/{p}"),
        format!("/v1/tenants/acme/messages/{p}/raw"),
        format!("/v1/tenants/acme/messages/{p}/attachments/0"),
    ] {
        problem(s.get(&eve, &path).await, 404, "not-found").await;
    }
    problem(
        s.get(&eve, "/v1/tenants/acme/audit").await,
        403,
        "forbidden",
    )
    .await;
    problem(
        s.get(&eve, "/v1/tenants/acme/users").await,
        403,
        "forbidden",
    )
    .await;

    // Auditor: all mail, the audit log, not the users.
    let v: Value = s
        .get(&aud, "/v1/tenants/acme/search")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["total"], 2);
    let r = s.get(&aud, "/v1/tenants/acme/audit/verify").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["intact"], true);
    assert!(v["entries"].as_u64().unwrap() > 3);
    problem(
        s.get(&aud, "/v1/tenants/acme/users").await,
        403,
        "forbidden",
    )
    .await;

    // Admin: users and keys, no mail.
    let r = s.get(&ada, "/v1/tenants/acme/users").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"eve") && ids.contains(&"ada"), "{ids:?}");
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|u| u.get("password").is_none() && u.get("hash").is_none())
    );
    problem(
        s.get(&ada, "/v1/tenants/acme/search").await,
        403,
        "forbidden",
    )
    .await;
    problem(
        s.get(&ada, &format!("/v1/tenants/acme/messages/{q}/raw"))
            .await,
        403,
        "forbidden",
    )
    .await;

    // Admin adds a user; a weak password is refused with the reason.
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/users"))
        .bearer_auth(&ada)
        .json(&json!({"id": "zed", "roles": ["end-user"], "addresses": ["zed@acme.test"], "password": "short"}))
        .send()
        .await
        .unwrap();
    problem(r, 422, "invalid-identity").await;
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/users"))
        .bearer_auth(&ada)
        .json(&json!({"id": "zed", "roles": ["end-user"], "addresses": ["zed@acme.test"], "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/users"))
        .bearer_auth(&ada)
        .json(&json!({"id": "zed", "roles": ["end-user"], "password": PW}))
        .send()
        .await
        .unwrap();
    problem(r, 409, "conflict").await;
    let zed = s.login("acme", "zed").await;
    // A JSON array is not an object, even when it lists the fields in order.
    let r = s
        .client
        .patch(s.url("/v1/tenants/acme/users/zed"))
        .bearer_auth(&ada)
        .json(&json!([false, null]))
        .send()
        .await
        .unwrap();
    problem(r, 400, "bad-request").await;
    // Disabling a user ends his session.
    let r = s
        .client
        .patch(s.url("/v1/tenants/acme/users/zed"))
        .bearer_auth(&ada)
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["active"], false);
    problem(
        s.get(&zed, "/v1/tenants/acme/search").await,
        401,
        "unauthenticated",
    )
    .await;

    // An ingest API key: archives mail, reads nothing.
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/api-keys"))
        .bearer_auth(&ada)
        .json(&json!({"name": "mail gateway"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key: Value = r.json().await.unwrap();
    let token = key["token"].as_str().unwrap().to_string();
    let raw = common::simple_mail("x@partner.test", "eve@acme.test", "Via the API");
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/messages?mail_from=x@partner.test&rcpt=eve@acme.test"))
        .bearer_auth(&token)
        .header("content-type", "message/rfc822")
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let receipt: Value = r.json().await.unwrap();
    assert_eq!(receipt["duplicate"], false);
    assert_eq!(
        loc,
        format!(
            "/v1/tenants/acme/messages/{}",
            receipt["id"].as_str().unwrap()
        )
    );
    // The same bytes again: 200 and the same id.
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/messages"))
        .bearer_auth(&token)
        .header("content-type", "message/rfc822")
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], receipt["id"]);
    // The auditor reads it byte for byte.
    let r = s.get(&aud, &format!("{loc}/raw")).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), raw);
    // Not a message: 422; wrong media type: 415; the key may not search: 403.
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/messages"))
        .bearer_auth(&token)
        .header("content-type", "message/rfc822")
        .body(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec())
        .send()
        .await
        .unwrap();
    problem(r, 422, "message-refused").await;
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/messages"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    problem(r, 415, "unsupported-media-type").await;
    problem(
        s.get(&token, "/v1/tenants/acme/search").await,
        403,
        "forbidden",
    )
    .await;
    // End users may not ingest.
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/messages"))
        .bearer_auth(&eve)
        .header("content-type", "message/rfc822")
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden").await;
    // Revoked: the key no longer authenticates.
    let r = s
        .client
        .delete(s.url(&format!(
            "/v1/tenants/acme/api-keys/{}",
            key["id"].as_str().unwrap()
        )))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/messages"))
        .bearer_auth(&token)
        .header("content-type", "message/rfc822")
        .body(raw)
        .send()
        .await
        .unwrap();
    problem(r, 401, "unauthenticated").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn other_tenants_are_not_found_never_forbidden() {
    let s = start().await;
    let gus = s.login("globex", "gus").await;
    let q = s.seeded.quarterly.to_string();
    let g = s.seeded.globex.to_string();
    // globex's auditor+admin on acme's paths, with acme's real ids: 404,
    // exactly as for a tenant and a message that do not exist.
    for path in [
        "/v1/tenants/acme/search".to_string(),
        format!("/v1/tenants/acme/messages/{q}"),
        format!("/v1/tenants/acme/messages/{q}/raw"),
        format!("/v1/tenants/acme/messages/{q}/attachments/0"),
        "/v1/tenants/acme/users".to_string(),
        "/v1/tenants/acme/audit".to_string(),
        "/v1/tenants/nosuch/search".to_string(),
        // acme's message through globex's own path is not there either.
        format!("/v1/tenants/globex/messages/{q}"),
        format!("/v1/tenants/globex/messages/{q}/raw"),
        "/v1/tenants/globex/messages/not-an-id".to_string(),
    ] {
        let v = problem(s.get(&gus, &path).await, 404, "not-found").await;
        assert_eq!(v["detail"], "no such resource", "{path}");
    }
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/users"))
        .bearer_auth(&gus)
        .json(&json!({"id": "mole", "roles": ["auditor"], "password": PW}))
        .send()
        .await
        .unwrap();
    problem(r, 404, "not-found").await;
    // Its own message is there.
    assert_eq!(
        s.get(&gus, &format!("/v1/tenants/globex/messages/{g}"))
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_wrong_ended_and_expired_tokens_are_401() {
    let identity = IdentityOptions {
        session_ttl_secs: 1,
        ..Default::default()
    };
    let s = start_with(identity, HttpConfig::default()).await;
    let r = s
        .client
        .get(s.url("/v1/tenants/acme/search"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"ama\"");
    problem(r, 401, "unauthenticated").await;
    problem(
        s.get("amas_acme_forged", "/v1/tenants/acme/search").await,
        401,
        "unauthenticated",
    )
    .await;

    // Wrong password, unknown user, unknown tenant: one answer.
    let mut details = Vec::new();
    for (t, u, p) in [
        ("acme", "aud", "wrong-password-123"),
        ("acme", "nobody", PW),
        ("nosuch", "aud", PW),
        ("Bad Tenant!", "aud", PW),
    ] {
        let r = s
            .client
            .post(s.url("/v1/login"))
            .json(&json!({"tenant": t, "user": u, "password": p}))
            .send()
            .await
            .unwrap();
        details.push(problem(r, 401, "unauthenticated").await["detail"].clone());
    }
    assert!(details.windows(2).all(|w| w[0] == w[1]), "{details:?}");

    // Logged out: the token is dead.
    let tok = s.login("acme", "aud").await;
    let r = s
        .client
        .post(s.url("/v1/logout"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    problem(s.get(&tok, "/v1/session").await, 401, "unauthenticated").await;

    // Expired (the lifetime is one second here).
    let tok = s.login("acme", "aud").await;
    assert_eq!(s.get(&tok, "/v1/session").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    problem(s.get(&tok, "/v1/session").await, 401, "unauthenticated").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_sessions_need_the_csrf_token_to_change_anything() {
    let s = start().await;
    let r = s
        .client
        .post(s.url("/v1/login"))
        .json(&json!({"tenant": "acme", "user": "ada", "password": PW, "session": "cookie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in [
        "__Host-ama_session=",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    let v: Value = r.json().await.unwrap();
    assert!(
        v.get("token").is_none(),
        "a cookie session does not show its token to scripts"
    );
    let csrf = v["csrf_token"].as_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();

    // Reading needs no CSRF token; the session says which it is.
    let r = s
        .client
        .get(s.url("/v1/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["csrf_token"],
        csrf.as_str()
    );

    // Changing something without it (or with a wrong one) is refused.
    for hdr in [None, Some("0".repeat(40)), Some(String::new())] {
        let mut req = s
            .client
            .post(s.url("/v1/tenants/acme/api-keys"))
            .header("cookie", &cookie)
            .json(&json!({"name": "forged"}));
        if let Some(h) = hdr {
            req = req.header("x-csrf-token", h);
        }
        problem(req.send().await.unwrap(), 403, "csrf-rejected").await;
    }
    let r = s
        .client
        .post(s.url("/v1/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    problem(r, 403, "csrf-rejected").await;
    // With it, it works.
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/api-keys"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "ok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s
        .client
        .post(s.url("/v1/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = s
        .client
        .get(s.url("/v1/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    problem(r, 401, "unauthenticated").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn xss_payloads_and_traversal_names_come_back_inert() {
    let s = start().await;
    let raw = concat!(
        "From: \"<img src=x onerror=alert(1)>\" <mallory@acme.test>\r\n",
        "To: aud@acme.test\r\n",
        "Subject: <script>alert('subject')</script>\r\n",
        "Date: Tue, 3 Apr 2001 10:00:00 +0000\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n",
        "--b\r\nContent-Type: text/html\r\n\r\n<p>hi</p><script>alert('body')</script><img src=x onerror=alert(2)>\r\n",
        "--b\r\nContent-Type: text/html; name=\"<svg onload=alert(3)>.html\"\r\n",
        "Content-Disposition: attachment; filename=\"<svg onload=alert(3)>.html\"\r\n\r\n",
        "<script>alert('attachment')</script>\r\n",
        "--b\r\nContent-Type: text/plain\r\n",
        "Content-Disposition: attachment; filename=\"../../../etc/passwd\"\r\n\r\n",
        "root:x:0:0\r\n",
        "--b--\r\n"
    );
    let id = {
        let a = s.archive.clone();
        tokio::task::spawn_blocking(move || {
            a.ingest(
                &ama_core::TenantId::new("acme").unwrap(),
                raw.as_bytes(),
                &ama_core::Envelope::new(ama_core::Source::Import),
            )
            .unwrap()
            .id
        })
        .await
        .unwrap()
    };
    let tok = s.login("acme", "aud").await;
    let r = s
        .get(&tok, &format!("/v1/tenants/acme/messages/{id}"))
        .await;
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let m: Value = r.json().await.unwrap();
    // JSON carries the payloads as plain strings (the page shows them with textContent).
    assert_eq!(m["subject"], "<script>alert('subject')</script>");
    assert_eq!(m["from"][0]["name"], "<img src=x onerror=alert(1)>");
    let text = m["text"].as_str().unwrap();
    assert!(
        !text.contains("<script>"),
        "HTML is converted to text: {text:?}"
    );
    assert_eq!(m["attachments"][0]["name"], "<svg onload=alert(3)>.html");
    assert_eq!(m["attachments"][1]["name"], "../../../etc/passwd");

    // An HTML attachment is never served as HTML, and never inline.
    let r = s
        .get(
            &tok,
            &format!("/v1/tenants/acme/messages/{id}/attachments/0"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["content-type"], "application/octet-stream");
    let cd = h["content-disposition"].to_str().unwrap();
    assert!(
        cd.starts_with("attachment; filename=\"svg onload=alert(3).html\""),
        "{cd}"
    );
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    // The traversal name is cut to its last component.
    let r = s
        .get(
            &tok,
            &format!("/v1/tenants/acme/messages/{id}/attachments/1"),
        )
        .await;
    let cd = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cd.starts_with("attachment; filename=\"passwd\""), "{cd}");
    assert!(!cd.contains(".."), "{cd}");
    // (the CRLF before a boundary belongs to the boundary, RFC 2046)
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"root:x:0:0");

    // Traversal in the path itself finds nothing.
    for path in [
        format!("/v1/tenants/acme/messages/{id}/attachments/..%2F..%2F0"),
        "/v1/tenants/acme/messages/..%2F..%2Fetc%2Fpasswd/raw".to_string(),
        "/assets/..%2F..%2FCargo.toml".to_string(),
    ] {
        problem(s.get(&tok, &path).await, 404, "not-found").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_are_413() {
    let config = HttpConfig {
        max_body: 256 * 1024,
        max_json_body: 1024,
        ..Default::default()
    };
    let s = start_with(IdentityOptions::default(), config).await;
    let ada = s.login("acme", "ada").await;
    let key: Value = s
        .client
        .post(s.url("/v1/tenants/acme/api-keys"))
        .bearer_auth(&ada)
        .json(&json!({"name": "gw"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = key["token"].as_str().unwrap();
    let mut big = common::simple_mail("a@acme.test", "b@acme.test", "big");
    big.extend(std::iter::repeat_n(b'x', 300 * 1024));
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/messages"))
        .bearer_auth(token)
        .header("content-type", "message/rfc822")
        .body(big)
        .send()
        .await
        .unwrap();
    problem(r, 413, "payload-too-large").await;
    // JSON endpoints have their own, smaller limit.
    let r = s
        .client
        .post(s.url("/v1/login"))
        .json(&json!({"tenant": "acme", "user": "aud", "password": "p".repeat(4000)}))
        .send()
        .await
        .unwrap();
    problem(r, 413, "payload-too-large").await;
    // Just under the limit is fine.
    let mut ok = common::simple_mail("a@acme.test", "b@acme.test", "fits");
    ok.extend(std::iter::repeat_n(b'y', 200 * 1024));
    let r = s
        .client
        .post(s.url("/v1/tenants/acme/messages"))
        .bearer_auth(token)
        .header("content-type", "message/rfc822")
        .body(ok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn security_headers_on_pages_api_and_errors() {
    let s = start().await;
    for path in ["/", "/assets/app.js", "/v1/session", "/nowhere", "/healthz"] {
        let r = s.client.get(s.url(path)).send().await.unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(
            h["strict-transport-security"]
                .to_str()
                .unwrap()
                .starts_with("max-age="),
            "{path}"
        );
    }
    let r = s.client.get(s.url("/v1/session")).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    // The page has no inline script: every <script> has a src.
    let html = s
        .client
        .get(s.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<script src=\"/assets/app.js\" defer></script>"));
    assert_eq!(html.matches("<script").count(), 1);
    // No inline event handler attributes (` onclick=` and the like); the
    // words "on" in text are fine.
    let handler = html.match_indices(" on").any(|(i, _)| {
        let rest = &html[i + 3..];
        let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        name_len > 0 && rest[name_len..].trim_start().starts_with('=')
    });
    assert!(!handler, "no inline event handlers");
    // Unknown routes and methods are problems too.
    problem(
        s.client.get(s.url("/v2/x")).send().await.unwrap(),
        404,
        "not-found",
    )
    .await;
    problem(
        s.client.delete(s.url("/v1/login")).send().await.unwrap(),
        405,
        "method-not-allowed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_and_http1_health_and_metrics_without_personal_data() {
    let s = start().await;
    let r = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN picks h2");
    assert_eq!(r.text().await.unwrap(), "ok\n");
    let h1 = common::client(&s.cert_pem, true);
    let r = h1.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 200);

    let tok = s.login("acme", "aud").await;
    s.get(&tok, "/v1/tenants/acme/search?q=quarterly").await;
    s.get(
        &tok,
        &format!("/v1/tenants/acme/messages/{}", s.seeded.quarterly),
    )
    .await;
    let m = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert!(
        m.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = m.text().await.unwrap();
    assert!(
        text.contains("ama_search_duration_seconds_count 1"),
        "{text}"
    );
    assert!(text.contains(
        "ama_http_requests_total{route=\"/v1/tenants/{tenant}/search\",method=\"GET\",status=\"200\"} 1"
    ));
    assert!(text.contains("ama_ingest_messages_total{outcome=\"stored\"} 0"));
    for personal in [
        "acme",
        "aud",
        "quarterly",
        "alice",
        &s.seeded.quarterly.to_string(),
    ] {
        assert!(
            !text.to_lowercase().contains(personal),
            "{personal} in metrics"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_answers_429_with_retry_after() {
    let config = HttpConfig {
        rate: Rate::new(0.5, 3.0),
        ..Default::default()
    };
    let s = start_with(IdentityOptions::default(), config).await;
    let tok = s.login("acme", "aud").await;
    for _ in 0..3 {
        assert_eq!(s.get(&tok, "/v1/session").await.status(), 200);
    }
    let r = s.get(&tok, "/v1/session").await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry), "{retry}");
    problem(r, 429, "rate-limited").await;
    // Another principal is not affected.
    let eve = s.login("acme", "eve").await;
    assert_eq!(s.get(&eve, "/v1/session").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_is_served_and_describes_the_routes() {
    let s = start().await;
    let r = s
        .client
        .get(s.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["openapi"].as_str().unwrap().starts_with("3.1"));
    for p in [
        "/v1/login",
        "/v1/tenants/{tenant}/search",
        "/v1/tenants/{tenant}/messages/{id}/raw",
        "/v1/tenants/{tenant}/audit/verify",
    ] {
        assert!(v["paths"].get(p).is_some(), "{p}");
    }
    assert!(v["components"]["securitySchemes"].get("bearer").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_only_on_loopback() {
    let any: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let err = ama_http::check_transport(any, &Transport::InsecureLoopback).unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
    let v6: std::net::SocketAddr = "[::1]:8080".parse().unwrap();
    ama_http::check_transport(v6, &Transport::InsecureLoopback).unwrap();

    // A real plain listener on 127.0.0.1 works, without HSTS and with a non-Secure cookie.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (archive, _) =
        tokio::task::spawn_blocking(move || common::seed(&path, IdentityOptions::default()))
            .await
            .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(ama_http::serve(
        listener,
        Transport::InsecureLoopback,
        std::sync::Arc::new(archive),
        HttpConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let c = common::client("", true);
    let r = c
        .post(format!("http://{addr}/v1/login"))
        .json(&json!({"tenant": "acme", "user": "aud", "password": PW, "session": "cookie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("strict-transport-security").is_none());
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set.starts_with("ama_session=") && !set.contains("Secure"),
        "{set}"
    );
    // Graceful stop: serve returns.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn export_downloads_are_the_engines_export_byte_for_byte() {
    let s = start().await;
    // Enough mail for a download of many chunks.
    let a = s.archive.clone();
    tokio::task::spawn_blocking(move || {
        let acme = ama_core::TenantId::new("acme").unwrap();
        for i in 0..40 {
            let mut m =
                common::simple_mail("bulk@acme.test", "aud@acme.test", &format!("bulk {i}"));
            m.extend(std::iter::repeat_n(b'z', 20_000 + i));
            m.extend_from_slice(b"\r\n");
            a.ingest(
                &acme,
                &m,
                &ama_core::Envelope::new(ama_core::Source::Import),
            )
            .unwrap();
        }
    })
    .await
    .unwrap();
    let aud = s.login("acme", "aud").await;
    for (format, mime) in [
        (ama_core::ExportFormat::Mbox, "application/mbox"),
        (ama_core::ExportFormat::Zip, "application/zip"),
    ] {
        let name = if mime.ends_with("zip") { "zip" } else { "mbox" };
        let r = s
            .get(&aud, &format!("/v1/tenants/acme/export?format={name}"))
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], mime);
        assert_eq!(
            r.headers()["content-disposition"],
            format!("attachment; filename=\"acme-export.{name}\"").as_str()
        );
        let got = r.bytes().await.unwrap().to_vec();
        let a = s.archive.clone();
        let want = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            a.export(
                &ama_core::Principal::auditor(ama_core::TenantId::new("acme").unwrap()),
                &ama_core::Selection::All,
                format,
                "test",
                &mut out,
            )
            .unwrap();
            out
        })
        .await
        .unwrap();
        if name == "mbox" {
            assert!(got.len() > 800_000, "{}", got.len());
        } else {
            assert!(got.starts_with(b"PK\x03\x04"));
        }
        assert!(
            got == want,
            "{name}: the download differs from the engine's export"
        );
    }

    // One message as mbox: the separator line, the exact bytes, one empty line.
    let q = s.seeded.quarterly.to_string();
    let got = s
        .get(&aud, &format!("/v1/tenants/acme/export?ids={q}"))
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let body = &got[got.iter().position(|b| *b == b'\n').unwrap() + 1..];
    assert_eq!(&body[..body.len() - 1], &s.seeded.quarterly_raw[..]);

    // The rules of reading apply: an end user exports her own mail only, an
    // admin nothing, another tenant is not found, a bad query is a 400.
    let eve = s.login("acme", "eve").await;
    let mbox = s
        .get(&eve, "/v1/tenants/acme/export")
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        mbox.split(|b| *b == b'\n')
            .filter(|l| l.starts_with(b"From "))
            .count(),
        1
    );
    let p = s.seeded.private.to_string();
    problem(
        s.get(&eve, &format!("/v1/tenants/acme/export?ids={p}"))
            .await,
        404,
        "not-found",
    )
    .await;
    let ada = s.login("acme", "ada").await;
    problem(
        s.get(&ada, "/v1/tenants/acme/export").await,
        403,
        "forbidden",
    )
    .await;
    let gus = s.login("globex", "gus").await;
    problem(
        s.get(&gus, "/v1/tenants/acme/export").await,
        404,
        "not-found",
    )
    .await;
    problem(
        s.get(&aud, "/v1/tenants/acme/export?q=%22open").await,
        400,
        "invalid-query",
    )
    .await;
    // Each export is one audit entry.
    let v: Value = s
        .get(&aud, "/v1/tenants/acme/audit?action=export")
        .await
        .json()
        .await
        .unwrap();
    assert!(v.as_array().unwrap().iter().any(|e| {
        e["actor"]["user"] == "aud"
            && e["outcome"] == "success"
            && e["detail"]
                .as_str()
                .unwrap()
                .contains("HTTP download by 127.0.0.1")
    }));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_over_the_time_limit_is_503() {
    let config = HttpConfig {
        request_timeout: Duration::from_millis(1),
        ..Default::default()
    };
    let s = start_with(IdentityOptions::default(), config).await;
    // A 20 MB message: reading it back (decrypt, decompress, SHA-256) takes
    // far longer than 1 ms; the health check answers at once. The session
    // comes from the engine directly (a login over HTTP would time out too).
    let a = s.archive.clone();
    let (token, id) = tokio::task::spawn_blocking(move || {
        let acme = ama_core::TenantId::new("acme").unwrap();
        let mut big = common::simple_mail("a@acme.test", "b@acme.test", "big one");
        for i in 0..400_000u32 {
            big.extend_from_slice(format!("line {i} of a long report\r\n").as_bytes());
        }
        let id = a
            .ingest(
                &acme,
                &big,
                &ama_core::Envelope::new(ama_core::Source::Import),
            )
            .unwrap()
            .id;
        let ctx = ama_core::AccessContext::new(ama_core::Frontend::Http);
        (a.login(&acme, "aud", PW, &ctx).unwrap().token, id)
    })
    .await
    .unwrap();
    assert_eq!(
        s.client
            .get(s.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = s
        .get(&token, &format!("/v1/tenants/acme/messages/{id}/raw"))
        .await;
    problem(r, 503, "timeout").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn holds_keep_mail_from_deletion_and_four_eyes_needs_a_second_auditor() {
    let s = start().await;
    let a = s.archive.clone();
    tokio::task::spawn_blocking(move || {
        let acme = ama_core::TenantId::new("acme").unwrap();
        a.add_user(
            &ama_core::Principal::operator(acme),
            ama_core::UserSpec {
                id: "aud2".into(),
                display_name: None,
                addresses: vec![],
                roles: vec![ama_core::Role::Auditor],
                password: Some(PW.into()),
            },
        )
        .unwrap();
    })
    .await
    .unwrap();
    let aud = s.login("acme", "aud").await;
    let aud2 = s.login("acme", "aud2").await;
    let ada = s.login("acme", "ada").await;
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

    // The default policy: 10 years from the message date (2001: long over).
    let v: Value = s
        .get(&eve, "/v1/tenants/acme/retention-policy")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["default"], "10y");
    assert_eq!(v["four_eyes"], false);

    // A hold (auditors only) keeps the message from deletion.
    let hold = json!({"name": "case-42", "reason": "litigation", "ids": [q]});
    problem(
        post(&eve, "/v1/tenants/acme/holds", hold.clone())
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    problem(
        post(&ada, "/v1/tenants/acme/holds", hold.clone())
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    let r = post(&aud, "/v1/tenants/acme/holds", hold.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["placed_by"], "aud");
    problem(
        post(&aud, "/v1/tenants/acme/holds", hold).await.unwrap(),
        400,
        "bad-request",
    )
    .await;
    let r = post(
        &aud,
        "/v1/tenants/acme/deletions",
        json!({"ids": [q], "reason": "expired"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "done");
    assert_eq!(v["deleted"], json!([]));
    assert_eq!(v["kept"][0]["id"], q.as_str());
    assert!(
        v["kept"][0]["reason"].as_str().unwrap().contains("case-42"),
        "{v}"
    );
    assert_eq!(
        s.get(&aud, &format!("/v1/tenants/acme/messages/{q}"))
            .await
            .status(),
        200
    );

    // Released, it can go.
    let r = post(
        &aud,
        "/v1/tenants/acme/holds/case-42/release",
        json!({"reason": "settled"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    let v: Value = s
        .get(&aud, "/v1/tenants/acme/holds")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v[0]["released"]["reason"], "settled");
    let v: Value = post(
        &aud,
        "/v1/tenants/acme/deletions",
        json!({"ids": [q], "reason": "expired"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(v["deleted"], json!([q]));
    problem(
        s.get(&aud, &format!("/v1/tenants/acme/messages/{q}")).await,
        404,
        "not-found",
    )
    .await;

    // Four-eyes (set by an admin): a request waits for a second auditor.
    let mut policy: Value = s
        .get(&ada, "/v1/tenants/acme/retention-policy")
        .await
        .json()
        .await
        .unwrap();
    policy["four_eyes"] = json!(true);
    let r = s
        .client
        .put(s.url("/v1/tenants/acme/retention-policy"))
        .bearer_auth(&aud)
        .json(&policy)
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden").await;
    let mut bad = policy.clone();
    bad["default"] = json!("ten years");
    let r = s
        .client
        .put(s.url("/v1/tenants/acme/retention-policy"))
        .bearer_auth(&ada)
        .json(&bad)
        .send()
        .await
        .unwrap();
    problem(r, 400, "bad-request").await;
    let r = s
        .client
        .put(s.url("/v1/tenants/acme/retention-policy"))
        .bearer_auth(&ada)
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["policy"]["four_eyes"],
        true
    );
    let r = post(
        &aud,
        "/v1/tenants/acme/deletions",
        json!({"ids": [p], "reason": "expired"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    let request = r.json::<Value>().await.unwrap()["request"]
        .as_str()
        .unwrap()
        .to_string();
    let v: Value = s
        .get(&aud2, "/v1/tenants/acme/deletion-requests")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v[0]["ids"], json!([p]));
    let approve = format!("/v1/tenants/acme/deletion-requests/{request}/approve");
    problem(
        post(&aud, &approve, json!({})).await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        s.get(&aud, &format!("/v1/tenants/acme/messages/{p}"))
            .await
            .status(),
        200
    );
    let v: Value = post(&aud2, &approve, json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["deleted"], json!([p]));
    problem(
        s.get(&aud, &format!("/v1/tenants/acme/messages/{p}")).await,
        404,
        "not-found",
    )
    .await;
}

/// Sends `head` and then `body_len` bytes of body over HTTP/1.1 and TLS,
/// the way Python's `requests` does: the whole body first, the answer
/// after. Returns whether the whole body could be sent and the status line.
async fn send_then_read(s: &common::Server, head: String, body_len: usize) -> (bool, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut cfg = common::client_tls(&s.cert_pem);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut sent = tls.write_all(head.as_bytes()).await.is_ok();
    let chunk = vec![b' '; 64 * 1024];
    let mut left = body_len;
    while sent && left > 0 {
        let n = left.min(chunk.len());
        sent = tls.write_all(&chunk[..n]).await.is_ok();
        left -= n;
    }
    sent = sent && tls.flush().await.is_ok();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    (sent, text.lines().next().unwrap_or("").to_string())
}

/// A body refused before it was read (over the JSON limit by its
/// `Content-Length`, or sent without credentials) is still read to its end,
/// so a client that sends the whole body first gets the 413 or 401 rather
/// than a reset connection. Before the server drained such bodies,
/// schemathesis saw "EOF occurred in violation of protocol" here.
#[tokio::test(flavor = "multi_thread")]
async fn refused_bodies_are_drained_so_the_client_reads_the_answer() {
    let s = start().await;
    // Larger than the loopback socket buffers, so an unread body blocks.
    let len = 12 * 1024 * 1024;
    for (path, want) in [("/v1/login", "413"), ("/v1/tenants/acme/users", "401")] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {len}\r\nConnection: close\r\n\r\n"
        );
        let (sent, status) = send_then_read(&s, head, len).await;
        assert!(sent, "{path}: the server stopped reading the body");
        assert!(
            status.starts_with("HTTP/1.1 ") && status[9..].starts_with(want),
            "{path}: got {status:?}, want {want}"
        );
    }
    // The server serves on.
    let r = s.get(&s.login("acme", "aud").await, "/v1/session").await;
    assert_eq!(r.status(), 200);
}
