use super::*;

#[test]
fn a_span_resolves_to_a_copy_of_the_frames_appended_in_it() {
    let mut batch = Batch::default();
    let a = batch.append(Format::Envelope, b"one");
    let b = batch.append(Format::Envelope, b"two");
    assert_eq!(a.1, b.0, "frames of one format are adjacent");
    let copy = batch.resolve(Format::Envelope, a.0, b.1).unwrap();
    assert_eq!(&copy[..], b"onetwo");
    // Later frames and releases do not touch a copy handed out.
    let mark = batch.mark();
    batch.release_before(mark);
    for _ in 0..100 {
        batch.append(Format::Envelope, &[b'z'; 1000]);
    }
    assert_eq!(&copy[..], b"onetwo");
}

#[test]
fn formats_have_their_own_streams() {
    let mut batch = Batch::default();
    let e = batch.append(Format::Envelope, b"{\"x\"}");
    let r = batch.append(Format::Raw, b"x");
    let e2 = batch.append(Format::Envelope, b"{\"y\"}");
    assert_eq!(e.1, e2.0);
    assert_eq!(batch.contiguous(Format::Raw, r.0, r.1), Some(&b"x"[..]));
    assert_eq!(
        batch.contiguous(Format::Envelope, e.0, e2.1),
        Some(&b"{\"x\"}{\"y\"}"[..])
    );
    assert_eq!(
        batch.contiguous(Format::Raw, e.0, e2.1),
        None,
        "the other format's stream is shorter"
    );
}

/// What a connection usually holds: every message since its last write, appended over several
/// passes and releases. It is one slice however many passes it spans.
#[test]
fn a_span_over_several_passes_is_one_slice() {
    let mut batch = Batch::default();
    let a = batch.append(Format::Raw, b"alpha");
    let pass = batch.mark();
    let b = batch.append(Format::Raw, b"beta");
    batch.release_before(pass);
    let c = batch.append(Format::Raw, b"gamma");
    assert_eq!(
        batch.contiguous(Format::Raw, b.0, c.1),
        Some(&b"betagamma"[..])
    );
    assert_eq!(batch.contiguous(Format::Raw, a.0, a.1), None, "released");
    assert_eq!(
        batch.contiguous(Format::Raw, a.0 + 2, b.1),
        None,
        "a span reaching into released bytes"
    );
}

#[test]
fn release_drops_only_bytes_before_the_mark() {
    let mut batch = Batch::default();
    let a = batch.append(Format::Envelope, b"old");
    let mark = batch.mark();
    let b = batch.append(Format::Envelope, b"new");
    assert_eq!(batch.held(), 6);
    batch.release_before(mark);
    assert_eq!(batch.held(), 3);
    assert_eq!(
        batch.resolve(Format::Envelope, b.0, b.1).unwrap(),
        &b"new"[..]
    );
    // A released span resolves to nothing rather than to wrong bytes.
    assert_eq!(batch.resolve(Format::Envelope, a.0, a.1), None);
    // A mark taken before an earlier release releases nothing more.
    batch.release_before(mark);
    assert_eq!(batch.held(), 3);
}

/// Released room is reused: a steady flow of passes does not grow the buffer, and positions keep
/// counting up across reuses.
#[test]
fn released_room_is_reused_and_positions_keep_counting() {
    let mut batch = Batch::default();
    let frame = [b'f'; 300];
    let mut last = (0, 0);
    for _ in 0..10_000 {
        let span = batch.append(Format::Envelope, &frame);
        assert_eq!(span.0, last.1, "positions are contiguous across releases");
        assert_eq!(
            batch.contiguous(Format::Envelope, span.0, span.1),
            Some(&frame[..])
        );
        last = span;
        let mark = batch.mark();
        batch.release_before(mark);
    }
    assert_eq!(batch.held(), 0);
    assert!(
        batch.capacity() <= CHUNK,
        "{} bytes of capacity for 300 held at a time",
        batch.capacity()
    );
}

/// Held bytes move to the front when the buffer runs out of room past released ones, instead
/// of the buffer growing; spans into them stay valid.
#[test]
fn held_bytes_survive_compaction() {
    let mut batch = Batch::default();
    let mut spans = Vec::new();
    for i in 0..200u8 {
        spans.push(batch.append(Format::Raw, &[i; 100]));
        if i % 2 == 1 {
            // Release all but the frame just appended: it stays held across the next append.
            let (start, _) = spans[usize::from(i)];
            batch.release_before(Mark([0, start]));
        }
    }
    let (start, end) = spans[199];
    assert_eq!(
        batch.contiguous(Format::Raw, start, end),
        Some(&[199u8; 100][..])
    );
    assert!(batch.capacity() <= CHUNK, "capacity {}", batch.capacity());
}

/// A burst of large frames grows the buffer; once released, the memory goes back.
#[test]
fn a_burst_gives_its_memory_back_once_released() {
    let mut batch = Batch::default();
    for _ in 0..64 {
        batch.append(Format::Envelope, &[b'x'; 4096]);
    }
    assert!(batch.capacity() >= 64 * 4096);
    let mark = batch.mark();
    batch.release_before(mark);
    assert_eq!(batch.capacity(), 0);
    let span = batch.append(Format::Envelope, b"after");
    assert_eq!(
        batch.contiguous(Format::Envelope, span.0, span.1),
        Some(&b"after"[..])
    );
}

/// Under steady traffic the stream is never empty at a release (messages taken during a pass lie
/// past its mark): a burst's memory still goes back once little of it is held.
#[test]
fn a_burst_gives_its_memory_back_under_steady_traffic() {
    let mut batch = Batch::default();
    for _ in 0..256 {
        batch.append(Format::Envelope, &[b'x'; 4096]);
    }
    assert!(batch.capacity() >= 256 * 4096);
    let mut last = (0, 0);
    for _ in 0..1000 {
        let mark = batch.mark();
        last = batch.append(Format::Envelope, &[b's'; 300]);
        batch.release_before(mark);
    }
    assert!(batch.held() > 0, "never empty at a release");
    assert!(
        batch.capacity() <= KEEP_CAPACITY,
        "{} bytes kept for {} held",
        batch.capacity(),
        batch.held()
    );
    assert_eq!(
        batch.contiguous(Format::Envelope, last.0, last.1),
        Some(&[b's'; 300][..])
    );
}
