//! A TCP proxy that forwards until `budget` bytes went client -> server, then drops every
//! connection and refuses new ones (a WAN link that broke and stays down).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub async fn cutting_proxy(target: String, budget: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let (cut_tx, cut_rx) = watch::channel(false);
    let cut_tx = Arc::new(cut_tx);
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            if sent.load(Ordering::SeqCst) >= budget {
                drop(client);
                continue;
            }
            let Ok(server) = TcpStream::connect(&target).await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let (sent, cut_tx, mut cut_rx1, mut cut_rx2) =
                (sent.clone(), cut_tx.clone(), cut_rx.clone(), cut_rx.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 << 10];
                loop {
                    let n = tokio::select! {
                        r = cr.read(&mut buf) => match r { Ok(0) | Err(_) => break, Ok(n) => n },
                        _ = cut_rx1.changed() => break,
                    };
                    let before = sent.fetch_add(n as u64, Ordering::SeqCst);
                    if before + n as u64 >= budget {
                        let keep = budget.saturating_sub(before) as usize;
                        let _ = sw.write_all(&buf[..keep]).await;
                        let _ = cut_tx.send(true);
                        break;
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 << 10];
                loop {
                    let n = tokio::select! {
                        r = sr.read(&mut buf) => match r { Ok(0) | Err(_) => break, Ok(n) => n },
                        _ = cut_rx2.changed() => break,
                    };
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}
