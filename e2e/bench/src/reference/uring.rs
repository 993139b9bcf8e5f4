//! The io_uring half of the limit reference: many connections' vectored writes handed to the
//! kernel through one submission queue, so a pass costs one `io_uring_enter` per batch of
//! connections instead of one `writev` each. The only module of the crate with `unsafe`: the
//! kernel reads the caller's buffers between submission and completion, and [`Ring::writev_all`]
//! does not return before every one of its writes has completed, so the borrow it takes covers
//! the kernel's use.
#![allow(unsafe_code)]

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use io_uring::{IoUring, opcode, types};

/// Writes per submission: the connections a pass covers between two turns at the publishers.
pub const BATCH: usize = 128;

/// One connection's write in a batch: the socket and the range of the batch's slices it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub fd: RawFd,
    pub first: usize,
    pub len: usize,
}

/// A submission queue and its completion queue, sized for one batch.
pub struct Ring {
    ring: IoUring,
    entries: usize,
    /// `io_uring_enter` calls made, for the metrics.
    enters: u64,
}

impl Ring {
    /// A ring that takes `entries` writes per submission; fails where io_uring is unavailable
    /// (old kernel, `kernel.io_uring_disabled`, a seccomp filter).
    pub fn new(entries: u32) -> io::Result<Ring> {
        let ring = IoUring::new(entries)?;
        let entries = ring.params().sq_entries() as usize;
        Ok(Ring {
            ring,
            entries,
            enters: 0,
        })
    }

    /// Writes per submission at most.
    pub fn capacity(&self) -> usize {
        self.entries
    }

    pub fn enters(&self) -> u64 {
        self.enters
    }

    /// Submits one `IORING_OP_WRITEV` per job (at most [`Ring::capacity`]) with one
    /// `io_uring_enter`, waits for all of them and puts each job's outcome in `results`, in job
    /// order: bytes written, or the error (`WouldBlock` when the socket is full: every request
    /// carries `RWF_NOWAIT`, so the kernel answers `EAGAIN` instead of parking it).
    ///
    /// Returns an error only for more jobs than the ring takes. Once a write is in the kernel's
    /// hands this does not return before its completion: if waiting fails in a way that cannot
    /// be retried (a bad ring descriptor, bad ring memory), the process aborts, since returning
    /// would end the borrow of buffers the kernel may still read.
    pub fn writev_all(
        &mut self,
        jobs: &[Job],
        slices: &[IoSlice<'_>],
        results: &mut Vec<io::Result<usize>>,
    ) -> io::Result<()> {
        results.clear();
        if jobs.is_empty() {
            return Ok(());
        }
        if jobs.len() > self.entries {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "more writes than the submission queue holds",
            ));
        }
        results.resize_with(jobs.len(), || {
            Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the submission queue was full",
            ))
        });
        let mut pushed = 0;
        {
            let mut sq = self.ring.submission();
            for (i, job) in jobs.iter().enumerate() {
                let Some(iov) = slices.get(job.first..job.first + job.len) else {
                    results[i] = Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a job's slices are out of range",
                    ));
                    continue;
                };
                // `IoSlice` is ABI compatible with `struct iovec` on Unix (std documents it), so
                // the slices are handed over as they are.
                let entry = opcode::Writev::new(types::Fd(job.fd), iov.as_ptr().cast(), len32(iov))
                    .rw_flags(RWF_NOWAIT)
                    .build()
                    .user_data(i as u64);
                // SAFETY: the entry points at `slices` (and through them at the caller's
                // buffers), borrowed for this whole call; the loop below does not return before
                // the completion of every entry pushed here.
                if unsafe { sq.push(&entry) }.is_err() {
                    // Cannot happen (at most `entries` jobs, every earlier call reaped all it
                    // pushed); the job keeps its "queue full" error and is tried again later.
                    break;
                }
                pushed += 1;
            }
        }
        let mut done = 0;
        while done < pushed {
            self.enters += 1;
            match self.ring.submit_and_wait(pushed - done) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) || e.raw_os_error() == Some(EBUSY) => {}
                Err(_) => std::process::abort(),
            }
            for cqe in self.ring.completion() {
                let Some(slot) = results.get_mut(cqe.user_data() as usize) else {
                    continue;
                };
                let res = cqe.result();
                *slot = if res >= 0 {
                    Ok(res as usize)
                } else {
                    Err(io::Error::from_raw_os_error(-res))
                };
                done += 1;
            }
        }
        Ok(())
    }
}

/// `RWF_NOWAIT` (`preadv2(2)`): answer `EAGAIN` rather than wait. io_uring ignores a socket's
/// `O_NONBLOCK` when the file supports non-blocking attempts (sockets do): it parks the request
/// and retries it once the socket is writable, so without this flag a full socket would keep
/// `writev_all` waiting until its reader reads (found by the full-socket tests). With it the
/// request completes at once, as a non-blocking `writev` does.
const RWF_NOWAIT: i32 = 0x08;

/// `EBUSY` from `io_uring_enter`: completions must be reaped before more can be submitted.
const EBUSY: i32 = 16;

fn len32(iov: &[IoSlice<'_>]) -> u32 {
    u32::try_from(iov.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
