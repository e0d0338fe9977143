//! `TcpStream::set_keepalive` and `set_linger`: what they set is read back, bad
//! values are `InvalidInput`, and a zero linger aborts the connection.

use stackweave::net::{TcpListener, TcpStream};
use std::io::{self, Read, Write};
use std::time::Duration;

/// A connected pair: (client, server side), made inside a coroutine.
fn pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    Ok((client, server))
}

#[test]
fn keepalive_is_read_back_in_whole_seconds_rounded_up() {
    stackweave::spawn(|| -> io::Result<()> {
        let (client, _server) = pair()?;
        assert_eq!(client.keepalive()?, None);
        client.set_keepalive(Some(Duration::from_millis(1500)))?;
        assert_eq!(client.keepalive()?, Some(Duration::from_secs(2)));
        client.set_keepalive(Some(Duration::from_secs(7200)))?;
        assert_eq!(client.keepalive()?, Some(Duration::from_secs(7200)));
        client.set_keepalive(None)?;
        assert_eq!(client.keepalive()?, None);
        let err = client.set_keepalive(Some(Duration::ZERO)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // The connection still works.
        let mut server = _server;
        server.write_all(b"x")?;
        let mut byte = [0];
        (&client).read_exact(&mut byte)?;
        Ok(())
    })
    .join()
    .unwrap()
    .unwrap();
}

#[test]
fn linger_is_read_back_and_zero_resets_the_peer_waiting_in_a_coroutine() {
    stackweave::spawn(|| -> io::Result<()> {
        let (mut client, server) = pair()?;
        assert_eq!(server.linger()?, None);
        server.set_linger(Some(Duration::from_millis(200)))?;
        assert_eq!(server.linger()?, Some(Duration::from_secs(1)));
        server.set_linger(Some(Duration::ZERO))?;
        assert_eq!(server.linger()?, Some(Duration::ZERO));
        // The client waits in a read (suspended) when the server aborts.
        let reader = stackweave::spawn(move || client.read(&mut [0; 16]).map_err(|e| e.kind()));
        stackweave::time::sleep(Duration::from_millis(20));
        drop(server);
        assert_eq!(reader.join().unwrap(), Err(io::ErrorKind::ConnectionReset));
        Ok(())
    })
    .join()
    .unwrap()
    .unwrap();
}

#[test]
fn without_linger_the_peer_sees_an_orderly_end_of_stream() {
    stackweave::spawn(|| -> io::Result<()> {
        let (mut client, mut server) = pair()?;
        server.set_linger(None)?;
        server.write_all(b"bye")?;
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got)?;
        assert_eq!(got, b"bye");
        Ok(())
    })
    .join()
    .unwrap()
    .unwrap();
}
