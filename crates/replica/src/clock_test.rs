use super::*;

const DAY: u64 = 86_400_000;
const T0: u64 = 1_700_000_000_000;

#[test]
fn a_new_site_takes_the_wall_clock_once_then_counts_monotonic_time() {
    let mut c = LogClock::new();
    assert_eq!(c.skew(5, T0), None);
    assert_eq!(c.stamp(5, T0), T0);
    // The wall clock jumps a day ahead: the log goes on by what passed.
    assert_eq!(c.stamp(1_005, T0 + DAY), T0 + 1_000);
    assert_eq!(c.skew(1_005, T0 + DAY), Some((DAY - 1_000) as i64));
}

#[test]
fn a_new_leader_continues_from_the_last_entry_whatever_its_wall_clock() {
    // Node 3's wall clock is a day ahead; it applied the old leader's entry at mono 50.
    let mut c = LogClock::new();
    c.observe(T0, 50);
    assert_eq!(c.now(2_050, T0 + DAY), T0 + 2_000);
    assert_eq!(c.stamp(2_050, T0 + DAY), T0 + 2_000);
    // A year behind instead: the same.
    let mut c = LogClock::new();
    c.observe(T0, 50);
    assert_eq!(c.stamp(2_050, T0 - 365 * DAY), T0 + 2_000);
    assert!(LogClock::disagrees(c.skew(2_050, T0 - 365 * DAY).unwrap()));
    assert!(!LogClock::disagrees(
        c.skew(2_050, T0 + 2_000 + 59_000).unwrap()
    ));
}

#[test]
fn own_entries_do_not_hold_the_leaders_clock_back() {
    let mut c = LogClock::new();
    c.observe(T0, 0);
    let t = c.stamp(100, 0);
    assert_eq!(t, T0 + 100);
    // Applied 30 ms after it was stamped: the base stays.
    c.observe(t, 130);
    assert_eq!(c.now(200, 0), T0 + 200);
}

#[test]
fn stamps_never_go_back_and_never_below_an_applied_entry() {
    let mut c = LogClock::new();
    c.observe(T0, 1_000);
    // A restarted process whose monotonic clock starts lower reads no earlier time.
    assert_eq!(c.now(10, 0), T0);
    let a = c.stamp(1_500, 0);
    // Another leader's entry, older than this node's stamps: only the floor moves.
    c.observe(T0 + 100, 1_600);
    let b = c.stamp(1_600, 0);
    assert!(b >= a);
    assert_eq!(b, T0 + 600);
    // A later leader stamped further on: followed from there.
    c.observe(T0 + 10_000, 1_700);
    assert_eq!(c.stamp(1_800, 0), T0 + 10_100);
}

#[test]
fn no_entry_time_is_nothing_to_go_by() {
    let mut c = LogClock::new();
    c.observe(0, 10);
    assert_eq!(c.now(10, T0), T0);
}
