//! An encoder run on a thread of its own. The lazy-pull encoders read the tar they
//! are given (entries, rolling checksums, each file's digest) before their workers
//! compress it: work a plain encoder does not have, which would otherwise fall on the
//! thread producing the tar (walking the tree, hashing the diffID). Here the producer
//! only copies the tar into pieces and hands them over; the encoder's thread does the
//! rest, and the compression workers run beside both.

use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Bytes handed over at once.
const PIECE: usize = 256 << 10;

/// Pieces in flight: handed over and not yet taken by the encoder.
const IN_FLIGHT: usize = 4;

/// What the encoder's thread is sent.
enum Message {
    /// The next bytes.
    Piece(Vec<u8>),
    /// The last bytes have been sent: end the encoder. (Without it, as when the
    /// writer is dropped unfinished, the thread stops without ending the encoder.)
    Finish,
}

/// A [`Write`] whose bytes an encoder takes on its own thread; [`OffThread::finish`]
/// ends the encoder there and returns what it returns.
pub(crate) struct OffThread<R> {
    /// The piece being filled.
    piece: Vec<u8>,
    to_encoder: Option<mpsc::SyncSender<Message>>,
    /// Pieces the encoder is done with, to fill again.
    emptied: mpsc::Receiver<Vec<u8>>,
    thread: Option<JoinHandle<io::Result<R>>>,
    /// What the encoder is (for errors).
    name: &'static str,
}

impl<R: Send + 'static> OffThread<R> {
    /// Runs `encoder` on a new thread named `name`; `finish` ends it there once every
    /// byte has been written (by [`OffThread::finish`]).
    pub(crate) fn spawn<E, F>(name: &'static str, mut encoder: E, finish: F) -> io::Result<Self>
    where
        E: Write + Send + 'static,
        F: FnOnce(E) -> io::Result<R> + Send + 'static,
    {
        let (to_encoder, messages) = mpsc::sync_channel(IN_FLIGHT);
        let (give_back, emptied) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                for message in messages {
                    match message {
                        Message::Piece(mut piece) => {
                            encoder.write_all(&piece)?;
                            piece.clear();
                            // Nobody may want it back any more: that is fine.
                            let _ = give_back.send(piece);
                        }
                        Message::Finish => return finish(encoder),
                    }
                }
                Err(io::Error::other(format!(
                    "{name}: the input ended unfinished"
                )))
            })?;
        Ok(OffThread {
            piece: Vec::with_capacity(PIECE),
            to_encoder: Some(to_encoder),
            emptied,
            thread: Some(thread),
            name,
        })
    }
}

impl<R> OffThread<R> {
    /// Hands the piece being filled to the encoder.
    fn hand_over(&mut self) -> io::Result<()> {
        let next = self
            .emptied
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(PIECE));
        let piece = std::mem::replace(&mut self.piece, next);
        self.send(Message::Piece(piece))
    }

    /// Sends `message` to the encoder's thread; when it has stopped, its error.
    fn send(&mut self, message: Message) -> io::Result<()> {
        let sent = match &self.to_encoder {
            Some(to) => to.send(message).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The encoder stopped: its error says why.
        self.to_encoder = None;
        match self.join() {
            Err(e) => Err(e),
            Ok(_) => Err(io::Error::other(format!(
                "{}: the encoder ended early",
                self.name
            ))),
        }
    }

    /// Waits for the encoder's thread: what it returned.
    fn join(&mut self) -> io::Result<R> {
        let thread = self
            .thread
            .take()
            .ok_or_else(|| io::Error::other(format!("{}: the encoder already ended", self.name)))?;
        thread.join().map_err(|_| {
            io::Error::other(format!("{}: the encoder's thread panicked", self.name))
        })?
    }

    /// Hands over the last bytes and waits for the encoder to end: what it returns.
    pub(crate) fn finish(mut self) -> io::Result<R> {
        if !self.piece.is_empty() {
            self.hand_over()?;
        }
        self.send(Message::Finish)?;
        self.join()
    }
}

impl<R> Write for OffThread<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = (PIECE - self.piece.len()).min(buf.len());
            self.piece.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.piece.len() == PIECE {
                self.hand_over()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R> Drop for OffThread<R> {
    fn drop(&mut self) {
        // Dropped unfinished (the export failed): the thread sees its input end
        // without `Finish` and stops; nothing is written after this returns.
        self.to_encoder = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Keeps what it is given, failing past `limit` bytes.
    struct Limited {
        kept: Vec<u8>,
        limit: usize,
    }

    impl Write for Limited {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.kept.len() + buf.len() > self.limit {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "over the limit"));
            }
            self.kept.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn spawn(limit: usize, finished: Arc<AtomicBool>) -> OffThread<Vec<u8>> {
        let encoder = Limited {
            kept: Vec::new(),
            limit,
        };
        OffThread::spawn("test-encoder", encoder, move |e: Limited| {
            finished.store(true, Ordering::SeqCst);
            Ok(e.kept)
        })
        .expect("thread")
    }

    #[test]
    fn the_encoder_gets_every_byte_in_order() {
        let data: Vec<u8> = (0..3 * PIECE + 77).map(|i| (i % 251) as u8).collect();
        let mut w = spawn(usize::MAX, Arc::default());
        for part in data.chunks(1000) {
            w.write_all(part).expect("write");
        }
        assert_eq!(w.finish().expect("finish"), data);
    }

    #[test]
    fn the_encoders_error_reaches_the_writer() {
        let mut w = spawn(PIECE, Arc::default());
        let mut result = Ok(());
        for _ in 0..100 {
            result = w.write_all(&[7; PIECE]);
            if result.is_err() {
                break;
            }
        }
        let e = result.err().or_else(|| w.finish().err()).expect("an error");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("over the limit"), "{e}");
    }

    #[test]
    fn dropped_unfinished_the_encoder_is_not_ended() {
        let finished = Arc::new(AtomicBool::new(false));
        let mut w = spawn(usize::MAX, Arc::clone(&finished));
        w.write_all(&[1; 3 * PIECE]).expect("write");
        drop(w);
        assert!(!finished.load(Ordering::SeqCst));
    }
}
