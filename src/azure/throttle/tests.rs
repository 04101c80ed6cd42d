//! The bucket arithmetic with a fake clock: `now` is `t0 + offset`, never the real time.

use super::*;

const S: &str = "00000000-0000-0000-0000-000000000000";

fn small() -> ThrottleConfig {
    ThrottleConfig {
        reads: BucketConfig::new(3, 1.0),
        writes: BucketConfig::new(2, 0.5),
        deletes: BucketConfig::new(1, 10.0),
        max_wait: Duration::from_secs(2),
        // Full at start and no margin: these tests are about the bucket arithmetic.
        initial_fraction: 1.0,
        margin_fraction: 0.0,
    }
}

#[test]
fn burst_then_refill() {
    let t0 = Instant::now();
    let throttle = Throttle::new(small());
    for _ in 0..3 {
        assert_eq!(throttle.try_acquire_at(S, OpClass::Read, t0), Ok(()));
    }
    assert_eq!(
        throttle.try_acquire_at(S, OpClass::Read, t0),
        Err(Duration::from_secs(1))
    );
    // Half a second later, half a token: still half a second to wait.
    let t = t0 + Duration::from_millis(500);
    assert_eq!(
        throttle.try_acquire_at(S, OpClass::Read, t),
        Err(Duration::from_millis(500))
    );
    assert_eq!(
        throttle.try_acquire_at(S, OpClass::Read, t0 + Duration::from_secs(1)),
        Ok(())
    );
    // Never more than the burst, however long we wait.
    let later = t0 + Duration::from_secs(3600);
    for _ in 0..3 {
        assert_eq!(throttle.try_acquire_at(S, OpClass::Read, later), Ok(()));
    }
    assert!(throttle.try_acquire_at(S, OpClass::Read, later).is_err());
}

#[test]
fn classes_and_subscriptions_are_independent() {
    let t0 = Instant::now();
    let throttle = Throttle::new(small());
    assert!(throttle.try_acquire_at(S, OpClass::Delete, t0).is_ok());
    assert!(throttle.try_acquire_at(S, OpClass::Delete, t0).is_err());
    assert!(throttle.try_acquire_at(S, OpClass::Write, t0).is_ok());
    assert!(
        throttle
            .try_acquire_at("other-sub", OpClass::Delete, t0)
            .is_ok()
    );
    // Subscription ids are case-insensitive in ARM.
    assert!(
        throttle
            .try_acquire_at(&S.to_uppercase(), OpClass::Delete, t0)
            .is_err()
    );
}

#[test]
fn reservations_queue_callers() {
    let t0 = Instant::now();
    let throttle = Throttle::new(small());
    let max = Duration::from_secs(10);
    assert_eq!(
        throttle.reserve_within_at(S, OpClass::Write, max, t0),
        Ok(Duration::ZERO)
    );
    assert_eq!(
        throttle.reserve_within_at(S, OpClass::Write, max, t0),
        Ok(Duration::ZERO)
    );
    // Writes refill at 0.5/s: the third caller waits 2 s, the fourth 4 s.
    assert_eq!(
        throttle.reserve_within_at(S, OpClass::Write, max, t0),
        Ok(Duration::from_secs(2))
    );
    assert_eq!(
        throttle.reserve_within_at(S, OpClass::Write, max, t0),
        Ok(Duration::from_secs(4))
    );
    // Beyond max_wait nothing is reserved.
    let short = Duration::from_secs(5);
    assert_eq!(
        throttle.reserve_within_at(S, OpClass::Write, short, t0),
        Err(Duration::from_secs(6))
    );
    assert_eq!(
        throttle.reserve_within_at(S, OpClass::Write, short, t0),
        Err(Duration::from_secs(6))
    );
}

#[test]
fn a_429_pauses_the_bucket_for_retry_after() {
    let t0 = Instant::now();
    let throttle = Throttle::new(small());
    throttle.on_throttled_at(S, OpClass::Read, Duration::from_secs(7), t0);
    // The pause, then one refill interval: the bucket is empty when the pause ends.
    assert_eq!(
        throttle.try_acquire_at(S, OpClass::Read, t0),
        Err(Duration::from_secs(8))
    );
    let t3 = t0 + Duration::from_secs(3);
    assert_eq!(
        throttle.try_acquire_at(S, OpClass::Read, t3),
        Err(Duration::from_secs(5))
    );
    let t7 = t0 + Duration::from_secs(7);
    assert_eq!(
        throttle.try_acquire_at(S, OpClass::Read, t7),
        Err(Duration::from_secs(1))
    );
    assert_eq!(
        throttle.try_acquire_at(S, OpClass::Read, t0 + Duration::from_secs(8)),
        Ok(())
    );
    // Other classes are unaffected.
    assert!(throttle.try_acquire_at(S, OpClass::Write, t0).is_ok());
}

