use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// Accepts every other message, so accounting of refusals can be checked.
struct Fake {
    calls: Arc<AtomicU64>,
}

impl Publisher for Fake {
    async fn publish(&mut self, topic: &str, _payload: &[u8]) -> Result<bool, BenchError> {
        assert!(topic.starts_with("t"));
        Ok(self.calls.fetch_add(1, Ordering::Relaxed) % 2 == 0)
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
