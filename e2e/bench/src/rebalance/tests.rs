//! Tests for the pure parts of the rebalance scenario.

use super::*;

#[test]
fn minimum_moves_for_an_even_spread() {
    // Issue 8: 2 × 300 scaled to 4 pods: 300 must move.
    assert_eq!(minimum_moves(&[300, 300, 0, 0]), 300);
    assert_eq!(minimum_moves(&[150, 150, 150, 150]), 0);
    // Remainders go to the fullest pods: 601 over 4 = 151,150,150,150.
    assert_eq!(minimum_moves(&[301, 300, 0, 0]), 300);
    assert_eq!(minimum_moves(&[10, 0, 0]), 6);
    assert_eq!(minimum_moves(&[]), 0);
}

#[test]
fn the_proxy_picks_ready_backends_round_robin() {
    assert_eq!(proxy::pick(&[true, true], 0), Some(0));
    assert_eq!(proxy::pick(&[true, true], 1), Some(1));
    assert_eq!(proxy::pick(&[true, true], 2), Some(0));
    assert_eq!(proxy::pick(&[false, true, false], 2), Some(1));
    assert_eq!(proxy::pick(&[false, false], 0), None);
    assert_eq!(proxy::pick(&[], 0), None);
}