#[test]
fn callers_queued_behind_a_429_are_spread_out() {
    let t0 = Instant::now();
    let throttle = Throttle::new(small());
    let max = Duration::from_secs(60);
    throttle.on_throttled_at(S, OpClass::Read, Duration::from_secs(7), t0);
    // Reads refill 1/s: after the 7 s pause, one caller per second, not all at once.
    let waits: Vec<_> = (0..3)
        .map(|_| {
            throttle
                .reserve_within_at(S, OpClass::Read, max, t0)
                .unwrap()
        })
        .collect();
    assert_eq!(
        waits,
        [8, 9, 10].map(Duration::from_secs),
        "each caller waits one more refill interval"
    );
}

#[test]
fn a_shorter_second_pause_does_not_shorten_the_first() {
    let t0 = Instant::now();
    let mut bucket = TokenBucket::new(BucketConfig::new(5, 5.0), t0);
    bucket.pause(t0, Duration::from_secs(10));
    bucket.pause(t0 + Duration::from_secs(1), Duration::from_secs(2));
    assert_eq!(
        bucket.wait_time(t0 + Duration::from_secs(5)),
        Duration::from_secs(5) + Duration::from_millis(200)
    );
}

#[test]
fn bucket_config_parses() {
    assert_eq!(
        "250/25".parse::<BucketConfig>().unwrap(),
        BucketConfig::new(250, 25.0)
    );
    assert_eq!(
        " 10 / 0.5 ".parse::<BucketConfig>().unwrap(),
        BucketConfig::new(10, 0.5)
    );
    for bad in ["", "250", "0/1", "1/0", "a/b", "1/-1", "1/inf"] {
        assert!(bad.parse::<BucketConfig>().is_err(), "{bad}");
    }
    assert!(ThrottleConfig::default().validate().is_ok());
}

#[test]
fn defaults_keep_a_margin_below_arm() {
    let c = ThrottleConfig::default();
    for (ours, arm) in [
        (c.reads, arm_limits::READS),
        (c.writes, arm_limits::WRITES),
        (c.deletes, arm_limits::DELETES),
    ] {
        assert!(
            f64::from(ours.burst) <= 0.9 * f64::from(arm.burst),
            "{ours}"
        );
        assert!(ours.per_second <= 0.9 * arm.per_second, "{ours}");
        // What `--arm-throttle-*` prints as the default parses back to it.
        assert_eq!(ours.to_string().parse::<BucketConfig>().unwrap(), ours);
    }
    assert_eq!(c.initial_tokens(OpClass::Write), 3.0);
    assert_eq!(c.initial_tokens(OpClass::Read), 4.0);
    assert_eq!(c.margin(OpClass::Write), 9.0);
    let mut bad = c;
    bad.margin_fraction = 1.5;
    assert!(bad.validate().is_err());
    bad.margin_fraction = f64::NAN;
    assert!(bad.validate().is_err());
}

#[test]
fn a_fresh_process_starts_with_a_small_burst() {
    let t0 = Instant::now();
    let throttle = Throttle::default();
    for _ in 0..3 {
        assert_eq!(throttle.try_acquire_at(S, OpClass::Write, t0), Ok(()));
    }
    let wait = throttle.try_acquire_at(S, OpClass::Write, t0).unwrap_err();
    assert_eq!(wait, Duration::from_secs_f64(1.0 / 9.0));
    // With no report at all it refills at the configured rate up to the full burst: within
    // one refill period (20 s) ARM has refilled whatever a predecessor spent.
    let later = t0 + Duration::from_secs(20);
    assert_eq!(throttle.available_at(S, OpClass::Write, later), 180.0);
}

/// Admits one write and answers it with `writes` remaining.
fn answer_write(throttle: &Throttle, writes: u32, now: Instant) {
    let (wait, ticket) = throttle
        .admit_at(S, OpClass::Write, Duration::from_secs(60), now)
        .unwrap();
    assert!(wait.is_zero(), "{wait:?}");
    ticket.answered_at(&[principal(OpClass::Write, writes)], now);
}

