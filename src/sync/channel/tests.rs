//! The protocol's race windows, driven step by step: what a waiter sees when a
//! claim lands between its wakeup (or timeout) and its abort.

use super::*;

fn parked(chan: &Chan<u32>, side: Side, msg: Option<u32>) -> (Arc<Token>, Arc<Packet<u32>>) {
    let token = Token::new();
    let packet = Packet::new(msg);
    assert!(chan.park_unless_ready(side, &token, 0, &packet));
    (token, packet)
}

#[test]
fn a_receiver_claimed_before_it_aborts_gets_the_message() {
    let (tx, rx) = new::<u32>(Some(0));
    let (token, packet) = parked(&rx, Side::Recv, None);
    assert!(tx.try_send(5).is_ok(), "handed to the parked receiver");
    // It timed out just now: the abort must report the claim...
    assert_eq!(token.abort(), Some(0));
    // ... and the message is in its packet, nowhere else.
    assert_eq!(rx.leave(Side::Recv, &token, 0, &packet), Some(5));
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    // A late wait returns the claim at once, even past its deadline.
    assert_eq!(token.wait(Some(Instant::now())), Some(0));
}

#[test]
fn a_sender_claimed_before_it_aborts_has_sent() {
    let (tx, rx) = new::<u32>(Some(0));
    let (token, packet) = parked(&tx, Side::Send, Some(7));
    assert_eq!(rx.try_recv().ok(), Some(7));
    assert_eq!(token.abort(), Some(0));
    assert_eq!(tx.leave(Side::Send, &token, 0, &packet), None, "taken");
}

#[test]
fn an_aborted_operation_is_never_completed() {
    let (tx, rx) = new::<u32>(Some(0));
    let (token, packet) = parked(&rx, Side::Recv, None);
    assert_eq!(token.abort(), None);
    // Its entry is still on the line, but stale: the send does not use it.
    assert!(matches!(tx.try_send(1), Err(TrySendError::Full(1))));
    assert_eq!(rx.leave(Side::Recv, &token, 0, &packet), None);

    let (token, packet) = parked(&tx, Side::Send, Some(2));
    assert_eq!(token.abort(), None);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(tx.leave(Side::Send, &token, 0, &packet), Some(2), "kept");
}

#[test]
fn own_parked_operations_do_not_make_an_operation_ready() {
    let (tx, rx) = new::<u32>(Some(0));
    let (token, packet) = parked(&tx, Side::Send, Some(3));
    // The same select's receive on the same channel parks too...
    let recv_packet = Packet::new(None);
    assert!(rx.park_unless_ready(Side::Recv, &token, 1, &recv_packet));
    // ... while anyone else's is ready.
    let other = Token::new();
    assert!(!rx.park_unless_ready(Side::Recv, &other, 0, &Packet::new(None)));
    assert_eq!(token.abort(), None);
    assert_eq!(rx.leave(Side::Recv, &token, 1, &recv_packet), None);
    assert_eq!(tx.leave(Side::Send, &token, 0, &packet), Some(3));
}

#[test]
fn disconnection_claims_parked_operations() {
    let (tx, rx) = new::<u32>(Some(1));
    let (token, packet) = parked(&rx, Side::Recv, None);
    let tx2 = tx.clone();
    drop(tx);
    assert!(token.is_waiting(), "a sender is left");
    drop(tx2);
    assert_eq!(token.abort(), Some(0));
    assert_eq!(rx.leave(Side::Recv, &token, 0, &packet), None);

    let (tx, rx) = new::<u32>(Some(1));
    tx.try_send(0).ok().unwrap();
    let (token, packet) = parked(&tx, Side::Send, Some(4));
    drop(rx);
    assert_eq!(token.abort(), Some(0));
    assert_eq!(
        tx.leave(Side::Send, &token, 0, &packet),
        Some(4),
        "given back"
    );
}

#[test]
fn a_freed_slot_takes_the_first_parked_senders_message() {
    let (tx, rx) = new::<u32>(Some(1));
    tx.try_send(0).ok().unwrap();
    let (t1, p1) = parked(&tx, Side::Send, Some(1));
    let (t2, p2) = parked(&tx, Side::Send, Some(2));
    assert_eq!(t1.abort(), None); // the first one gave up: skipped
    assert_eq!(rx.try_recv().ok(), Some(0));
    assert_eq!(t2.abort(), Some(0));
    assert_eq!(tx.leave(Side::Send, &t2, 0, &p2), None);
    assert_eq!(tx.leave(Side::Send, &t1, 0, &p1), Some(1));
    assert_eq!(rx.try_recv().ok(), Some(2));
}
