//! Multi-producer, single-consumer channels, with the API of [`std::sync::mpsc`].
//!
//! [`channel`] makes an unbounded channel: [`Sender::send`] never blocks.
//! [`sync_channel`] makes one holding at most `bound` messages: [`SyncSender::send`]
//! blocks while it is full, and with `bound == 0` it is a rendezvous channel, where
//! a send completes only when the receiver takes the message. The error types are
//! std's own, re-exported, so code written for `std::sync::mpsc` ports by changing
//! its `use` line.
//!
//! A call that blocks suspends only the calling coroutine; from a plain thread, it
//! blocks the thread, so coroutines and threads can talk to each other.
//! [`select!`](crate::select) waits on several operations at once. For channels with
//! several receivers, see [`mpmc`](super::mpmc) (this module is a thin layer over
//! the same channel).
//!
//! Invariant: every message is in exactly one place (the channel's buffer, a blocked
//! sender, or the receiver it was handed to) and moves only under the channel's
//! lock; a blocked operation is completed by exactly one other party, which claims
//! it before moving the message, so nothing is lost or duplicated, even when a
//! waiter times out or is unwound. Messages from one sender arrive in the order
//! sent. Once every sender is gone, the receiver gets the buffered messages and then
//! [`RecvError`]; once the receiver is gone, sends fail and give their message back,
//! and the buffered messages are dropped.
//!
//! # Examples
//!
//! ```
//! use stackweave::sync::mpsc;
//!
//! let (tx, rx) = mpsc::channel();
//! for id in 0..10 {
//!     let tx = tx.clone();
//!     stackweave::spawn(move || tx.send(id).unwrap());
//! }
//! drop(tx);
//! let mut ids: Vec<i32> = rx.iter().collect(); // ends when every sender is gone
//! ids.sort();
//! assert_eq!(ids, (0..10).collect::<Vec<_>>());
//! ```

use super::channel::{self, SendFailed};
use super::select::{Receives, RecvArm, SendArm, Sends};
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

pub use std::sync::mpsc::{RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError};

/// Creates an unbounded channel, like [`std::sync::mpsc::channel`]: sending never
/// blocks.
///
/// # Examples
///
/// ```
/// use stackweave::sync::mpsc::channel;
///
/// let (tx, rx) = channel();
/// stackweave::spawn(move || tx.send(10).unwrap());
/// assert_eq!(rx.recv().unwrap(), 10);
/// ```
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = channel::new(None);
    (Sender { inner: tx }, Receiver::new(rx))
}

/// Creates a channel holding at most `bound` messages, like
/// [`std::sync::mpsc::sync_channel`]: [`SyncSender::send`] blocks while it is full.
/// With `bound == 0` it is a rendezvous channel: a send completes only when the
/// receiver takes the message.
///
/// # Examples
///
/// ```
/// use stackweave::sync::mpsc::sync_channel;
///
/// let (tx, rx) = sync_channel(1);
/// tx.send(1).unwrap(); // room for one
/// stackweave::spawn(move || tx.send(2).unwrap()); // waits for room
/// assert_eq!(rx.recv().unwrap(), 1);
/// assert_eq!(rx.recv().unwrap(), 2);
///
/// let (tx, rx) = sync_channel(0);
/// stackweave::spawn(move || tx.send(3).unwrap()); // waits for the receiver
/// assert_eq!(rx.recv().unwrap(), 3);
/// ```
pub fn sync_channel<T>(bound: usize) -> (SyncSender<T>, Receiver<T>) {
    let (tx, rx) = channel::new(Some(bound));
    (SyncSender { inner: tx }, Receiver::new(rx))
}

/// The sending half of a [`channel`]; clone it for more producers.
///
/// # Examples
///
/// ```
/// use stackweave::sync::mpsc::channel;
///
/// let (tx, rx) = channel();
/// let tx2 = tx.clone();
/// stackweave::spawn(move || tx.send(1).unwrap()).join().unwrap();
/// stackweave::spawn(move || tx2.send(2).unwrap()).join().unwrap();
/// assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2]);
/// ```
pub struct Sender<T> {
    inner: channel::Tx<T>,
}

