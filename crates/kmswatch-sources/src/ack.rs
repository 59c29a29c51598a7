//! Acknowledgement handles: the only thing that flows back along the data path.

use std::fmt;

/// How a batch was settled by the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Every finding derived from the batch was delivered: the source may forget it
    /// (delete the SQS message, commit the Kafka offset, persist the file position).
    Ack,
    /// The batch could not be processed now; deliver it again later.
    Retry,
    /// The batch can never be processed and the pipeline has kept it elsewhere (dead-letter);
    /// the source moves past it where the transport allows it (Kafka, file) or leaves it to the
    /// transport's own dead-letter mechanism (SQS redrive policy).
    Reject,
    /// The handle was dropped without being settled. Treated exactly like [`Settle::Retry`]:
    /// dropping never acknowledges.
    Dropped,
}

impl Settle {
    /// True only for [`Settle::Ack`].
    pub fn is_ack(self) -> bool {
        matches!(self, Settle::Ack)
    }
}

type SettleFn = Box<dyn FnOnce(Settle) + Send + 'static>;

/// Completes a [`crate::Batch`] exactly once: [`AckHandle::ack`], [`AckHandle::nack`] or
/// [`AckHandle::reject`] consume it; dropping it unsettled reports [`Settle::Dropped`], which
/// never acknowledges.
pub struct AckHandle {
    settle: Option<SettleFn>,
}

impl fmt::Debug for AckHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckHandle")
            .field("settled", &self.settle.is_none())
            .finish()
    }
}

impl AckHandle {
    /// A handle that calls `f` once with the settlement (or [`Settle::Dropped`] on drop).
    pub fn new(f: impl FnOnce(Settle) + Send + 'static) -> Self {
        Self {
            settle: Some(Box::new(f)),
        }
    }

    /// A handle whose settlement does nothing (one-shot reads such as a plain file or stdin).
    pub fn noop() -> Self {
        Self::new(|_| {})
    }

    /// Everything derived from the batch has been delivered.
    pub fn ack(mut self) {
        self.finish(Settle::Ack);
    }

    /// Deliver the batch again later.
    pub fn nack(mut self) {
        self.finish(Settle::Retry);
    }

    /// The batch was dead-lettered by the pipeline; see [`Settle::Reject`].
    pub fn reject(mut self) {
        self.finish(Settle::Reject);
    }

    /// Settle with an explicit outcome.
    pub fn settle(mut self, how: Settle) {
        self.finish(how);
    }

    fn finish(&mut self, how: Settle) {
        if let Some(f) = self.settle.take() {
            f(how);
        }
    }
}

impl Drop for AckHandle {
    fn drop(&mut self) {
        self.finish(Settle::Dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn recorder() -> (Arc<Mutex<Vec<Settle>>>, AckHandle) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let h = AckHandle::new(move |how| s.lock().unwrap_or_else(|e| e.into_inner()).push(how));
        (seen, h)
    }

    #[test]
    fn ack_once_and_drop_does_not_ack() {
        let (seen, h) = recorder();
        h.ack();
        assert_eq!(
            *seen.lock().unwrap_or_else(|e| e.into_inner()),
            vec![Settle::Ack]
        );
        let (seen, h) = recorder();
        drop(h);
        assert_eq!(
            *seen.lock().unwrap_or_else(|e| e.into_inner()),
            vec![Settle::Dropped]
        );
        let (seen, h) = recorder();
        h.nack();
        assert_eq!(
            *seen.lock().unwrap_or_else(|e| e.into_inner()),
            vec![Settle::Retry]
        );
    }
}
