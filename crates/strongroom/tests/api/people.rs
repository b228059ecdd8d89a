//! People at the controls: enrolment with a one-time code, the password
//! policy, TOTP (wrong, replayed, recovery codes), step-up before sensitive
//! actions, back-off, lockout and unlock, and refusals that never tell
//! whether a user exists.

use reqwest::StatusCode;
use serde_json::{Value, json};
use strongroom_vault::Clock;
use totp_rs::Totp;

use crate::harness::{Caller, Harness, code, on_each_backend};

pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// A person enrolled and confirmed, with their authenticator.
pub(crate) struct Person {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) totp: Totp,
    pub(crate) recovery_codes: Vec<String>,
}

impl Person {
    /// The code the authenticator shows at the server's current time.
    pub(crate) fn code_at(&self, h: &Harness) -> String {
        let secs = u64::try_from(h.clock.now_ms() / 1000).unwrap();
        self.totp.generate(secs).to_string()
    }
}

/// Creates a person through the API (approved by a second officer when
/// their roles need it) and returns the admin's response.
pub(crate) async fn create_person(h: &Harness, name: &str, roles: &[&str]) -> Value {
    let (status, body) = h
        .admin()
        .await
        .post(
            "/v1/principals",
            json!({"name": name, "kind": "user", "roles": roles, "tenants": ["dev"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["kind"], "user");
    assert!(body.get("client_secret").is_none(), "{body}");
    if body["pending_approval"] == true {
        let id = body["id"].as_str().unwrap();
        let (status, resp) = h
            .approver()
            .await
            .post(&format!("/v1/principals/{id}/approve"), json!({}))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{resp}");
    }
    body
}

pub(crate) async fn enrolled(h: &Harness, name: &str, roles: &[&str]) -> Person {
    let created = create_person(h, name, roles).await;
    let enrolment_code = created["enrolment_code"].as_str().unwrap().to_owned();
    let anon = h.anonymous();
    let (status, body) = anon
        .post(
            "/v1/auth/enrol",
            json!({"username": name, "enrolment_code": enrolment_code, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uri = body["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let totp = Totp::from_url(uri).unwrap();
    let recovery_codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery_codes.len(), 10);
    let person = Person {
        name: name.to_owned(),
        id: created["id"].as_str().unwrap().to_owned(),
        totp,
        recovery_codes,
    };
    let (status, body) = anon
        .post(
            "/v1/auth/enrol/confirm",
            json!({"username": name, "enrolment_code": enrolment_code, "totp": person.code_at(h)}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // The next login needs the next code: this one was just used.
    h.clock.advance_secs(30);
    person
}

async fn login(h: &Harness, username: &str, password: &str, totp: &str) -> (StatusCode, Value) {
    h.anonymous()
        .post(
            "/v1/auth/login",
            json!({"username": username, "password": password, "totp": totp}),
        )
        .await
}

/// What a refusal says, without its request id.
fn shape(body: &Value) -> (Value, Value) {
    (
        body["error"]["code"].clone(),
        body["error"]["message"].clone(),
    )
}

fn bearer(h: &Harness, body: &Value) -> Caller {
    h.anonymous()
        .with_token(body["access_token"].as_str().unwrap())
}

on_each_backend! {
async fn a_person_enrols_once_then_needs_both_factors(store) {
    let h = Harness::dev_on(store.clone()).await;
    let created = create_person(&h, "alice", &["auditor"]).await;
    let enrolment_code = created["enrolment_code"].as_str().unwrap().to_owned();
    let anon = h.anonymous();

    // A wrong code and an unknown user are refused alike.
    for (user, code_given) in [("alice", "sren_wrong"), ("nobody", enrolment_code.as_str())] {
        let (status, body) = anon
            .post(
                "/v1/auth/enrol",
                json!({"username": user, "enrolment_code": code_given, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(code(&body), "auth.invalid_enrolment");
    }

    // Each rule of the password policy says what is wrong.
    for (password, says) in [
        ("short-pw", "at least 12"),
        ("xx-alice-in-wonderland", "user name"),
        ("qwerty123456", "most common"),
    ] {
        let (status, body) = anon
            .post(
                "/v1/auth/enrol",
                json!({"username": "alice", "enrolment_code": enrolment_code, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{password}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{password}: {message}");
    }

    let (status, body) = anon
        .post(
            "/v1/auth/enrol",
            json!({"username": "alice", "enrolment_code": enrolment_code, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let totp = Totp::from_url(body["otpauth_uri"].as_str().unwrap()).unwrap();
    let now_code = |h: &Harness| {
        totp.generate(u64::try_from(h.clock.now_ms() / 1000).unwrap())
            .to_string()
    };

    // Not confirmed yet: no login.
    let (status, body) = login(&h, "alice", PASSWORD, &now_code(&h)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    let confirm = |totp_code: String| {
        anon.post(
            "/v1/auth/enrol/confirm",
            json!({"username": "alice", "enrolment_code": enrolment_code, "totp": totp_code}),
        )
    };
    let (status, body) = confirm("000000".into()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(code(&body), "auth.invalid_totp");
    let (status, body) = confirm(now_code(&h)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // The enrolment code has done its job.
    let (status, _) = anon
        .post(
            "/v1/auth/enrol",
            json!({"username": "alice", "enrolment_code": enrolment_code, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The code that confirmed enrolment cannot log in: codes work once.
    let (status, replayed) = login(&h, "alice", PASSWORD, &now_code(&h)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{replayed}");
    // A password alone opens nothing, and neither does a bad code.
    let (status, _) = h
        .anonymous()
        .post("/v1/auth/login", json!({"username": "alice", "password": PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    h.clock.advance_secs(61);
    let (status, body) = login(&h, "alice", PASSWORD, &now_code(&h)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 900);
    let alice = bearer(&h, &body);
    let (status, me) = alice.get("/v1/auth/whoami").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["name"], "alice");

    // A person's name is not a client id.
    let (status, body) = h
        .anonymous()
        .post(
            "/v1/auth/token",
            json!({"grant_type": "client_credentials", "client_id": "alice", "client_secret": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // No password, code or seed in the audit log.
    let secret_base32 = totp.secret().to_base32();
    for (_, body, _) in h.audit_rows().await {
        assert!(!body.contains(PASSWORD), "{body}");
        assert!(!body.contains(&secret_base32), "{body}");
        assert!(!body.contains(&enrolment_code), "{body}");
    }
}
}

on_each_backend! {
async fn sensitive_actions_need_a_recent_second_factor(store) {
    let h = Harness::dev_on(store.clone()).await;
    let person = enrolled(&h, "fiona", &["fulfilment"]).await;
    let token = h.service().await.put("GIFT-AAAA-1111").await;

    let (status, body) = login(&h, &person.name, PASSWORD, &person.code_at(&h)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fiona = bearer(&h, &body);
    let (status, body) = fiona.reveal(&token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["value"], "GIFT-AAAA-1111");

    // Six minutes on, the session is alive but reveals need a step-up.
    h.clock.advance_secs(360);
    assert_eq!(fiona.get("/v1/auth/whoami").await.0, StatusCode::OK);
    let (status, body) = fiona.reveal(&token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(code(&body), "auth.mfa_required");

    let (status, body) = fiona
        .post("/v1/auth/step-up", json!({"totp": "123456"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    h.clock.advance_secs(2); // past the back-off of that failure
    let fresh = person.code_at(&h);
    let (status, body) = fiona.post("/v1/auth/step-up", json!({"totp": fresh})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stepped = bearer(&h, &body);
    let (status, body) = stepped.reveal(&token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The same code again is a replay.
    let (status, _) = stepped.post("/v1/auth/step-up", json!({"totp": fresh})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Services are not asked for a second factor, and cannot step up.
    let service = h.service().await;
    let (status, body) = service.post("/v1/auth/step-up", json!({"totp": fresh})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "auth.not_a_person");
}
}

on_each_backend! {
async fn failures_back_off_then_lock_until_an_admin_unlocks(store) {
    let h = Harness::dev_on(store.clone()).await;
    let person = enrolled(&h, "bob", &["auditor"]).await;

    // Wrong password and unknown user look the same from outside.
    let (s1, wrong) = login(&h, "bob", "not the password at all", &person.code_at(&h)).await;
    let (s2, unknown) = login(&h, "nobody-here", PASSWORD, &person.code_at(&h)).await;
    assert_eq!((s1, s2), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert_eq!(shape(&wrong), shape(&unknown));
    assert_eq!(code(&wrong), "auth.invalid_login");

    // Right after a failure even the right credentials wait (back-off).
    let (status, _) = login(&h, "bob", PASSWORD, &person.code_at(&h)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    h.clock.advance_secs(31);
    let (status, body) = login(&h, "bob", PASSWORD, &person.code_at(&h)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Wrong passwords, which anyone who knows the name can send, only slow
    // the account down; they never lock it.
    for _ in 0..12 {
        h.clock.advance_secs(61);
        let (status, _) = login(&h, "bob", "still not the password", &person.code_at(&h)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    h.clock.advance_secs(61);
    let (status, body) = login(&h, "bob", PASSWORD, &person.code_at(&h)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Ten wrong second factors after the right password lock it.
    for _ in 0..10 {
        h.clock.advance_secs(61);
        let (status, _) = login(&h, "bob", PASSWORD, "999999").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    h.clock.advance_secs(61);
    let (status, body) = login(&h, "bob", PASSWORD, &person.code_at(&h)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(shape(&body), shape(&unknown), "a locked account looks like any failure");

    // Only an administrator unlocks, and that is audited.
    let (status, body) = h
        .service()
        .await
        .post(&format!("/v1/principals/{}/unlock", person.id), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = h
        .admin()
        .await
        .post(&format!("/v1/principals/{}/unlock", person.id), json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    h.clock.advance_secs(30);
    let (status, body) = login(&h, "bob", PASSWORD, &person.code_at(&h)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let audit = h.audit_rows().await;
    let says = |needle: &str| audit.iter().any(|(_, body, _)| body.contains(needle));
    assert!(says("account locked after 10 failures"));
    assert!(says("\"principal.unlock\""));
    assert!(says("auth.unknown_user"));
}
}

on_each_backend! {
async fn a_recovery_code_stands_in_for_the_authenticator_once(store) {
    let h = Harness::dev_on(store.clone()).await;
    let person = enrolled(&h, "carol", &["auditor"]).await;
    let recovery = person.recovery_codes[3].clone();
    let anon = h.anonymous();
    let with_recovery = |code_given: String| {
        anon.post(
            "/v1/auth/login",
            json!({"username": "carol", "password": PASSWORD, "recovery_code": code_given}),
        )
    };
    let (status, body) = with_recovery(recovery.to_uppercase()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = with_recovery(recovery.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a recovery code works once");
    h.clock.advance_secs(5);
    let (status, body) = with_recovery(person.recovery_codes[4].clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
}

on_each_backend! {
async fn parallel_attempts_cannot_share_one_back_off_window(store) {
    let h = Harness::dev_on(store.clone()).await;
    let person = enrolled(&h, "dora", &["auditor"]).await;
    // Twenty guesses at once: the first claims the attempt, the rest meet
    // the back-off it started, and none is even checked.
    let guesses = (0..20).map(|i| {
        let anon = h.anonymous();
        async move {
            anon.post(
                "/v1/auth/login",
                json!({"username": "dora", "password": format!("guess number {i} of many"), "totp": "123456"}),
            )
            .await
            .0
        }
    });
    let statuses = futures_join_all(guesses).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    let audit = h.audit_rows().await;
    let checked = audit
        .iter()
        .filter(|(_, b, _)| b.contains("auth.bad_password"))
        .count();
    let held_back = audit
        .iter()
        .filter(|(_, b, _)| b.contains("auth.backoff"))
        .count();
    assert_eq!(checked, 1, "only one guess was checked");
    assert_eq!(held_back, 19);
    h.clock.advance_secs(2);
    let (status, body) = login(&h, "dora", PASSWORD, &person.code_at(&h)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
