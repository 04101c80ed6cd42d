//! The `kubernetes` Service's one endpoint: a TCP forwarder from the Service address on the
//! bridge to the API server on loopback (what kube-proxy would do for this Service).

use std::{
    io,
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::{Error, process};

/// Forwards TCP connections to `listen` to `target` until the node with registry `id` is
/// cleaned up (one thread per direction per connection; test traffic only).
pub(super) fn forward(id: u64, listen: SocketAddr, target: SocketAddr) -> Result<(), Error> {
    let listener =
        TcpListener::bind(listen).map_err(Error::io(format!("binding the forwarder {listen}")))?;
    listener
        .set_nonblocking(true)
        .map_err(Error::io("configuring the forwarder"))?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        process::add_cleanup(id, Box::new(move || stop.store(true, Ordering::SeqCst)));
    }
    std::thread::Builder::new()
        .name("testenv-forwarder".into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(upstream) = TcpStream::connect(target) {
                            pipe(client, upstream);
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
        .map_err(Error::io("starting the forwarder thread"))?;
    Ok(())
}

fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        }
    };
    let _ = std::thread::Builder::new().spawn(copy(a, b2));
    let _ = std::thread::Builder::new().spawn(copy(b, a2));
}
