#![forbid(unsafe_code)]
//! The promotion token check on real pg_controldata (contract §3, §5.2, §6): fatal tokens make
//! the cluster unrecoverable without promoting, a token from the future waits, the right token
//! recovers; a failover needs no token; a stale token blocks the next demotion (#9273).

use std::time::Duration;

use e2e::harness::TestNamespace;
use e2e::harness::testkit::{self, Pair};
use topology::cnpg::{phase, phase_reason};
use topology::token::PromotionToken;

fn with(token: &str, change: impl FnOnce(&mut PromotionToken)) -> String {
    let mut decoded = PromotionToken::parse(token).expect("a valid token");
    change(&mut decoded);
    decoded.encode()
}

fn phase_and_reason(c: &topology::cnpg::Cluster) -> (String, String) {
    let s = c.status.clone().unwrap_or_default();
    (
        s.phase.unwrap_or_default(),
        s.phase_reason.unwrap_or_default(),
    )
}

/// Holds for `span` (several of the instance manager's re-checks at the lab's time scale):
/// the Cluster keeps `phase` and B stays a standby. A waiting token is a non-event, so it is
/// observed over a window, checked on every poll.
async fn stays(pair: &Pair, expected_phase: &str, span: Duration) {
    let until = tokio::time::Instant::now() + span;
    while tokio::time::Instant::now() < until {
        let c = pair.api_b.get(pair.b.name).await.expect("get B");
        assert_eq!(testkit::phase(&c), expected_phase, "{:#?}", c.status);
        assert!(
            testkit::last_promotion_token(&c).is_none(),
            "{:#?}",
            c.status
        );
        assert!(pair.b_in_recovery().await, "B must not be promoted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn wrong_tokens_block_the_promotion_until_the_right_one_arrives() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-token").await;
    let pair = Pair::create(lab, ns.name()).await;
    let token = pair.demote_a().await;
    let tl: u32 = PromotionToken::parse(&token)
        .expect("token")
        .timeline()
        .expect("tl");

    // From the future (timeline not reached): retryable, waits with the promoting phase.
    let future = with(&token, |t| {
        t.latest_checkpoint_timeline_id = (tl + 1).to_string()
    });
    pair.promote_b(Some(&future)).await.expect("admitted");
    testkit::wait_cluster(&pair.api_b, pair.b.name, "the promoting phase", |c| {
        phase_and_reason(c)
            == (
                phase::PROMOTING.to_owned(),
                phase_reason::PROMOTION_IN_PROGRESS.to_owned(),
            )
    })
    .await;
    stays(&pair, phase::PROMOTING, Duration::from_secs(2)).await;

    // Another system's token: fatal.
    let foreign = with(&token, |t| {
        t.database_system_identifier = "1234567890".into()
    });
    pair.promote_b(Some(&foreign)).await.expect("admitted");
    let unrecoverable = (
        phase::UNRECOVERABLE.to_owned(),
        phase_reason::TOKEN_NOT_CORRECT.to_owned(),
    );
    testkit::wait_cluster(&pair.api_b, pair.b.name, "unrecoverable (sysid)", |c| {
        phase_and_reason(c) == unrecoverable
    })
    .await;
    assert!(pair.b_in_recovery().await);

    // The e2e test's tampering: REDO LSN 0/0 is behind the replica, fatal.
    let tampered = with(&token, |t| t.latest_checkpoint_redo_location = "0/0".into());
    pair.promote_b(Some(&tampered)).await.expect("admitted");
    testkit::wait_cluster(&pair.api_b, pair.b.name, "unrecoverable (LSN 0/0)", |c| {
        phase_and_reason(c) == unrecoverable
    })
    .await;
    stays(&pair, phase::UNRECOVERABLE, Duration::from_secs(1)).await;

    // Not terminal: the right token recovers, and the new timeline is the token's + 1.
    pair.promote_b(Some(&token)).await.expect("admitted");
    let promoted = testkit::wait_cluster(&pair.api_b, pair.b.name, "promoted and healthy", |c| {
        testkit::last_promotion_token(c) == Some(token.as_str()) && testkit::healthy(c)
    })
    .await;
    assert_eq!(
        promoted.status.as_ref().and_then(|s| s.timeline_id),
        Some(i64::from(tl) + 1)
    );
    testkit::wait_until_writable(lab, pair.b.region, &pair.namespace, pair.b.name).await;

    // #9273: the token left on B blocks B's demotion at admission.
    let rejected = testkit::patch_replica(
        &pair.api_b,
        pair.b.name,
        serde_json::json!({"primary": pair.a.name}),
    )
    .await
    .expect_err("the webhook rejects a replica with a promotion token");
    assert!(
        rejected
            .to_string()
            .contains("promotionToken is only allowed for primary clusters"),
        "{rejected}"
    );
    // Clearing the token clears lastPromotionToken too.
    pair.patch_b_token(None).await;
    testkit::wait_cluster(
        &pair.api_b,
        pair.b.name,
        "lastPromotionToken cleared",
        |c| testkit::last_promotion_token(c).is_none(),
    )
    .await;
    pair.delete().await;
}

#[tokio::test]
async fn failover_without_token_promotes_at_once() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-failover").await;
    let pair = Pair::create(lab, ns.name()).await;
    let before = testkit::timeline(
        &testkit::connect(lab, pair.b.region, &pair.namespace, pair.b.name).await,
    )
    .await;
    // A is left running as primary: a failover does not ask (two writable primaries, which is
    // exactly why the docs warn against it).
    pair.promote_b(None).await.expect("admitted");
    let promoted = testkit::wait_cluster(&pair.api_b, pair.b.name, "B healthy primary", |c| {
        testkit::healthy(c)
            && c.status
                .as_ref()
                .and_then(|s| s.timeline_id)
                .is_some_and(|tl| tl == before + 1)
    })
    .await;
    assert!(testkit::last_promotion_token(&promoted).is_none());
    testkit::wait_until_writable(lab, pair.b.region, &pair.namespace, pair.b.name).await;
    pair.delete().await;
}
