use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// Accepts every other message, so accounting of refusals can be checked.
struct Fake {
    calls: Arc<AtomicU64>,
}

impl Publisher for Fake {
    async fn publish(&mut self, topic: &str, _payload: &[u8]) -> Result<bool, BenchError> {
        assert!(topic.starts_with("t"));
        Ok(self.calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(2))
    }
}

#[test]
fn http_response_parsing() {
    let r = b"HTTP/1.1 202 Accepted\r\ncontent-length: 12\r\n\r\n{\"topic\":1}";
    assert_eq!(parse_response(r), Some((202, r.len() - 11, 12)));
    assert_eq!(parse_response(b"HTTP/1.1 202 Acc"), None);
    assert_eq!(
        parse_response(b"HTTP/1.1 503 X\r\n\r\n"),
        Some((503, 18, 0))
    );
}

#[tokio::test(start_paused = true)]
async fn a_phase_sends_every_planned_message_and_counts_expected() {
    let calls = Arc::new(AtomicU64::new(0));
    let publishers = (0..3)
        .map(|_| Fake {
            calls: calls.clone(),
        })
        .collect();
    let plan = PhasePlan {
        phase: 1,
        rate: 100.0,
        duration: Duration::from_secs(2),
        size: 64,
        target: Target::AnyOf(vec!["ta".into(), "tb".into()]),
    };
    let subs = Arc::new(HashMap::from([
        ("ta".to_owned(), 10),
        ("tb".to_owned(), 10),
    ]));
    let (out, back) = run_phase(publishers, &plan, subs).await;
    assert_eq!(back.len(), 3);
    assert_eq!(out.planned, 200);
    assert_eq!(out.accepted + out.refused, 200);
    assert_eq!(out.unsent, 0);
    assert_eq!(out.expected, out.accepted * 10);
    assert_eq!(calls.load(Ordering::Relaxed), 200);
}

/// Takes everything, and vouches for every other batch only, like a transport that confirms
/// in round trips and sometimes loses one.
struct Batched {
    confirms: u64,
    taken: u64,
}

impl Publisher for Batched {
    async fn publish(&mut self, _topic: &str, _payload: &[u8]) -> Result<bool, BenchError> {
        self.taken += 1;
        Ok(true)
    }

    async fn confirm(&mut self) -> Result<(), BenchError> {
        self.confirms += 1;
        if self.confirms % 2 == 1 {
            Ok(())
        } else {
            Err(BenchError::Nats("lost".into()))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn unconfirmed_batches_count_as_errors_without_expected_deliveries() {
    let plan = PhasePlan {
        phase: 2,
        rate: 1000.0,
        duration: Duration::from_secs(1),
        size: 64,
        target: Target::Topic("t".into()),
    };
    let subs = Arc::new(HashMap::from([("t".to_owned(), 7)]));
    let publisher = Batched {
        confirms: 0,
        taken: 0,
    };
    let (out, back) = run_phase(vec![publisher], &plan, subs).await;
    // 1000 messages: batches of 256, 256, 256 and the final 232; the 2nd and 4th fail.
    assert_eq!(back[0].taken, 1000);
    assert_eq!(back[0].confirms, 4);
    assert_eq!(out.accepted, 512);
    assert_eq!(out.errors, 488);
    assert_eq!(out.expected, 512 * 7);
}