/// The sending half of a [`sync_channel`]; clone it for more producers.
///
/// # Examples
///
/// ```
/// use stackweave::sync::mpsc::sync_channel;
///
/// let (tx, rx) = sync_channel(0);
/// let tx2 = tx.clone();
/// stackweave::spawn(move || tx2.send(1).unwrap());
/// assert_eq!(rx.recv(), Ok(1));
/// drop(tx);
/// assert!(rx.recv().is_err());
/// ```
pub struct SyncSender<T> {
    inner: channel::Tx<T>,
}

/// The receiving half of a [`channel`] or [`sync_channel`]. Like std's, it can be
/// moved to another coroutine or thread but not shared (`Send`, not `Sync`).
///
/// # Examples
///
/// ```
/// use stackweave::sync::mpsc::channel;
///
/// let (tx, rx) = channel();
/// let h = stackweave::spawn(move || rx.recv().unwrap() * 2);
/// tx.send(21).unwrap();
/// assert_eq!(h.join().unwrap(), 42);
/// ```
pub struct Receiver<T> {
    inner: channel::Rx<T>,
    // Like std's: one consumer at a time.
    _not_sync: PhantomData<Cell<()>>,
}

impl<T> Sender<T> {
    /// Sends `msg`; never blocks.
    ///
    /// # Errors
    ///
    /// [`SendError`] holding `msg` once the receiver is gone. `Ok` does not mean the
    /// message will be received: the receiver may go before it does.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::mpsc::{channel, SendError};
    ///
    /// let (tx, rx) = channel();
    /// tx.send(1).unwrap();
    /// drop(rx);
    /// assert_eq!(tx.send(2), Err(SendError(2)));
    /// ```
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.inner.try_send(msg).map_err(|e| match e {
            TrySendError::Full(msg) | TrySendError::Disconnected(msg) => SendError(msg),
        })
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        Sender {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> SyncSender<T> {
    /// Sends `msg`, waiting while the channel is full; on a rendezvous channel,
    /// until the receiver takes it.
    ///
    /// # Errors
    ///
    /// [`SendError`] holding `msg` once the receiver is gone (also when it goes
    /// while this send waits).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::mpsc::sync_channel;
    ///
    /// let (tx, rx) = sync_channel(0);
    /// let h = stackweave::spawn(move || tx.send(5));
    /// assert_eq!(rx.recv(), Ok(5));
    /// assert_eq!(h.join().unwrap(), Ok(()));
    /// ```
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        match self.inner.send(msg, None) {
            Ok(()) => Ok(()),
            Err(SendFailed::Disconnected(msg) | SendFailed::Timeout(msg)) => Err(SendError(msg)),
        }
    }

    /// Sends `msg` if that can be done without waiting: there is room in the
    /// buffer, or (rendezvous) the receiver is waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] when it would have to wait,
    /// [`TrySendError::Disconnected`] when the receiver is gone; both hold `msg`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::mpsc::{sync_channel, TrySendError};
    ///
    /// let (tx, rx) = sync_channel(1);
    /// assert_eq!(tx.try_send(1), Ok(()));
    /// assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
    /// drop(rx);
    /// assert_eq!(tx.try_send(3), Err(TrySendError::Disconnected(3)));
    /// ```
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        self.inner.try_send(msg)
    }
}

impl<T> Clone for SyncSender<T> {
    fn clone(&self) -> SyncSender<T> {
        SyncSender {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for SyncSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncSender").finish_non_exhaustive()
    }
}

impl<T> Receiver<T> {
    fn new(inner: channel::Rx<T>) -> Receiver<T> {
        Receiver {
            inner,
            _not_sync: PhantomData,
        }
    }

    /// Receives a message, waiting while there is none.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the channel is empty and every sender is gone (also when
    /// the last one goes while this call waits).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::mpsc::{channel, RecvError};
    ///
    /// let (tx, rx) = channel();
    /// stackweave::spawn(move || tx.send(1).unwrap());
    /// assert_eq!(rx.recv(), Ok(1));
    /// assert_eq!(rx.recv(), Err(RecvError));
    /// ```
    pub fn recv(&self) -> Result<T, RecvError> {
        self.inner.recv(None).map_err(|_| RecvError)
    }

