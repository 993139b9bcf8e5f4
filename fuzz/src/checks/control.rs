//! Cluster control requests (operator → gateway over NATS): any payload parses or is refused
//! with a reply that itself encodes; a parsed request round-trips through JSON; the shed split
//! never asks a shard for more than it has and adds up to what was asked (or all there is).

use volley_gateway::fuzzing::control::split_shed;
use volley_wire::{ControlReply, ControlRequest};

use super::input::Input;

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    if input.u8().is_multiple_of(2) {
        request(input.rest());
    } else {
        shed(&mut input);
    }
}

fn request(payload: &[u8]) {
    match serde_json::from_slice::<ControlRequest>(payload) {
        Ok(parsed) => {
            let encoded = serde_json::to_vec(&parsed).expect("encodes");
            let again: ControlRequest = serde_json::from_slice(&encoded).expect("decodes");
            assert_eq!(again, parsed, "round-trips");
        }
        Err(e) => {
            // What the gateway answers (control.rs): the reply must encode and read back.
            let reply = ControlReply {
                ok: false,
                error: Some(format!("malformed control request: {e}")),
                ..ControlReply::default()
            };
            let body = serde_json::to_vec(&reply).expect("encodes");
            let back: ControlReply = serde_json::from_slice(&body).expect("decodes");
            assert_eq!(back, reply);
        }
    }
}

fn shed(input: &mut Input<'_>) {
    // Realistic bounds: at most 64 shards (the cluster shard mask) of at most 2^24 connections
    // each (far above the descriptor limit), so the proportional split cannot overflow.
    let shards = input.below(65);
    let per_shard: Vec<usize> = (0..shards)
        .map(|_| (input.u32() & 0x00FF_FFFF) as usize >> input.below(24))
        .collect();
    let count = input.u64() as usize >> input.below(64);
    let split = split_shed(count, &per_shard);
    assert_eq!(split.len(), per_shard.len());
    let total: usize = per_shard.iter().sum();
    assert_eq!(
        split.iter().sum::<usize>(),
        count.min(total),
        "{count} over {per_shard:?}"
    );
    for (asked, has) in split.iter().zip(&per_shard) {
        assert!(asked <= has, "asked {asked} of a shard with {has}");
        // Proportional: within one of the exact share.
        let exact = *has as f64 * count.min(total) as f64 / total.max(1) as f64;
        assert!(
            (*asked as f64 - exact).abs() <= 1.0 + 1e-9,
            "{asked} vs {exact}"
        );
    }
}
