use super::*;

fn joined(parts: &[Bytes]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

#[test]
fn a_span_resolves_to_the_frames_appended_in_it() {
    let mut batch = Batch::default();
    let a = batch.append(Format::Envelope, b"one");
    let b = batch.append(Format::Envelope, b"two");
    assert_eq!(a.1, b.0, "frames of one format are adjacent");
    let mut out = Vec::new();
    batch.resolve(Format::Envelope, a.0, b.1, &mut out);
    assert_eq!(out.len(), 1, "one slice for a span inside one segment");
    assert_eq!(joined(&out), b"onetwo");
}

#[test]
fn formats_have_their_own_streams() {
    let mut batch = Batch::default();
    let e = batch.append(Format::Envelope, b"{\"x\"}");
    let r = batch.append(Format::Raw, b"x");
    let e2 = batch.append(Format::Envelope, b"{\"y\"}");
    assert_eq!(e.1, e2.0);
    let mut out = Vec::new();
    batch.resolve(Format::Raw, r.0, r.1, &mut out);
    assert_eq!(joined(&out), b"x");
    out.clear();
    batch.resolve(Format::Envelope, e.0, e2.1, &mut out);
    assert_eq!(joined(&out), b"{\"x\"}{\"y\"}");
}

#[test]
fn a_span_across_a_freeze_resolves_to_one_slice_per_segment() {
    let mut batch = Batch::default();
    let a = batch.append(Format::Raw, b"abc");
    let mut out = Vec::new();
    batch.resolve(Format::Raw, a.0, a.1, &mut out);
    let b = batch.append(Format::Raw, b"def");
    out.clear();
    batch.resolve(Format::Raw, a.0, b.1, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(joined(&out), b"abcdef");
    // A span starting mid-segment gets only its part.
    out.clear();
    batch.resolve(Format::Raw, a.0 + 1, b.1 - 1, &mut out);
    assert_eq!(joined(&out), b"bcde");
}

#[test]
fn release_drops_only_segments_before_the_mark() {
    let mut batch = Batch::default();
    let a = batch.append(Format::Envelope, b"old");
    let mark = batch.freeze();
    let b = batch.append(Format::Envelope, b"new");
    let mut out = Vec::new();
    batch.resolve(Format::Envelope, b.0, b.1, &mut out);
    assert_eq!(batch.segments(), 2);
    batch.release_before(mark);
    assert_eq!(batch.segments(), 1);
    out.clear();
    batch.resolve(Format::Envelope, b.0, b.1, &mut out);
    assert_eq!(joined(&out), b"new");
    // A released span resolves to nothing rather than to wrong bytes.
    out.clear();
    batch.resolve(Format::Envelope, a.0, a.1, &mut out);
    assert!(out.is_empty());
}

#[test]
fn frozen_bytes_outlive_release_while_queued() {
    let mut batch = Batch::default();
    let a = batch.append(Format::Envelope, b"kept");
    let mut out = Vec::new();
    batch.resolve(Format::Envelope, a.0, a.1, &mut out);
    let mark = batch.freeze();
    batch.release_before(mark);
    assert_eq!(batch.segments(), 0);
    // Later frames do not overwrite bytes a connection still holds.
    for _ in 0..100 {
        batch.append(Format::Envelope, &[b'z'; 1000]);
    }
    assert_eq!(joined(&out), b"kept");
}

/// A span is lent in one piece when it lies in the open buffer or in one segment, without
/// freezing anything; not when it crosses a segment boundary or was released.
#[test]
fn spans_in_one_piece_are_lent_without_freezing() {
    let mut batch = Batch::default();
    let a = batch.append(Format::Raw, b"alpha");
    let b = batch.append(Format::Raw, b"beta");
    assert_eq!(
        batch.contiguous(Format::Raw, a.0, b.1),
        Some(&b"alphabeta"[..])
    );
    assert_eq!(batch.segments(), 0, "lending froze nothing");
    let mark = batch.freeze();
    let c = batch.append(Format::Raw, b"gamma");
    assert_eq!(batch.contiguous(Format::Raw, b.0, b.1), Some(&b"beta"[..]));
    assert_eq!(batch.contiguous(Format::Raw, c.0, c.1), Some(&b"gamma"[..]));
    assert_eq!(
        batch.contiguous(Format::Raw, b.0, c.1),
        None,
        "crosses the frozen segment's end"
    );
    assert_eq!(
        batch.contiguous(Format::Envelope, a.0, a.1),
        None,
        "the other format's stream"
    );
    batch.release_before(mark);
    assert_eq!(batch.contiguous(Format::Raw, a.0, a.1), None, "released");
}