    /// Receives a message if one is there now.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when there is none, [`TryRecvError::Disconnected`]
    /// when there is none and every sender is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::mpsc::{channel, TryRecvError};
    ///
    /// let (tx, rx) = channel();
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send(1).unwrap();
    /// drop(tx);
    /// assert_eq!(rx.try_recv(), Ok(1)); // buffered messages outlive the senders
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    /// ```
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.inner.try_recv()
    }

    /// Receives a message, waiting at most `timeout` for one.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] when none came in time,
    /// [`RecvTimeoutError::Disconnected`] when the channel is empty and every sender
    /// is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackweave::sync::mpsc::{channel, RecvTimeoutError};
    ///
    /// let (tx, rx) = channel();
    /// assert_eq!(
    ///     rx.recv_timeout(Duration::from_millis(10)),
    ///     Err(RecvTimeoutError::Timeout)
    /// );
    /// stackweave::spawn(move || tx.send(1).unwrap());
    /// assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(1));
    /// assert_eq!(
    ///     rx.recv_timeout(Duration::from_secs(10)),
    ///     Err(RecvTimeoutError::Disconnected)
    /// );
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.inner.recv(Instant::now().checked_add(timeout))
    }

    /// An iterator that waits for messages and ends once the channel is
    /// disconnected (and empty).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::mpsc::channel;
    ///
    /// let (tx, rx) = channel();
    /// stackweave::spawn(move || (1..=3).for_each(|i| tx.send(i).unwrap()));
    /// assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2, 3]);
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// An iterator over the messages there are now; it never waits.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::mpsc::channel;
    ///
    /// let (tx, rx) = channel();
    /// tx.send(1).unwrap();
    /// tx.send(2).unwrap();
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]);
    /// assert_eq!(rx.try_iter().next(), None);
    /// ```
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl<T> Receives for Receiver<T> {
    type Msg = T;
    fn __select_recv(&self) -> RecvArm<'_, T> {
        RecvArm::new(&self.inner)
    }
}

impl<T> Sends for Sender<T> {
    type Msg = T;
    fn __select_send(&self, msg: T) -> SendArm<'_, T> {
        SendArm::new(&self.inner, msg)
    }
}

impl<T> Sends for SyncSender<T> {
    type Msg = T;
    fn __select_send(&self, msg: T) -> SendArm<'_, T> {
        SendArm::new(&self.inner, msg)
    }
}

/// An iterator over messages that waits for each; see [`Receiver::iter`].
///
/// # Examples
///
/// ```
/// use stackweave::sync::mpsc::{channel, Iter};
///
/// let (tx, rx) = channel();
/// tx.send(1).unwrap();
/// drop(tx);
/// let mut it: Iter<'_, i32> = rx.iter();
/// assert_eq!(it.next(), Some(1));
/// assert_eq!(it.next(), None);
/// ```
#[derive(Debug)]
pub struct Iter<'a, T: 'a> {
    rx: &'a Receiver<T>,
}

/// An iterator over the messages there are now; see [`Receiver::try_iter`].
///
/// # Examples
///
/// ```
/// use stackweave::sync::mpsc::{channel, TryIter};
///
/// let (_tx, rx) = channel::<i32>();
/// let mut it: TryIter<'_, i32> = rx.try_iter();
/// assert_eq!(it.next(), None);
/// ```
#[derive(Debug)]
pub struct TryIter<'a, T: 'a> {
    rx: &'a Receiver<T>,
}

/// An owning iterator over messages that waits for each; ends once the channel is
/// disconnected and empty.
///
/// # Examples
///
/// ```
/// use stackweave::sync::mpsc::{channel, IntoIter};
///
/// let (tx, rx) = channel();
/// tx.send(1).unwrap();
/// drop(tx);
/// let it: IntoIter<i32> = rx.into_iter();
/// assert_eq!(it.collect::<Vec<_>>(), [1]);
/// ```
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

// `Iterator` for `Iter`, `TryIter`, `IntoIter`, and `IntoIterator` for `Receiver`
// and `&Receiver`: the same in `mpsc` and `mpmc`.
super::receiver_iterators!();
