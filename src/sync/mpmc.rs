//! Multi-producer, multi-consumer channels: both ends can be cloned.
//!
//! [`unbounded`] makes a channel whose [`Sender::send`] never blocks; [`bounded`]
//! one that holds at most `cap` messages, where a send blocks while it is full, and
//! `bounded(0)` a rendezvous channel, where a send completes only when a receiver
//! takes the message. The methods and errors are those of
//! [`std::sync::mpsc`](super::mpsc) (the error types are std's own); every message
//! is delivered to exactly one receiver.
//!
//! A call that blocks suspends only the calling coroutine; from a plain thread, it
//! blocks the thread, so coroutines and threads can talk to each other.
//! [`select!`](crate::select) waits on several operations at once.
//!
//! Invariant: every message is in exactly one place (the channel's buffer, a blocked
//! sender, or the receiver it was handed to) and moves only under the channel's
//! lock; a blocked operation is completed by exactly one other party, which claims
//! it before moving the message, so nothing is lost or duplicated, even when a
//! waiter times out or is unwound. Once every [`Sender`] is gone, receivers get the
//! buffered messages and then [`RecvError`]; once every [`Receiver`] is gone, sends
//! fail and give their message back, and the buffered messages are dropped.
//!
//! # Examples
//!
//! ```
//! use stackweave::sync::mpmc;
//!
//! let (tx, rx) = mpmc::bounded(4);
//! let consumers: Vec<_> = (0..3)
//!     .map(|_| {
//!         let rx = rx.clone();
//!         stackweave::spawn(move || rx.iter().sum::<u64>())
//!     })
//!     .collect();
//! drop(rx);
//! for i in 1..=100 {
//!     tx.send(i).unwrap();
//! }
//! drop(tx); // consumers' iterators end once the channel is empty
//! let total: u64 = consumers.into_iter().map(|h| h.join().unwrap()).sum();
//! assert_eq!(total, 5050);
//! ```

use super::channel::{self, SendFailed};
use super::select::{Receives, RecvArm, SendArm, Sends};
use std::fmt;
use std::time::{Duration, Instant};

pub use std::sync::mpsc::{RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError};

/// Creates a channel that holds at most `cap` messages; with `cap == 0`, a
/// rendezvous channel (a send waits until a receiver takes its message).
///
/// # Examples
///
/// ```
/// use stackweave::sync::mpmc::{self, TrySendError};
///
/// let (tx, rx) = mpmc::bounded(1);
/// tx.send(1).unwrap();
/// assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
/// assert_eq!(rx.recv(), Ok(1));
///
/// // Rendezvous: the send completes when the other side receives.
/// let (tx, rx) = mpmc::bounded(0);
/// let h = stackweave::spawn(move || tx.send("hi"));
/// assert_eq!(rx.recv(), Ok("hi"));
/// h.join().unwrap().unwrap();
/// ```
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = channel::new(Some(cap));
    (Sender { inner: tx }, Receiver { inner: rx })
}

/// Creates a channel without a bound: sending never blocks.
///
/// # Examples
///
/// ```
/// use stackweave::sync::mpmc;
///
/// let (tx, rx) = mpmc::unbounded();
/// for i in 0..1000 {
///     tx.send(i).unwrap();
/// }
/// assert_eq!(rx.len(), 1000);
/// assert_eq!(rx.capacity(), None);
/// ```
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = channel::new(None);
    (Sender { inner: tx }, Receiver { inner: rx })
}

/// The sending end of an [`mpmc`](self) channel. Clone it for more producers.
///
/// # Examples
///
/// ```
/// use stackweave::sync::mpmc;
///
/// let (tx, rx) = mpmc::unbounded();
/// let tx2 = tx.clone();
/// stackweave::spawn(move || tx2.send(2).unwrap()).join().unwrap();
/// tx.send(1).unwrap();
/// let mut got: Vec<i32> = rx.try_iter().collect();
/// got.sort();
/// assert_eq!(got, [1, 2]);
/// ```
pub struct Sender<T> {
    inner: channel::Tx<T>,
}

/// The receiving end of an [`mpmc`](self) channel. Clone it for more consumers:
/// each message goes to exactly one of them.
///
/// # Examples
///
/// ```
/// use stackweave::sync::mpmc;
///
/// let (tx, rx) = mpmc::unbounded();
/// let rx2 = rx.clone();
/// tx.send(1).unwrap();
/// tx.send(2).unwrap();
/// assert_eq!(rx2.recv(), Ok(1));
/// assert_eq!(rx.recv(), Ok(2));
/// ```
pub struct Receiver<T> {
    inner: channel::Rx<T>,
}