fn principal(class: OpClass, remaining: u32) -> RemainingReport {
    RemainingReport {
        class,
        scope: BudgetScope::Principal,
        remaining,
    }
}

fn global(class: OpClass, remaining: u32) -> RemainingReport {
    RemainingReport {
        class,
        scope: BudgetScope::Global,
        remaining,
    }
}

#[test]
fn restart_after_a_predecessor_spent_the_budget() {
    let t0 = Instant::now();
    let throttle = Throttle::default();
    // The first answer of the new process: ARM has 5 writes left for this principal.
    answer_write(&throttle, 5, t0);
    // 5 minus the margin of 9 leaves nothing to spend now.
    assert_eq!(throttle.available_at(S, OpClass::Write, t0), 5.0 - 9.0);
    let wait = throttle.try_acquire_at(S, OpClass::Write, t0).unwrap_err();
    assert_eq!(wait, Duration::from_secs_f64(5.0 / 9.0));

    // Without a margin, exactly what ARM reported is spendable, and not one more.
    let throttle = Throttle::new(ThrottleConfig {
        margin_fraction: 0.0,
        ..ThrottleConfig::default()
    });
    answer_write(&throttle, 5, t0);
    for _ in 0..5 {
        assert_eq!(throttle.try_acquire_at(S, OpClass::Write, t0), Ok(()));
    }
    assert!(throttle.try_acquire_at(S, OpClass::Write, t0).is_err());
    // Other classes and subscriptions learnt nothing.
    assert_eq!(throttle.available_at(S, OpClass::Delete, t0), 3.0);
    assert_eq!(throttle.available_at("other", OpClass::Write, t0), 3.0);
}

#[test]
fn the_first_report_replaces_the_start_up_guess() {
    let t0 = Instant::now();
    let throttle = Throttle::default();
    answer_write(&throttle, 150, t0);
    assert_eq!(throttle.available_at(S, OpClass::Write, t0), 150.0 - 9.0);
    // Never above our own burst, whatever ARM says.
    let throttle = Throttle::default();
    answer_write(&throttle, 199, t0);
    assert_eq!(throttle.available_at(S, OpClass::Write, t0), 180.0);
}

#[test]
fn later_reports_only_lower_the_bucket() {
    let t0 = Instant::now();
    let throttle = Throttle::default();
    answer_write(&throttle, 100, t0);
    // 100 minus the margin; the write just answered is already in ARM's count.
    assert_eq!(throttle.available_at(S, OpClass::Write, t0), 91.0);
    // A stale, higher count (an old answer arriving late) does not raise it.
    throttle.report_at(S, principal(OpClass::Write, 190), t0);
    assert_eq!(throttle.available_at(S, OpClass::Write, t0), 91.0);
    // A lower one does.
    throttle.report_at(S, principal(OpClass::Write, 50), t0);
    assert_eq!(throttle.available_at(S, OpClass::Write, t0), 41.0);
    // Our own refill is what raises it again.
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(throttle.available_at(S, OpClass::Write, t1), 50.0);
}

#[test]
fn out_of_order_answers_never_overspend() {
    let t0 = Instant::now();
    let throttle = Throttle::default();
    answer_write(&throttle, 100, t0);
    let max = Duration::from_secs(60);
    // Three concurrent writes; ARM counts them a, b, c: 99, 98, 97 left.
    let (_, a) = throttle.admit_at(S, OpClass::Write, max, t0).unwrap();
    let (_, b) = throttle.admit_at(S, OpClass::Write, max, t0).unwrap();
    let (_, c) = throttle.admit_at(S, OpClass::Write, max, t0).unwrap();
    assert_eq!(throttle.outstanding(S, OpClass::Write), 3);
    let before = throttle.available_at(S, OpClass::Write, t0);
    assert_eq!(before, 88.0);
    // c answers first; a and b are still outstanding and come off its count.
    c.answered_at(&[principal(OpClass::Write, 97)], t0);
    assert_eq!(
        throttle.available_at(S, OpClass::Write, t0),
        97.0 - 2.0 - 9.0
    );
    // The older answers report more than ARM has now: ignored.
    a.answered_at(&[principal(OpClass::Write, 99)], t0);
    b.answered_at(&[principal(OpClass::Write, 98)], t0);
    assert_eq!(throttle.available_at(S, OpClass::Write, t0), 86.0);
    assert_eq!(throttle.outstanding(S, OpClass::Write), 0);
    // Whatever order the answers come in, we never hold more than ARM's last count minus
    // the margin: 97 - 9 = 88 >= 86.
}

