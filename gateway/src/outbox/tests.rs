use super::*;

/// A writer that takes at most `budget` bytes per call, then reports WouldBlock once `capacity`
/// is used up, and records how many calls it saw.
struct Throttled {
    out: Vec<u8>,
    per_call: usize,
    capacity: usize,
    calls: usize,
}

impl Throttled {
    fn new(per_call: usize, capacity: usize) -> Self {
        Throttled {
            out: Vec::new(),
            per_call,
            capacity,
            calls: 0,
        }
    }
}

impl Write for Throttled {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.calls += 1;
        let room = self
            .capacity
            .saturating_sub(self.out.len())
            .min(self.per_call);
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut taken = 0;
        for b in bufs {
            let n = b.len().min(room - taken);
            self.out.extend_from_slice(&b[..n]);
            taken += n;
            if taken == room {
                break;
            }
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn outbox_of(frames: &[&'static [u8]]) -> Outbox {
    let mut outbox = Outbox::default();
    for f in frames {
        outbox.push(Bytes::from_static(f));
    }
    outbox
}

#[test]
fn everything_goes_out_in_one_vectored_write() {
    let mut outbox = outbox_of(&[b"one", b"two", b"three"]);
    assert_eq!(outbox.pending_bytes(), 11);
    let mut w = Throttled::new(usize::MAX, usize::MAX);
    assert_eq!(
        outbox.write_to(&mut w).unwrap(),
        Flushed::All {
            bytes: 11,
            calls: 1
        }
    );
    assert_eq!(w.out, b"onetwothree");
    assert_eq!(w.calls, 1);
    assert!(outbox.is_empty());
    assert_eq!(outbox.pending_bytes(), 0);
}

#[test]
fn partial_writes_resume_mid_frame() {
    let mut outbox = outbox_of(&[b"hello", b"world"]);
    let mut w = Throttled::new(3, 4);
    assert_eq!(
        outbox.write_to(&mut w).unwrap(),
        Flushed::Blocked { bytes: 4, calls: 3 }
    );
    assert_eq!(outbox.pending_bytes(), 6);
    w.capacity = usize::MAX;
    assert_eq!(
        outbox.write_to(&mut w).unwrap(),
        Flushed::All { bytes: 6, calls: 2 }
    );
    assert_eq!(w.out, b"helloworld");
}

#[test]
fn more_frames_than_iovecs_take_several_calls() {
    let mut outbox = Outbox::default();
    for _ in 0..(MAX_IOVECS * 2 + 1) {
        outbox.push(Bytes::from_static(b"x"));
    }
    let mut w = Throttled::new(usize::MAX, usize::MAX);
    let flushed = outbox.write_to(&mut w).unwrap();
    assert_eq!(
        flushed,
        Flushed::All {
            bytes: MAX_IOVECS * 2 + 1,
            calls: 3
        }
    );
    assert_eq!(w.calls, 3);
    assert_eq!(w.out.len(), MAX_IOVECS * 2 + 1);
}

#[test]
fn discard_keeps_the_partly_written_frame() {
    let mut outbox = outbox_of(&[b"hello", b"world", b"again"]);
    let mut w = Throttled::new(2, 2);
    outbox.write_to(&mut w).unwrap();
    outbox.discard_unstarted();
    assert_eq!(outbox.pending_bytes(), 3);
    outbox.push(Bytes::from_static(b"!"));
    w.capacity = usize::MAX;
    w.per_call = usize::MAX;
    outbox.write_to(&mut w).unwrap();
    assert_eq!(w.out, b"hello!");
}

#[test]
fn discard_on_an_unstarted_queue_empties_it() {
    let mut outbox = outbox_of(&[b"a", b"b"]);
    outbox.discard_unstarted();
    assert!(outbox.is_empty());
    assert_eq!(outbox.pending_bytes(), 0);
}

#[test]
fn write_zero_is_an_error() {
    struct Zero;
    impl Write for Zero {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Ok(0)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut outbox = outbox_of(&[b"a"]);
    assert_eq!(
        outbox.write_to(&mut Zero).unwrap_err().kind(),
        io::ErrorKind::WriteZero
    );
}

#[test]
fn footprint_charges_each_frame_its_overhead() {
    let mut outbox = Outbox::default();
    assert_eq!(outbox.footprint(), 0);
    let frame = Bytes::from_static(b"pong");
    assert_eq!(Outbox::cost_of(&frame), 4 + FRAME_OVERHEAD);
    outbox.push(frame.clone());
    outbox.push(frame);
    assert_eq!(outbox.footprint(), 8 + 2 * FRAME_OVERHEAD);
    let mut w = Throttled::new(usize::MAX, usize::MAX);
    outbox.write_to(&mut w).unwrap();
    assert_eq!(outbox.footprint(), 0);
}

/// Resolves spans against a fixed stream: position `p` holds byte `p % 251`.
fn resolve_in_stream(start: u64, end: u64) -> Option<Bytes> {
    Some(
        (start..end)
            .map(|p| (p % 251) as u8)
            .collect::<Vec<u8>>()
            .into(),
    )
}

#[test]
fn adjacent_spans_merge_into_one_entry() {
    let mut outbox = Outbox::default();
    outbox.push_span(0, 10);
    outbox.push_span(10, 25);
    outbox.push_span(25, 30);
    assert_eq!(outbox.frames.len(), 1);
    assert_eq!(outbox.pending_bytes(), 30);
    // Not adjacent (another connection's frames in between): a new entry.
    outbox.push_span(40, 45);
    assert_eq!(outbox.frames.len(), 2);
    assert_eq!(outbox.pending_bytes(), 35);
}

#[test]
fn spans_keep_their_place_between_frames() {
    let mut outbox = Outbox::default();
    outbox.push(Bytes::from_static(b"reply;"));
    outbox.push_span(0, 4);
    outbox.push(Bytes::from_static(b";pong;"));
    outbox.push_span(4, 8);
    assert!(outbox.has_spans());
    outbox.resolve_spans(resolve_in_stream);
    assert!(!outbox.has_spans());
    assert_eq!(outbox.pending_bytes(), 20);
    let mut out = Throttled::new(usize::MAX, usize::MAX);
    assert_eq!(
        outbox.write_to(&mut out).unwrap(),
        Flushed::All {
            bytes: 20,
            calls: 1
        }
    );
    assert_eq!(out.out, b"reply;\x00\x01\x02\x03;pong;\x04\x05\x06\x07");
}

#[test]
fn writing_stops_before_an_unresolved_span() {
    let mut outbox = Outbox::default();
    outbox.push(Bytes::from_static(b"abc"));
    outbox.push_span(0, 5);
    let mut out = Throttled::new(usize::MAX, usize::MAX);
    outbox.write_to(&mut out).unwrap();
    assert_eq!(out.out, b"abc");
    assert_eq!(outbox.pending_bytes(), 5);
    assert!(
        outbox.pop().is_none(),
        "a span is not handed out as a frame"
    );
}

#[test]
fn discarding_drops_unstarted_spans() {
    let mut outbox = Outbox::default();
    outbox.push_span(0, 100);
    outbox.push(Bytes::from_static(b"later"));
    outbox.discard_unstarted();
    assert_eq!(outbox.pending_bytes(), 0);
    assert!(outbox.is_empty());
}

#[test]
fn a_span_that_cannot_be_found_leaves_the_count_right() {
    let mut outbox = Outbox::default();
    outbox.push_span(0, 10);
    outbox.push(Bytes::from_static(b"x"));
    outbox.resolve_spans(|_, _| None);
    assert_eq!(outbox.pending_bytes(), 1);
    assert_eq!(outbox.frames.len(), 1);
}

/// The queue's only entry, an unstarted span, is offered for a write straight from the stream;
/// anything else is not.
#[test]
fn a_lone_unstarted_span_is_offered_for_a_direct_write() {
    let mut outbox = Outbox::default();
    outbox.push_span(10, 20);
    outbox.push_span(20, 30);
    assert_eq!(outbox.lone_span(), Some((10, 30)), "adjacent spans merged");
    outbox.lone_span_written();
    assert_eq!(outbox.pending_bytes(), 0);
    assert!(outbox.is_empty());

    outbox.push(Bytes::from_static(b"pong"));
    outbox.push_span(30, 40);
    assert_eq!(outbox.lone_span(), None, "a frame before it");
}

/// A direct write that stopped short: the rest is queued as the connection's own copy, resumed
/// at the next byte and charged only for what is left.
#[test]
fn a_direct_write_stopped_short_resumes_at_the_next_byte() {
    let mut outbox = Outbox::default();
    outbox.push_span(2, 8);
    outbox.lone_span_partly_written(4, Bytes::from_static(b"67"));
    assert_eq!(outbox.pending_bytes(), 2);
    assert_eq!(outbox.lone_span(), None, "the rest is a frame, not a span");
    let mut w = Throttled::new(usize::MAX, usize::MAX);
    outbox.write_to(&mut w).unwrap();
    assert_eq!(w.out, b"67");
    assert_eq!(outbox.pending_bytes(), 0);
}

/// A resolved span is a copy: the connection holds no reference into the shard's stream, which
/// is reused once the pass is over.
#[test]
fn a_resolved_span_is_a_copy_of_its_own() {
    let stream = Bytes::from(vec![7u8; 16 * 1024]);
    let mut outbox = Outbox::default();
    outbox.push(Bytes::from_static(b"reply"));
    outbox.push_span(100, 104);
    outbox.resolve_spans(|start, end| {
        stream
            .get(start as usize..end as usize)
            .map(Bytes::copy_from_slice)
    });
    assert!(stream.is_unique(), "nothing queued shares the stream");
    let mut w = Throttled::new(3, 3);
    assert_eq!(
        outbox.write_to(&mut w).unwrap(),
        Flushed::Blocked { bytes: 3, calls: 2 }
    );
    let mut w = Throttled::new(usize::MAX, usize::MAX);
    outbox.write_to(&mut w).unwrap();
    assert_eq!(w.out, b"ly\x07\x07\x07\x07");
    assert_eq!(outbox.pending_bytes(), 0);
}

/// A queue that grew in a burst gives its buffer back once drained; one that stays small keeps it.
#[test]
fn a_drained_queue_gives_back_what_a_burst_grew() {
    let mut outbox = Outbox::default();
    for _ in 0..100 {
        outbox.push(Bytes::from_static(b"frame"));
    }
    assert!(outbox.frames.capacity() >= 100);
    let mut w = Throttled::new(usize::MAX, usize::MAX);
    outbox.write_to(&mut w).unwrap();
    assert!(outbox.is_empty());
    assert_eq!(
        outbox.frames.capacity(),
        0,
        "the burst's buffer is released"
    );

    outbox.push(Bytes::from_static(b"one"));
    outbox.write_to(&mut w).unwrap();
    let kept = outbox.frames.capacity();
    assert!(
        kept > 0 && kept <= KEEP_ENTRIES,
        "a small queue keeps its buffer ({kept})"
    );
}

/// A direct write that stopped mid-frame, then a close: the rest of the cut frame still goes out
/// before the close frame, or the client would read the close's bytes as the cut frame's payload.
#[test]
fn a_close_after_a_short_direct_write_keeps_the_cut_frames_rest() {
    let mut outbox = Outbox::default();
    outbox.push_span(0, 20);
    outbox.lone_span_partly_written(4, Bytes::from(vec![b'r'; 16]));
    outbox.discard_unstarted();
    outbox.push(Bytes::from_static(b"CLOSE"));
    let mut w = Throttled::new(usize::MAX, usize::MAX);
    outbox.write_to(&mut w).unwrap();
    let mut expected = vec![b'r'; 16];
    expected.extend_from_slice(b"CLOSE");
    assert_eq!(w.out, expected);
    assert_eq!(outbox.pending_bytes(), 0);
}

/// A direct write that sent nothing leaves a whole, unstarted frame: a close may drop it.
#[test]
fn a_direct_write_that_sent_nothing_leaves_a_droppable_frame() {
    let mut outbox = Outbox::default();
    outbox.push_span(0, 20);
    outbox.lone_span_partly_written(0, Bytes::from(vec![b'r'; 20]));
    outbox.discard_unstarted();
    assert!(outbox.is_empty());
    assert_eq!(outbox.pending_bytes(), 0);
}