impl<T> Sender<T> {
    /// Sends `msg`, waiting while the channel is full (for a rendezvous channel:
    /// until a receiver takes it). Fails, giving the message back, once every
    /// receiver is gone.
    ///
    /// # Errors
    ///
    /// [`SendError`] holding `msg` when the channel is disconnected.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::mpmc;
    ///
    /// let (tx, rx) = mpmc::bounded(1);
    /// tx.send(1).unwrap();
    /// drop(rx);
    /// assert_eq!(tx.send(2).unwrap_err().0, 2);
    /// ```
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        match self.inner.send(msg, None) {
            Ok(()) => Ok(()),
            Err(SendFailed::Disconnected(msg) | SendFailed::Timeout(msg)) => Err(SendError(msg)),
        }
    }

    /// Sends `msg` if that can be done without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] when the channel is full (for a rendezvous channel:
    /// when no receiver is waiting), [`TrySendError::Disconnected`] when every
    /// receiver is gone; both hold `msg`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::mpmc::{self, TrySendError};
    ///
    /// let (tx, rx) = mpmc::bounded(0);
    /// assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)));
    /// drop(rx);
    /// assert_eq!(tx.try_send(1), Err(TrySendError::Disconnected(1)));
    /// ```
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        self.inner.try_send(msg)
    }

    /// How many messages are buffered.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = stackweave::sync::mpmc::unbounded();
    /// tx.send(()).unwrap();
    /// assert_eq!(tx.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no message is buffered.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = stackweave::sync::mpmc::unbounded::<()>();
    /// assert!(tx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound, or `None` for an unbounded channel.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = stackweave::sync::mpmc::bounded::<()>(3);
    /// assert_eq!(tx.capacity(), Some(3));
    /// ```
    pub fn capacity(&self) -> Option<usize> {
        self.inner.capacity()
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

impl<T> Receiver<T> {
    /// Receives a message, waiting for one while the channel is empty.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the channel is empty and every sender is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackweave::sync::mpmc::{self, RecvError};
    ///
    /// let (tx, rx) = mpmc::unbounded();
    /// stackweave::spawn(move || tx.send(7).unwrap());
    /// assert_eq!(rx.recv(), Ok(7));
    /// assert_eq!(rx.recv(), Err(RecvError)); // the sender is gone
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
    /// use stackweave::sync::mpmc::{self, TryRecvError};
    ///
    /// let (tx, rx) = mpmc::unbounded();
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send(1).unwrap();
    /// drop(tx);
    /// assert_eq!(rx.try_recv(), Ok(1));
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
    /// use stackweave::sync::mpmc::{self, RecvTimeoutError};
    ///
    /// let (tx, rx) = mpmc::unbounded::<i32>();
    /// let timeout = Duration::from_millis(10);
    /// assert_eq!(rx.recv_timeout(timeout), Err(RecvTimeoutError::Timeout));
    /// drop(tx);
    /// assert_eq!(rx.recv_timeout(timeout), Err(RecvTimeoutError::Disconnected));
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.inner.recv(Instant::now().checked_add(timeout))
    }

    /// An iterator that waits for messages and ends when the channel is
    /// disconnected (and empty).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = stackweave::sync::mpmc::unbounded();
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
    /// let (tx, rx) = stackweave::sync::mpmc::unbounded();
    /// tx.send(1).unwrap();
    /// tx.send(2).unwrap();
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]);
    /// assert_eq!(rx.try_iter().next(), None); // tx is alive, but nothing is there
    /// ```
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// How many messages are buffered.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = stackweave::sync::mpmc::bounded(2);
    /// tx.send(()).unwrap();
    /// assert_eq!(rx.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no message is buffered.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = stackweave::sync::mpmc::bounded::<()>(2);
    /// assert!(rx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound, or `None` for an unbounded channel.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = stackweave::sync::mpmc::bounded::<()>(0);
    /// assert_eq!(rx.capacity(), Some(0));
    /// ```
    pub fn capacity(&self) -> Option<usize> {
        self.inner.capacity()
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Receiver<T> {
        Receiver {
            inner: self.inner.clone(),
        }
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

/// An iterator over messages that waits for each; see [`Receiver::iter`].
///
/// # Examples
///
/// ```
/// let (tx, rx) = stackweave::sync::mpmc::unbounded();
/// tx.send(1).unwrap();
/// drop(tx);
/// let mut it: stackweave::sync::mpmc::Iter<'_, i32> = rx.iter();
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
/// let (tx, rx) = stackweave::sync::mpmc::unbounded::<i32>();
/// let mut it: stackweave::sync::mpmc::TryIter<'_, i32> = rx.try_iter();
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
/// let (tx, rx) = stackweave::sync::mpmc::unbounded();
/// tx.send(1).unwrap();
/// drop(tx);
/// let it: stackweave::sync::mpmc::IntoIter<i32> = rx.into_iter();
/// assert_eq!(it.collect::<Vec<_>>(), [1]);
/// ```
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

// `Iterator` for `Iter`, `TryIter`, `IntoIter`, and `IntoIterator` for `Receiver`
// and `&Receiver`: the same in `mpsc` and `mpmc`.
super::receiver_iterators!();