#[test]
fn outstanding_requests_come_off_the_first_report() {
    let t0 = Instant::now();
    let throttle = Throttle::default();
    let max = Duration::from_secs(60);
    // A fresh process with ten writes queued (three at once, seven waiting for refill).
    let tickets: Vec<_> = (0..10)
        .map(|_| throttle.admit_at(S, OpClass::Write, max, t0).unwrap())
        .collect();
    assert_eq!(tickets[3].0, Duration::from_secs_f64(1.0 / 9.0));
    let mut tickets = tickets.into_iter().map(|(_, t)| t);
    // The first answer: 150 left, nine other writes not answered yet.
    tickets
        .next()
        .unwrap()
        .answered_at(&[principal(OpClass::Write, 150)], t0);
    assert_eq!(
        throttle.available_at(S, OpClass::Write, t0),
        150.0 - 9.0 - 9.0
    );
    // Dropped tickets (a cancelled reconcile, a transport error) stop counting.
    drop(tickets);
    assert_eq!(throttle.outstanding(S, OpClass::Write), 0);
}

#[test]
fn global_counts_only_lower() {
    let t0 = Instant::now();
    let throttle = Throttle::default();
    // The subscription-wide counter is far above the per-principal bucket: not a reason to
    // leave the start-up burst.
    throttle.report_at(S, global(OpClass::Read, 16499), t0);
    assert_eq!(throttle.available_at(S, OpClass::Read, t0), 4.0);
    throttle.report_at(S, principal(OpClass::Read, 200), t0);
    assert_eq!(throttle.available_at(S, OpClass::Read, t0), 200.0 - 11.25);
    // A low global count lowers.
    throttle.report_at(S, global(OpClass::Read, 20), t0);
    assert_eq!(throttle.available_at(S, OpClass::Read, t0), 20.0 - 11.25);
}

#[test]
fn a_429_is_a_report_too() {
    let t0 = Instant::now();
    let throttle = Throttle::default();
    throttle.on_throttled_at(S, OpClass::Write, Duration::from_secs(2), t0);
    // A count from an answer sent before the 429 must not undo it.
    throttle.report_at(S, principal(OpClass::Write, 199), t0);
    assert_eq!(throttle.available_at(S, OpClass::Write, t0), 0.0);
    assert_eq!(
        throttle.try_acquire_at(S, OpClass::Write, t0),
        Err(Duration::from_secs(2) + Duration::from_secs_f64(1.0 / 9.0))
    );
}

#[test]
fn absurd_inputs_do_not_panic() {
    let t0 = Instant::now();
    let mut bucket = TokenBucket::new(BucketConfig::new(1, 1e-300), t0);
    assert_eq!(bucket.try_take(t0), Ok(()));
    assert_eq!(bucket.wait_time(t0), Duration::MAX);
    bucket.pause(t0, Duration::MAX);
    assert!(bucket.wait_time(t0) >= MAX_PAUSE);
    bucket.report(BudgetScope::Principal, u32::MAX, t0);
    bucket.report(BudgetScope::Global, 0, t0);
    let mut fast = TokenBucket::new(BucketConfig::new(u32::MAX, f64::MAX), t0);
    let later = t0 + Duration::from_secs(3600);
    assert_eq!(fast.available(later), f64::from(u32::MAX));
}

#[tokio::test]
async fn admit_with_the_real_clock() {
    let mut config = small();
    config.reads = BucketConfig::new(1, 20.0);
    let throttle = Throttle::new(config);
    let (wait, first) = throttle.admit(S, OpClass::Read).unwrap();
    assert_eq!(wait, Duration::ZERO);
    let (wait, second) = throttle.admit(S, OpClass::Read).unwrap();
    assert!(wait > Duration::from_millis(30), "{wait:?}");
    assert_eq!(throttle.outstanding(S, OpClass::Read), 2);
    first.answered(&[]);
    drop(second);
    assert_eq!(throttle.outstanding(S, OpClass::Read), 0);
    throttle.on_throttled(S, OpClass::Read, Duration::from_secs(60));
    let err = throttle.admit(S, OpClass::Read).unwrap_err();
    assert!(err > Duration::from_secs(50), "{err:?}");
    assert_eq!(throttle.outstanding(S, OpClass::Read), 0);
}
